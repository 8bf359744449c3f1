"""Evaluate a trained CSAE run on a test split: accuracy, losses, confusion, class-mean distances, figures.

    python -m csae_tf.evaluate --run runs/mnist

Writes into RUN/evaluation/ (or `--output`): `evaluation.json` (nearest-centroid test accuracy,
Loss / Loss1-3 from `model.evaluate`, per-class accuracy, confusion matrix, the distances between
the classes' mean latent codes (paper Fig. 9) and between the PEDCC centroids, the fraction of
generated samples classified as their class; with `--views`, also the accuracy of the mean code over
test-time views, see `csae_tf.views`) and four PNGs: `confusion.png`, `distances.png`
(class-mean distances beside PEDCC distances), `reconstruction.png` (inputs above
reconstructions, Fig. 4/5) and `generated.png` (10 samples per class, Fig. 6-8).

By default the run's own test set is used: its dataset's test split, limited by the run's
`--test-limit` and restricted to the trained classes when the run was fit with `--classes`.
`--dataset NAME` evaluates on the test split of another TFDS dataset instead (files go to
RUN/evaluation_NAME/): its images must pad to the model's input shape, and its labels are read
as the model's class ids (0..n-1; larger ids are an error). Accuracy is therefore meaningful
only when both datasets share their label meaning; for any other dataset (e.g. Fashion-MNIST
for an MNIST model) it shows how the model treats foreign images, and the reconstruction
losses show how far they lie from what it learned.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import numpy as np

from csae_tf import views, viz
from csae_tf.errors import command, output_dir
from csae_tf.generate import generate_samples, sample_grid, trained_classes
from csae_tf.runs import (
    RunDirError,
    check_images,
    dataset_split,
    encode,
    encode_and_reconstruct,
    first_of_each_class,
    load_run,
    to_input,
)
from csae_tf.viz import class_mean_distances, pairwise_distances  # noqa: F401  (part of this module's API)

BATCH = 1024  # latent codes per distance computation: memory BATCH x classes, whatever the test set's size
MAX_HEATMAP_CLASSES = 100  # larger confusion / distance matrices are written to the JSON only


def model_losses(model, images: np.ndarray, labels: np.ndarray, info, batch: int = 500) -> dict:
    """Loss, Loss1-3 and accuracy from `model.evaluate` (the test_step of training) on uint8 images."""
    import tensorflow as tf

    from csae_tf import data

    info = dataclasses.replace(info, image_shape=tuple(model.image_shape))
    ds = data.pipeline(tf.data.Dataset.from_tensor_slices((images, labels)), info, batch, training=False)
    if not model.compiled:
        model.compile()
    return {k: float(v) for k, v in model.evaluate(ds, verbose=0, return_dict=True).items()}


def confusion_matrix(labels: np.ndarray, predicted: np.ndarray, n: int) -> np.ndarray:
    matrix = np.zeros((n, n), np.int64)
    np.add.at(matrix, (labels, predicted), 1)
    return matrix


def _side_by_side(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    h = max(left.shape[0], right.shape[0])
    pad = lambda im: np.pad(im, ((0, h - im.shape[0]), (0, 0), (0, 0)), constant_values=255)  # noqa: E731
    return np.concatenate([pad(left), pad(right)], axis=1)


def nearest_labels(latent: np.ndarray, centroids: np.ndarray, batch: int = BATCH) -> np.ndarray:
    """The nearest centroid of each latent code, `batch` codes at a time (never an (N, classes, d) array)."""
    from csae_tf.models import nearest_centroid

    parts = [nearest_centroid(latent[i:i + batch], centroids) for i in range(0, len(latent), batch)]
    return np.concatenate(parts) if parts else np.zeros(0, np.int64)


def _off_diagonal(matrix: np.ndarray, classes) -> np.ndarray:
    sub = matrix[np.ix_(classes, classes)]
    return sub[~np.eye(len(classes), dtype=bool)]


def evaluate(run_dir, *, dataset: str | None = None, data_dir: str | None = None, manual_dir: str | None = None,
             limit: int | None = None, output: str | None = None, seed: int = 0, per_class: int = 10,
             view_set: str = "none") -> dict:
    """Evaluate the run in `run_dir`; write JSON and PNGs; return the report dict. A `view_set` other than
    "none" adds `views_accuracy`: nearest centroid of the mean code over that set of test-time views."""
    cfg, model = load_run(run_dir)
    n = model.num_classes
    own = dataset is None or dataset == cfg.dataset
    classes = cfg.classes if own else None
    limit = limit or (cfg.test_limit if own else None)
    images, labels, info = dataset_split(cfg, "test", dataset=dataset, data_dir=data_dir, manual_dir=manual_dir,
                                         limit=limit, classes=classes)
    images = check_images(images, model, f"test split of {info.name}")
    if labels.max() >= n:
        raise RunDirError(f"{info.name} has labels up to {labels.max()} but the model has only {n} classes")
    out = output_dir(output if output else Path(run_dir) / ("evaluation" if own else f"evaluation_{info.name}"),
                     "--output")

    latent, reconstructions, errors = encode_and_reconstruct(model, images)
    centroids = np.asarray(model.pedcc.centroids)
    predicted = nearest_labels(latent, centroids)
    accuracy = float(np.mean(predicted == labels))
    views_accuracy = (float(np.mean(nearest_labels(views.mean_codes(model, images, view_set), centroids) == labels))
                      if view_set != "none" else None)
    losses = model_losses(model, images, labels, info)
    confusion = confusion_matrix(labels, predicted, n)
    present = sorted(int(c) for c in np.unique(labels))
    mean_distances = class_mean_distances(latent, labels, n)
    pedcc_distances = pairwise_distances(centroids)

    # Figures (the matrices only while a heat-map of them stays legible and small).
    names = [str(c) for c in range(n)]
    files = ["evaluation.json"]
    if n <= MAX_HEATMAP_CLASSES:
        viz.save_png(viz.heatmap(confusion.astype(float), f"confusion ({info.name} test)", names, fmt="{:.0f}"),
                     out / "confusion.png")
        viz.save_png(_side_by_side(viz.heatmap(mean_distances, "distances of class-mean latent codes", names),
                                   viz.heatmap(pedcc_distances, "distances of PEDCC centroids", names)),
                     out / "distances.png")
        files += ["confusion.png", "distances.png"]
    picks = first_of_each_class(labels, present)[:20]
    viz.save_png(viz.image_grid(np.concatenate([to_input(model, images[picks]).numpy(),
                                                reconstructions[picks]]), 2, len(picks)),
                 out / "reconstruction.png")
    gen_classes = trained_classes(cfg, model)
    generated, ids = generate_samples(model, gen_classes, per_class, seed)
    viz.save_png(sample_grid(generated, len(gen_classes)), out / "generated.png")
    generated_accuracy = float(np.mean(nearest_labels(encode(model, generated), centroids) == ids))

    off_mean, off_pedcc = _off_diagonal(mean_distances, present), _off_diagonal(pedcc_distances, present)
    report = {
        "run": str(run_dir), "dataset": info.name, "split": "test", "num_images": int(len(labels)),
        "classes": present, "accuracy": accuracy,
        **({"views": view_set, "views_accuracy": views_accuracy} if views_accuracy is not None else {}),
        "loss": losses["loss"], "loss1": losses["loss1"], "loss2": losses["loss2"], "loss3": losses["loss3"],
        "evaluate_accuracy": losses["accuracy"], "reconstruction_mse": float(errors.mean()),
        "per_class_accuracy": {str(c): float(np.mean(predicted[labels == c] == c)) for c in present},
        "confusion_matrix": confusion.tolist(),
        "class_mean_distances": np.where(np.isfinite(mean_distances), mean_distances, -1).round(4).tolist(),
        "pedcc_distances": pedcc_distances.round(4).tolist(),
        "class_mean_distance_mean": float(off_mean.mean()) if off_mean.size else None,
        "class_mean_distance_std": float(off_mean.std()) if off_mean.size else None,
        "pedcc_distance_mean": float(off_pedcc.mean()) if off_pedcc.size else None,
        "pedcc_distance_std": float(off_pedcc.std()) if off_pedcc.size else None,
        "generated_seed": seed, "generated_per_class": per_class,
        "generated_classified_as_their_class": generated_accuracy,
        "files": files + ["reconstruction.png", "generated.png"],
        "output": str(out),
    }
    (out / "evaluation.json").write_text(json.dumps(report, indent=2) + "\n")
    return report


def format_report(r: dict) -> str:
    worst = min(r["per_class_accuracy"].items(), key=lambda kv: kv[1])
    lines = [
        f"{r['run']} on {r['dataset']} test ({r['num_images']} images, classes {r['classes'][0]}..{r['classes'][-1]})",
        f"  accuracy (nearest centroid) {r['accuracy']:.4f}   worst class {worst[0]}: {worst[1]:.4f}"
        + (f"   with test-time views ({r['views']}) {r['views_accuracy']:.4f}" if "views" in r else ""),
        f"  loss {r['loss']:.4f}   loss1 {r['loss1']:.4f}   loss2 {r['loss2']:.4f}   loss3 {r['loss3']:.4f}",
        f"  class-mean distances {r['class_mean_distance_mean']:.3f} +- {r['class_mean_distance_std']:.3f}   "
        f"PEDCC distances {r['pedcc_distance_mean']:.3f} +- {r['pedcc_distance_std']:.3f}",
        f"  generated samples classified as their class: {r['generated_classified_as_their_class']:.3f}",
        f"  written to {r['output']}/: " + ", ".join(r["files"]),
    ]
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m csae_tf.evaluate", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--run", required=True, help="run directory written by python -m csae_tf.fit")
    parser.add_argument("--dataset", default=None, help="evaluate on this TFDS dataset's test split instead "
                        "(labels read as the model's class ids; see the module docstring)")
    parser.add_argument("--data-dir", default=None, help="TFDS data directory (default: the run's)")
    parser.add_argument("--manual-dir", default=None, help="original files for offline preparation of --dataset")
    parser.add_argument("--test-limit", type=int, default=None,
                        help="use only the first N test images (default: the run's test limit)")
    parser.add_argument("--output", default=None, help="output folder (default: RUN/evaluation[_DATASET])")
    parser.add_argument("--seed", type=int, default=0, help="seed of the generated grid")
    parser.add_argument("--per-class", type=int, default=10, help="generated samples per class")
    parser.add_argument("--views", default="none", choices=views.VIEW_SETS,
                        help="also report the accuracy of the mean code over test-time views: the mirror (flip), "
                        "four 1-pixel shifts (shifts), or both (flip-shifts, 10 views); flips suit classes that "
                        "mirror (see csae_tf.views)")
    return parser


@command()
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.test_limit is not None and args.test_limit < 1:
        raise RunDirError("--test-limit must be >= 1")
    if args.per_class < 1:
        raise RunDirError("--per-class must be >= 1")
    report = evaluate(args.run, dataset=args.dataset, data_dir=args.data_dir, manual_dir=args.manual_dir,
                      limit=args.test_limit, output=args.output, seed=args.seed, per_class=args.per_class,
                      view_set=args.views)
    print(format_report(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
