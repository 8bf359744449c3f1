"""Class-conditional samples from a trained CSAE (paper §4.2, Fig. 6-8).

    python -m csae_tf.generate --run runs/mnist --per-class 10 --seed 0 --output grid.png

Draws `--per-class` latent codes from each class's Gaussian N(mean_c, cov_c) (fitted on the
training set at the end of `csae_tf.fit`), decodes them and writes one row per class as a PNG
grid. The same run, seed and options give the same pixels. `--npy FILE` also saves the images
(model scale, [-1, 1]) and `--classes 0,3` limits the rows. A model trained on a subset of the
classes (`fit --classes`) generates only those classes unless `--classes` names others.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from csae_tf import viz
from csae_tf.runs import RunDirError, load_run


def trained_classes(cfg, model) -> list[int]:
    return list(cfg.classes) if cfg.classes else list(range(model.num_classes))


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


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.per_class < 1:
            raise RunDirError("--per-class must be >= 1")
        cfg, model = load_run(args.run)
        if args.classes:
            try:
                classes = [int(c) for c in args.classes.split(",") if c.strip()]
            except ValueError:
                raise RunDirError(f"--classes: expected comma-separated integers, got {args.classes!r}") from None
            bad = [c for c in classes if not 0 <= c < model.num_classes]
            if bad or not classes:
                raise RunDirError(f"--classes: the model has class ids 0..{model.num_classes - 1} (got {args.classes})")
        else:
            classes = trained_classes(cfg, model)
        images, ids = generate_samples(model, classes, args.per_class, args.seed)
        output = Path(args.output) if args.output else Path(args.run) / f"generated_seed{args.seed}.png"
        viz.save_png(sample_grid(images, len(classes)), output)
        if args.npy:
            Path(args.npy).parent.mkdir(parents=True, exist_ok=True)
            np.save(args.npy, images)
        report = {"output": str(output), "classes": classes, "per_class": args.per_class, "seed": args.seed}
        if args.classify:
            predicted = np.asarray(model.classify(images)[0])
            report["classified_as_their_class"] = float(np.mean(predicted == ids))
        print(json.dumps(report))
    except RunDirError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
