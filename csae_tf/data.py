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

from csae_tf.errors import CsaeError

AUTOTUNE = tf.data.AUTOTUNE


class DataError(CsaeError):
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
    """A tf.data pipeline of (uint8 image, label) pairs: (cache, shuffle) -> batch -> pad/scale -> prefetch.

    For datasets that are not held in memory (the CSAE's own runs use `training_pipeline` and
    `evaluation_pipeline` over arrays read once). Augmentation, when asked for, is drawn here from
    TensorFlow's global seed; the CSAE itself augments inside its train step instead.
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
    return _finish(ds)


def _finish(ds: tf.data.Dataset) -> tf.data.Dataset:
    """Shard by data under a multi-worker strategy; no tf.data autotuning thread.

    With autotuning on, each iterator runs a model thread that sleeps for up to tens of seconds
    between optimisations, and deleting the iterator (Keras makes a new one for every validation
    pass, and for every epoch of a dataset without `steps_per_epoch`) waits for that thread's
    sleep to end: the whole process idled for 15-20 s at epoch boundaries. `AUTOTUNE` still sets
    the map parallelism (to the core count) and the prefetch depth (adjusted as it runs).
    """
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    options.autotune.enabled = False
    return ds.with_options(options)


@dataclasses.dataclass(frozen=True)
class Arrays:
    """One split held in memory: uint8 images (N, h, w, C) and int32 labels (N,)."""

    images: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)

    def take(self, indices) -> Arrays:
        return Arrays(self.images[indices], self.labels[indices])


def read_split(builder, split: str, *, limit: int | None = None, classes=None) -> Arrays:
    """Read a TFDS split into memory once (uint8 images, int32 labels).

    A whole split, once decoded, is also kept as arrays beside the prepared TFDS files
    (`csae_arrays/<split>.npz`), so later runs read it in milliseconds instead of seconds.
    """
    cached = _cached_split(builder, split)
    if cached is not None:
        images, labels = cached
        if limit:
            images, labels = images[:limit], labels[:limit]
        if classes:
            keep = np.isin(labels, list(classes))
            images, labels = images[keep], labels[keep]
        return Arrays(images, labels)
    batches = [(np.asarray(x), np.asarray(y)) for x, y in load_split(builder, split, limit=limit,
                                                                      classes=classes).batch(10_000)]
    if not batches:
        shape = tuple(builder.info.features["image"].shape) if "image" in builder.info.features else (0,)
        return Arrays(np.zeros((0, *shape), np.uint8), np.zeros(0, np.int32))
    xs, ys = zip(*batches)
    arrays = Arrays(np.concatenate(xs), np.concatenate(ys).astype(np.int32))
    if not limit and not classes:
        _cache_split(builder, split, arrays)
    return arrays


def _cache_path(builder, split: str) -> Path:
    return Path(builder.data_dir) / "csae_arrays" / f"{split}.npz"


def _cached_split(builder, split: str) -> tuple[np.ndarray, np.ndarray] | None:
    """The cached (images, labels) of a whole split, or None when there is none or it does not match TFDS's."""
    path = _cache_path(builder, split)
    try:
        with np.load(path) as f:
            images, labels = f["images"], f["labels"]
    except (OSError, KeyError, ValueError):
        return None
    expected = builder.info.splits[split].num_examples if split in builder.info.splits else -1
    return (images, labels.astype(np.int32)) if len(images) == len(labels) == expected else None


def _cache_split(builder, split: str, arrays: Arrays) -> None:
    """Best effort: a read-only data directory just means no cache."""
    path = _cache_path(builder, split)
    tmp = path.with_name(f".{split}.{os.getpid()}.tmp.npz")
    try:
        path.parent.mkdir(exist_ok=True)
        np.savez(tmp, images=arrays.images, labels=arrays.labels)
        os.replace(tmp, path)
    except OSError:
        tmp.unlink(missing_ok=True)


def validation_count(num_train: int, validation_split: float) -> int:
    """How many training images a --validation-split holds out: a count (at most 1 in 12 of the split,
    so 5,000 of MNIST's 60,000), or a fraction < 1 of them; 0 holds out none."""
    if validation_split <= 0:
        return 0
    if validation_split < 1:
        return int(round(validation_split * num_train))
    return min(int(validation_split), num_train // 12)


def validation_indices(num_train: int, validation_split: float, seed: int) -> np.ndarray:
    """Indices (into the training split) of the held-out validation images: the last ones of a seeded permutation."""
    count = validation_count(num_train, validation_split)
    order = np.random.default_rng([seed, 0x5EED]).permutation(num_train)
    return np.sort(order[num_train - count:]) if count else np.zeros(0, np.int64)


def split_validation(train: Arrays, validation_split: float, seed: int) -> tuple[Arrays, Arrays | None]:
    """(training images left, validation images) of a training split; disjoint, the same for a given seed."""
    held = validation_indices(len(train), validation_split, seed)
    if not len(held):
        return train, None
    keep = np.ones(len(train), bool)
    keep[held] = False
    return train.take(np.flatnonzero(keep)), train.take(held)


def training_pipeline(arrays: Arrays, info: DatasetInfo, batch_size: int, *, seed: int, epochs: int,
                      initial_epoch: int = 0, initial_step: int = 0) -> tf.data.Dataset:
    """Batches of epochs `initial_epoch`..`epochs - 1`, starting at batch `initial_step` of the first.

    Each epoch's order is a permutation drawn from (seed, epoch) alone and its last partial batch is
    dropped, so a run resumed at any step sees exactly the batches an uninterrupted run would. The
    images stay in memory and are sent as uint8 batches: the model pads and scales them in its step
    (`CSAE.preprocess`), on the device.
    """
    n = len(arrays)
    steps = n // batch_size
    images, labels = tf.constant(arrays.images), tf.constant(arrays.labels)

    def epoch_order(epoch):
        keys = tf.random.stateless_uniform([n], seed=tf.stack([tf.constant(seed, tf.int64), epoch]))
        return tf.data.Dataset.from_tensor_slices(tf.argsort(keys)[: steps * batch_size])

    def gather(indices):
        return tf.gather(images, indices), tf.gather(labels, indices)

    ds = tf.data.Dataset.range(initial_epoch, epochs).flat_map(epoch_order).skip(initial_step * batch_size)
    ds = ds.batch(batch_size, drop_remainder=True).map(gather, num_parallel_calls=AUTOTUNE, deterministic=True)
    return _finish(ds.prefetch(AUTOTUNE))


def evaluation_pipeline(arrays: Arrays, info: DatasetInfo, batch_size: int) -> tf.data.Dataset:
    """uint8 batches of a split in memory, in order (the model pads and scales them): no re-reading of TFDS."""
    ds = tf.data.Dataset.from_tensor_slices((arrays.images, arrays.labels)).batch(batch_size)
    return _finish(ds.prefetch(AUTOTUNE))


@dataclasses.dataclass(frozen=True)
class Splits:
    """The splits of one run, each read once: training (validation held out), validation, test."""

    train: Arrays
    validation: Arrays | None
    test: Arrays | None
    info: DatasetInfo


def load_splits(cfg, *, test: bool = True) -> Splits:
    """Read the run's splits (limits, classes and the seeded validation hold-out of a FitConfig);
    `test=False` leaves the test split unread (None), as a hyperparameter search must."""
    builder = prepare(cfg.dataset, cfg.data_dir, cfg.manual_dir)
    info = describe(builder, cfg.arch)
    if cfg.classes and max(cfg.classes) >= info.num_classes:
        raise DataError(f"--classes: {cfg.dataset} has class ids 0..{info.num_classes - 1}")
    train = read_split(builder, "train", limit=cfg.train_limit, classes=cfg.classes)
    train, validation = split_validation(train, cfg.validation_split, cfg.seed)
    test = read_split(builder, "test", limit=cfg.test_limit, classes=cfg.classes) if test and info.num_test else None
    info = dataclasses.replace(info, num_train=len(train), num_test=len(test) if test is not None else 0)
    if info.num_train < cfg.batch_size:
        raise DataError(f"{info.num_train} training examples are fewer than one batch of {cfg.batch_size}")
    return Splits(train, validation, test, info)


def count(ds: tf.data.Dataset) -> int:
    n = int(ds.cardinality())
    if n >= 0:
        return n
    return int(ds.reduce(np.int64(0), lambda c, _: c + 1))


def load_datasets(cfg) -> tuple[tf.data.Dataset, tf.data.Dataset, DatasetInfo]:
    """(training pipeline, test pipeline, info) of a FitConfig; training excludes the validation hold-out.

    For the comparison systems; a CSAE run reads `load_splits` through `csae_tf.trainer`.
    """
    splits = load_splits(cfg)
    train = tf.data.Dataset.from_tensor_slices((splits.train.images, splits.train.labels))
    return (pipeline(train, splits.info, cfg.batch_size, training=True, seed=cfg.seed, augment=cfg.augment,
                     flip=cfg.flip),
            pipeline(tf.data.Dataset.from_tensor_slices((splits.test.images, splits.test.labels)), splits.info,
                     cfg.batch_size, training=False), splits.info)


def as_numpy(ds: tf.data.Dataset) -> tuple[np.ndarray, np.ndarray]:
    """Materialise a (images, labels) dataset as two arrays."""
    xs, ys = zip(*((np.asarray(x), np.asarray(y)) for x, y in ds))
    return np.concatenate(xs), np.concatenate(ys)
