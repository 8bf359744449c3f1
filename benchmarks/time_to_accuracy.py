"""Wall-clock seconds of a whole `python -m csae_tf.fit` run, from process start to its final test accuracy.

    python benchmarks/time_to_accuracy.py --data-dir runs/tfds --manual-dir ../shared/data/mnist \
        --output docs/results/time_to_accuracy/fast.json
    python benchmarks/time_to_accuracy.py ... -- --precision mixed_bfloat16   # extra fit flags after --
    python benchmarks/time_to_accuracy.py --torch --manual-dir ../shared/data/mnist   # the PyTorch reference

The recipe is a plain `fit` command (default: `--preset fast`, the one-cycle recipe; flags after `--` are
added), run as its own process and timed from its start (imports, data, model, training, the final
save and evaluation included). Nothing is selected on the test split: the run trains its fixed budget
and `metrics.json` gives the test accuracy, compared with `--target`. The per-epoch seconds of
`history.csv` show whether any epoch stalls. The exact command is printed and saved with the result.
`--torch` times the same recipe (epochs, peak lr, one-cycle, batch 128, the same 55,000 images) in the
PyTorch reference (`benchmarks/pytorch_reference.py --train`, eager, channels-last), also from its
process start; it reads the original MNIST files from `--manual-dir`.
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


def fit_command(args, output: Path, extra: list[str]) -> list[str]:
    command = [sys.executable, "-m", "csae_tf.fit", "--dataset", "mnist", "--preset", args.preset,
               "--output", str(output), "--overwrite", "--verbose", "2", "--seed", str(args.seed)]
    for flag, value in (("--data-dir", args.data_dir), ("--manual-dir", args.manual_dir),
                        ("--train-limit", args.train_limit), ("--test-limit", args.test_limit)):
        if value is not None:
            command += [flag, str(value)]
    return command + extra


def write_report(report: dict, output: str | None) -> int:
    """Print the report as JSON and, with `output`, write it there."""
    print(json.dumps(report, indent=2))
    if output:
        Path(output).parent.mkdir(parents=True, exist_ok=True)
        Path(output).write_text(json.dumps(report, indent=2) + "\n")
    return 0


def time_torch(args, extra: list[str]) -> int:
    """The PyTorch reference on the preset's recipe, timed from its process start."""
    sys.path.insert(0, str(ROOT))
    from csae_tf.config import PRESETS

    recipe = PRESETS[args.preset]
    command = [sys.executable, str(ROOT / "benchmarks" / "pytorch_reference.py"), "--train", "--channels-last",
               "--mnist", args.manual_dir or "../shared/data/mnist", "--seed", str(args.seed),
               "--epochs", str(args.epochs or recipe["epochs"]), "--lr", str(recipe["lr"]),
               "--warmup-epochs", str(recipe["warmup_epochs"]), *extra]
    shown = "python " + " ".join(shlex.quote(str(Path(c).relative_to(ROOT)) if c.startswith(str(ROOT)) else c)
                                 for c in command[1:])
    print(shown, flush=True)
    start = time.time()
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    seconds = time.time() - start
    if done.returncode:
        print(done.stderr[-2000:], file=sys.stderr)
        return done.returncode
    result = json.loads(done.stdout.strip().splitlines()[-1])
    report = {"command": shown, "seconds_from_process_start": round(seconds, 1),
              "test_accuracy": result["test_accuracy"], "target": args.target,
              "reached": result["test_accuracy"] >= args.target, "epochs": result["epochs"],
              "torch": result["torch"], "threads": result["threads"], "date": time.strftime("%Y-%m-%d %H:%M")}
    return write_report(report, args.output)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--manual-dir", default=None)
    parser.add_argument("--preset", default="fast", help="the fit preset of the recipe")
    parser.add_argument("--target", type=float, default=0.99)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--train-limit", type=int, default=None, help="first N training images (smoke tests)")
    parser.add_argument("--test-limit", type=int, default=None, help="first N test images (smoke tests)")
    parser.add_argument("--output", default=None, help="write the result as JSON here")
    parser.add_argument("--torch", action="store_true", help="time the PyTorch reference instead (eager, "
                        "channels-last; add --bf16 after -- for bf16 autocast)")
    parser.add_argument("--epochs", type=int, default=None, help="epochs (default: the preset's)")
    args = parser.parse_args(argv[: argv.index("--")] if "--" in argv else argv)
    if args.torch:
        return time_torch(args, extra)
    if args.epochs is not None:
        extra = ["--epochs", str(args.epochs), *extra]

    run_dir = Path(tempfile.mkdtemp(prefix="csae_tta_")) / "run"
    command = fit_command(args, run_dir, extra)
    shown = "python -m csae_tf.fit " + " ".join(shlex.quote(c) for c in command[3:])
    print(shown, flush=True)
    start = time.time()
    done = subprocess.run(command, cwd=ROOT, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    seconds = time.time() - start
    if done.returncode:
        print(f"the fit command failed with status {done.returncode}", file=sys.stderr)
        return done.returncode
    metrics = json.loads((run_dir / "metrics.json").read_text())
    with open(run_dir / "history.csv", newline="") as f:
        epochs = [{"epoch": int(r["epoch"]) + 1, "seconds": round(float(r["seconds"]), 1),
                   "val_accuracy": round(float(r["val_accuracy"]), 4) if r.get("val_accuracy") else None}
                  for r in csv.DictReader(f)]
    report = {
        "command": shown, "seconds_from_process_start": round(seconds, 1),
        "train_seconds": metrics["train_seconds"], "test_accuracy": metrics["test_accuracy"],
        "val_accuracy": metrics.get("val_accuracy"), "target": args.target,
        "reached": metrics["test_accuracy"] >= args.target, "epochs": epochs,
        "date": time.strftime("%Y-%m-%d %H:%M"),
    }
    return write_report(report, args.output)


if __name__ == "__main__":
    sys.exit(main())
