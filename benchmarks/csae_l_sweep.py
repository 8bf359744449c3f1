"""Changes to the CSAE-L recipe, one `csae_tf.fit` run each, judged on the validation hold-out; resumable.

    python benchmarks/csae_l_sweep.py --dataset fashion_mnist --data-dir runs/tfds \
        --manual-dir ../shared/data/fashion_mnist

The recipe is the reproduction's `full` CSAE-L budget (`--preset paper-l --epochs 30`, seed 0, 5,000
training images held out for validation); each variant adds a few flags to it. The first row of the CSV
(`docs/results/reproduction/csae_l_sweep_<dataset>.csv`) is the recipe itself, taken from its reproduction
row; every variant appends its row the moment its run ends, so an interrupted sweep carries on where it
stopped and variants already in the CSV are skipped. Test accuracy is recorded beside validation but
never read for selection: `benchmarks/reproduce.py` names the best variant on validation in its report.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import json
import shlex
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from reproduce import machine  # noqa: E402  (the reproduction's description of the machine, without TensorFlow)
from rows import SHORT  # noqa: E402

FIELDS = ("variant", "flags", "val_accuracy", "test_accuracy", "command", "date", "machine")
RECIPE = ["--preset", "paper-l", "--epochs", "30"]
VARIANTS = {  # name: flags added to the recipe (each CSV lists the ones its sweep ran)
    "cos": "--schedule cosine",
    "lr5e-4": "--lr 5e-4",
    "b0": "--beta 0",
    "b0.1": "--beta 0.1",
    "b0.2": "--beta 0.2",
    "l1-2": "--lambda1 2",
    "l1-5": "--lambda1 5",
    "wd1e-5": "--weight-decay 1e-5",
    "ep15": "--epochs 15",
    "bs256": "--batch-size 256",
    "cos60": "--schedule cosine --epochs 60",
    "cos-b0.2": "--schedule cosine --beta 0.2",
    "cos-b0.3": "--schedule cosine --beta 0.3",
    "cos-b0.5": "--schedule cosine --beta 0.5",
    "lr5e-4cos": "--lr 5e-4 --schedule cosine",
    "wd1e-4": "--weight-decay 1e-4",
    "wd1e-4cos": "--weight-decay 1e-4 --schedule cosine",
    "b0.02": "--beta 0.02",
    "l1-0.5": "--lambda1 0.5",
    "lr2e-3cos": "--lr 2e-3 --schedule cosine",
    "bs64": "--batch-size 64",
    "bs512lr2e-3": "--batch-size 512 --lr 2e-3",
    "ep20": "--epochs 20",
    "bs256cos60": "--batch-size 256 --schedule cosine --epochs 60",
    "aug-cos60": "--augment --schedule cosine --epochs 60",
    "b0.06": "--beta 0.06",
    "cos-b0.06": "--schedule cosine --beta 0.06",
    "sobel": "--edge-loss sobel",
    "edge-none": "--edge-loss none",
    "l2-0.1": "--lambda2 0.1",
    "d10": "--latent-dim 10",
    "d20": "--latent-dim 20",
    "d80": "--latent-dim 80",
    "d160": "--latent-dim 160",
    "sgd-cos": "--optimizer sgd --lr 0.1 --momentum 0.9 --weight-decay 5e-4 --schedule cosine",
    "sgd0.05-cos": "--optimizer sgd --lr 0.05 --momentum 0.9 --weight-decay 5e-4 --schedule cosine",
    "sgd-cos-wd1e-4": "--optimizer sgd --lr 0.1 --momentum 0.9 --weight-decay 1e-4 --schedule cosine",
    "unit": "--linear-input unit",
    "cos-unit": "--schedule cosine --linear-input unit",
    "cos-b0.5-unit": "--schedule cosine --beta 0.5 --linear-input unit",
}


def recipe_row(dataset: str, results: Path) -> dict:
    """The recipe's own row, from the reproduction's seed-0 `full` CSAE-L result."""
    rid = f"{SHORT[dataset]}-csae-l-full-s0"
    row = json.loads((results / "rows" / f"{rid}.json").read_text())
    return {"variant": f"baseline ({rid})", "flags": "", "val_accuracy": round(row["val_accuracy"], 4),
            "test_accuracy": row["accuracy"], "command": row["command"][0], "date": row["date"][:10],
            "machine": row["machine"]}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", choices=sorted(SHORT), default="fashion_mnist", help="dataset (default: fashion_mnist)")
    p.add_argument("--data-dir", default="runs/tfds", help="TFDS data folder (default: runs/tfds)")
    p.add_argument("--manual-dir", help="folder of the original files, for offline preparation")
    p.add_argument("--variants", nargs="*", choices=sorted(VARIANTS), help="variants to run (default: all)")
    p.add_argument("--results", type=Path, default=ROOT / "docs/results/reproduction",
                   help="reproduction results folder: reads rows/, writes the CSV (default: docs/results/reproduction)")
    p.add_argument("--runs", type=Path, default=Path("runs/csae_l_sweep"),
                   help="run folders (default: runs/csae_l_sweep)")
    args = p.parse_args(argv)
    out = args.results / f"csae_l_sweep_{SHORT[args.dataset]}.csv"
    if not out.exists():
        with out.open("w", newline="") as f:
            writer = csv.DictWriter(f, FIELDS)
            writer.writeheader()
            writer.writerow(recipe_row(args.dataset, args.results))
    with out.open() as f:
        done = {r["variant"] for r in csv.DictReader(f)}
    where = machine()
    for name in list(VARIANTS) if args.variants is None else args.variants:
        if name in done:
            print(f"{name}: in {out.name} already, skipped", flush=True)
            continue
        flags = VARIANTS[name].split()
        run = args.runs / f"{SHORT[args.dataset]}-{name}"
        command = [sys.executable, "-m", "csae_tf.fit", "--dataset", args.dataset, "--data-dir", args.data_dir,
                   *(["--manual-dir", args.manual_dir] if args.manual_dir else []), *RECIPE, "--seed", "0",
                   *flags, "--output", str(run), "--verbose", "2"]
        shown = shlex.join(["python", *command[1:]])
        print(f"{name}: {shown}", flush=True)
        subprocess.run(command, check=True, cwd=ROOT)
        metrics = json.loads((ROOT / run / "metrics.json").read_text())
        with out.open("a", newline="") as f:
            csv.DictWriter(f, FIELDS).writerow({
                "variant": name, "flags": " ".join(flags), "val_accuracy": round(metrics["val_accuracy"], 4),
                "test_accuracy": round(metrics["test_accuracy"], 4), "command": shown,
                "date": datetime.date.today().isoformat(), "machine": where})
        print(f"{name}: validation {metrics['val_accuracy']:.4f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
