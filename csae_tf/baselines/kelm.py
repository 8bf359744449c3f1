"""Kernel extreme learning machine (Huang et al. 2012) with a Gaussian kernel, solved in closed form.

Exact KELM: beta = (I/C + Omega)^-1 Y with Omega the N x N kernel matrix of the training features,
and f(x) = K(x, X) beta. On 60,000 samples Omega takes 29 GB in float64 and O(N^3) to solve, so
two approximations with m << N centres are offered; both give f(x) = K(x, centres) @ coef:

- ``subset``: exact KELM on m randomly chosen training samples (the rest are ignored).
- ``nystrom``: every training sample counts. Omega ~= K_nm K_mm^-1 K_mn (m random landmarks); with
  Phi = K_nm K_mm^-1/2 the push-through identity turns the N x N solve into an m x m one:
  coef = K_mm^-1/2 (I/C + Phi^T Phi)^-1 Phi^T Y, accumulated over chunks of N (memory O(m^2)).
  With m = N it is exact KELM.
"""

from __future__ import annotations

import numpy as np

METHODS = ("nystrom", "subset", "exact")


def gaussian_kernel(a: np.ndarray, b: np.ndarray, gamma: float) -> np.ndarray:
    """K[i, j] = exp(-|a_i - b_j|^2 / (2 gamma^2)) (seed 002, eq. 12), float64."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    d2 = (a * a).sum(1)[:, None] - 2.0 * a @ b.T + (b * b).sum(1)[None, :]
    return np.exp(-np.maximum(d2, 0.0) / (2.0 * gamma**2))


def median_gamma(x: np.ndarray, sample: int = 1000, seed: int = 0) -> float:
    """Kernel width from the median heuristic: gamma^2 = median squared distance / 2 (K = e^-1 there)."""
    rng = np.random.default_rng(seed)
    x = np.asarray(x, np.float64)[rng.choice(len(x), min(sample, len(x)), replace=False)]
    d2 = (x * x).sum(1)[:, None] - 2.0 * x @ x.T + (x * x).sum(1)[None, :]
    d2 = d2[np.triu_indices(len(x), 1)]
    return float(np.sqrt(max(np.median(d2), 1e-12) / 2.0))


def fit(features: np.ndarray, labels: np.ndarray, num_classes: int, *, c: float, gamma: float,
        method: str = "nystrom", centres: int = 2000, seed: int = 0,
        chunk: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    """Solve the KELM; returns (centres (m, f), coef (m, n)) with f(x) = K(x, centres) @ coef."""
    if method not in METHODS:
        raise ValueError(f"unknown KELM method {method!r}; choose from {', '.join(METHODS)}")
    x = np.asarray(features, np.float64)
    y = np.eye(num_classes)[np.asarray(labels)]
    rng = np.random.default_rng(seed)
    if method == "exact":
        return x, np.linalg.solve(np.eye(len(x)) / c + gaussian_kernel(x, x, gamma), y)
    centres = min(centres, len(x))
    idx = np.sort(rng.choice(len(x), centres, replace=False))
    landmarks = x[idx]
    if method == "subset":
        return landmarks, np.linalg.solve(np.eye(centres) / c + gaussian_kernel(landmarks, landmarks, gamma), y[idx])
    values, vectors = np.linalg.eigh(gaussian_kernel(landmarks, landmarks, gamma))
    keep = values > values.max() * 1e-10  # K_mm is often numerically singular: use its pseudo-inverse root
    inv_root = (vectors[:, keep] / np.sqrt(values[keep])) @ vectors[:, keep].T
    gram, rhs = np.zeros((centres, centres)), np.zeros((centres, num_classes))
    for start in range(0, len(x), chunk):
        phi = gaussian_kernel(x[start : start + chunk], landmarks, gamma) @ inv_root
        gram += phi.T @ phi
        rhs += phi.T @ y[start : start + chunk]
    return landmarks, inv_root @ np.linalg.solve(np.eye(centres) / c + gram, rhs)


def predict(features: np.ndarray, centres: np.ndarray, coef: np.ndarray, gamma: float, chunk: int = 4096) -> np.ndarray:
    """Class scores K(x, centres) @ coef, (B, n)."""
    return np.concatenate([gaussian_kernel(features[i : i + chunk], centres, gamma) @ coef
                           for i in range(0, len(features), chunk)])
