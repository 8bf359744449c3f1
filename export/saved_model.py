"""Export a trained CSAE as a SavedModel for TF Serving: ``python -m export.saved_model --run RUN --output BASE``.

Writes ``BASE/<version>/`` (TF Serving's layout; the next free version unless ``--version N``)
with Keras 3's `keras.export.ExportArchive` and four signatures, all holding only TensorFlow ops
and variables, so the model loads with `tf.saved_model.load` without this package:

- ``serving_default`` = ``classify``: ``images`` uint8 [N, H, W, C] -> ``label`` int64 [N],
  ``distances`` float32 [N, classes] (Euclidean, to every PEDCC centroid), ``latent`` float32 [N, d]
- ``encode``: ``images`` -> ``latent``
- ``reconstruct``: ``images`` -> ``reconstruction`` float32 in 0..255, the size of the input
- ``generate``: ``class_id`` int32 [N], ``seed`` int64 [] -> ``images`` float32 in 0..255, one
  sample per id from that class's latent Gaussian, the dataset's image size

- ``score`` (only when the run has ``ood_threshold.json``, written by ``python -m csae_tf.ood --run RUN
  --calibrate``): ``images`` -> ``distance``, ``margin``, ``reconstruction``, ``mahalanobis``,
  ``combined`` float32 [N] (the open-set scores of `csae_tf.ood`, higher = more unusual) and
  ``known`` bool [N] (the threshold's score <= its threshold). Export does not calibrate by itself,
  so that it never needs the training data; ``--calibrate`` writes the threshold file first when the
  run has none.

Images are raw pixels (0..255) at the dataset's size (28x28 for MNIST) or at the model's padded
size (32x32); the signatures pad and scale them. Every signature answers an empty batch with empty
outputs. A malformed request fails with an InvalidArgumentError that says what is wrong (rank,
channels, image size, class id). The image shapes come from the run (its model and dataset name),
never from TFDS, so a run directory exports on a machine without the dataset.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

import keras
import tensorflow as tf

from csae_tf.errors import CsaeError, command, output_dir
from csae_tf.runs import load_run

SIGNATURES = ("serving_default", "classify", "encode", "reconstruct", "generate")


class ExportError(CsaeError):
    """The run or the export directory cannot be used as asked."""


# Stored (unpadded) image shapes of the datasets whose size the padded model input does not tell.
SOURCE_SHAPES = {"mnist": (28, 28, 1), "fashion_mnist": (28, 28, 1), "kmnist": (28, 28, 1),
                 "emnist": (28, 28, 1), "emnist/letters": (28, 28, 1), "emnist/balanced": (28, 28, 1),
                 "emnist/digits": (28, 28, 1), "cifar10": (32, 32, 3), "cifar100": (32, 32, 3),
                 "svhn_cropped": (32, 32, 3)}


def source_shape_of(cfg, model=None) -> tuple:
    """The images' shape as stored in the dataset (before padding), from the run alone (no TFDS).

    A linear model's input is the stored shape; a conv model pads to a multiple of 8, so its stored
    shape is that of the run's dataset when known, else the padded input itself (images are then
    accepted at that size only).
    """
    if model is not None and getattr(model, "arch", "conv") != "conv":
        return tuple(model.image_shape)
    shape = SOURCE_SHAPES.get(cfg.dataset)
    if shape is not None and (model is None or (shape[2] == model.image_shape[2] and all(
            s <= m for s, m in zip(shape[:2], model.image_shape[:2])))):
        return shape
    if model is None:
        raise ExportError(f"unknown image shape of dataset {cfg.dataset!r}")
    return tuple(model.image_shape)


class _Signatures:
    """The serving functions of one model; `source_shape` is the dataset's unpadded (h, w, C)."""

    def __init__(self, model, source_shape: tuple, threshold: dict | None = None):
        from csae_tf.data import from_model_output, to_model_input

        self.model = model
        self.threshold = threshold
        self.image_shape = tuple(model.image_shape)
        self.source_shape = tuple(source_shape)
        if self.source_shape[2] != self.image_shape[2] or any(
                s > m for s, m in zip(self.source_shape[:2], self.image_shape[:2])):
            raise ExportError(f"dataset images {self.source_shape} do not fit the model's input {self.image_shape}")
        self.sizes = sorted({self.source_shape[:2], self.image_shape[:2]})
        self._to_model_input = to_model_input
        self._from_model_output = from_model_output

    @staticmethod
    def input_spec():
        # Unknown rank on purpose: a signature's declared shape is not enforced when it is called (a rank-3
        # batch reached the graph and failed in a strided slice), so the function checks rank, size and
        # channels itself and says which is wrong.
        return tf.TensorSpec(None, tf.uint8, name="images")

    def _checked(self, images):
        """Assert the batch is [N, H, W, C] of an accepted size; return (model input, is_source_size).

        The checks only read the shape, and the model runs on the images only in a branch taken when
        they pass (on an empty batch otherwise): whatever order the runtime executes the ops in, a bad
        request fails in the assertion that names the problem, never in some op further down.
        """
        channels = self.image_shape[2]
        sizes = " or ".join(f"{h}x{w}" for h, w in self.sizes)
        shape = tf.shape(images)
        dims = tf.concat([shape, tf.zeros([4], tf.int32)], 0)[:4]  # indexable whatever the rank
        rank_ok = tf.equal(tf.size(shape), 4)
        channels_ok = tf.equal(dims[3], channels)
        matches = tf.stack([tf.logical_and(tf.equal(dims[1], h), tf.equal(dims[2], w)) for h, w in self.sizes])
        fits = tf.reduce_any(matches)

        def check(ok, problem):
            return tf.debugging.Assert(ok, [f"images have the wrong {problem}; got shape", shape], summarize=8)

        checks = [  # only the rank is reported for a batch of the wrong rank
            check(rank_ok, f"rank: must be rank 4, [N, H, W, C] with H x W {sizes} and C {channels}"),
            check(tf.logical_or(tf.logical_not(rank_ok), channels_ok), f"number of channels: must be {channels}"),
            check(tf.logical_or(tf.logical_not(rank_ok), fits), f"size: must be {sizes} pixels"),
        ]
        valid = tf.logical_and(rank_ok, tf.logical_and(channels_ok, fits))
        with tf.control_dependencies(checks):
            branch = tf.where(valid, 1 + tf.argmax(tf.cast(matches, tf.int32), output_type=tf.int32), 0)

        def at(size):
            return lambda: self._to_model_input(tf.ensure_shape(images, [None, *size, channels]), self.image_shape)

        def rejected():
            return tf.zeros([0, *self.image_shape], tf.float32)

        x = tf.switch_case(branch, [rejected] + [at(size) for size in self.sizes])
        return x, tf.equal(branch, 1 + self.sizes.index(self.source_shape[:2]))

    @staticmethod
    def _nonempty(batch, fn):
        """fn(batch), also for an empty batch: the network (its fused batch normalisation fails on zero
        images) then runs on one zero item and every output is cut back to the batch's length."""
        n = tf.shape(batch)[0]
        padded = tf.cond(n > 0, lambda: batch, lambda: tf.zeros(tf.concat([[1], tf.shape(batch)[1:]], 0), batch.dtype))
        return tf.nest.map_structure(lambda t: t[:n], fn(padded))

    def classify(self, images):
        x, _ = self._checked(images)
        return self._nonempty(x, self._classify)

    def _classify(self, x):
        latent = self.model.encode(x)  # CSAE.classify, but sharing one encoder pass with the `latent` output
        distances = tf.sqrt(tf.maximum(self.model.pedcc(latent), 0.0))
        return {"label": tf.argmin(distances, axis=-1, output_type=tf.int64), "distances": distances,
                "latent": latent}

    def encode(self, images):
        x, _ = self._checked(images)
        return self._nonempty(x, lambda x: {"latent": self.model.encode(x)})

    def score(self, images):
        from csae_tf import ood

        x, _ = self._checked(images)
        record = self.threshold
        values = self._nonempty(x, lambda x: ood.score_tensors(self.model, x, record.get("classes"),
                                                               record["weights"]))
        return {**values, "known": tf.less_equal(values[record["score"]], float(record["threshold"]))}

    def reconstruct(self, images):
        x, is_source = self._checked(images)
        y = self._nonempty(x, self.model.reconstruct)
        if len(self.sizes) == 1:
            return {"reconstruction": self._from_model_output(y, self.image_shape)}
        return {"reconstruction": tf.cond(is_source, lambda: self._from_model_output(y, self.source_shape),
                                          lambda: self._from_model_output(y, self.image_shape))}

    def generate(self, class_id, seed):
        n = self.model.num_classes
        in_range = tf.logical_and(tf.greater_equal(class_id, 0), tf.less(class_id, n))
        check = tf.debugging.Assert(tf.reduce_all(in_range),
                                    [f"class_id out of range: must be in 0..{n - 1}; got", class_id], summarize=20)
        with tf.control_dependencies([check]):
            # Clipped so that no op but the assertion can fail on a bad id (and it does fail the call).
            class_id = tf.clip_by_value(class_id, 0, n - 1)
        # The model's generator takes a pair of int32 seeds: the two halves of the int64 seed, bit for bit.
        images = self._nonempty(class_id, lambda ids: self.model.generate(ids, seed=tf.bitcast(seed, tf.int32)))
        return {"images": self._from_model_output(images, self.source_shape)}


def build_archive(model, source_shape: tuple, threshold: dict | None = None) -> keras.export.ExportArchive:
    """An ExportArchive of `model` with the classify (first: serving_default), encode, reconstruct, generate
    and, given an open-set `threshold` record (`csae_tf.ood.calibrate`), score signatures."""
    fns = _Signatures(model, source_shape, threshold)
    archive = keras.export.ExportArchive()
    archive.track(model)
    for name in ("classify", "encode", "reconstruct"):
        archive.add_endpoint(name, getattr(fns, name), input_signature=[fns.input_spec()])
    archive.add_endpoint("generate", fns.generate, input_signature=[
        tf.TensorSpec([None], tf.int32, name="class_id"), tf.TensorSpec([], tf.int64, name="seed")])
    if threshold is not None:
        archive.add_endpoint("score", fns.score, input_signature=[fns.input_spec()])
    return archive


def threshold_of(run_dir: str | Path, calibrate: bool = False) -> dict | None:
    """The run's open-set threshold record (RUN/ood_threshold.json); None when it has none, unless
    `calibrate`, which writes it first (reading the run's validation images)."""
    from csae_tf import ood
    from csae_tf.data import DataError
    from csae_tf.runs import RunDirError

    path = Path(run_dir) / ood.THRESHOLD_FILE
    try:
        if not path.exists():
            return ood.calibrate(run_dir) if calibrate else None
        return ood.load_threshold(path)
    except (ood.OodError, DataError, RunDirError) as err:
        raise ExportError(str(err)) from None


def next_version(base: Path) -> int:
    """One more than the highest numeric version folder under `base` (TF Serving serves the highest)."""
    versions = [int(p.name) for p in base.iterdir() if p.is_dir() and p.name.isdigit()] if base.is_dir() else []
    return max(versions, default=0) + 1


def export(run_dir: str | Path, output: str | Path, version: int | None = None, overwrite: bool = False,
           calibrate: bool = False) -> Path:
    """Export the run's model to ``output/<version>/``; return that folder.

    The ``score`` signature is added when the run has an open-set threshold (`threshold_of`).

    The SavedModel is written to a hidden folder and renamed into place, so a TF Serving instance
    watching `output` never sees a half-written version.
    """
    base = Path(output)
    version = next_version(base) if version is None else version
    if version < 0:
        raise ExportError(f"--version must be >= 0 (got {version})")
    target = base / str(version)
    if target.exists() and not overwrite:
        raise ExportError(f"{target} exists: pass another --version or --overwrite")
    cfg, model = load_run(run_dir)
    source_shape = source_shape_of(cfg, model)
    threshold = threshold_of(run_dir, calibrate)
    output_dir(base, "--output")
    tmp = base / f".tmp-{version}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        build_archive(model, source_shape, threshold).write_out(str(tmp), verbose=False)
        info = {"run": str(Path(run_dir).resolve()), "num_classes": model.num_classes,
                "latent_dim": model.latent_dim, "image_shape": list(model.image_shape),
                "source_shape": list(source_shape), "arch": model.arch, "dataset": cfg.dataset,
                "signatures": list(SIGNATURES) + (["score"] if threshold is not None else []),
                "ood_threshold": threshold}
        (tmp / "assets.extra").mkdir(exist_ok=True)
        (tmp / "assets.extra" / "csae.json").write_text(json.dumps(info, indent=2) + "\n")
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m export.saved_model", description=__doc__.split("\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--run", required=True, help="run directory of `python -m csae_tf.fit` (with model.keras)")
    parser.add_argument("--output", required=True, help="export base directory; the model goes to OUTPUT/VERSION")
    parser.add_argument("--version", type=int, default=None, help="version number (default: the next free one)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing OUTPUT/VERSION")
    parser.add_argument("--calibrate", action="store_true",
                        help="write RUN/ood_threshold.json first when missing (needs the run's training data), "
                             "so that the export gets the score signature")
    return parser


@command()
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    target = export(args.run, args.output, args.version, args.overwrite, args.calibrate)
    signatures = json.loads((target / "assets.extra" / "csae.json").read_text())["signatures"]
    print(f"exported {args.run} to {target} (signatures: {', '.join(signatures)})")
    if "score" not in signatures:
        print("no score signature: the run has no ood_threshold.json (python -m csae_tf.ood --run RUN --calibrate, "
              "or export with --calibrate)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
