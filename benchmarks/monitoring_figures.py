"""Draw the monitoring figures of a finished run, exactly as its last image epoch would (docs/ figures).

    python benchmarks/monitoring_figures.py runs/mnist --figures docs/figures_tmp

Loads RUN/model.keras and RUN/config.json, builds the same `ImageSummaries` callback as
`python -m csae_tf.fit` (same test images, same training subset for the latent Gaussians, same seed)
and writes its PNG files (reconstruction.png, generated.png, distances.png) into --figures, and its
TensorBoard images into --figures/logs.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import csae_tf  # noqa: E402, F401  (first: registers the model classes, turns oneDNN on before TensorFlow loads)

# isort: split
import keras  # noqa: E402

from csae_tf import data  # noqa: E402
from csae_tf.callbacks import ImageSummaries, monitoring_callbacks  # noqa: E402
from csae_tf.config import FitConfig  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--figures", type=Path, required=True)
    parser.add_argument("--data-dir", help="override the run's TFDS data directory")
    args = parser.parse_args()
    cfg = FitConfig.load(args.run / "config.json")
    if args.data_dir:
        cfg.data_dir = args.data_dir
    cfg.image_every = cfg.image_every or 1
    _, test, info = data.load_datasets(cfg)
    model = keras.models.load_model(args.run / "model.keras")
    [images] = [c for c in monitoring_callbacks(cfg, info, test, args.figures / "logs", args.figures)
                if isinstance(c, ImageSummaries)]
    images.set_model(model)
    images.on_train_begin()
    images.write(cfg.epochs - 1)
    images.on_train_end()
    metrics = json.loads((args.run / "metrics.json").read_text())
    print(f"{args.run}: {cfg.epochs} epochs on {info.num_train} images, test accuracy "
          f"{metrics['test_accuracy']:.4f}; figures in {args.figures}")


if __name__ == "__main__":
    main()
