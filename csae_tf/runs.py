"""Open a finished run directory (config, model) and feed it images: shared by `csae_tf.evaluate`,
`csae_tf.generate` and `csae_tf.extrapolate`. Keras and `csae_tf.data` (TensorFlow) are imported inside the
functions that use them, so that those three commands read their flags before TensorFlow loads.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from csae_tf.config import ConfigError, FitConfig
from csae_tf.errors import CsaeError, message
from csae_tf.images import ImageError, for_model


class RunDirError(CsaeError):
    """The run directory or the images given cannot be used; the message says why."""


def load_run(run_dir: str | Path):
    """(FitConfig, CSAE) of a finished run directory."""
    import keras

    import csae_tf.models  # noqa: F401  (registers the Keras classes)

    run = Path(run_dir)
    if run.is_file():
        raise RunDirError(f"{run} is a file, not a run directory (a folder written by csae fit)")
    if not run.is_dir():
        raise RunDirError(f"run directory {run} does not exist")
    if not (run / "config.json").is_file():
        raise RunDirError(f"{run} is not a csae_tf run directory: it has no config.json (a finished run of "
                          "csae fit holds config.json and model.keras)")
    try:
        cfg = FitConfig.load(run / "config.json")
    except ConfigError as err:
        raise RunDirError(f"{run} is not a csae_tf run directory: {err}") from None
    if not (run / "model.keras").exists():
        raise RunDirError(f"{run} has no model.keras: its training has not finished (rerun python -m csae_tf.fit "
                          f"with --output {run} to finish it)")
    try:
        model = keras.models.load_model(run / "model.keras")
    except Exception as err:  # a truncated or foreign file: Keras raises whatever its reader met
        raise RunDirError(f"{run / 'model.keras'} cannot be loaded ({message(err)[:300]})") from None
    return cfg, model


def check_images(images: np.ndarray, model, what: str) -> np.ndarray:
    """The input contract of `csae_tf.images` for this model: (N, h, w, C) uint8, or a RunDirError."""
    try:
        return for_model(images, model, what)
    except ImageError as err:  # callers catch RunDirError
        raise RunDirError(str(err)) from None


def heldout_classes(cfg: FitConfig, model, flag: str) -> list[int]:
    """The class ids a run fit with --classes held out; a RunDirError naming `flag` if it held out none."""
    if not cfg.classes:
        raise RunDirError(f"{flag} heldout needs a run trained on a subset of classes (fit --classes ...)")
    held = [c for c in range(model.num_classes) if c not in cfg.classes]
    if not held:
        raise RunDirError(f"{flag} heldout: the run was trained on every class")
    return held


def dataset_split(cfg: FitConfig, split: str = "test", *, dataset: str | None = None, data_dir: str | None = None,
                  manual_dir: str | None = None, limit: int | None = None, classes=None):
    """(uint8 images (N, h, w, C), labels (N,), DatasetInfo) of a TFDS split, by default the run's own dataset."""
    name = dataset or cfg.dataset
    own = name == cfg.dataset
    for flag, folder in (("--data-dir", data_dir), ("--manual-dir", manual_dir)):
        if folder and Path(folder).is_file():
            raise RunDirError(f"{flag} {folder} is a file, not a folder")
    from csae_tf import data

    builder = data.prepare(name, data_dir or cfg.data_dir, manual_dir or (cfg.manual_dir if own else None))
    info = data.describe(builder, cfg.arch)
    images, labels = data.as_numpy(data.load_split(builder, split, limit=limit, classes=classes).batch(2000))
    return images, labels.astype(np.int64), info


def to_input(model, images: np.ndarray):
    from csae_tf import data

    return data.to_model_input(images, tuple(model.image_shape))


def encode(model, images: np.ndarray, batch: int = 500) -> np.ndarray:
    """Latent codes (N, d) of uint8 or model-scale images, `batch` at a time."""
    return np.concatenate([np.asarray(model.encode(images[i:i + batch])) for i in range(0, len(images), batch)])


def encode_and_reconstruct(model, images: np.ndarray, batch: int = 500):
    """Latent codes, reconstructions (model scale) and per-image Loss2 (pixel MSE, model scale) of uint8 images."""
    from csae_tf import losses

    zs, recs, errors = [], [], []
    for start in range(0, len(images), batch):
        x = to_input(model, images[start:start + batch])
        z = model.encode(x)
        rec = model.decoder(z, training=False)
        zs.append(np.asarray(z))
        recs.append(np.asarray(rec))
        errors.append(np.asarray(losses.reconstruction_loss(rec, x)))
    return np.concatenate(zs), np.concatenate(recs), np.concatenate(errors)


def first_of_each_class(labels: np.ndarray, classes, per_class: int = 1) -> np.ndarray:
    """Indices of the first `per_class` examples of each class in `classes` that occurs in `labels`."""
    picks = [np.flatnonzero(labels == c)[:per_class] for c in classes]
    return np.concatenate([p for p in picks if len(p)]).astype(int) if picks else np.zeros(0, int)
