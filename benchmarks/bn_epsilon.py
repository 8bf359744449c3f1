"""Batch-norm epsilon: Keras' 1e-3 against PyTorch's (and the authors' code's) 1e-5, same runs otherwise.

    python benchmarks/bn_epsilon.py --data-dir runs/tfds --train-limit 10000 --epochs 3 --seeds 0 1 \
        --output docs/results/bn_epsilon/bn_epsilon.json

Each (epsilon, seed) pair trains CSAE-C through the trainer (the default recipe, cosine lr 0.05) and reports
the validation accuracy and losses of the held-out images (the test figures are not used).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from csae_tf import layers, trainer  # noqa: E402
from csae_tf.config import FitConfig  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--manual-dir", default=None)
    parser.add_argument("--train-limit", type=int, default=10_000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--output", default=None)
    args = parser.parse_args(argv)
    defaults = layers.BatchNormalization.__init__.__defaults__
    rows = []
    for seed in args.seeds:
        for epsilon in (1e-3, 1e-5):
            layers.BatchNormalization.__init__.__defaults__ = (defaults[0], epsilon)
            cfg = FitConfig(data_dir=args.data_dir, manual_dir=args.manual_dir, train_limit=args.train_limit,
                            test_limit=1, epochs=args.epochs, lr=0.05, schedule="cosine", seed=seed, image_every=0,
                            verbose=0, output=tempfile.mkdtemp(prefix="csae_eps_"))
            start = time.time()
            metrics = trainer.run(cfg)
            rows.append({"epsilon": epsilon, "seed": seed, "seconds": round(time.time() - start, 1),
                         **{k: round(v, 4) for k, v in metrics.items() if k.startswith("val_")}})
            print(json.dumps(rows[-1]), flush=True)
    layers.BatchNormalization.__init__.__defaults__ = defaults
    summary = {str(e): round(statistics.mean(r["val_accuracy"] for r in rows if r["epsilon"] == e), 4)
               for e in (1e-3, 1e-5)}
    result = {"command": "python benchmarks/bn_epsilon.py " + " ".join(sys.argv[1:] if argv is None else argv),
              "rows": rows, "mean_val_accuracy": summary, "date": time.strftime("%Y-%m-%d %H:%M")}
    print(json.dumps(summary))
    if args.output:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
