"""Open-set scores: how unusual an image is to a trained CSAE, and how well that separates unknowns.

    python -m csae_tf.ood --run runs/mnist --out fashion_mnist --out letters=emnist_letters.npz --output DIR
    python -m csae_tf.ood --run runs/mnist_0to5 --out heldout --output DIR
    python -m csae_tf.ood --run runs/mnist --calibrate

Scores, one per image, higher = more unusual (`SCORES`):

- ``distance``: Euclidean distance of z to the nearest PEDCC centroid;
- ``margin``: nearest minus second-nearest centroid distance (the negative of the margin);
- ``reconstruction``: per-image pixel MSE of the decoder's reconstruction (model scale, [-1, 1]);
- ``mahalanobis``: the smallest Mahalanobis distance of z under the per-class latent Gaussians
  fitted after training (triangular solves with their Cholesky factors);
- ``mahalanobis_shared``: the same to the class means under one covariance shared by the classes
  (their covariances averaged), as in Lee et al. (2018); not part of ``combined``;
- ``combined``: the sum of the first four, each z-scored with its mean and standard deviation on the
  run's in-distribution VALIDATION images (`validation_images`). Those weights are fitted on
  known images only: no out-distribution image is ever used to set them or the threshold.

Only the classes the run was trained on (``--classes``) count as centroids and Gaussians.

The evaluation treats the run's own test split as the in-distribution and each ``--out`` set as
unknowns, and writes AUROC, AUPR (unknowns positive: AUPR-Out; known positive: AUPR-In) and the
FPR at 95% TPR (the fraction of unknowns still accepted when 95% of the known test images are) to
``DIR/ood.md`` and ``DIR/ood.json``, with ROC curves in ``DIR/roc_<set>.png``. The basenet of the
comparison harness (same data, epochs and optimizer as the run) is scored beside it with the
maximum softmax probability (``basenet_msp``: its negative) and the energy score (``basenet_energy``:
-logsumexp of the logits); it is cached in ``DIR/basenet/``.

``--calibrate`` writes ``RUN/ood_threshold.json``: the threshold on one score that accepts 95% of the
validation images, the combination's weights and the acceptance measured; serving's reject option
(`known`, the SavedModel's ``score`` signature) reads it.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import weakref
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

COMPONENTS = ("distance", "margin", "reconstruction", "mahalanobis")  # what `combined` sums
SCORES = (*COMPONENTS, "mahalanobis_shared", "combined")
BASELINE_SCORES = ("basenet_msp", "basenet_energy")
THRESHOLD_FILE = "ood_threshold.json"
VALIDATION_SIZE = 5000
DEFAULT_TPR = 0.95


class OodError(RuntimeError):
    """The evaluation cannot run as asked; the message says why."""


# --- scores (TensorFlow: the same functions run in Python and inside the exported SavedModel) ---

def _offsets(gaussians, z, classes):
    """z minus each counted class's mean, (n, B, d), and those classes' Cholesky factors or stds."""
    means = tf.convert_to_tensor(gaussians.means)
    scale = tf.convert_to_tensor(gaussians.scale)
    if classes is not None:
        means, scale = tf.gather(means, classes), tf.gather(scale, classes)
    return z[None, :, :] - means[:, None, :], scale


def mahalanobis(gaussians, z, classes=None):
    """Smallest Mahalanobis distance of each row of z (B, d) to the per-class Gaussians; (B,).

    With full covariances it solves L_c y = z - mean_c with each class's Cholesky factor L_c, so the
    memory is (classes, d, B), never (B, classes, d, d); otherwise `scale` holds per-dimension stds.
    """
    diff, scale = _offsets(gaussians, z, classes)  # (n, B, d), the classes' scale factors
    if gaussians.full_covariance:
        y = tf.linalg.triangular_solve(scale, tf.transpose(diff, [0, 2, 1]), lower=True)  # (n, d, B)
        squared = tf.reduce_sum(tf.square(y), axis=1)
    else:
        squared = tf.reduce_sum(tf.square(diff / scale[:, None, :]), axis=-1)
    return tf.sqrt(tf.reduce_min(squared, axis=0))


def mahalanobis_shared(gaussians, z, classes=None):
    """Smallest Mahalanobis distance of each row of z (B, d) to the class means under ONE covariance,
    the classes' covariances averaged (the tied covariance of Lee et al., 2018); (B,)."""
    diff, scale = _offsets(gaussians, z, classes)  # (n, B, d), the classes' scale factors
    if gaussians.full_covariance:
        shared = tf.linalg.cholesky(tf.reduce_mean(tf.matmul(scale, scale, transpose_b=True), axis=0))
        n, b, d = tf.shape(diff)[0], tf.shape(diff)[1], tf.shape(diff)[2]
        y = tf.linalg.triangular_solve(shared, tf.transpose(tf.reshape(diff, [n * b, d])), lower=True)  # (d, nB)
        squared = tf.reshape(tf.reduce_sum(tf.square(y), axis=0), [n, b])
    else:
        std = tf.sqrt(tf.reduce_mean(tf.square(scale), axis=0))
        squared = tf.reduce_sum(tf.square(diff / std), axis=-1)
    return tf.sqrt(tf.reduce_min(squared, axis=0))


def score_tensors(model, x, classes=None, weights=None) -> dict:
    """Every score of a batch of model-scale images x (B, H, W, C) as float32 tensors (B,).

    `classes`: the class ids that count (default all); `weights`: {component: [mean, std]} of the
    combination (without them ``combined`` is left out).
    """
    z = model.encode(x)
    reconstruction = model.decoder(z, training=False)
    squared = model.pedcc(z)
    if classes is not None:
        squared = tf.gather(squared, classes, axis=1)
    distances = tf.sqrt(tf.maximum(squared, 0.0))
    nearest = -tf.math.top_k(-distances, k=min(2, int(distances.shape[-1]))).values
    out = {
        "distance": nearest[:, 0],
        "margin": nearest[:, 0] - nearest[:, -1],
        "reconstruction": tf.reduce_mean(tf.square(reconstruction - x), axis=[1, 2, 3]),
        "mahalanobis": mahalanobis(model.latent_gaussians, z, classes),
        "mahalanobis_shared": mahalanobis_shared(model.latent_gaussians, z, classes),
    }
    if weights:
        out["combined"] = tf.add_n([(out[k] - float(m)) / float(s) for k, (m, s) in weights.items()])
    return out


_COMPILED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _compiled_scores(model, classes, weights):
    """`score_tensors` of uint8 batches as one tf.function per (model, classes, weights), traced once."""
    key = (tuple(classes) if classes is not None else None,
           tuple((k, tuple(v)) for k, v in weights.items()) if weights else None)
    functions = _COMPILED.setdefault(model, {})
    if key not in functions:
        from csae_tf.data import to_model_input

        owner = weakref.ref(model)  # the cache must not keep the model alive

        def compute(images):
            m = owner()
            return score_tensors(m, to_model_input(images, tuple(m.image_shape)), classes, weights)

        functions[key] = tf.function(compute, reduce_retracing=True)
    return functions[key]


def scores(model, images: np.ndarray, *, classes=None, weights=None, batch: int = 500) -> dict[str, np.ndarray]:
    """The scores of uint8 images (N, h, w[, C]) as numpy arrays, computed `batch` images at a time."""
    images = np.asarray(images)
    if images.ndim == 3:
        images = images[..., None]
    parts: dict[str, list] = {}
    compute = _compiled_scores(model, classes, weights)
    for start in range(0, len(images), batch):
        for key, value in compute(tf.constant(images[start:start + batch])).items():
            parts.setdefault(key, []).append(value.numpy())
    names = SCORES if weights else tuple(k for k in SCORES if k != "combined")
    return {k: np.concatenate(parts[k]) if parts else np.zeros(0, np.float32) for k in names}


def combination_weights(validation_scores: dict[str, np.ndarray]) -> dict[str, list[float]]:
    """{component: [mean, std]} on in-distribution validation scores: ``combined`` sums the z-scores."""
    return {k: [float(np.mean(validation_scores[k])), float(max(np.std(validation_scores[k]), 1e-12))]
            for k in COMPONENTS}


def baseline_scores(basenet, images: np.ndarray, *, classes=None, batch: int = 500) -> dict[str, np.ndarray]:
    """basenet_msp (-max softmax probability) and basenet_energy (-logsumexp of logits) of uint8 images."""
    from csae_tf.data import to_model_input

    images = np.asarray(images)
    if images.ndim == 3:
        images = images[..., None]
    @tf.function(reduce_retracing=True)
    def compute(images):
        logits = basenet(to_model_input(images, tuple(basenet.image_shape)), training=False)
        if classes is not None:
            logits = tf.gather(logits, classes, axis=1)
        return -tf.reduce_max(tf.nn.softmax(logits), axis=-1), -tf.reduce_logsumexp(logits, axis=-1)

    msp, energy = [], []
    for start in range(0, len(images), batch):
        m, e = compute(tf.constant(images[start:start + batch]))
        msp.append(m.numpy())
        energy.append(e.numpy())
    return {"basenet_msp": np.concatenate(msp), "basenet_energy": np.concatenate(energy)}


# --- metrics (numpy; higher score = more unusual, unknowns are the positives) ---

def _sorted_counts(known: np.ndarray, unknown: np.ndarray):
    """Cumulative (unknown, known) counts above each distinct threshold, scores descending."""
    s = np.concatenate([unknown, known]).astype(np.float64)
    y = np.concatenate([np.ones(len(unknown)), np.zeros(len(known))])
    order = np.argsort(-s, kind="mergesort")
    s, y = s[order], y[order]
    last = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]  # the last index of each run of equal scores
    tp = np.cumsum(y)[last]
    return tp, (last + 1) - tp, s[last]


def _check(known, unknown):
    known, unknown = np.asarray(known, np.float64).ravel(), np.asarray(unknown, np.float64).ravel()
    if not len(known) or not len(unknown):
        raise OodError("both the known and the unknown set need at least one image")
    if not (np.isfinite(known).all() and np.isfinite(unknown).all()):
        raise OodError("scores must be finite")
    return known, unknown


def roc_curve(known, unknown) -> tuple[np.ndarray, np.ndarray]:
    """(false positive rate, true positive rate) from (0, 0) to (1, 1): known images falsely flagged
    unusual against unknowns flagged, at every distinct threshold."""
    known, unknown = _check(known, unknown)
    tp, fp, _ = _sorted_counts(known, unknown)
    return np.r_[0.0, fp / len(known)], np.r_[0.0, tp / len(unknown)]


def auroc(known, unknown) -> float:
    """Area under the ROC curve: P(unknown scores higher than known) + half P(tie)."""
    fpr, tpr = roc_curve(known, unknown)
    return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2))


def aupr(known, unknown) -> float:
    """Average precision with the unknowns as positives (AUPR-Out; swap and negate for AUPR-In)."""
    known, unknown = _check(known, unknown)
    tp, fp, _ = _sorted_counts(known, unknown)
    precision, recall = tp / (tp + fp), tp / len(unknown)
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def threshold_at(known, tpr: float = DEFAULT_TPR) -> float:
    """The smallest score t that accepts (score <= t) at least a fraction `tpr` of the known images."""
    known = np.sort(np.asarray(known, np.float64).ravel())
    if not len(known):
        raise OodError("no known images to set a threshold on")
    return float(known[max(math.ceil(tpr * len(known) - 1e-9), 1) - 1])


def fpr_at_tpr(known, unknown, tpr: float = DEFAULT_TPR) -> float:
    """Fraction of unknowns accepted (score <= t) at the threshold t accepting `tpr` of the known images."""
    known, unknown = _check(known, unknown)
    return float(np.mean(unknown <= threshold_at(known, tpr)))


def metrics(known, unknown, tpr: float = DEFAULT_TPR) -> dict[str, float]:
    """AUROC, AUPR-Out, AUPR-In and FPR at `tpr` TPR of one score."""
    known, unknown = _check(known, unknown)
    return {"auroc": auroc(known, unknown), "aupr_out": aupr(known, unknown), "aupr_in": aupr(-unknown, -known),
            "fpr_at_95_tpr" if tpr == DEFAULT_TPR else f"fpr_at_{tpr:g}_tpr": fpr_at_tpr(known, unknown, tpr)}


# --- data: the validation split and the out-sets ---

def known_classes(cfg, model) -> list[int]:
    """The class ids the run was trained on (its --classes, or all of the model's)."""
    return sorted(cfg.classes) if cfg.classes else list(range(model.num_classes))


def validation_images(cfg, *, data_dir=None, manual_dir=None) -> np.ndarray:
    """The run's in-distribution validation images (uint8): the trainer's own split.

    They are the images ``--validation-split`` held out of the run's training split (after its
    ``--train-limit`` and ``--classes``, seeded with ``cfg.seed``: `csae_tf.data.load_splits`), which
    the model never trained on. A run that held none out (``--validation-split 0``) has no unseen known
    images: the last tenth (at most 5,000) of a permutation of its training images, seeded with
    ``cfg.seed``, stands in, and a threshold set on them accepts fewer new known images than asked.
    """
    from csae_tf import data

    overrides = {k: v for k, v in (("data_dir", data_dir), ("manual_dir", manual_dir)) if v}
    splits = data.load_splits(dataclasses.replace(cfg, **overrides), test=False)
    if splits.validation is not None and len(splits.validation):
        return splits.validation.images
    images = splits.train.images
    size = max(min(VALIDATION_SIZE, len(images) // 10), 1)
    order = np.random.default_rng(cfg.seed).permutation(len(images))
    return images[np.sort(order[-size:])]


def read_images(path: str | Path) -> np.ndarray:
    """uint8 images (N, h, w, C) from a .npy / .npz file (key x, images or its only array) or a folder /
    single PNG or JPEG file."""
    try:  # the project's one input contract for user images, where present
        from csae_tf import images as images_module
    except ImportError:
        images_module = None
    if images_module is not None and hasattr(images_module, "read_images"):
        try:
            return np.asarray(images_module.read_images(path))
        except images_module.ImageError as err:
            raise OodError(f"--out {err}") from None
    path = Path(path)
    if not path.exists():
        raise OodError(f"--out {path}: no such file or folder")
    try:
        if path.suffix == ".npy":
            array = np.load(path, allow_pickle=False)
        elif path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as archive:
                keys = [k for k in ("x", "images") if k in archive.files] or archive.files
                if len(keys) != 1 and not {"x", "images"} & set(archive.files):
                    raise OodError(f"--out {path}: holds {', '.join(archive.files)}; name the images x or images")
                array = archive[keys[0]]
        else:
            files = sorted(p for p in path.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg")) \
                if path.is_dir() else [path]
            if not files or any(p.suffix.lower() not in (".png", ".jpg", ".jpeg") for p in files):
                raise OodError(f"--out {path}: expected .npy, .npz, .png, .jpg or a folder of them")
            array = np.stack([tf.io.decode_image(tf.io.read_file(str(p)), expand_animations=False).numpy()
                              for p in files])
    except (OSError, ValueError, tf.errors.OpError) as err:
        raise OodError(f"--out {path}: cannot read images ({str(err).splitlines()[0]})") from None
    return array


@dataclasses.dataclass
class OutSet:
    name: str
    images: np.ndarray
    source: str


def load_out_set(spec: str, cfg, model, *, data_dir=None, manual_dir=None, limit=None) -> OutSet:
    """One --out: `heldout`, a TFDS dataset name, or a file/folder of images; `label=` names it."""
    from csae_tf import runs
    from csae_tf.data import DataError

    label, _, target = spec.rpartition("=")
    target = target.strip()
    if not target:
        raise OodError(f"--out {spec!r}: empty")
    if target == "heldout":
        if not cfg.classes:
            raise OodError("--out heldout: the run was trained on all classes (train with --classes to hold some out)")
        others = [c for c in range(model.num_classes) if c not in cfg.classes]
        if not others:
            raise OodError("--out heldout: the run's --classes cover every class")
        images, _, _ = runs.dataset_split(cfg, "test", data_dir=data_dir, manual_dir=manual_dir, limit=limit,
                                          classes=others)
        source = f"{cfg.dataset} test, classes {','.join(map(str, others))}"
    elif Path(target).exists() or any(target.lower().endswith(e) for e in (".npy", ".npz", ".png", ".jpg", ".jpeg")):
        images = read_images(target)[:limit]
        source = target
        label = label or Path(target).stem
    else:
        try:
            images, _, _ = runs.dataset_split(cfg, "test", dataset=target, data_dir=data_dir, manual_dir=manual_dir,
                                              limit=limit)
        except DataError as err:
            raise OodError(f"--out {target}: {err}") from None
        source = f"{target} test"
    try:
        images = runs.check_images(images, model, f"--out {spec}")
    except runs.RunDirError as err:
        raise OodError(str(err)) from None
    return OutSet(label or target, images, source)


# --- calibration and the reject option ---

def calibrate(run_dir: str | Path, *, score: str = "combined", tpr: float = DEFAULT_TPR, data_dir=None,
              manual_dir=None, model=None, cfg=None) -> dict:
    """Choose the threshold accepting `tpr` of the validation images; write and return RUN/ood_threshold.json."""
    from csae_tf import runs

    if score not in SCORES:
        raise OodError(f"--score must be one of {', '.join(SCORES)} (got {score!r})")
    if not 0 < tpr < 1:
        raise OodError(f"--tpr must lie in (0, 1) (got {tpr})")
    if model is None:
        cfg, model = runs.load_run(run_dir)
    classes = known_classes(cfg, model)
    val = validation_images(cfg, data_dir=data_dir, manual_dir=manual_dir)
    plain = scores(model, val, classes=classes)
    weights = combination_weights(plain)
    values = scores(model, val, classes=classes, weights=weights)[score]
    threshold = threshold_at(values, tpr)
    result = {"score": score, "threshold": threshold, "weights": weights, "classes": classes, "tpr": tpr,
              "validation_images": int(len(val)), "validation_acceptance": float(np.mean(values <= threshold))}
    path = Path(run_dir) / THRESHOLD_FILE
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    tmp.replace(path)
    return result


def load_threshold(run_or_file: str | Path) -> dict:
    """The threshold record of a run directory (RUN/ood_threshold.json) or of that file itself."""
    path = Path(run_or_file)
    path = path / THRESHOLD_FILE if path.is_dir() else path
    try:
        record = json.loads(path.read_text())
    except FileNotFoundError:
        raise OodError(f"{path} not found: run python -m csae_tf.ood --run RUN --calibrate") from None
    except json.JSONDecodeError as err:
        raise OodError(f"{path} is not valid JSON: {err}") from None
    missing = [k for k in ("score", "threshold", "weights") if k not in record]
    if missing:
        raise OodError(f"{path} lacks {', '.join(missing)}")
    return record


def known(model_or_scores, threshold, images=None) -> np.ndarray:
    """Boolean (N,): True where an image is accepted as one of the known classes (score <= threshold).

    `model_or_scores`: a dict of scores (from `scores`) or a CSAE (then pass uint8 `images`);
    `threshold`: the record of `load_threshold` / `calibrate`, or a run directory or threshold file.
    """
    record = threshold if isinstance(threshold, dict) else load_threshold(threshold)
    if isinstance(model_or_scores, dict):
        values = model_or_scores
    else:
        if images is None:
            raise OodError("known(model, threshold): pass the images to score")
        values = scores(model_or_scores, images, classes=record.get("classes"), weights=record["weights"])
    return np.asarray(values[record["score"]]) <= record["threshold"]


# --- TensorBoard ---

class ScoreHistogram(keras.callbacks.Callback):
    """At each epoch end, histograms of the in-distribution scores of fixed validation images.

    Writes ``ood/distance`` (nearest-centroid distance) and ``ood/reconstruction`` (pixel MSE) with
    `tf.summary.histogram` into the TensorBoard run `log_dir`.

    Args:
        log_dir: folder of the summaries (a TensorBoard run of its own).
        images: uint8 validation images (N, h, w[, C]), a few hundred suffice.
        classes: the class ids that count (default all).
    """

    def __init__(self, log_dir, images, classes=None):
        super().__init__()
        self.log_dir = str(log_dir)
        self.images = np.asarray(images)
        self.classes = classes
        self._writer = None

    def on_epoch_end(self, epoch, logs=None):
        if self._writer is None:
            self._writer = tf.summary.create_file_writer(self.log_dir)
        values = scores(self.model, self.images, classes=self.classes)
        with self._writer.as_default():
            for name in ("distance", "reconstruction"):
                tf.summary.histogram(f"ood/{name}", values[name], step=epoch)
        self._writer.flush()

    def on_train_end(self, logs=None):
        if self._writer is not None:
            self._writer.close()
            self._writer = None


# --- the basenet baseline ---

def _basenet_key(cfg, epochs: int) -> dict:
    keys = ("dataset", "train_limit", "classes", "augment", "flip", "batch_size", "optimizer", "lr", "momentum",
            "weight_decay", "schedule", "lr_step_epochs", "warmup_epochs", "seed")
    return {"epochs": epochs, **{k: getattr(cfg, k) for k in keys}}


def basenet(cfg, epochs: int, cache_dir: str | Path, *, verbose: int = 0):
    """The comparison harness's basenet trained like the run (data, classes, optimizer, seed) for
    `epochs`; loaded from `cache_dir` when it holds one trained the same way."""
    from csae_tf import compare, data

    cache = Path(cache_dir)
    key = _basenet_key(cfg, epochs)
    if (cache / "basenet.keras").exists() and (cache / "basenet.json").exists():
        if json.loads((cache / "basenet.json").read_text()).get("trained_as") == key:
            import csae_tf  # noqa: F401  (registers the Keras classes)

            return keras.models.load_model(cache / "basenet.keras")
    keras.utils.set_random_seed(cfg.seed)
    train, test, info = data.load_datasets(cfg)
    steps = info.num_train // cfg.batch_size
    model = compare.build("basenet", dataclasses.replace(cfg, epochs=epochs), compare.BaselineOptions(), info, steps)
    print(f"training basenet: {info.num_train} images, {epochs} epochs ({cfg.optimizer} lr {cfg.lr}, "
          f"{cfg.schedule})", flush=True)
    model.train(train, epochs, verbose=verbose)
    accuracy = float(model.evaluate(test, verbose=0, return_dict=True)["accuracy"])
    cache.mkdir(parents=True, exist_ok=True)
    model.save(cache / "basenet.keras")
    (cache / "basenet.json").write_text(json.dumps({"trained_as": key, "test_accuracy": accuracy}, indent=2) + "\n")
    return model


# --- the evaluation command ---

def evaluate(cfg, model, out_sets: list[OutSet], *, data_dir=None, manual_dir=None, limit=None,
             baseline=None, tpr: float = DEFAULT_TPR, threshold: dict | None = None) -> tuple[dict, dict]:
    """(report, ROC curves): scores of the run's test split (known) against each out-set, metrics per
    score and set, and, given the run's `threshold` record, the fraction of each set it accepts."""
    from csae_tf import runs

    classes = known_classes(cfg, model)
    weights = combination_weights(scores(model, validation_images(cfg, data_dir=data_dir, manual_dir=manual_dir),
                                         classes=classes))
    test, _, _ = runs.dataset_split(cfg, "test", data_dir=data_dir, manual_dir=manual_dir,
                                    limit=limit or cfg.test_limit, classes=cfg.classes)

    def all_scores(images):
        values = scores(model, images, classes=classes, weights=weights)
        if baseline is not None:
            values.update(baseline_scores(baseline, images, classes=classes))
        return values

    known_scores = all_scores(test)
    report = {"run": str(cfg.output), "dataset": cfg.dataset, "classes": classes, "known_images": int(len(test)),
              "weights": weights, "tpr": tpr, "sets": {}}
    curves = {}
    for out in out_sets:
        unknown_scores = all_scores(out.images)
        report["sets"][out.name] = {"source": out.source, "images": int(len(out.images)),
                                    "scores": {k: metrics(known_scores[k], unknown_scores[k], tpr)
                                               for k in known_scores}}
        curves[out.name] = {k: roc_curve(known_scores[k], unknown_scores[k]) for k in known_scores}
        if threshold is not None:
            report["sets"][out.name]["accepted"] = float(known(unknown_scores, threshold).mean())
    if threshold is not None:
        report["threshold"] = {**threshold, "test_acceptance": float(known(known_scores, threshold).mean())}
    return report, curves


def markdown(report: dict) -> str:
    tpr = int(round(report["tpr"] * 100))
    lines = [f"# Open-set evaluation: {report['dataset']} (classes {','.join(map(str, report['classes']))})", "",
             f"Known: {report['known_images']} test images of the run's classes. Higher scores = more unusual; "
             f"FPR@{tpr}: fraction of unknowns accepted when {tpr}% of the known test images are. AUPR-Out takes "
             "the unknowns as positives, AUPR-In the known images.", ""]
    if "threshold" in report:
        t = report["threshold"]
        lines += [f"Reject option (RUN/{THRESHOLD_FILE}): {t['score']} <= {t['threshold']:.4g}, set on "
                  f"{t['validation_images']} validation images (accepts {t['validation_acceptance']:.2%} of them); "
                  f"it accepts {t['test_acceptance']:.2%} of the known test images and "
                  + ", ".join(f"{e['accepted']:.2%} of {n}" for n, e in report["sets"].items()) + ".", ""]
    for name, entry in report["sets"].items():
        lines += [f"## {name}: {entry['source']} ({entry['images']} images)", "",
                  f"| score | AUROC | AUPR-Out | AUPR-In | FPR@{tpr} |", "|---|---:|---:|---:|---:|"]
        for score, m in entry["scores"].items():
            fpr = next(v for k, v in m.items() if k.startswith("fpr"))
            lines.append(f"| {score} | {m['auroc']:.4f} | {m['aupr_out']:.4f} | {m['aupr_in']:.4f} | {fpr:.4f} |")
        lines.append("")
    return "\n".join(lines)


def plot_roc(name: str, curves: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 5))
    for score, (fpr, tpr) in curves.items():
        ax.plot(fpr, tpr, label=f"{score} ({float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2)):.3f})",
                linestyle="--" if score.startswith("basenet") else "-")
    ax.plot([0, 1], [0, 1], color="grey", linewidth=0.5)
    ax.set_xlabel("known test images flagged (FPR)")
    ax.set_ylabel(f"unknowns flagged (TPR): {name}")
    ax.set_title(f"ROC, unknown = {name}")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m csae_tf.ood", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--run", required=True, help="run directory of python -m csae_tf.fit")
    parser.add_argument("--out", action="append", default=[], metavar="[NAME=]SET",
                        help="unknowns: heldout (the classes the run did not train on), a TFDS dataset name, or a "
                             ".npy/.npz/.png/.jpg file or folder; repeat or separate with commas")
    parser.add_argument("--output", default=None, help="folder of ood.md, ood.json, roc_*.png (default: RUN/ood)")
    parser.add_argument("--calibrate", action="store_true",
                        help=f"write RUN/{THRESHOLD_FILE} (the threshold accepting --tpr of the validation images)")
    parser.add_argument("--score", default="combined", help=f"score of the threshold: {', '.join(SCORES)}")
    parser.add_argument("--tpr", type=float, default=DEFAULT_TPR, help="fraction of known images accepted")
    parser.add_argument("--data-dir", default=None, help="TFDS data directory (default: the run's)")
    parser.add_argument("--manual-dir", default=None, help="original files of a TFDS out-set not yet prepared")
    parser.add_argument("--limit", type=int, default=None, help="use the first N images of each set")
    parser.add_argument("--baseline-epochs", type=int, default=None,
                        help="epochs of the basenet baseline (default: the run's; 0: no baseline)")
    parser.add_argument("--verbose", type=int, default=0, help="Keras progress output of the basenet training")
    return parser


def run(args) -> int:
    from csae_tf import runs

    if args.limit is not None and args.limit < 1:
        raise OodError("--limit must be >= 1")
    cfg, model = runs.load_run(args.run)
    data_dir = args.data_dir or cfg.data_dir
    specs = [s.strip() for spec in args.out for s in spec.split(",") if s.strip()]
    if not specs and not args.calibrate:
        raise OodError("nothing to do: give --out SET (or --calibrate)")
    if args.calibrate:
        record = calibrate(args.run, score=args.score, tpr=args.tpr, data_dir=data_dir, model=model, cfg=cfg)
        print(f"{Path(args.run) / THRESHOLD_FILE}: {record['score']} <= {record['threshold']:.6g} accepts "
              f"{record['validation_acceptance']:.2%} of {record['validation_images']} validation images")
        if not specs:
            return 0
    out_sets = [load_out_set(s, cfg, model, data_dir=data_dir, manual_dir=args.manual_dir, limit=args.limit)
                for s in specs]
    if len({o.name for o in out_sets}) != len(out_sets):
        raise OodError("two --out sets have the same name: name them NAME=SET")
    output = Path(args.output) if args.output else Path(args.run) / "ood"
    epochs = cfg.epochs if args.baseline_epochs is None else args.baseline_epochs
    if epochs < 0:
        raise OodError("--baseline-epochs must be >= 0")
    baseline = basenet(dataclasses.replace(cfg, data_dir=data_dir), epochs, output / "basenet",
                       verbose=args.verbose) if epochs else None
    threshold = load_threshold(args.run) if (Path(args.run) / THRESHOLD_FILE).exists() else None
    report, curves = evaluate(cfg, model, out_sets, data_dir=data_dir, limit=args.limit, baseline=baseline,
                              tpr=args.tpr, threshold=threshold)
    if baseline is not None:
        report["basenet"] = json.loads((output / "basenet" / "basenet.json").read_text())
    output.mkdir(parents=True, exist_ok=True)
    (output / "ood.json").write_text(json.dumps(report, indent=2) + "\n")
    (output / "ood.md").write_text(markdown(report))
    for name, entry in curves.items():
        plot_roc(name, entry, output / f"roc_{_file_name(name)}.png")
    print(markdown(report))
    print(f"wrote {output / 'ood.md'}, {output / 'ood.json'} and {len(curves)} ROC plot(s)")
    return 0


def _file_name(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name)


def main(argv: list[str] | None = None) -> int:
    from csae_tf.config import ConfigError
    from csae_tf.data import DataError
    from csae_tf.runs import RunDirError

    try:
        from csae_tf.errors import CsaeError
    except ImportError:
        CsaeError = OodError  # noqa: N806  (before csae_tf.errors existed)

    args = build_parser().parse_args(argv)
    try:
        return run(args)
    except (OodError, RunDirError, DataError, ConfigError, CsaeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
