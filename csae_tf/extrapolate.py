"""Reconstruct images of classes a CSAE never saw (paper §4.4, Fig. 11): seen vs unseen error.

    python -m csae_tf.extrapolate --run runs/mnist \
        --images ../shared/data/emnist_letters/emnist_letters_train_balanced5200.npz
    python -m csae_tf.extrapolate --run runs/mnist_0to4 --images heldout

`--images` (repeatable) names a set of images the model reconstructs:
- `FILE.npz` with an array `x` (or `images`, or its only array) of shape (N, h, w) or (N, h, w, C),
  and optionally `y`, one integer label per image (per-label errors are then reported);
- `FILE.npy`, the same `x` array alone; a PNG / JPEG file or a folder of them;
- `heldout`: the test images of the run's dataset whose classes the run was not trained on (a run
  fit with `--classes`), from the same test images as `seen`.
Pixels follow the input contract of `csae_tf.images`: 0..255 (uint8, or whole-number floats; floats
in [0, 1] are refused), at a size that pads to the model's input (28x28 for a 32x32 conv model);
otherwise the command stops with an error that names the file and what is wrong.

The reference set `seen` is always the run's own test set (its dataset's test split, limited as
in training) restricted to its trained classes. The error is Loss2 of the paper: the mean squared
pixel difference between input and reconstruction on the model's [-1, 1] scale over the padded
image (the `loss2` of training).
RUN/extrapolation/ (or `--output`) receives `extrapolation.json` and one PNG per set, inputs above
their reconstructions, the first image of each of the first `--grid-classes` labels.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from csae_tf import images as image_files
from csae_tf import viz
from csae_tf.errors import command, output_dir
from csae_tf.runs import (
    RunDirError,
    check_images,
    dataset_split,
    encode_and_reconstruct,
    first_of_each_class,
    heldout_classes,
    load_run,
    to_input,
)


def read_set(spec: str, cfg, model, limit: int | None = None, data_dir: str | None = None):
    """(name, uint8 images, labels or None) of one `--images` value."""
    if spec == "heldout":
        images, labels, _ = dataset_split(cfg, "test", data_dir=data_dir, limit=limit or cfg.test_limit,
                                          classes=heldout_classes(cfg, model, "--images"))
        return "heldout", check_images(images, model, "heldout"), labels
    path = Path(spec)
    if not path.exists():
        raise RunDirError(f"--images {spec}: no such file or folder (expected FILE.npz, FILE.npy, images or 'heldout')")
    if path.is_file() and path.suffix.lower() in image_files.ARRAYS:
        images, labels = image_files.read_array(path)
    else:
        images, labels = image_files.read_images(path), None
    if limit:
        images, labels = images[:limit], (labels[:limit] if labels is not None else None)
    return path.stem, check_images(images, model, f"--images {spec}"), labels


def summarise(errors: np.ndarray, labels) -> dict:
    result = {"num_images": int(len(errors)), "mse": float(errors.mean()), "mse_std": float(errors.std())}
    if labels is not None:
        result["per_class_mse"] = {str(int(c)): float(errors[labels == c].mean()) for c in np.unique(labels)}
    return result


def _grid(model, images, reconstructions, labels, classes: int) -> np.ndarray:
    picks = (first_of_each_class(labels, sorted(np.unique(labels))[:classes]) if labels is not None
             else np.arange(min(classes, len(images))))
    inputs = np.asarray(to_input(model, images[picks]))
    return viz.image_grid(np.concatenate([inputs, reconstructions[picks]]), 2, len(picks))


def extrapolate(run_dir, specs, *, output: str | None = None, limit: int | None = None,
                data_dir: str | None = None, grid_classes: int = 10) -> dict:
    cfg, model = load_run(run_dir)
    out = Path(output) if output else Path(run_dir) / "extrapolation"
    sets = [read_set(spec, cfg, model, limit, data_dir) for spec in specs]  # check every input first
    seen_images, seen_labels, _ = dataset_split(cfg, "test", data_dir=data_dir, limit=limit or cfg.test_limit,
                                                classes=cfg.classes)
    sets.insert(0, ("seen", check_images(seen_images, model, "seen"), seen_labels))
    output_dir(out, "--output")
    report = {"run": str(run_dir), "dataset": cfg.dataset, "beta": cfg.beta,
              "trained_classes": list(cfg.classes) if cfg.classes else list(range(model.num_classes)),
              "metric": "Loss2: pixel MSE on the model's [-1, 1] scale, padded image", "sets": {}}
    for name, images, labels in sets:
        _, reconstructions, errors = encode_and_reconstruct(model, images)
        report["sets"][name] = summarise(errors, labels)
        viz.save_png(_grid(model, images, reconstructions, labels, grid_classes), out / f"{name}.png")
        report["sets"][name]["figure"] = f"{name}.png"
    seen = report["sets"]["seen"]["mse"]
    for values in report["sets"].values():
        values["ratio_to_seen"] = values["mse"] / seen if seen > 0 else None
    report["output"] = str(out)
    (out / "extrapolation.json").write_text(json.dumps(report, indent=2) + "\n")
    return report


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m csae_tf.extrapolate", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--run", required=True, help="run directory written by python -m csae_tf.fit")
    parser.add_argument("--images", action="append", required=True,
                        help="FILE.npz (x[, y]), FILE.npy (x), PNG / JPEG files or folders, or 'heldout'; repeatable")
    parser.add_argument("--output", default=None, help="output folder (default: RUN/extrapolation)")
    parser.add_argument("--limit", type=int, default=None, help="use only the first N images of each set")
    parser.add_argument("--data-dir", default=None, help="TFDS data directory (default: the run's)")
    parser.add_argument("--grid-classes", type=int, default=10, help="labels shown in each figure")
    return parser


@command()
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.limit is not None and args.limit < 1:
        raise RunDirError("--limit must be >= 1")
    report = extrapolate(args.run, args.images, output=args.output, limit=args.limit, data_dir=args.data_dir,
                         grid_classes=args.grid_classes)
    print(f"{report['run']} (beta {report['beta']}, trained on classes {report['trained_classes']}): "
          f"reconstruction MSE, {report['metric']}")
    for name, values in report["sets"].items():
        print(f"  {name:>24}: {values['mse']:.4f} over {values['num_images']} images "
              f"({values['ratio_to_seen']:.2f}x seen)")
    print(f"  written to {report['output']}/extrapolation.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
