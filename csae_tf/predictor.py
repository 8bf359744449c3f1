"""`csae_tf.load(path)`: a trained CSAE behind one call, raw images in, answers out.

    >>> predictor = csae_tf.load("runs/mnist")          # a run directory, or an exported SavedModel
    >>> answers = predictor.classify(uint8_images)      # (N, 28, 28) or (N, 28, 28, 1), 0..255
    >>> answers["label"], answers["class_name"], answers["distance"], answers["margin"]

`path` is a run directory of `csae fit` (config.json + model.keras) or the export of `csae export`:
its base folder (the newest numbered version is used) or one version folder (saved_model.pb).
The images follow the input contract of `csae_tf.images`. Every answer is a numpy array with one
entry per image: `label` (the nearest PEDCC centroid's class id), `class_name` (the dataset's name
of that class when known, else the id as text), `distance` (Euclidean, to the nearest centroid)
and `margin` (second-nearest minus nearest distance; small = ambiguous). When the model has a
reject option (an export with a ``score`` signature, or a run directory with the open-set threshold
of `csae ood --calibrate`), `known` is added: False for the images it rejects as no known class.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from csae_tf import images as image_contract
from csae_tf.errors import CsaeError, message

BATCH = 256
SAVED_MODEL = "saved_model.pb"
EXPORT_INFO = Path("assets.extra") / "csae.json"
THRESHOLD_FILE = "ood_threshold.json"  # written by `csae ood --calibrate` (csae_tf.ood.THRESHOLD_FILE)


def nearest_two(distances: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(nearest, margin) of distances (N, classes): the smallest distance and the gap to the second smallest."""
    distances = np.asarray(distances)
    if distances.shape[1] < 2:
        return distances[:, 0], np.full(len(distances), np.inf, distances.dtype)
    two = np.partition(distances, 1, axis=1)[:, :2]
    return two[:, 0], two[:, 1] - two[:, 0]


def dataset_class_names(dataset: str | None, data_dir: str | None, num_classes: int) -> tuple[str, ...]:
    """The dataset's class names from its TFDS metadata (nothing is downloaded); the ids as text otherwise."""
    names = None
    if dataset:
        try:
            import tensorflow_datasets as tfds

            features = tfds.builder(dataset, data_dir=data_dir).info.features
            names = list(features["label"].names)
        except Exception:  # an unknown or custom dataset: no names to show
            names = None
    if not names or len(names) < num_classes:
        return tuple(str(i) for i in range(num_classes))
    return tuple(str(n) for n in names[:num_classes])


class Predictor:
    """Classify raw images with a trained CSAE; subclasses say where the model comes from.

    Attributes:
        path: the run directory or SavedModel version folder.
        image_shape: the model input (H, W, C); images of the dataset's size are padded to it.
        arch: "conv" or "linear" (which sizes pad to `image_shape`).
        class_names: one name per class id.
    """

    def __init__(self, path: Path, image_shape: tuple, arch: str, class_names: tuple[str, ...]):
        self.path = Path(path)
        self.image_shape = tuple(int(s) for s in image_shape)
        self.arch = arch
        self.class_names = tuple(class_names)

    @property
    def has_reject_option(self) -> bool:
        """Whether `classify` answers `known` (the model can reject images of no known class)."""
        return False

    def check(self, images, what: str = "images") -> np.ndarray:
        """The images as (N, h, w, C) uint8 if they meet the input contract; else an ImageError."""
        return image_contract.check(images, self.image_shape, self.arch, what)

    def classify(self, images, what: str = "images") -> dict[str, np.ndarray]:
        """label, class_name, distance, margin (and known, with a reject option) of uint8 images."""
        images = self.check(images, what)
        parts: dict[str, list[np.ndarray]] = {}
        for start in range(0, len(images), BATCH):
            for key, value in self._answer(images[start:start + BATCH]).items():
                parts.setdefault(key, []).append(np.asarray(value))
        found = {k: np.concatenate(v) for k, v in parts.items()}
        labels = found["label"].astype(np.int64)
        nearest, margin = nearest_two(found["distances"])
        answers = {"label": labels, "class_name": np.asarray([self.class_names[i] for i in labels], dtype=str),
                   "distance": nearest.astype(np.float32), "margin": margin.astype(np.float32)}
        if "known" in found:
            answers["known"] = found["known"].astype(bool)
        return answers

    def _answer(self, images: np.ndarray) -> dict[str, np.ndarray]:
        """label (B,), distances (B, classes) and, with a reject option, known (B,) of checked uint8 images."""
        raise NotImplementedError


class RunPredictor(Predictor):
    """A run directory's model.keras; its reject option is RUN/ood_threshold.json when present."""

    def __init__(self, run_dir: str | Path):
        from csae_tf.runs import load_run

        self.cfg, self.model = load_run(run_dir)
        super().__init__(Path(run_dir), self.model.image_shape, self.model.arch,
                         dataset_class_names(self.cfg.dataset, self.cfg.data_dir, self.model.num_classes))
        self._threshold = None

    @property
    def has_reject_option(self) -> bool:
        return (self.path / THRESHOLD_FILE).is_file()

    def _answer(self, images):
        from csae_tf.data import to_model_input

        labels, distances = self.model.classify(to_model_input(images, self.image_shape))
        answer = {"label": labels, "distances": distances}
        if self.has_reject_option:
            from csae_tf import ood

            self._threshold = self._threshold or ood.load_threshold(self.path)
            answer["known"] = ood.known(self.model, self._threshold, images)
        return answer


class SavedModelPredictor(Predictor):
    """An exported SavedModel (`csae export`), through its ``classify`` (and ``score``) signatures."""

    def __init__(self, version_dir: str | Path):
        import tensorflow as tf

        version_dir = Path(version_dir)
        info = _export_info(version_dir)
        try:
            self.loaded = tf.saved_model.load(str(version_dir))
        except Exception as err:  # a damaged export: TF raises whatever its reader met
            raise CsaeError(f"{version_dir} cannot be loaded as a SavedModel ({message(err)[:300]})") \
                from None
        if "classify" not in self.loaded.signatures:
            raise CsaeError(f"{version_dir} has no classify signature: it is not an export of csae export")
        image_shape = tuple(info["image_shape"])
        source = tuple(info.get("source_shape", image_shape))
        arch = info.get("arch") or ("conv" if source != image_shape else "linear")
        names = info.get("class_names") or dataset_class_names(info.get("dataset"), info.get("data_dir"),
                                                               int(info["num_classes"]))
        super().__init__(version_dir, image_shape, arch, tuple(names))

    @property
    def has_reject_option(self) -> bool:
        return "score" in self.loaded.signatures

    def _answer(self, images):
        import tensorflow as tf

        h, w = images.shape[1:3]
        top, left = (self.image_shape[0] - h) // 2, (self.image_shape[1] - w) // 2
        padded = np.pad(images, ((0, 0), (top, self.image_shape[0] - h - top),
                                 (left, self.image_shape[1] - w - left), (0, 0)))  # 0 = the model's -1, as in training
        batch = tf.constant(padded)
        out = self.loaded.signatures["classify"](images=batch)
        answer = {"label": out["label"].numpy(), "distances": out["distances"].numpy()}
        if self.has_reject_option:
            answer["known"] = self.loaded.signatures["score"](images=batch)["known"].numpy()
        return answer


def _export_info(version_dir: Path) -> dict:
    path = version_dir / EXPORT_INFO
    try:
        info = json.loads(path.read_text())
        _ = info["image_shape"], info["num_classes"]
    except (OSError, ValueError, KeyError, TypeError):
        raise CsaeError(f"{version_dir} is a SavedModel but not one of csae export (no readable {EXPORT_INFO})") \
            from None
    if not info.get("dataset") and info.get("run"):  # older exports: the run directory may still be there
        try:
            cfg = json.loads((Path(info["run"]) / "config.json").read_text())
            info.update(dataset=cfg.get("dataset"), data_dir=cfg.get("data_dir"),
                        arch=info.get("arch") or cfg.get("arch"))
        except (OSError, ValueError):
            pass
    return info


def saved_model_version(path: Path) -> Path | None:
    """The SavedModel folder of `path`: itself, or its highest numbered version; None if neither."""
    if (path / SAVED_MODEL).is_file():
        return path
    versions = [p for p in path.iterdir() if p.is_dir() and p.name.isdigit() and (p / SAVED_MODEL).is_file()]
    return max(versions, key=lambda p: int(p.name)) if versions else None


def load(path: str | Path) -> Predictor:
    """A Predictor of a run directory or an exported SavedModel (its base folder or one version)."""
    path = Path(path)
    if path.is_file():
        raise CsaeError(f"{path} is a file: pass a run directory (config.json + model.keras) or an exported "
                        "SavedModel folder")
    if not path.is_dir():
        raise CsaeError(f"model {path} does not exist")
    version = saved_model_version(path)
    if version is not None:
        return SavedModelPredictor(version)
    if (path / "config.json").exists():
        return RunPredictor(path)
    raise CsaeError(f"{path} is neither a run directory (config.json + model.keras) nor an exported SavedModel "
                    f"({SAVED_MODEL}, or numbered version folders holding one)")
