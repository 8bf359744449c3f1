"""Test-time views: classify an image by the mean latent code of the image and a few transforms of it.

The encoder maps every view of an image near its class centroid; averaging the codes of the views
before the nearest-centroid decision removes part of each view's error. Views are the training
augmentations (`--augment` shifts, `--flip` mirrors), so a set with flips suits only classes that
mirror (Fashion-MNIST, not digits):

- ``none``: the image alone (what `evaluate`'s `accuracy` always reports);
- ``flip``: the image and its horizontal mirror (2 views);
- ``shifts``: the image and its four 1-pixel shifts, filled with the background (5 views);
- ``flip-shifts``: both, and the shifts of the mirror (10 views).
"""

from __future__ import annotations

import numpy as np

VIEW_SETS = ("none", "flip", "shifts", "flip-shifts")
_SHIFTS = ((1, 0), (-1, 0), (0, 1), (0, -1))


def shift(images: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """Images (N, h, w, C) moved by (dy, dx) pixels; what enters from outside is 0, the raw background."""
    out = np.zeros_like(images)
    h, w = images.shape[1:3]
    out[:, max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = \
        images[:, max(-dy, 0):h + min(-dy, 0), max(-dx, 0):w + min(-dx, 0)]
    return out


def count(view_set: str) -> int:
    """How many views the set has."""
    return (2 if "flip" in view_set else 1) * (1 + len(_SHIFTS) if "shifts" in view_set else 1)


def views(images: np.ndarray, view_set: str) -> list[np.ndarray]:
    """The views of raw images (N, h, w, C) that `view_set` names, the image itself first."""
    if view_set not in VIEW_SETS:
        raise ValueError(f"unknown view set {view_set!r}; choose from {', '.join(VIEW_SETS)}")
    bases = [images] + ([images[:, :, ::-1]] if "flip" in view_set else [])
    if "shifts" not in view_set:
        return bases
    return [v for base in bases for v in (base, *(shift(base, dy, dx) for dy, dx in _SHIFTS))]


def mean_codes(model, images: np.ndarray, view_set: str = "none", batch: int = 500) -> np.ndarray:
    """The mean latent code (N, d) over the views of each image."""
    from csae_tf.runs import encode

    return np.mean([encode(model, v, batch) for v in views(images, view_set)], axis=0)
