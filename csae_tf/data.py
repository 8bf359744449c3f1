"""Datasets through TensorFlow Datasets: padded to a multiple of 8, scaled to [-1, 1], batched.

Online, `tfds` downloads as usual. Offline, `--manual-dir DIR` hands TFDS the original files
(their checksums are verified) and `--data-dir` is where TFDS prepares them. When neither the
prepared data, the files nor a network is there, `DataError` says which files to put where,
within seconds instead of TFDS's minutes of download retries.
"""

from __future__ import annotations

import dataclasses
import os
import socket
import urllib.parse
from pathlib import Path

import numpy as np
import tensorflow as tf

AUTOTUNE = tf.data.AUTOTUNE


class DataError(RuntimeError):
    """The dataset cannot be loaded; the message says why and what to do."""


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    """What the model needs to know about a dataset."""

    name: str
    num_classes: int
    image_shape: tuple  # after padding: (H, W, C)
    source_shape: tuple  # as stored: (h, w, C)
    num_train: int
    num_test: int
    class_names: tuple


def padded_shape(shape: tuple, arch: str) -> tuple:
    """The conv architecture halves the image three times: pad the sides up to a multiple of 8."""
    h, w, c = shape
    if arch != "conv":
        return (h, w, c)
    return (-(-h // 8) * 8, -(-w // 8) * 8, c)


def to_model_input(images: tf.Tensor, image_shape: tuple) -> tf.Tensor:
    """uint8 images (B, h, w, C) in 0..255 -> float32 (B, H, W, C) in [-1, 1], zero-padded around."""
    h, w = images.shape[1], images.shape[2]
    top, left = (image_shape[0] - h) // 2, (image_shape[1] - w) // 2
    x = tf.cast(images, tf.float32) / 127.5 - 1.0
    if (h, w) != tuple(image_shape[:2]):
        x = tf.pad(x, [[0, 0], [top, image_shape[0] - h - top], [left, image_shape[1] - w - left], [0, 0]],
                   constant_values=-1.0)
    return x


def from_model_output(images: tf.Tensor, source_shape: tuple) -> tf.Tensor:
    """Inverse of `to_model_input`: crop the padding, map [-1, 1] back to 0..255 (float32)."""
    h, w = source_shape[0], source_shape[1]
    top, left = (images.shape[1] - h) // 2, (images.shape[2] - w) // 2
    x = images[:, top : top + h, left : left + w, :]
    return tf.clip_by_value((x + 1.0) * 127.5, 0.0, 255.0)


def random_shift(images: tf.Tensor, pixels: int = 2, seed=None) -> tf.Tensor:
    """Shift each image by a random whole number of pixels in [-pixels, pixels] per axis (fill -1)."""
    batch = tf.shape(images)[0]
    shifts = tf.cast(tf.random.uniform([batch, 2], -pixels, pixels + 1, dtype=tf.int32, seed=seed), tf.float32)
    ones, zeros = tf.ones([batch, 1]), tf.zeros([batch, 1])
    transforms = tf.concat([ones, zeros, -shifts[:, :1], zeros, ones, -shifts[:, 1:], zeros, zeros], axis=1)
    return tf.raw_ops.ImageProjectiveTransformV3(
        images=images, transforms=transforms, output_shape=tf.shape(images)[1:3], fill_value=-1.0,
        interpolation="NEAREST", fill_mode="CONSTANT")


def _builder(name: str, data_dir: str | None):
    import tensorflow_datasets as tfds

    try:
        return tfds.builder(name, data_dir=data_dir)
    except Exception as err:  # TFDS raises several types for unknown names
        if "not found" in str(err).lower() or "DatasetNotFoundError" in type(err).__name__:
            raise DataError(f"unknown dataset {name!r}: not a TensorFlow Datasets name") from None
        raise DataError(f"cannot open dataset {name!r}: {err}") from None


def _expected_files(builder) -> dict[str, str]:
    """{file name TFDS looks for in the manual dir: download URL}."""
    try:
        infos = builder.url_infos or {}
    except Exception:
        infos = {}
    return {(info.filename or os.path.basename(urllib.parse.urlparse(url).path)): url for url, info in infos.items()}


def _online(urls, timeout: float = 3.0) -> bool:
    for url in list(urls)[:1]:
        parsed = urllib.parse.urlparse(url)
        try:
            with socket.create_connection((parsed.hostname, parsed.port or 443), timeout=timeout):
                return True
        except OSError:
            return False
    return True


def prepare(name: str, data_dir: str | None = None, manual_dir: str | None = None):
    """Return a prepared TFDS builder, preparing it from `manual_dir` or the network if needed."""
    import tensorflow_datasets as tfds

    builder = _builder(name, data_dir)
    if builder.is_prepared():
        return builder
    expected = _expected_files(builder)
    where = f"--data-dir {data_dir}" if data_dir else "the TFDS data directory"
    if manual_dir:
        if not os.path.isdir(manual_dir):
            raise DataError(f"--manual-dir {manual_dir} does not exist")
        missing = sorted(f for f in expected if not os.path.exists(os.path.join(manual_dir, f)))
        if missing:
            raise DataError(f"{name} is not prepared in {where} and {manual_dir} lacks: {', '.join(missing)} "
                            f"(the original files, from {', '.join(expected[m] for m in missing[:2])})")
        config = tfds.download.DownloadConfig(manual_dir=manual_dir)
    else:
        if not _online(expected.values()):
            files = ", ".join(expected) or "the dataset's original files"
            raise DataError(f"{name} is not prepared in {where} and there is no network: put {files} in a "
                            "folder and pass it as --manual-dir")
        config = tfds.download.DownloadConfig()
    try:
        # One download/extract folder per dataset: TFDS names extracted files after the archive's
        # name, and MNIST and Fashion-MNIST ship identically named files, so a shared folder
        # silently hands one dataset's images to the other.
        downloads = Path(builder.data_dir).parent / "downloads"
        builder.download_and_prepare(download_dir=str(downloads), download_config=config)
    except Exception as err:
        raise DataError(f"preparing {name} failed: {err}") from None
    return builder


def describe(builder, arch: str) -> DatasetInfo:
    features = builder.info.features
    image_key = "image" if "image" in features else next(iter(features))
    source = tuple(features[image_key].shape)
    label = features["label"]
    splits = builder.info.splits
    return DatasetInfo(
        name=builder.info.name, num_classes=label.num_classes, image_shape=padded_shape(source, arch),
        source_shape=source, num_train=splits["train"].num_examples,
        num_test=splits["test"].num_examples if "test" in splits else 0, class_names=tuple(label.names),
    )


def _split(split: str, limit: int | None) -> str:
    return f"{split}[:{limit}]" if limit else split


def load_split(builder, split: str, *, limit: int | None = None, classes=None) -> tf.data.Dataset:
    """(uint8 image, int label) pairs of one split, optionally the first `limit` and only `classes`."""
    ds = builder.as_dataset(split=_split(split, limit), as_supervised=True, shuffle_files=False)
    if classes:
        keep = tf.constant(list(classes), tf.int64)
        ds = ds.filter(lambda x, y: tf.reduce_any(tf.equal(tf.cast(y, tf.int64), keep)))
    return ds


def pipeline(ds: tf.data.Dataset, info: DatasetInfo, batch_size: int, *, training: bool, seed: int = 0,
             augment: bool = False, flip: bool = False, buffer: int = 60_000) -> tf.data.Dataset:
    """cache (uint8) -> shuffle -> batch -> pad/scale (and augment: shifts, flips) -> prefetch.

    Only the training pipeline is cached: its shuffle buffer reads the whole split, so the cache is
    completed on the first pass. An evaluation pipeline that Keras stops after its known number of
    batches would leave a cache unfinished, and the next pass then yielded a wrong set of images
    (measured: 9,984 instead of 10,000 test images, and a different accuracy).
    """
    ds = ds.cache() if training else ds
    if training:
        ds = ds.shuffle(buffer, seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size, drop_remainder=training)

    def prepare_batch(images, labels):
        x = to_model_input(images, info.image_shape)
        if training and augment:
            x = random_shift(x)
        if training and flip:
            x = tf.image.random_flip_left_right(x)
        return x, tf.cast(labels, tf.int32)

    ds = ds.map(prepare_batch, num_parallel_calls=AUTOTUNE, deterministic=True).prefetch(AUTOTUNE)
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return ds.with_options(options)


def count(ds: tf.data.Dataset) -> int:
    n = int(ds.cardinality())
    if n >= 0:
        return n
    return int(ds.reduce(np.int64(0), lambda c, _: c + 1))


def load_datasets(cfg) -> tuple[tf.data.Dataset, tf.data.Dataset, DatasetInfo]:
    """Train and test pipelines for a FitConfig, and the dataset's description (counts after limits)."""
    builder = prepare(cfg.dataset, cfg.data_dir, cfg.manual_dir)
    info = describe(builder, cfg.arch)
    if cfg.classes and max(cfg.classes) >= info.num_classes:
        raise DataError(f"--classes: {cfg.dataset} has class ids 0..{info.num_classes - 1}")
    train = load_split(builder, "train", limit=cfg.train_limit, classes=cfg.classes)
    test = load_split(builder, "test", limit=cfg.test_limit, classes=cfg.classes)
    info = dataclasses.replace(info, num_train=count(train), num_test=count(test))
    if info.num_train < cfg.batch_size:
        raise DataError(f"{info.num_train} training examples are fewer than one batch of {cfg.batch_size}")
    return (pipeline(train, info, cfg.batch_size, training=True, seed=cfg.seed, augment=cfg.augment,
                     flip=cfg.flip),
            pipeline(test, info, cfg.batch_size, training=False), info)


def as_numpy(ds: tf.data.Dataset) -> tuple[np.ndarray, np.ndarray]:
    """Materialise a (images, labels) dataset as two arrays."""
    xs, ys = zip(*((np.asarray(x), np.asarray(y)) for x, y in ds))
    return np.concatenate(xs), np.concatenate(ys)
