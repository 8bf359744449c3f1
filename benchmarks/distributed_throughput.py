"""Training images/s of `python -m csae_tf.fit` under three tf.distribute set-ups, measured in one run.

    python benchmarks/distributed_throughput.py --data-dir runs/tfds --manual-dir ../shared/data/mnist

default strategy (1 device) vs MirroredStrategy on 2 logical CPU devices vs MultiWorkerMirroredStrategy
with 2 local worker processes on 127.0.0.1, all with the same global batch. Each set-up trains
`--epochs` epochs through the real command; the figure is its fastest epoch after the first (which
includes tracing; on a shared machine the fastest epoch is the one least slowed by other work),
timed by the run's own `seconds` column of history.csv (training plus a validation pass over
`--test-limit` images). Overhead = 1 - images/s / images/s of the default strategy. On one
machine the replicas share its cores, so the goal here is correctness at low overhead; speed-up
needs real GPUs or machines. On a GPU machine, `--setups default,mirrored-gpu` compares 1 GPU
under the default strategy with MirroredStrategy over all visible GPUs.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SETUPS = {
    "default": ["--strategy", "default"],
    "mirrored-2cpu": ["--strategy", "mirrored", "--devices", "CPU:0,CPU:1"],
    "multi-worker-2": ["--strategy", "multi-worker"],
    "mirrored-gpu": ["--strategy", "mirrored"],
}


def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def run_setup(name: str, common: list[str], out: Path, timeout: float) -> dict:
    command = [sys.executable, "-m", "csae_tf.fit", *common, *SETUPS[name], "--output", str(out)]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    workers = 2 if name.startswith("multi-worker") else 1
    cluster = {"worker": [f"127.0.0.1:{p}" for p in free_ports(workers)]}
    procs = []
    start = time.time()
    for i in range(workers):
        task_env = dict(env)
        if workers > 1:
            task_env["TF_CONFIG"] = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}})
        log = open(out.parent / f"{name}.w{i}.log", "w")
        procs.append(subprocess.Popen(command, cwd=ROOT, env=task_env, stdout=log, stderr=subprocess.STDOUT,
                                      start_new_session=True))
    try:
        for proc in procs:
            proc.wait(max(1.0, timeout - (time.time() - start)))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
    if any(p.returncode for p in procs):
        raise RuntimeError(f"{name} failed: see {out.parent / (name + '.w0.log')}")
    rows = list(csv.DictReader(open(out / "history.csv")))
    config = json.loads((out / "config.json").read_text())
    metrics = json.loads((out / "metrics.json").read_text())
    steps = metrics["num_train"] // config["batch_size"]
    epoch_seconds = [round(float(r["seconds"]), 2) for r in rows]
    seconds = min(epoch_seconds[1:] or epoch_seconds)
    return {"setup": name, "images_per_s": steps * config["batch_size"] / seconds, "epoch_seconds": seconds,
            "all_epoch_seconds": epoch_seconds, "test_accuracy": metrics["test_accuracy"]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--manual-dir")
    parser.add_argument("--train-limit", type=int, help="first N training images (default: all 60000)")
    parser.add_argument("--test-limit", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=128, help="global batch, the same for every set-up")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--setups", default="default,mirrored-2cpu,multi-worker-2")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds per set-up")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args(argv)

    common = ["--dataset", "mnist", "--data-dir", args.data_dir, "--batch-size", str(args.batch_size),
              "--epochs", str(args.epochs), "--test-limit", str(args.test_limit), "--verbose", "2",
              "--schedule", "constant", "--lr", "0.05", "--image-every", "0"]
    if args.manual_dir:
        common += ["--manual-dir", args.manual_dir]
    if args.train_limit:
        common += ["--train-limit", str(args.train_limit)]
    results = []
    with tempfile.TemporaryDirectory(prefix="csae-bench-") as tmp:
        for name in args.setups.split(","):
            result = run_setup(name, common, Path(tmp) / name, args.timeout)
            results.append(result)
            print(json.dumps(result), flush=True)
    base = results[0]["images_per_s"]
    print(f"\n{'set-up':<16} {'images/s':>9} {'overhead':>9} {'epoch s':>8} {'test acc':>9}")
    for r in results:
        r["overhead"] = 1 - r["images_per_s"] / base
        print(f"{r['setup']:<16} {r['images_per_s']:>9.0f} {r['overhead']:>8.1%} {r['epoch_seconds']:>8.1f} "
              f"{r['test_accuracy']:>9.4f}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
