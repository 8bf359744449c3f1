"""Full-MNIST CSAE-C accuracy within a wall-clock budget on this machine (issue: core benchmark).

    python benchmarks/mnist_budget.py --manual-dir ../shared/data/mnist --output runs/mnist_budget

Trains CSAE-C on all 60,000 MNIST images with a short-budget schedule (cosine, SGD 0.05, batch
128, +-2 px shifts, 15 epochs) and prints test accuracy, seconds per epoch and total wall time.
Any FitConfig flag can be overridden (e.g. --epochs 3 --augment false for the authors' budget).
This recipe is not the paper's: the paper reproduction's rows and budgets are in benchmarks/rows.py
(run by benchmarks/reproduce.py); earlier results of this script are kept there as legacy rows
(docs/results/reproduction/rows/legacy-15ep-*.json, legacy-20ep-*.json).
"""

from __future__ import annotations

import csv
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from csae_tf.config import config_from_args  # noqa: E402
from csae_tf.fit import build_parser, run  # noqa: E402

PRESET = {"epochs": 15, "batch_size": 128, "lr": 0.05, "schedule": "cosine", "augment": True, "verbose": 2,
          "output": "runs/mnist_budget"}


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    for key, value in PRESET.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    cfg = config_from_args(args)
    start = time.time()
    metrics = run(cfg, overwrite=args.overwrite)
    wall = time.time() - start
    rows = list(csv.DictReader(open(Path(cfg.output) / "history.csv")))
    per_epoch = sorted(float(r["seconds"]) for r in rows)
    report = {
        "command": "python benchmarks/mnist_budget.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "epochs": cfg.epochs, "test_accuracy": metrics["test_accuracy"],
        "median_seconds_per_epoch": per_epoch[len(per_epoch) // 2] if per_epoch else None,
        "wall_seconds_this_invocation": round(wall, 1), "train_seconds": metrics.get("train_seconds"),
        "best_val_accuracy": max(float(r["val_accuracy"]) for r in rows) if rows else None,
    }
    print(json.dumps(report, indent=2))
    (Path(cfg.output) / "benchmark.json").write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

