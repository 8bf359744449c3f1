"""Latency and throughput of the exported `classify` signature, through `tf.saved_model.load` (issue 6).

    python -m export.saved_model --run runs/mnist --output exported/csae
    python benchmarks/serving_latency.py --model exported/csae/1

Loads the SavedModel the way any TensorFlow program would (this script never imports csae_tf),
then times `signatures["classify"]` on uint8 28x28 MNIST-sized batches: latency at batch 1
(p50 / p99 over --calls calls, after --warmup calls) and throughput at batch --batch (images/s
over --seconds). The pixel values do not change the work done, so the batches are random.
Targets (issue 6): p50 < 5 ms, >= 3,000 images/s. Prints one line per figure, then a JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import csae_tf  # noqa: F401  (first: it turns TensorFlow's oneDNN kernels on before TensorFlow loads)

# isort: split
import numpy as np
import tensorflow as tf


def latency_ms(fn, images: tf.Tensor, calls: int, warmup: int) -> tuple[np.ndarray, np.ndarray]:
    """Wall and CPU (all threads of this process) time of each of `calls` calls, in milliseconds.

    Outputs are fetched to numpy, as a client would.
    """
    for _ in range(warmup):
        fn(images=images)["label"].numpy()
    wall, cpu = np.empty(calls), np.empty(calls)
    for i in range(calls):
        start, cpu_start = time.perf_counter(), time.process_time()
        fn(images=images)["label"].numpy()
        wall[i], cpu[i] = time.perf_counter() - start, time.process_time() - cpu_start
    return wall * 1e3, cpu * 1e3


def throughput(fn, images: tf.Tensor, seconds: float, warmup: int = 2) -> tuple[float, float, int]:
    """(images per wall-clock second, images per CPU-second of this process, batches) over >= `seconds`.

    The CPU-time rate does not depend on how much of the machine other processes take.
    """
    for _ in range(warmup):
        fn(images=images)["label"].numpy()
    batches, start, cpu_start = 0, time.perf_counter(), time.process_time()
    while True:
        fn(images=images)["label"].numpy()
        batches += 1
        elapsed = time.perf_counter() - start
        if elapsed >= seconds and batches >= 3:
            n = batches * int(images.shape[0])
            return n / elapsed, n / (time.process_time() - cpu_start), batches


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--model", required=True, help="SavedModel folder (EXPORT_BASE/VERSION)")
    parser.add_argument("--signature", default="classify")
    parser.add_argument("--size", type=int, default=28, help="image side sent by the client (28 or 32 for MNIST)")
    parser.add_argument("--channels", type=int, default=1)
    parser.add_argument("--calls", type=int, default=2000, help="timed batch-1 calls")
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--batch", type=int, default=256, help="batch size of the throughput run")
    parser.add_argument("--seconds", type=float, default=10.0, help="duration of the throughput run")
    args = parser.parse_args(argv)

    fn = tf.saved_model.load(args.model).signatures[args.signature]
    rng = np.random.default_rng(0)
    shape = (args.size, args.size, args.channels)
    one = tf.constant(rng.integers(0, 256, (1, *shape), dtype=np.uint8))
    batch = tf.constant(rng.integers(0, 256, (args.batch, *shape), dtype=np.uint8))
    load_before = os.getloadavg()[0]
    times, cpu_times = latency_ms(fn, one, args.calls, args.warmup)
    rate, cpu_rate, batches = throughput(fn, batch, args.seconds)
    result = {
        "signature": args.signature, "image": list(shape), "calls": args.calls,
        "p50_ms": round(float(np.percentile(times, 50)), 3), "p99_ms": round(float(np.percentile(times, 99)), 3),
        "mean_ms": round(float(times.mean()), 3), "cpu_p50_ms": round(float(np.percentile(cpu_times, 50)), 3),
        "batch": args.batch, "batches": batches,
        "images_per_s": round(rate, 1), "images_per_cpu_s": round(cpu_rate, 1),
        "cpus": os.cpu_count(), "machine": platform.processor() or platform.machine(),
        "load_avg_1min": [round(load_before, 2), round(os.getloadavg()[0], 2)], "tensorflow": tf.__version__,
    }
    print(f"{args.signature} batch 1: p50 {result['p50_ms']:.2f} ms, p99 {result['p99_ms']:.2f} ms "
          f"over {args.calls} calls (target p50 < 5 ms); CPU time per call p50 {result['cpu_p50_ms']:.2f} ms")
    print(f"{args.signature} batch {args.batch}: {rate:,.0f} images/s over {batches} batches "
          f"(target >= 3,000 images/s); {cpu_rate:,.0f} images per CPU-second of this process")
    print(f"load average (1 min) before / after: {result['load_avg_1min'][0]} / {result['load_avg_1min'][1]} "
          f"on {result['cpus']} CPUs")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
