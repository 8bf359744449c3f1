"""Where a CSAE-C training step leaves the cores idle: the whole step against its parts, in one process.

    python benchmarks/step_parts.py --data-dir runs/tfds --manual-dir ../shared/data/mnist --batch 128

Each variant runs `--steps` steps on one fixed batch inside one tf.function, interleaved over `--rounds`
(A B C …, then … C B A), and prints images/s and the process's CPU use (CPU seconds ÷ wall ÷ cores):
- step: `CSAE.train_step` as `fit` runs it (losses, coupled decay, SGD with momentum, trackers);
- keras-sgd: the forward and backward pass, the decay and Keras' SGD update, no trackers;
- fused-sgd: the same with one `ResourceApplyKerasMomentum` kernel per variable instead of Keras'
  elementwise update (the same arithmetic);
- gradients: the forward and backward pass alone. Nothing is written between its steps, so TensorFlow
  may overlap one step's tail with the next one's head: the gap to `step` bounds what better overlap
  of a step's start and end could gain.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import csae_tf  # noqa: E402, F401  (first: it turns TensorFlow's oneDNN kernels on before TensorFlow loads)

# isort: split
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from throughput import load_mnist  # noqa: E402

from csae_tf import pedcc  # noqa: E402
from csae_tf.config import FitConfig  # noqa: E402
from csae_tf.models import build_model  # noqa: E402
from csae_tf.trainer import compile_model  # noqa: E402


def variants(model, x, y, steps: int, weight_decay: float) -> dict:
    """The tf.functions to time, each running `steps` steps on the batch (x, y)."""
    opt, variables = model.optimizer, model.trainable_variables

    def gradients(decay: bool):
        images = model.preprocess(x)
        with tf.GradientTape() as tape:
            z = model.encoder(images, training=True)
            reconstruction = model.decoder(model.noise(z, training=True, seed=model._step_seed(0)), training=True)
            loss = tf.nn.compute_average_loss(model.compute_losses(images, y, z, reconstruction)["loss"])
        grads = tape.gradient(loss, variables)
        return [g + weight_decay * v for g, v in zip(grads, variables)] if decay else grads

    @tf.function
    def step():
        for _ in tf.range(steps):
            model.train_step((x, y))

    @tf.function
    def keras_sgd():
        for _ in tf.range(steps):
            opt.apply_gradients(zip(gradients(True), variables))

    @tf.function
    def fused_sgd():
        for _ in tf.range(steps):
            grads, lr = gradients(True), tf.cast(opt.learning_rate, tf.float32)
            for g, v in zip(grads, variables):
                m = opt.momentums[opt._get_variable_index(v)]
                tf.raw_ops.ResourceApplyKerasMomentum(var=v.value.handle, accum=m.value.handle, lr=lr, grad=g,
                                                      momentum=tf.constant(opt.momentum, tf.float32))
            opt.iterations.assign_add(1)

    @tf.function
    def gradients_only():
        total = tf.constant(0.0)
        for _ in tf.range(steps):
            total += tf.add_n([tf.reduce_sum(g[..., :1]) for g in gradients(False)])
        return total

    return {"step": step, "keras-sgd": keras_sgd, "fused-sgd": fused_sgd, "gradients": gradients_only}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default="runs/tfds")
    parser.add_argument("--manual-dir", default="../shared/data/mnist")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--steps", type=int, default=32, help="steps per timed call")
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args(argv)
    info, images, labels, _ = load_mnist(args.data_dir, args.manual_dir)
    cfg = FitConfig(batch_size=args.batch, lr=0.05, schedule="cosine", epochs=1000)
    model = build_model(cfg, 10, info.image_shape, pedcc.generate(10, cfg.latent_dim, seed=0))
    compile_model(model, cfg, steps_per_epoch=400)
    x, y = tf.constant(images[: args.batch]), tf.constant(labels[: args.batch].astype(np.int32))
    fns = variants(model, x, y, args.steps, cfg.weight_decay)
    for fn in fns.values():  # trace and warm up
        fn()
    rates: dict[str, list[float]] = {name: [] for name in fns}
    cpu: dict[str, list[float]] = {name: [] for name in fns}
    for r in range(args.rounds):
        for name in list(fns) if r % 2 == 0 else list(fns)[::-1]:
            c, t = time.process_time(), time.perf_counter()
            fns[name]()
            wall = time.perf_counter() - t
            rates[name].append(args.steps * args.batch / wall)
            cpu[name].append((time.process_time() - c) / wall / (os.cpu_count() or 1))
    print(f"batch {args.batch}, {args.steps} steps per call, {args.rounds} rounds")
    print("| variant | images/s (rounds) | median | CPU use |\n|---|---|---|---|")
    for name in fns:
        shown = ", ".join(f"{v:.0f}" for v in rates[name])
        print(f"| {name} | {shown} | {statistics.median(rates[name]):.0f} | {statistics.median(cpu[name]):.0%} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
