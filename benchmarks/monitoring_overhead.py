"""Cost of the TensorBoard monitoring: `--image-every 1` against `--image-every 0`, runs interleaved.

    python benchmarks/monitoring_overhead.py --data-dir runs/tfds --manual-dir ../shared/data/mnist \
        --train-limit 10000 --test-limit 2500 --epochs 3 --repeats 3

Prints, per setting, the mean training seconds per epoch (history.csv `seconds`: the epoch's steps and
validation, before the image callback runs), the whole `model.fit` time (metrics.json `train_seconds`:
everything, projector and image epochs included) and the image callback's own time per epoch
(TensorBoard scalar `image_summary_seconds`).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def image_seconds(logdir: Path) -> list[float]:
    import tensorflow as tf
    from tensorboard.backend.event_processing import event_accumulator

    acc = event_accumulator.EventAccumulator(str(logdir / "images"), size_guidance={"tensors": 0})
    acc.Reload()
    return [float(tf.make_ndarray(e.tensor_proto)) for e in acc.Tensors("image_summary_seconds")]


def one_run(args, image_every: int, out: Path) -> dict:
    command = [sys.executable, "-m", "csae_tf.fit", "--dataset", "mnist", "--data-dir", args.data_dir,
               "--manual-dir", args.manual_dir, "--train-limit", str(args.train_limit), "--test-limit",
               str(args.test_limit), "--epochs", str(args.epochs), "--batch-size", "128", "--verbose", "0",
               "--image-every", str(image_every), "--output", str(out), "--overwrite"]
    subprocess.run(command, cwd=ROOT, check=True, timeout=3600, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    epochs = [float(r["seconds"]) for r in csv.DictReader(open(out / "history.csv"))]
    return {"epoch": statistics.mean(epochs[1:] or epochs),  # the first epoch includes tracing
            "fit": json.loads((out / "metrics.json").read_text())["train_seconds"],
            "images": statistics.mean(image_seconds(out / "logs")) if image_every else 0.0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--manual-dir", required=True)
    parser.add_argument("--train-limit", type=int, default=10000)
    parser.add_argument("--test-limit", type=int, default=2500)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    results = {1: [], 0: []}
    with tempfile.TemporaryDirectory() as tmp:
        for repeat in range(args.repeats):
            for every in (1, 0) if repeat % 2 == 0 else (0, 1):
                result = one_run(args, every, Path(tmp) / f"every{every}")
                results[every].append(result)
                print(f"repeat {repeat} image_every={every}: {result}", flush=True)
    print("| --image-every | train s/epoch (steps + validation) | model.fit s | image callback s/epoch |")
    print("| --- | --- | --- | --- |")
    for every in (0, 1):
        rows = results[every]
        cells = [f"{statistics.mean(r[k] for r in rows):.2f} ± {statistics.pstdev(r[k] for r in rows):.2f}"
                 for k in ("epoch", "fit", "images")]
        print(f"| {every} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
