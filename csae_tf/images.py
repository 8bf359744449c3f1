"""Reading the user's images, under one input contract for every command that takes them
(`csae classify`, `csae extrapolate`, `csae ood`, `csae_tf.load(...).classify`).

The contract: images are raw pixels in 0..255, shaped (N, h, w) or (N, h, w, C), at the dataset's
size (28x28 for MNIST) or at the model's padded size (32x32), with the model's number of channels.
- integer arrays (uint8 or wider) must hold values in 0..255;
- float arrays are accepted only where their values say they are 0..255: whole numbers in 0..255
  with a maximum above 1. Floats in [0, 1] are refused (they could be 0..1 scaled images or almost
  black 0..255 ones; pass uint8 0..255, or floats in 0..255); so are fractional values and values
  outside 0..255 (e.g. the model's own [-1, 1] scale).

Files: PNG and JPEG (greyscale or colour; alpha and palettes are dropped), `.npy` (one array of
images) and `.npz` (the array `x` or `images`, or its only array; `y`, when present, holds labels).
Folders are read recursively, in sorted order. Anything unreadable is an `ImageError` naming the
file, in one line.
"""

from __future__ import annotations

import dataclasses
import zipfile
from pathlib import Path

import numpy as np

from csae_tf.errors import CsaeError, message

PICTURES = (".png", ".jpg", ".jpeg")
ARRAYS = (".npy", ".npz")
SUFFIXES = PICTURES + ARRAYS
ARRAY_KEYS = ("x", "images")


class ImageError(CsaeError):
    """Images that do not meet the input contract, or a file that cannot be read; the message names it."""


# --- the contract on arrays ---

def as_uint8(images, what: str) -> np.ndarray:
    """(N, h, w, C) uint8 of images (N, h, w) or (N, h, w, C) that meet the value contract."""
    images = np.asarray(images)
    if images.ndim == 3:
        images = images[..., None]
    if images.ndim != 4 or images.shape[0] == 0 or 0 in images.shape:
        raise ImageError(f"{what}: expected images shaped (N, H, W) or (N, H, W, C), got {images.shape}")
    if images.dtype == np.uint8:
        return images
    if not (np.issubdtype(images.dtype, np.integer) or np.issubdtype(images.dtype, np.floating)):
        raise ImageError(f"{what}: pixels of type {images.dtype}; pass uint8 0..255")
    low, high = images.min(), images.max()
    if np.issubdtype(images.dtype, np.floating):
        if not np.isfinite(images).all():
            raise ImageError(f"{what}: pixel values include NaN or infinity")
        if low >= 0 and high <= 1:
            raise ImageError(f"{what}: float pixels in [0, 1] are ambiguous; pass uint8 0..255 or floats in 0..255 "
                             "(e.g. multiply by 255)")
    if low < 0 or high > 255:
        raise ImageError(f"{what}: pixel values must lie in 0..255 (got {low:g}..{high:g})")
    if np.issubdtype(images.dtype, np.floating) and not np.array_equal(images, np.round(images)):
        raise ImageError(f"{what}: float pixels must be whole numbers in 0..255 (round them, or pass uint8)")
    return images.astype(np.uint8)


def fits(size: tuple[int, int], image_shape: tuple, arch: str) -> bool:
    """Whether images of `size` (h, w) pad to the model input `image_shape`, as the training images did."""
    from csae_tf.data import padded_shape

    h, w = size
    return (padded_shape((h, w, image_shape[2]), arch) == tuple(image_shape)
            and h <= image_shape[0] and w <= image_shape[1])


def check(images, image_shape: tuple, arch: str, what: str) -> np.ndarray:
    """The contract for a model whose input is `image_shape` (H, W, C): (N, h, w, C) uint8 or ImageError."""
    images = as_uint8(images, what)
    image_shape = tuple(image_shape)
    channels, want = images.shape[3], image_shape[2]
    if channels != want:
        kind = {1: "greyscale", 3: "colour"}
        raise ImageError(f"{what}: {kind.get(channels, f'{channels}-channel')} images for a "
                         f"{kind.get(want, f'{want}-channel')} model ({channels} channel(s), the model takes {want})")
    if not fits(images.shape[1:3], image_shape, arch):
        raise ImageError(f"{what}: images of shape {tuple(images.shape[1:])} do not fit the model's input "
                         f"{image_shape} (the model pads its training images to {image_shape})")
    return images


def for_model(images, model, what: str) -> np.ndarray:
    """`check` against a CSAE (its `image_shape` and `arch`)."""
    return check(images, tuple(model.image_shape), model.arch, what)


# --- files ---

def read_picture(path: str | Path) -> np.ndarray:
    """One PNG / JPEG as (1, h, w, C) uint8: C = 1 for greyscale, 3 for colour."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    try:
        with Image.open(path) as image:
            image.load()
            if image.mode in ("1", "L", "LA", "I;16", "I;16B", "I;16L", "I", "F"):
                array = np.asarray(image.convert("L") if image.mode in ("1", "LA") else image)
            else:
                array = np.asarray(image.convert("RGB"))
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
        raise ImageError(f"{path}: cannot read the image ({message(err)})") from None
    array = array[None, ..., None] if array.ndim == 2 else array[None]
    return as_uint8(array, str(path))


def read_array(path: str | Path) -> tuple[np.ndarray, np.ndarray | None]:
    """(images, labels or None) of a .npy (the images) or .npz file (x / images / its only array, and y)."""
    path = Path(path)
    labels = None
    try:
        if path.suffix.lower() == ".npy":
            images = np.load(path, allow_pickle=False)
        else:
            with np.load(path, allow_pickle=False) as archive:
                names = list(archive.files)
                key = next((k for k in ARRAY_KEYS if k in names), None)
                others = [n for n in names if n != "y"]
                if key is None and len(others) == 1:
                    key = others[0]
                if key is None:
                    raise ImageError(f"{path}: no array named x or images (it holds {', '.join(names) or 'nothing'})")
                images = archive[key]
                labels = archive["y"] if "y" in names and key != "y" else None
    except ImageError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError) as err:
        raise ImageError(f"{path}: not a readable {path.suffix.lower()} file ({message(err)})") from None
    if not isinstance(images, np.ndarray) or images.dtype == object:
        raise ImageError(f"{path}: not an array of images")
    if labels is not None and (labels.ndim != 1 or len(labels) != len(images)):
        raise ImageError(f"{path}: 'y' must hold one label per image ({len(images)}), got shape {labels.shape}")
    return images, labels


def files_in(path: str | Path) -> list[Path]:
    """The image files of a folder (recursively, sorted), or the file itself; ImageError if there are none."""
    path = Path(path)
    if path.is_dir():
        found = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in SUFFIXES)
        if not found:
            raise ImageError(f"{path}: no {', '.join(SUFFIXES)} files in this folder")
        return found
    if not path.exists():
        raise ImageError(f"{path}: no such file or folder")
    if path.suffix.lower() not in SUFFIXES:
        raise ImageError(f"{path}: unknown format {path.suffix or '(no suffix)'!r} (expected {', '.join(SUFFIXES)})")
    return [path]


@dataclasses.dataclass
class Source:
    """The images of one file: `names[i]` labels `images[i]` (``file`` or ``file[i]``)."""

    path: Path
    images: np.ndarray  # (N, h, w, C) uint8, the value contract met (not yet checked against a model)
    names: list[str]
    labels: np.ndarray | None = None


def read_file(path: str | Path) -> Source:
    """The images of one PNG / JPEG / .npy / .npz file."""
    path = Path(path)
    if path.suffix.lower() in PICTURES:
        return Source(path, read_picture(path), [str(path)])
    if path.suffix.lower() not in ARRAYS:
        raise ImageError(f"{path}: unknown format {path.suffix or '(no suffix)'!r} (expected {', '.join(SUFFIXES)})")
    images, labels = read_array(path)
    images = as_uint8(images, str(path))
    return Source(path, images, [f"{path}[{i}]" for i in range(len(images))], labels)


def read_images(path: str | Path) -> np.ndarray:
    """(N, h, w, C) uint8 of a file or a folder of files (all of one size)."""
    sources = [read_file(p) for p in files_in(path)]
    shapes = sorted({s.images.shape[1:] for s in sources})
    if len(shapes) > 1:
        raise ImageError(f"{path}: images of different shapes {', '.join(map(str, shapes))}")
    return np.concatenate([s.images for s in sources])
