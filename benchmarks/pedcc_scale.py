"""PEDCC at scale: wall time, peak memory and max pairwise cosine against the best known lower bound.

    python benchmarks/pedcc_scale.py --output docs/pedcc_scale.json

For each (n, d), `csae_tf.pedcc.generate(n, d)` (method auto: the exact simplex for n <= d + 1,
the packing solver beyond) runs in a fresh child process; the parent reports its wall time,
the child's peak traced allocation (tracemalloc, numpy arrays included) and peak RSS, and the
largest pairwise cosine against a lower bound that no n points in R^d can beat:

- n <= d + 1: -1/(n-1), the regular simplex (reached: the error is the gap).
- d + 2 <= n <= 2d: 0, Rankin (1955); the cross-polytope reaches it.
- n > 2d: max(0, Delsarte's linear-programming bound with the cubic f(t) = (t - s)(t - b)^2), found
  by `delsarte_bound` below. Delsarte-Goethals-Seidel (1977): if f <= 0 on [-1, s] and f's
  Gegenbauer coefficients f_1.. are >= 0 with f_0 > 0, every code with cosines <= s has at most
  f(1)/f_0 points. The coefficients are computed exactly from the moments of one coordinate of a
  uniform point on the sphere; s is the smallest value whose certificate still allows n points.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CASES = ((10, 40), (100, 512), (1000, 1024), (1000, 512), (1000, 64), (5000, 128))

_CHILD = """
import json, resource, sys, time, tracemalloc
sys.path.insert(0, {root!r})
import importlib.util
spec = importlib.util.spec_from_file_location("pedcc", {path!r})
pedcc = importlib.util.module_from_spec(spec); spec.loader.exec_module(pedcc)
tracemalloc.start()
start = time.perf_counter()
c = pedcc.generate({n}, {d}, seed=0)
seconds = time.perf_counter() - start
traced = tracemalloc.get_traced_memory()[1]
tracemalloc.stop()
q = pedcc.quality(c)
print(json.dumps(dict(seconds=seconds, peak_traced_mb=traced / 2**20,
                      peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, **q)))
"""


def _moments(d: int, degree: int) -> np.ndarray:
    """E[t^m], m = 0..degree, for t one coordinate of a uniform point on the sphere S^(d-1)."""
    m = np.zeros(degree + 1)
    m[0] = 1.0
    for j in range(2, degree + 1, 2):
        m[j] = m[j - 2] * (j - 1) / (d + j - 2)
    return m


def _expect(poly: np.ndarray, moments: np.ndarray) -> float:
    return float(sum(c * moments[i] for i, c in enumerate(poly)))  # poly: increasing powers


def delsarte_capacity(d: int, s: float, grid: int = 2001) -> float:
    """Largest number of points the cubic Delsarte certificate allows with all cosines <= s (inf if none)."""
    moments = _moments(d, 6)
    gegenbauer = [np.array([0.0, 1.0]), np.array([-1.0 / d, 0.0, 1.0]), np.array([0.0, -3.0 / (d + 2), 0.0, 1.0])]
    best = np.inf
    for b in np.linspace(-1.0, 1.0, grid):
        f = np.polynomial.polynomial.polymul([-s, 1.0], np.polynomial.polynomial.polymul([-b, 1.0], [-b, 1.0]))
        f0 = _expect(f, moments)
        if f0 <= 0:
            continue
        if all(_expect(np.polynomial.polynomial.polymul(f, g), moments) >= -1e-15 for g in gegenbauer):
            best = min(best, float(np.polynomial.polynomial.polyval(1.0, f)) / f0)
    return best


def delsarte_bound(n: int, d: int, tol: float = 1e-4) -> float:
    """Smallest s in [0, 1) at which the cubic certificate still allows n points: max cosine >= s."""
    lo, hi = 0.0, 0.999
    if delsarte_capacity(d, lo) >= n:
        return 0.0
    while hi - lo > tol:
        mid = (lo + hi) / 2
        lo, hi = (lo, mid) if delsarte_capacity(d, mid) >= n else (mid, hi)
    return lo


def lower_bound(n: int, d: int) -> tuple[float, str]:
    if n <= d + 1:
        return -1.0 / (n - 1), "regular simplex -1/(n-1) (reached)"
    if n <= 2 * d:
        return 0.0, "Rankin (1955): 0 for n >= d+2, reached by the cross-polytope"
    s = delsarte_bound(n, d)
    return s, "Delsarte LP bound (Delsarte-Goethals-Seidel 1977), cubic certificate (t-s)(t-b)^2"


def run_case(n: int, d: int, timeout: float) -> dict:
    code = _CHILD.format(root=str(ROOT), path=str(ROOT / "csae_tf" / "pedcc.py"), n=n, d=d)
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout)
    if out.returncode:
        raise RuntimeError(out.stderr[-2000:])
    result = json.loads(out.stdout.strip().splitlines()[-1])
    bound, source = lower_bound(n, d)
    return {"n": n, "d": d, "seconds": round(result["seconds"], 2), "max_cosine": result["max_cosine"],
            "lower_bound": bound, "bound_source": source, "gap": result["max_cosine"] - bound,
            "peak_traced_mb": round(result["peak_traced_mb"], 1), "peak_rss_mb": round(result["peak_rss_mb"], 1),
            "child_wall_seconds": round(time.perf_counter() - start, 1)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cases", default=None, help="n:d pairs, e.g. 1000:512,5000:128 (default: the issue's six)")
    parser.add_argument("--timeout", type=float, default=900)
    parser.add_argument("--output", default=None)
    args = parser.parse_args(argv)
    cases = [tuple(map(int, c.split(":"))) for c in args.cases.split(",")] if args.cases else CASES
    rows = []
    print("| n | d | method | seconds | max cosine | lower bound | gap | peak traced MB | peak RSS MB |")
    print("|---|---|---|---|---|---|---|---|---|")
    for n, d in cases:
        r = run_case(n, d, args.timeout)
        rows.append(r)
        method = "simplex" if n <= d + 1 else "packing"
        print(f"| {n} | {d} | {method} | {r['seconds']:.2f} | {r['max_cosine']:.4f} | {r['lower_bound']:.4f} | "
              f"{r['gap']:.4f} | {r['peak_traced_mb']:.0f} | {r['peak_rss_mb']:.0f} |", flush=True)
    if args.output:
        report = {"command": "python benchmarks/pedcc_scale.py " + " ".join(sys.argv[1:] if argv is None else argv),
                  "date": time.strftime("%Y-%m-%d %H:%M"), "rows": rows}
        Path(args.output).write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
