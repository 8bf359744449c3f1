"""The oneDNN kernels of one CSAE-C training step, csae-tf against PyTorch, timed by oneDNN itself.

    python benchmarks/onednn_primitives.py --batch 128 --steps 10 --output docs/results/profile/onednn_b128.json

Both frameworks call oneDNN for their convolutions. Each contender runs in a child process with
`ONEDNN_VERBOSE=1`, which makes oneDNN print every primitive it executes with its implementation, shape
and wall time; after a warm-up, `--steps` training steps on one random batch are read back and summed per
step by (primitive, propagation, shape). Contenders:
- `tf-sequential`: `CSAE.train_step` in one tf.function with `TF_NUM_INTEROP_THREADS=1`, so that the
  kernels run one at a time on both cores and their times can be set against PyTorch's;
- `tf`: the same with TensorFlow's default inter-op threads (its training default), where independent
  kernels (a layer's data and weight gradients) overlap and each takes longer;
- `torch-cl`: benchmarks/pytorch_reference.py, eager, channels-last (needs torch).
The printed step time of each child is measured without the verbose output.
"""

from __future__ import annotations

import argparse
import collections
import datetime
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
START, END = "=====STEPS=====", "=====END====="
CONTENDERS = ("tf-sequential", "tf", "torch-cl")


def _tf_child(batch: int, steps: int, verbose: bool) -> None:
    sys.path.insert(0, str(HERE.parent))
    import csae_tf  # noqa: F401  (first: it turns TensorFlow's oneDNN kernels on before TensorFlow loads)

    # isort: split
    import numpy as np
    import tensorflow as tf

    from csae_tf import pedcc
    from csae_tf.config import FitConfig
    from csae_tf.models import build_model
    from csae_tf.trainer import compile_model

    cfg = FitConfig(batch_size=batch, lr=0.05, schedule="cosine", epochs=1000)
    model = build_model(cfg, 10, (32, 32, 1), pedcc.generate(10, cfg.latent_dim, seed=0))
    compile_model(model, cfg, steps_per_epoch=400)
    rng = np.random.default_rng(0)
    x = tf.constant(rng.integers(0, 256, (batch, 28, 28, 1), dtype=np.uint8))
    y = tf.constant(rng.integers(0, 10, batch).astype(np.int32))

    @tf.function
    def run(n):
        for _ in tf.range(n):
            model.train_step((x, y))

    _measure(lambda n: run(tf.constant(n)), steps, verbose)


def _torch_child(batch: int, steps: int, verbose: bool) -> None:
    import math

    import torch
    from pytorch_reference import CSAEC, make_trainer

    torch.set_num_threads(os.cpu_count() or 1)
    torch.manual_seed(0)
    c = torch.randn(10, 40)
    step, _ = make_trainer(CSAEC(c * (math.sqrt(40) / c.norm(dim=1, keepdim=True))), channels_last=True)
    x, y = torch.rand(batch, 1, 32, 32) * 2 - 1, torch.randint(0, 10, (batch,))

    def run(n):
        for _ in range(n):
            step(x, y)

    _measure(run, steps, verbose)


def _measure(run, steps: int, verbose: bool) -> None:
    """Warm up, then either print the verbose log of `steps` steps between markers or time them."""
    run(3)
    if verbose:
        print(START, flush=True)
        run(steps)
        print(END, flush=True)
        return
    times = []
    for _ in range(3):
        t = time.perf_counter()
        run(steps)
        times.append((time.perf_counter() - t) / steps * 1000)
    print(json.dumps({"step_ms": statistics.median(times)}), flush=True)


def _child_env(name: str, verbose: bool) -> dict:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    env.pop("ONEDNN_VERBOSE", None)
    if verbose:
        env["ONEDNN_VERBOSE"] = "1"
    if name == "tf-sequential":
        env["TF_NUM_INTEROP_THREADS"] = "1"
    return env


def run_child(name: str, batch: int, steps: int, verbose: bool) -> str:
    cmd = [sys.executable, __file__, "--child", name, "--batch", str(batch), "--steps", str(steps)]
    out = subprocess.run(cmd + (["--verbose"] if verbose else []), env=_child_env(name, verbose), cwd=HERE,
                         capture_output=True, text=True)
    if out.returncode:
        raise SystemExit(f"error: the {name} child failed: {out.stderr.strip().splitlines()[-1:]}")
    return out.stdout


def primitives(log: str, steps: int) -> dict[str, dict]:
    """Per-step milliseconds and counts by 'primitive propagation shape' from a verbose log's marked section."""
    totals: dict[str, dict] = collections.defaultdict(lambda: {"ms": 0.0, "calls": 0, "impl": ""})
    inside = False
    for line in log.splitlines():
        if line == START:
            inside = True
        elif line == END:
            break
        elif inside and line.startswith("onednn_verbose") and ",exec," in line:
            f = line.split(",")
            kind, impl, prop, shape = f[5], f[6], f[7], f[-2]
            key = "reorder (weights)" if kind == "reorder" else f"{kind} {prop} {shape}"
            totals[key]["ms"] += float(f[-1]) / steps
            totals[key]["calls"] += 1
            totals[key]["impl"] = impl
    return {k: {**v, "calls": v["calls"] // steps} for k, v in totals.items()}


def families(prims: dict[str, dict]) -> dict[str, float]:
    """Per-step milliseconds by primitive and propagation (all shapes together)."""
    out: dict[str, float] = collections.Counter()
    for key, v in prims.items():
        out[" ".join(key.split()[:2])] += v["ms"]
    return dict(out)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--steps", type=int, default=10, help="training steps read back (after 3 of warm-up)")
    parser.add_argument("--contenders", default=",".join(CONTENDERS), help=f"comma-separated, of {CONTENDERS}")
    parser.add_argument("--output", help="write the figures as JSON here")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--verbose", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        (_torch_child if args.child.startswith("torch") else _tf_child)(args.batch, args.steps, args.verbose)
        return 0
    names = [n for n in args.contenders.split(",") if n]
    if bad := [n for n in names if n not in CONTENDERS]:
        parser.error(f"unknown contender(s) {bad}; choose from {CONTENDERS}")
    from reproduce import machine  # TensorFlow-free: this parent process only reads its children's logs

    result = {"command": "python benchmarks/" + Path(__file__).name + " " + " ".join(argv or sys.argv[1:]),
              "date": datetime.datetime.now().isoformat(timespec="minutes"), "machine": machine(),
              "batch": args.batch, "steps": args.steps, "contenders": {}}
    for name in names:
        prims = primitives(run_child(name, args.batch, args.steps, verbose=True), args.steps)
        step_ms = json.loads(run_child(name, args.batch, args.steps, verbose=False).splitlines()[-1])["step_ms"]
        kernels = sum(v["ms"] for v in prims.values())
        result["contenders"][name] = {"step_ms": step_ms, "onednn_ms": kernels, "families": families(prims),
                                      "primitives": prims}
        print(f"{name}: {step_ms:.1f} ms per step, of which oneDNN kernels {kernels:.1f} ms", flush=True)
    c = result["contenders"]
    print(f"\nbatch {args.batch}, {args.steps} steps; ms per step by primitive (oneDNN's own timings)\n")
    print("| primitive | " + " | ".join(names) + " |\n|---|" + "---|" * len(names))
    fams = sorted({f for n in names for f in c[n]["families"]}, key=lambda f: -max(c[n]["families"].get(f, 0)
                                                                                      for n in names))
    for f in fams:
        print(f"| {f} | " + " | ".join(f"{c[n]['families'].get(f, 0):.1f}" for n in names) + " |")
    print("| **all oneDNN kernels** | " + " | ".join(f"**{c[n]['onednn_ms']:.1f}**" for n in names) + " |")
    print("| step (without verbose) | " + " | ".join(f"{c[n]['step_ms']:.1f}" for n in names) + " |")
    if args.output:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
