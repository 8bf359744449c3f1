"""Predefined evenly-distributed class centroids (PEDCC).

The centroids are fixed points on the sphere of radius sqrt(d), one per class, placed as far
apart as possible. Three layouts are offered:

- ``simplex``: the exact regular simplex (pairwise cosine -1/(n-1), the best possible for
  n <= d + 1), randomly rotated by the seed.
- ``repulsion``: the paper's charge-repulsion dynamics (Zhu & Zhang 2019, Algorithm 1),
  vectorised: the force on every point comes from one Gram matrix, never an n x n x d tensor.
- ``cross-polytope``: +-e_i of a random orthonormal frame, pairwise cosines 0 or -1: the best
  possible max cosine (Rankin's bound 0) for d + 1 < n <= 2d.
- ``packing``: projected gradient descent on a soft maximum of the pairwise cosines, for
  n > 2d where no exact layout is known (the Tammes problem).

``auto`` takes the exact layout wherever one exists: the simplex for n <= d + 1, the
cross-polytope for n <= 2d, the packing solver beyond.

``python -m csae_tf.pedcc --classes 10 --latent-dim 40`` prints the quality report.
"""

from __future__ import annotations

import argparse
import json
import math
import sys

import numpy as np
from threadpoolctl import threadpool_limits

METHODS = ("auto", "simplex", "repulsion", "packing", "cross-polytope")
_CHUNK = 1024  # rows of the Gram matrix held at once: memory is O(chunk * n), not O(n^2 d)
_NEIGHBOUR_WORK = 1e9  # n * n * d above which packing follows neighbour lists instead of all pairs
_NEIGHBOURS = 32  # nearest neighbours per point followed between refreshes
_REFRESH = 20  # iterations between two full (chunked) neighbour searches


def generate(
    num_classes: int,
    latent_dim: int,
    *,
    method: str = "auto",
    seed: int = 0,
    iterations: int | None = None,
    step_size: float = 0.01,
    epsilon: float = 0.01,
) -> np.ndarray:
    """Return `num_classes` centroids in `latent_dim` dimensions, float32, each of norm sqrt(d).

    `method="auto"` takes the exact simplex when n <= d + 1, the exact cross-polytope when n <= 2d
    (max cosine 0, Rankin's bound) and the packing solver otherwise.
    `iterations`, `step_size` and `epsilon` tune the iterative methods (the paper's repulsion
    uses 200 iterations, step 0.01 and distance floor 0.01). Same arguments, same array, bit for bit.
    """
    n, d = _check(num_classes, latent_dim, method)
    # One BLAS thread: the same bits whatever the machine's thread count, and no collapse of
    # multi-threaded LAPACK on a loaded machine (QR of 1000 x 999 took 12 s with 2 threads, 0.3 s with 1).
    with threadpool_limits(1):
        return _generate(n, d, method, seed, iterations, step_size, epsilon)


def _generate(n, d, method, seed, iterations, step_size, epsilon) -> np.ndarray:
    if method == "auto":
        method = auto_method(n, d)
    rng = np.random.default_rng(seed)
    if method == "simplex":
        if n > d + 1:
            raise ValueError(
                f"a regular simplex of {n} points needs latent_dim >= {n - 1} (got {d}); "
                "use method='auto' or 'packing'"
            )
        unit = _simplex(n, d, rng)
    elif method == "cross-polytope":
        if n > 2 * d:
            raise ValueError(f"a cross-polytope holds at most 2 * latent_dim = {2 * d} points (got {n})")
        unit = _cross_polytope(n, d, rng)
    elif method == "repulsion":
        unit = _repulsion(n, d, rng, iterations or 200, step_size, epsilon)
    else:
        unit = _packing(n, d, rng, iterations)
    return (unit * math.sqrt(d)).astype(np.float32)


def auto_method(num_classes: int, latent_dim: int) -> str:
    """The layout `method="auto"` uses: an exact optimum where one is known, the numerical packing beyond."""
    if num_classes <= latent_dim + 1:
        return "simplex"
    if num_classes <= 2 * latent_dim:
        return "cross-polytope"
    return "packing"


def quality(centroids: np.ndarray) -> dict:
    """Separation of a set of centroids: min distance and max cosine, with the best attainable bound.

    Distances are reported on the unit sphere (divide the centroids by their norms) so that
    they compare across dimensions; the simplex bound -1/(n-1) is the lowest possible max
    cosine when n <= d + 1, and Rankin's bound 0 holds for n >= d + 2 (reached for n <= 2d).
    """
    c = np.asarray(centroids, dtype=np.float64)
    n, d = c.shape
    unit = c / np.linalg.norm(c, axis=1, keepdims=True)
    max_cos = -1.0 if n == 1 else _max_cosine(unit)
    if n <= d + 1:
        bound, source = (-1.0 / (n - 1) if n > 1 else -1.0), "regular simplex, -1/(n-1)"
    elif n <= 2 * d:
        bound, source = 0.0, "Rankin (1955): n >= d+2 forces a cosine >= 0; the cross-polytope reaches 0"
    else:
        bound, source = 0.0, "Rankin (1955): n >= d+2 forces a cosine >= 0 (not reachable for n > 2d)"
    return {
        "num_classes": n,
        "latent_dim": d,
        "norm": float(np.linalg.norm(c, axis=1).mean()),
        "max_cosine": float(max_cos),
        "min_angle_degrees": float(np.degrees(np.arccos(np.clip(max_cos, -1.0, 1.0)))),
        "min_distance_unit": float(math.sqrt(max(0.0, 2.0 - 2.0 * max_cos))),
        "simplex_bound": float(-1.0 / (n - 1)) if n > 1 else -1.0,
        "best_max_cosine_bound": bound,
        "bound_source": source,
        "gap_to_bound": float(max_cos - bound),
    }


def _check(n: int, d: int, method: str) -> tuple[int, int]:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"num_classes must be an integer >= 1 (got {n!r})")
    if isinstance(d, bool) or not isinstance(d, (int, np.integer)) or d < 1:
        raise ValueError(f"latent_dim must be an integer >= 1 (got {d!r})")
    if method not in METHODS:
        raise ValueError(f"unknown PEDCC method {method!r}; choose one of {', '.join(METHODS)}")
    return int(n), int(d)


def _normalise(u: np.ndarray) -> np.ndarray:
    return u / np.linalg.norm(u, axis=1, keepdims=True)


def _random_frame(d: int, k: int, rng: np.random.Generator) -> np.ndarray:
    """A random d x k matrix with orthonormal columns (k <= d)."""
    q, r = np.linalg.qr(rng.standard_normal((d, k)))
    return q * np.sign(np.diag(r))  # sign fix makes the rotation Haar-distributed


def _simplex(n: int, d: int, rng: np.random.Generator) -> np.ndarray:
    if n == 1:
        return _normalise(rng.standard_normal((1, d)))
    # The rows of the n x (n-1) Helmert matrix (an orthonormal basis of the subspace orthogonal to
    # (1, ..., 1), in closed form) are the centred basis vectors of R^n: a regular simplex in n-1
    # dimensions, without the O(n^3) factorisation. Then rotate it into R^d.
    return _normalise(_helmert(n)) @ _random_frame(d, n - 1, rng).T


def _helmert(n: int) -> np.ndarray:
    """The n x (n-1) Helmert basis: column k-1 is (1, ..., 1, -k, 0, ..., 0) / sqrt(k (k+1)), k ones."""
    k = np.arange(1, n, dtype=np.float64)
    rows = np.arange(n, dtype=np.float64)[:, None]
    h = np.where(rows < k, 1.0, 0.0) - np.where(rows == k, k, 0.0)
    return h / np.sqrt(k * (k + 1.0))


def _cross_polytope(n: int, d: int, rng: np.random.Generator) -> np.ndarray:
    k = (n + 1) // 2
    frame = _random_frame(d, k, rng).T
    return np.concatenate([frame, -frame])[:n] if n > 1 else frame[:1]


def _gram_rows(u: np.ndarray):
    """Yield (start, rows of u @ u.T with the diagonal masked to -2), chunk by chunk."""
    n = len(u)
    for start in range(0, n, _CHUNK):
        block = u[start : start + _CHUNK] @ u.T
        rows = np.arange(len(block))
        block[rows, rows + start] = -2.0
        yield start, block


def _max_cosine(unit: np.ndarray) -> float:
    return max(float(block.max()) for _, block in _gram_rows(unit))


def _repulsion(n, d, rng, iterations, step_size, epsilon) -> np.ndarray:
    """The paper's dynamics: inverse-square repulsion, tangent force, u += v then v += lambda f_t."""
    u = _normalise(rng.standard_normal((n, d)))
    v = np.zeros_like(u)
    sq = np.ones(n)
    for _ in range(iterations):
        force = np.empty_like(u)
        for start, gram in _gram_rows(u):
            rows = slice(start, start + len(gram))
            dist2 = sq[rows, None] + sq[None, :] - 2.0 * gram
            w = np.maximum(np.sqrt(np.maximum(dist2, 0.0)), epsilon) ** -3
            w[np.arange(len(gram)), np.arange(len(gram)) + start] = 0.0
            # sum_j (u_i - u_j) w_ij = u_i * sum_j w_ij - (W u)_i : no n x n x d tensor.
            force[rows] = u[rows] * w.sum(axis=1, keepdims=True) - w @ u
        tangent = force - np.sum(u * force, axis=1, keepdims=True) * u
        u = _normalise(u + v)
        v = v + step_size * tangent
        sq = np.sum(u * u, axis=1)
    return u


def _packing(n, d, rng, iterations) -> np.ndarray:
    """Minimise a soft maximum of the pairwise cosines by projected momentum descent.

    The temperature of the soft maximum rises and the step falls linearly over the
    iterations; the best configuration seen is returned. Each step costs two chunked
    (n x n x d) matrix products in float32; above `_NEIGHBOUR_WORK` only each point's
    `_NEIGHBOURS` nearest neighbours, searched again every `_REFRESH` steps, enter the soft maximum.
    """
    work = n * n * d
    if iterations is None:
        iterations = 2000 if work <= 5e7 else 250 if work <= _NEIGHBOUR_WORK else 200
    u = _normalise(rng.standard_normal((n, d))).astype(np.float32)
    if work > _NEIGHBOUR_WORK and n > _NEIGHBOURS + 1:
        return _packing_neighbours(u, iterations)
    momentum = np.zeros_like(u)
    best, best_cos, ref = u, np.inf, 1.0
    for k in range(iterations):
        temperature = np.float32(10.0 + 200.0 * k / iterations)
        grad = np.empty_like(u)
        current = -2.0
        for start, gram in _gram_rows(u):
            current = max(current, float(gram.max()))
            # weight = exp(min(T (cos - ref), 50)), in place: no temporaries of the block's size
            gram -= np.float32(ref)
            gram *= temperature
            np.minimum(gram, np.float32(50.0), out=gram)
            np.exp(gram, out=gram)
            np.matmul(gram, u, out=grad[start : start + len(gram)])
        ref = current
        if current < best_cos:
            best, best_cos = u, current
        u, momentum = _descend(u, grad, momentum, k, iterations)
    return best.astype(np.float64)


def _descend(u, grad, momentum, k, iterations):
    """One projected momentum step along the tangent part of `grad`, back onto the sphere."""
    n = len(u)
    grad -= np.sum(u * grad, axis=1, keepdims=True) * u
    momentum = np.float32(0.9) * momentum + grad * np.float32(math.sqrt(n) / (np.linalg.norm(grad) + 1e-30))
    step = np.float32(0.05 * (1.0 - k / iterations) / math.sqrt(n))
    return _normalise(u - step * momentum), momentum


def _neighbours(u: np.ndarray, k: int) -> tuple[np.ndarray, float]:
    """(indices of each point's k largest cosines, the largest cosine of all), chunk by chunk."""
    index = np.empty((len(u), k), np.int64)
    current = -2.0
    for start, gram in _gram_rows(u):
        current = max(current, float(gram.max()))
        index[start : start + len(gram)] = np.argpartition(gram, -k, axis=1)[:, -k:]
    return index, current


def _packing_neighbours(u: np.ndarray, iterations: int) -> np.ndarray:
    """`_packing` restricted to neighbour lists: O(n k d) per step, O(n^2 d) every `_REFRESH` steps."""
    momentum = np.zeros_like(u)
    best, best_cos = u, np.inf
    for k in range(iterations + 1):
        if k % _REFRESH == 0 or k == iterations:
            index, current = _neighbours(u, _NEIGHBOURS)  # exact max cosine: track the best here
            if current < best_cos:
                best, best_cos = u, current
            if k == iterations:
                break
        temperature = np.float32(10.0 + 200.0 * k / iterations)
        near = u[index]  # (n, k, d)
        cos = np.matmul(near, u[:, :, None])[:, :, 0]
        weight = np.exp(np.minimum(temperature * (cos - cos.max()), np.float32(50.0)))
        grad = np.matmul(weight[:, None, :], near)[:, 0, :]
        u, momentum = _descend(u, grad, momentum, k, iterations)
    return best.astype(np.float64)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m csae_tf.pedcc", description="Generate PEDCC class centroids and report their separation."
    )
    parser.add_argument("--classes", type=int, required=True, help="number of classes n")
    parser.add_argument("--latent-dim", type=int, required=True, help="latent dimension d")
    parser.add_argument("--method", default="auto", choices=METHODS, help="layout (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    parser.add_argument("--iterations", type=int, default=None, help="iterations of the iterative methods")
    parser.add_argument("--output", default=None, help="save the (n, d) float32 centroids to this .npy file")
    return parser


def main(argv: list[str] | None = None) -> int:
    from csae_tf.errors import run_main

    args = build_parser().parse_args(argv)

    def report() -> None:
        centroids = generate(args.classes, args.latent_dim, method=args.method, seed=args.seed,
                             iterations=args.iterations)
        result = quality(centroids)
        result["method"] = args.method
        if args.output:
            np.save(args.output, centroids)
            result["output"] = args.output
        print(json.dumps(result, indent=2))

    return run_main(report, also=(ValueError,))  # generate's ValueError: n and d that cannot be laid out


if __name__ == "__main__":
    sys.exit(main())
