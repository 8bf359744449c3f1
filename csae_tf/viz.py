"""Figures of a CSAE run as arrays and PNG files: image grids, reconstructions, generated samples,
and distance heat-maps between class centres (paper Fig. 4-9). Shared by TensorBoard callbacks,
`csae_tf.evaluate`, `csae_tf.generate` and the comparison harness.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def to_uint8(images) -> np.ndarray:
    """Model-scale images in [-1, 1] (or uint8 already) -> uint8 0..255."""
    images = np.asarray(images)
    if images.dtype == np.uint8:
        return images
    return np.clip((images + 1.0) * 127.5, 0, 255).round().astype(np.uint8)


def image_grid(images, rows: int, cols: int, pad: int = 2) -> np.ndarray:
    """Tile (rows * cols, H, W, C) images into one (rows*(H+pad)+pad, cols*(W+pad)+pad, C) uint8 image."""
    images = to_uint8(images)
    n, h, w, c = images.shape
    if n > rows * cols:
        raise ValueError(f"{n} images do not fit a {rows}x{cols} grid")
    grid = np.full((rows * (h + pad) + pad, cols * (w + pad) + pad, c), 255, np.uint8)
    for i in range(n):
        r, k = divmod(i, cols)
        grid[pad + r * (h + pad) : pad + r * (h + pad) + h, pad + k * (w + pad) : pad + k * (w + pad) + w] = images[i]
    return grid


def grid_shape(rows: int, cols: int, image_shape: tuple, pad: int = 2) -> tuple:
    """Pixel shape (H, W, C) of an `image_grid` of `rows` x `cols` images of `image_shape`."""
    h, w, c = image_shape
    return (rows * (h + pad) + pad, cols * (w + pad) + pad, c)


def reconstruction_grid(model, images) -> np.ndarray:
    """Row of inputs above row of reconstructions (paper Fig. 4/5)."""
    images = np.asarray(images)
    rec = np.asarray(model.reconstruct(images))
    return image_grid(np.concatenate([images, rec]), 2, len(images))


def generated_grid(model, per_class: int = 10, seed: int = 0, num_classes: int | None = None) -> np.ndarray:
    """`per_class` samples from each class's latent Gaussian, one class per row (paper Fig. 6-8)."""
    n = num_classes or model.num_classes
    ids = np.repeat(np.arange(n), per_class).astype("int32")
    return image_grid(np.asarray(model.generate(ids, seed=(seed, 0))), n, per_class)


def pairwise_distances(points: np.ndarray) -> np.ndarray:
    """Euclidean distances between the rows of `points` (n, d) by the matmul form: memory n x n, not n x n x d.

    Rows of NaN (absent classes) give NaN distances.
    """
    p = np.asarray(points, np.float64)
    squares = (p**2).sum(1)
    d2 = squares[:, None] - 2 * p @ p.T + squares[None, :]
    distances = np.sqrt(np.maximum(d2, 0.0))
    np.fill_diagonal(distances, np.where(np.isnan(squares), np.nan, 0.0))
    return distances


def class_mean_distances(latent: np.ndarray, labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Distances between the classes' mean latent codes (paper Fig. 9); NaN for classes absent from `labels`."""
    counts = np.bincount(labels, minlength=num_classes).astype(np.float64)
    sums = np.zeros((num_classes, latent.shape[1]))
    np.add.at(sums, labels, latent)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = sums / counts[:, None]
    means[counts == 0] = np.nan
    return pairwise_distances(means)


def heatmap(matrix: np.ndarray, title: str, labels=None, fmt: str = "{:.1f}") -> np.ndarray:
    """A heat-map of `matrix` with its numbers written in the cells, as an RGB uint8 image."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = matrix.shape[0]
    labels = list(labels) if labels is not None else [str(i) for i in range(n)]
    size = max(4.0, 0.45 * n + 1.5)
    fig, ax = plt.subplots(figsize=(size, size), dpi=80)
    im = ax.imshow(matrix, cmap="viridis")
    if n <= 20:
        for i in range(n):
            for j in range(n):
                if np.isfinite(matrix[i, j]):
                    ax.text(j, i, fmt.format(matrix[i, j]), ha="center", va="center", color="white", fontsize=7)
        ax.set_xticks(range(n), labels)
        ax.set_yticks(range(n), labels)
    ax.set_title(title)
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    fig.canvas.draw()
    image = np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()
    plt.close(fig)
    return image


def save_png(image: np.ndarray, path: str | Path) -> Path:
    """Write a uint8 (H, W, 1|3) image as PNG."""
    from PIL import Image

    image = np.asarray(image)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).save(path)
    return path
