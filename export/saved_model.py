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

Images are raw pixels (0..255) at the dataset's size (28x28 for MNIST) or at the model's padded
size (32x32); the signatures pad and scale them. A malformed request fails with an
InvalidArgumentError that says what is wrong (rank, channels, image size, class id).
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

SIGNATURES = ("serving_default", "classify", "encode", "reconstruct", "generate")


class ExportError(RuntimeError):
    """The run or the export directory cannot be used as asked."""


def source_shape_of(cfg) -> tuple:
    """The images' shape as stored in the dataset (before padding), from TFDS's static metadata."""
    import tensorflow_datasets as tfds

    features = tfds.builder(cfg.dataset, data_dir=cfg.data_dir).info.features
    key = "image" if "image" in features else next(iter(features))
    return tuple(int(s) for s in features[key].shape)


def load_run(run_dir: str | Path):
    """(model, source_shape) of a finished run directory (``model.keras`` and ``config.json``)."""
    import csae_tf  # noqa: F401  (registers the Keras classes)
    from csae_tf.config import FitConfig

    run_dir = Path(run_dir)
    for name in ("model.keras", "config.json"):
        if not (run_dir / name).exists():
            raise ExportError(f"{run_dir} has no {name}: export needs a finished `python -m csae_tf.fit` run")
    model = keras.models.load_model(run_dir / "model.keras")
    return model, source_shape_of(FitConfig.load(run_dir / "config.json"))


class _Signatures:
    """The serving functions of one model; `source_shape` is the dataset's unpadded (h, w, C)."""

    def __init__(self, model, source_shape: tuple):
        from csae_tf.data import from_model_output, to_model_input

        self.model = model
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

    def classify(self, images):
        x, _ = self._checked(images)
        latent = self.model.encode(x)  # CSAE.classify, but sharing one encoder pass with the `latent` output
        distances = tf.sqrt(tf.maximum(self.model.pedcc(latent), 0.0))
        return {"label": tf.argmin(distances, axis=-1, output_type=tf.int64), "distances": distances,
                "latent": latent}

    def encode(self, images):
        x, _ = self._checked(images)
        return {"latent": self.model.encode(x)}

    def reconstruct(self, images):
        x, is_source = self._checked(images)
        y = self.model.reconstruct(x)
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
        images = self.model.generate(class_id, seed=tf.bitcast(seed, tf.int32))
        return {"images": self._from_model_output(images, self.source_shape)}


def build_archive(model, source_shape: tuple) -> keras.export.ExportArchive:
    """An ExportArchive of `model` with the classify (first: serving_default), encode, reconstruct, generate."""
    fns = _Signatures(model, source_shape)
    archive = keras.export.ExportArchive()
    archive.track(model)
    for name in ("classify", "encode", "reconstruct"):
        archive.add_endpoint(name, getattr(fns, name), input_signature=[fns.input_spec()])
    archive.add_endpoint("generate", fns.generate, input_signature=[
        tf.TensorSpec([None], tf.int32, name="class_id"), tf.TensorSpec([], tf.int64, name="seed")])
    return archive


def next_version(base: Path) -> int:
    """One more than the highest numeric version folder under `base` (TF Serving serves the highest)."""
    versions = [int(p.name) for p in base.iterdir() if p.is_dir() and p.name.isdigit()] if base.is_dir() else []
    return max(versions, default=0) + 1


def export(run_dir: str | Path, output: str | Path, version: int | None = None, overwrite: bool = False) -> Path:
    """Export the run's model to ``output/<version>/``; return that folder.

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
    model, source_shape = load_run(run_dir)
    base.mkdir(parents=True, exist_ok=True)
    tmp = base / f".tmp-{version}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        build_archive(model, source_shape).write_out(str(tmp), verbose=False)
        info = {"run": str(Path(run_dir).resolve()), "num_classes": model.num_classes,
                "latent_dim": model.latent_dim, "image_shape": list(model.image_shape),
                "source_shape": list(source_shape), "signatures": list(SIGNATURES)}
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
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        target = export(args.run, args.output, args.version, args.overwrite)
    except ExportError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"exported {args.run} to {target} (signatures: {', '.join(SIGNATURES)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
