"""Class-conditional samples from a trained CSAE (paper §4.2, Fig. 6-8).

    python -m csae_tf.generate --run runs/mnist --per-class 10 --seed 0 --output grid.png

Draws `--per-class` latent codes from each class's Gaussian N(mean_c, cov_c) (fitted on the
training set at the end of `csae_tf.fit`), decodes them and writes one row per class as a PNG
grid. The same run, seed and options give the same pixels. `--npy FILE` also saves the images
(model scale, [-1, 1]) and `--classes 0,3` limits the rows. A model trained on a subset of the
classes (`fit --classes`) generates only those classes: a `--classes` id the run was not trained
on is an error (it has no latent Gaussian for it).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from csae_tf import viz
from csae_tf.errors import command, output_file
from csae_tf.runs import RunDirError, load_run


def trained_classes(cfg, model) -> list[int]:
    """The class ids the run was trained on: config.json's `classes` when set, else all of the model's."""
    return list(cfg.classes) if cfg.classes else list(range(model.num_classes))


def parse_classes(text: str, trained: list[int]) -> list[int]:
    """Class ids of a --classes value; ids the run never trained (it has no latent Gaussian for) are an error."""
    try:
        classes = [int(c) for c in text.split(",") if c.strip()]
    except ValueError:
        raise RunDirError(f"--classes: expected comma-separated integers, got {text!r}") from None
    if not classes:
        raise RunDirError("--classes is empty")
    untrained = [c for c in classes if c not in trained]
    if untrained:
        raise RunDirError(f"--classes: the run was not trained on class(es) {', '.join(map(str, untrained))} "
                          f"(it was trained on {', '.join(map(str, trained))})")
    return classes


def generate_samples(model, classes, per_class: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(images (len(classes) * per_class, H, W, C) in [-1, 1], their class ids), class by class."""
    ids = np.repeat(np.asarray(classes, np.int32), per_class)
    return np.asarray(model.generate(ids, seed=(seed, 0))), ids


def sample_grid(images: np.ndarray, rows: int) -> np.ndarray:
    return viz.image_grid(images, rows, len(images) // rows)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m csae_tf.generate", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--run", required=True, help="run directory written by python -m csae_tf.fit")
    parser.add_argument("--per-class", type=int, default=10, help="samples per class (one grid row per class)")
    parser.add_argument("--seed", type=int, default=0, help="sampling seed (same seed, same images)")
    parser.add_argument("--classes", default=None, help="comma-separated class ids (default: the trained classes)")
    parser.add_argument("--output", default=None, help="PNG file (default: RUN/generated_seed<S>.png)")
    parser.add_argument("--npy", default=None, help="also save the images as a .npy array (model scale)")
    parser.add_argument("--classify", action="store_true",
                        help="also print the fraction of samples the model classifies as their class")
    return parser


@command()
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.per_class < 1:
        raise RunDirError("--per-class must be >= 1")
    cfg, model = load_run(args.run)
    trained = trained_classes(cfg, model)
    classes = parse_classes(args.classes, trained) if args.classes else trained
    output = output_file(args.output or Path(args.run) / f"generated_seed{args.seed}.png", "--output")
    npy = output_file(args.npy, "--npy") if args.npy else None
    images, ids = generate_samples(model, classes, args.per_class, args.seed)
    viz.save_png(sample_grid(images, len(classes)), output)
    if npy:
        np.save(npy, images)
    report = {"output": str(output), "classes": classes, "per_class": args.per_class, "seed": args.seed}
    if args.classify:
        predicted = np.asarray(model.classify(images)[0])
        report["classified_as_their_class"] = float(np.mean(predicted == ids))
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
