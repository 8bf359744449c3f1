"""Choose the `fast` preset's recipe on validation accuracy: one `fit` run per candidate, test split unread.

    python benchmarks/fast_recipe.py --data-dir runs/tfds --manual-dir ../shared/data/mnist \
        --candidates "--epochs 1 --lr 0.2" "--epochs 1 --lr 0.3 --warmup-epochs 0.3" \
        --output docs/results/time_to_accuracy/recipe_search.json

Each candidate is a set of `fit` flags added to `--preset fast`; every run holds out the same 5,000
training images, and only their accuracy (`val_accuracy` after the last epoch) is reported and ranked.
The runs evaluate one test batch only (`--test-limit 1`, the least the fit command accepts), so the
choice cannot lean on the test split.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from time_to_accuracy import fit_command, write_report  # noqa: E402


def run_candidate(flags: str, args) -> dict:
    """Train one candidate recipe; its final validation accuracy and the seconds of its epochs."""
    output = Path(tempfile.mkdtemp(prefix="csae_recipe_")) / "run"
    recipe = argparse.Namespace(preset="fast", seed=args.seed, data_dir=args.data_dir, manual_dir=args.manual_dir,
                                train_limit=None, test_limit=1)
    command = fit_command(recipe, output, shlex.split(flags))
    start = time.time()
    subprocess.run(command, cwd=ROOT, check=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    with open(output / "history.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    return {"flags": flags, "val_accuracy": round(float(rows[-1]["val_accuracy"]), 4),
            "val_accuracy_per_epoch": [round(float(r["val_accuracy"]), 4) for r in rows],
            "epoch_seconds": [round(float(r["seconds"]), 1) for r in rows],
            "seconds_from_process_start": round(time.time() - start, 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--manual-dir", default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--candidates", nargs="+", required=True, help="fit flags of each candidate, one string each")
    parser.add_argument("--output", default=None, help="write the ranked results as JSON here")
    args = parser.parse_args(argv)
    results = []
    for flags in args.candidates:
        results.append(run_candidate(flags, args))
        print(json.dumps(results[-1]), flush=True)
    results.sort(key=lambda r: -r["val_accuracy"])
    report = {"base": "python -m csae_tf.fit --dataset mnist --preset fast --seed " + str(args.seed),
              "selected_on": "val_accuracy (5,000 held-out training images)", "results": results,
              "date": time.strftime("%Y-%m-%d %H:%M")}
    return write_report(report, args.output)


if __name__ == "__main__":
    sys.exit(main())
