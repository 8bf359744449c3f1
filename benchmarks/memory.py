"""Peak resident memory of one CSAE-C MNIST training epoch through `python -m csae_tf.fit`, per batch size.

    python benchmarks/memory.py --data-dir runs/tfds --manual-dir ../shared/data/mnist --batch-sizes 128 512

Each batch size runs in its own child process (1 epoch on the full 60,000 images, then the run's
evaluation and saving, as `fit` does); the figure is the child's peak RSS from `wait4`'s rusage.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def peak_rss(batch: int, data_dir, manual_dir, extra=()) -> dict:
    with tempfile.TemporaryDirectory() as out:
        cmd = [sys.executable, "-m", "csae_tf.fit", "--dataset", "mnist", "--epochs", "1", "--batch-size", str(batch),
               "--output", out, "--verbose", "0", "--image-every", "0", *extra]
        if data_dir:
            cmd += ["--data-dir", str(data_dir)]
        if manual_dir:
            cmd += ["--manual-dir", str(manual_dir)]
        start = time.time()
        proc = subprocess.Popen(cmd, cwd=ROOT, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        output = proc.stdout.read().decode(errors="replace")
        if proc.returncode:
            raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{output[-2000:]}")
        metrics = json.loads((Path(out) / "metrics.json").read_text())
    return {"batch_size": batch, "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),
            "wall_seconds": round(time.time() - start, 1), "train_seconds": metrics.get("train_seconds"),
            "test_accuracy": metrics.get("test_accuracy")}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--manual-dir", default=None)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[128, 512])
    parser.add_argument("--output", default=None, help="write the results as JSON here")
    args = parser.parse_args(argv)
    results = []
    for batch in args.batch_sizes:
        results.append(peak_rss(batch, args.data_dir, args.manual_dir))
        print(json.dumps(results[-1]), flush=True)
    report = {"command": "python benchmarks/memory.py " + " ".join(sys.argv[1:] if argv is None else argv),
              "date": time.strftime("%Y-%m-%d %H:%M"), "results": results}
    if args.output:
        Path(args.output).write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
