"""The GPU table: training images/s of CSAE-C by precision, XLA, batch size and replicas, then the time to 99%.

    bash benchmarks/gpu.sh                 # = python benchmarks/gpu.py --data-dir runs/tfds
    python benchmarks/gpu.py --seconds 10 --batch-sizes 128 512 4096 --output docs/results/gpu/gpu.json

Every row trains through the default fit path (`trainer.compile_model`, `data.training_pipeline`, uint8
batches padded and scaled on the device) for `--seconds` after a warm-up: float32, mixed_bfloat16 and
mixed_float16 (loss scaling), XLA on and off, batch 128 to 4,096, and 1 vs 2 replicas (MirroredStrategy)
when two GPUs are visible. Then `benchmarks/time_to_accuracy.py` with the fastest row's precision.

On a machine without a GPU it says so and runs the same table at tiny sizes on the CPU (batches 8 and 16
unless `--batch-sizes` says otherwise, one step per execution for 0.2 s per row, 256 training images, no
time-to-accuracy run), so that the script itself is checked anywhere; those figures say nothing about a GPU.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import csae_tf  # noqa: E402, F401  (first: it turns TensorFlow's oneDNN kernels on before TensorFlow loads)

# isort: split
import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

from csae_tf import data  # noqa: E402
from csae_tf.config import FitConfig  # noqa: E402
from csae_tf.models import build_model  # noqa: E402
from csae_tf.trainer import compile_model, set_precision  # noqa: E402

PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")


class _Clock(keras.callbacks.Callback):
    def __init__(self, seconds: float):
        super().__init__()
        self.seconds, self.stamps = seconds, []

    def on_train_batch_end(self, batch, logs=None):
        self.stamps.append(time.perf_counter())
        if self.stamps[-1] - self.stamps[0] >= self.seconds:
            self.model.stop_training = True


def build(info, precision: str, xla: bool, devices: list[str] | None, steps: int, steps_per_execution: int | None,
          arch: str = "conv"):
    """A compiled CSAE (CSAE-C unless `arch` says otherwise) of one configuration (the default fit path)."""
    cfg = FitConfig(arch=arch, lr=0.05, schedule="cosine", epochs=10**6, precision=precision,
                    jit_compile="on" if xla else "off")
    strategy = tf.distribute.MirroredStrategy(devices) if devices else tf.distribute.get_strategy()
    set_precision(precision)
    try:
        with strategy.scope():
            return compile_model(build_model(cfg, info.num_classes, info.image_shape), cfg, steps,
                                 steps_per_execution=steps_per_execution, strategy=strategy)
    finally:
        set_precision("float32")


def train_rate(model, arrays, info, batch: int, seconds: float) -> float:
    """Training images/s of `model` at `batch` (after the first execution, which traces)."""
    steps = max(len(arrays) // batch, 1)
    ds = data.training_pipeline(arrays, info, batch, seed=0, epochs=10**6)
    clock = _Clock(seconds)
    model.fit(ds, epochs=10**6, steps_per_epoch=steps - steps % model.steps_per_execution or steps, verbose=0,
              callbacks=[clock])
    executions = len(clock.stamps) - 1
    return executions * model.steps_per_execution * batch / (clock.stamps[-1] - clock.stamps[0])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--manual-dir", default=None)
    parser.add_argument("--seconds", type=float, default=8.0, help="timed seconds per row on a GPU")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=None,
                        help="batch sizes of the table (default: 128 512 1024 4096 on a GPU, 8 16 on the CPU)")
    parser.add_argument("--output", default=None, help="write the table as JSON here")
    parser.add_argument("--arch", choices=("conv", "linear"), default="conv",
                        help="the model of the table: CSAE-C (default) or CSAE-L, a quick check of the script")
    args = parser.parse_args(argv)

    gpus = tf.config.list_physical_devices("GPU")
    on_gpu = bool(gpus)
    if on_gpu:
        for gpu in gpus:
            tf.config.experimental.set_memory_growth(gpu, True)
        print(f"{len(gpus)} GPU(s): {', '.join(g.name for g in gpus)}", flush=True)
        batches, seconds, limit, spe = args.batch_sizes or [128, 512, 1024, 4096], args.seconds, None, None
    else:
        print("no GPU visible: running the same table at tiny sizes on the CPU, to check the script; "
              "these figures say nothing about a GPU", flush=True)
        batches, seconds, limit, spe = args.batch_sizes or [8, 16], 0.2, 256, 1
    builder = data.prepare("mnist", args.data_dir, args.manual_dir)
    info = data.describe(builder, args.arch)
    arrays = data.read_split(builder, "train", limit=limit)
    replicas = [None] + ([["GPU:0", "GPU:1"]] if len(gpus) >= 2 else [])
    rows = []
    for devices in replicas:
        for precision in PRECISIONS:
            for xla in (False, True):
                model = build(info, precision, xla, devices, max(len(arrays) // max(batches), 1), spe, args.arch)
                for batch in batches:
                    rate = train_rate(model, arrays, info, batch, seconds)
                    rows.append({"replicas": len(devices or [0]), "precision": precision, "xla": xla,
                                 "batch": batch, "images_per_s": round(rate, 1)})
                    print(f"| {rows[-1]['replicas']} | {precision} | {'on' if xla else 'off'} | {batch} | "
                          f"{rate:.0f} |", flush=True)
    best = max(rows, key=lambda r: r["images_per_s"])
    result = {"device": "GPU" if on_gpu else "CPU (no GPU visible; tiny sizes)", "arch": args.arch, "rows": rows,
              "fastest": best, "date": time.strftime("%Y-%m-%d %H:%M")}
    if on_gpu:
        command = [sys.executable, str(ROOT / "benchmarks" / "time_to_accuracy.py")]
        for flag, value in (("--data-dir", args.data_dir), ("--manual-dir", args.manual_dir)):
            if value:
                command += [flag, value]
        command += ["--", "--precision", best["precision"], "--jit-compile", "on" if best["xla"] else "off"]
        done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
        result["time_to_accuracy"] = done.stdout[done.stdout.find("{"):] if done.returncode == 0 else done.stderr
        print(result["time_to_accuracy"], flush=True)
    print(f"fastest: {best}")
    if args.output:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
