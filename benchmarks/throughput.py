"""Training and inference images/s of CSAE-C: csae-tf (through `model.fit`) vs the PyTorch reference.

    pip install -r benchmarks/requirements.txt
    python benchmarks/throughput.py --data-dir runs/tfds --manual-dir ../shared/data/mnist \
        --batch-sizes 128 512 --rounds 3 --seconds 20 --output docs/throughput.json

Contenders (`--contenders`, comma-separated):
- tf: csae-tf's default `python -m csae_tf.fit` path: the trainer's `compile_model` (steps per execution
  chosen automatically) and `data.training_pipeline` over in-memory MNIST, through `model.fit`;
  tf-spe1: the same, one step per execution; tf-xla: with jit_compile=True; tf-bf16: `--precision
  mixed_bfloat16` (`--jit-compile auto`: XLA on CPUs without AVX-512); tf-f16: `--precision mixed_float16`
  (the same); tf-bf16-noxla, tf-f16-noxla: with `--jit-compile off` (TensorFlow's own kernels: Eigen's slow
  fallback on CPUs without AVX-512; one step per execution, as a step can take seconds; not in the default
  set).
- torch-cf, torch-cl, torch-compile: benchmarks/pytorch_reference.py in eager mode channels-first (as
  the authors' code runs), eager channels-last, and `torch.compile` (channels-first), fed random
  batches of the same preprocessed in-memory tensors; torch-cl-bf16: channels-last under
  `torch.autocast("cpu", dtype=torch.bfloat16)`.

Every round runs every contender for >= --seconds of timed steps (after a warm-up), in alternating
order (A B C, then C B A, ...), so that slow drifts of a shared machine's load hit all of them alike.
The table gives medians over rounds and ratios to csae-tf. Each round also measures the float32
matmul peak (tf.matmul and numpy, 2048^2) for the FLOP/s fraction; the training FLOPs per image are
3x the forward FLOPs counted from the layer shapes (`forward_flops`). Inference: images/s of
`classify` at batch 512 (TF: a tf.function of `CSAE.classify`; PyTorch: eval mode, inference_mode).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import csae_tf  # noqa: E402, F401  (first: it turns TensorFlow's oneDNN kernels on before TensorFlow loads)

# isort: split
import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from csae_tf import data, pedcc  # noqa: E402
from csae_tf.config import FitConfig  # noqa: E402
from csae_tf.models import build_model  # noqa: E402
from csae_tf.trainer import compile_model, set_precision  # noqa: E402

ALL = ("tf", "tf-spe1", "tf-xla", "tf-bf16", "tf-f16", "tf-bf16-noxla", "tf-f16-noxla", "torch-cf", "torch-cl",
       "torch-compile", "torch-cl-bf16")
PRECISION = {"tf-bf16": "mixed_bfloat16", "tf-bf16-noxla": "mixed_bfloat16", "tf-f16": "mixed_float16",
             "tf-f16-noxla": "mixed_float16"}


def forward_flops(image_side: int = 32, channels: int = 1, latent_dim: int = 40) -> int:
    """Multiply-adds x 2 of one CSAE-C forward pass (encoder + decoder), from the layer shapes (SPEC section 2)."""
    macs, side, cin = 0, image_side - 2, channels
    macs += side * side * 16 * 9 * cin  # stem conv3x3 valid
    cin = 16
    for cout in (32, 64, 64):  # residual blocks, stride 2
        side = math.ceil(side / 2)
        macs += side * side * cout * 9 * cin + side * side * cout * 9 * cout + side * side * cout * cin
        cin = cout
    macs += side * side * cin * latent_dim  # dense to z
    macs += latent_dim * side * side * 64  # dense back
    cin = 64
    for cout in (64, 32, 16):  # decode blocks: transposed conv 2x2 s2 to cin/2, conv3x3
        half = max(1, cin // 2)
        macs += side * side * cin * half * 4
        side *= 2
        macs += side * side * cout * 9 * half
        cin = cout
    macs += side * side * cin * channels  # conv1x1 to the image
    return 2 * macs


def matmul_peak(seconds: float = 2.0, size: int = 2048) -> dict:
    """float32 GFLOP/s of tf.matmul and numpy on size x size matrices (best of the repetitions)."""
    a = np.random.default_rng(0).standard_normal((size, size), dtype=np.float32)
    out = {}
    ta = tf.constant(a)
    for name, fn in (("tf", lambda: tf.matmul(ta, ta).numpy()), ("numpy", lambda: a @ a)):
        fn()
        best, start = math.inf, time.perf_counter()
        while time.perf_counter() - start < seconds:
            t = time.perf_counter()
            fn()
            best = min(best, time.perf_counter() - t)
        out[name] = 2 * size**3 / best / 1e9
    return out


def load_mnist(data_dir, manual_dir):
    builder = data.prepare("mnist", data_dir, manual_dir)
    info = data.describe(builder, "conv")
    images, labels = data.as_numpy(data.load_split(builder, "train").batch(10_000))
    test_images, _ = data.as_numpy(data.load_split(builder, "test").batch(10_000))
    return info, images, labels, test_images


class _Clock(keras.callbacks.Callback):
    """Timestamps of execution ends (step counts); stops `fit` once `seconds` have passed since the first one."""

    def __init__(self, seconds: float):
        super().__init__()
        self.seconds, self.stamps = seconds, []

    def on_train_batch_end(self, batch, logs=None):
        self.stamps.append((batch, time.perf_counter()))
        if self.stamps[-1][1] - self.stamps[0][1] >= self.seconds:
            self.model.stop_training = True


class TFContender:
    def __init__(self, info, images, labels, test_images, batch: int, spe: int | None, jit: str = "auto",
                 precision: str = "float32"):
        cfg = FitConfig(batch_size=batch, lr=0.05, schedule="cosine", epochs=1000, precision=precision,
                        jit_compile=jit)
        self.batch, self.info = batch, info
        arrays = data.Arrays(images, labels.astype(np.int32))
        steps = len(images) // batch
        set_precision(precision)
        try:
            self.model = build_model(cfg, 10, info.image_shape, pedcc.generate(10, cfg.latent_dim, seed=0))
            compile_model(self.model, cfg, steps, steps_per_execution=spe)
        finally:
            set_precision("float32")
        self.steps = steps
        self.train = data.training_pipeline(arrays, info, batch, seed=0, epochs=10**6)
        self.test = tf.constant(data.to_model_input(test_images[:512], info.image_shape))
        self.classify = tf.function(self.model.classify, jit_compile=self.model.jit_compile is True)

    def train_rate(self, seconds: float) -> float:
        clock = _Clock(seconds)
        self.model.fit(self.train, epochs=10**6, steps_per_epoch=self.steps, verbose=0, callbacks=[clock])
        t0, t1 = clock.stamps[0][1], clock.stamps[-1][1]
        done = (len(clock.stamps) - 1) * self.model.steps_per_execution
        return done * self.batch / (t1 - t0)

    def infer_rate(self, seconds: float) -> float:
        self.classify(self.test)[0].numpy()
        count, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            self.classify(self.test)[0].numpy()
            count += 1
        return count * 512 / (time.perf_counter() - start)


class TorchContender:
    def __init__(self, x, y, test_x, batch: int, channels_last: bool, compile: bool, bfloat16: bool = False):
        import pytorch_reference as ref
        import torch

        self.torch, self.ref = torch, ref
        torch.manual_seed(0)
        centroids = torch.from_numpy(pedcc.generate(10, 40, seed=0))
        self.model = ref.CSAEC(centroids)
        self.step, _ = ref.make_trainer(self.model, compile=compile, channels_last=channels_last, bfloat16=bfloat16)
        self.x, self.y, self.batch, self.channels_last = x, y, batch, channels_last
        self.test_x = test_x[:512].contiguous(memory_format=torch.channels_last) if channels_last else test_x[:512]
        self.generator = torch.Generator().manual_seed(0)

    def _batch(self):
        idx = self.torch.randint(0, len(self.x), (self.batch,), generator=self.generator)
        return self.x[idx], self.y[idx]

    def train_rate(self, seconds: float) -> float:
        self.model.train()
        self.step(*self._batch())
        count, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            self.step(*self._batch())
            count += 1
        return count * self.batch / (time.perf_counter() - start)

    def infer_rate(self, seconds: float) -> float:
        self.model.eval()
        self.ref.classify(self.model, self.test_x)
        count, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            self.ref.classify(self.model, self.test_x)
            count += 1
        self.model.train()
        return count * 512 / (time.perf_counter() - start)


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} logical cores, {platform.system()} {platform.release()}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--manual-dir", default=None)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[128, 512])
    parser.add_argument("--contenders", default=",".join(c for c in ALL if not c.endswith("-noxla")))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=20.0, help="timed seconds per contender per round")
    parser.add_argument("--warmup", type=float, default=5.0, help="untimed seconds before the first round")
    parser.add_argument("--infer-seconds", type=float, default=10.0)
    parser.add_argument("--torch-threads", type=int, default=None,
                        help="torch.set_num_threads (default: PyTorch's, one per core)")
    parser.add_argument("--output", default=None, help="write the raw figures and the table to this JSON file")
    args = parser.parse_args(argv)
    names = [c for c in args.contenders.split(",") if c]
    unknown = set(names) - set(ALL)
    if unknown:
        parser.error(f"unknown contenders {sorted(unknown)}; choose from {ALL}")

    info, images, labels, test_images = load_mnist(args.data_dir, args.manual_dir)
    x = data.to_model_input(images, info.image_shape).numpy()
    tx = data.to_model_input(test_images[:512], info.image_shape).numpy()
    torch_x = torch_y = torch_tx = None
    if any(n.startswith("torch") for n in names):
        import torch

        if args.torch_threads:
            torch.set_num_threads(args.torch_threads)
        torch_x = torch.from_numpy(x.transpose(0, 3, 1, 2).copy())
        torch_y = torch.from_numpy(labels.astype(np.int64))
        torch_tx = torch.from_numpy(tx.transpose(0, 3, 1, 2).copy())
        print(f"torch {torch.__version__}, {torch.get_num_threads()} threads", flush=True)
    print(f"tensorflow {tf.__version__}, keras {keras.__version__}; {machine()}", flush=True)

    def make(name, batch):
        if name.startswith("tf"):
            noxla = name.endswith("-noxla")
            return TFContender(info, images, labels, test_images, batch, 1 if name == "tf-spe1" or noxla else None,
                               "on" if name == "tf-xla" else "off" if noxla else "auto",
                               PRECISION.get(name, "float32"))
        return TorchContender(torch_x, torch_y, torch_tx, batch, name in ("torch-cl", "torch-cl-bf16"),
                              name == "torch-compile", bfloat16=name == "torch-cl-bf16")

    flops = 3 * forward_flops()
    results = {"machine": machine(), "date": time.strftime("%Y-%m-%d %H:%M"), "train_flops_per_image": flops,
               "command": "python benchmarks/throughput.py " + " ".join(sys.argv[1:] if argv is None else argv),
               "loadavg_start": os.getloadavg(), "train": {}, "infer": {}, "peak": []}
    for batch in args.batch_sizes:
        contenders = {}
        for name in names:
            start = time.perf_counter()
            contenders[name] = make(name, batch)
            contenders[name].train_rate(args.warmup)
            print(f"batch {batch} {name}: built and warmed up in {time.perf_counter() - start:.0f} s", flush=True)
        rates = {name: [] for name in names}
        for r in range(args.rounds):
            results["peak"].append(matmul_peak())
            order = names if r % 2 == 0 else names[::-1]
            for name in order:
                rates[name].append(contenders[name].train_rate(args.seconds))
                print(f"batch {batch} round {r + 1} {name}: {rates[name][-1]:.0f} images/s", flush=True)
        results["train"][str(batch)] = rates
        if batch == 512:
            infer = {name: [] for name in names}
            for r in range(args.rounds):
                for name in names if r % 2 == 0 else names[::-1]:
                    infer[name].append(contenders[name].infer_rate(args.infer_seconds))
                    print(f"inference round {r + 1} {name}: {infer[name][-1]:.0f} images/s", flush=True)
            results["infer"]["512"] = infer
        del contenders
    results["loadavg_end"] = os.getloadavg()
    peak = statistics.median(max(p.values()) for p in results["peak"])
    results["matmul_peak_gflops_median"] = peak
    lines = report(results, peak, flops)
    print("\n".join(lines))
    if args.output:
        results["table"] = lines
        Path(args.output).write_text(json.dumps(results, indent=2) + "\n")
    return 0


def report(results, peak, flops):
    lines = [f"{results['date']}, {results['machine']}; load average {results['loadavg_start'][0]:.1f} at start",
             f"float32 matmul peak (median over rounds of the best of tf/numpy): {peak:.0f} GFLOP/s; "
             f"training {flops / 1e6:.1f} MFLOP per image", "",
             "| batch | contender | training images/s (median) | rounds | vs csae-tf | GFLOP/s | of peak |",
             "|---|---|---|---|---|---|---|"]
    for batch, rates in results["train"].items():
        base = statistics.median(rates["tf"]) if "tf" in rates else None
        for name, values in rates.items():
            med = statistics.median(values)
            ratio = f"{base / med:.2f}x" if base else "-"
            lines.append(f"| {batch} | {name} | {med:.0f} | {', '.join(f'{v:.0f}' for v in values)} | "
                         f"{ratio} | {med * flops / 1e9:.1f} | {med * flops / 1e9 / peak:.0%} |")
    for batch, rates in results["infer"].items():
        lines += ["", "| batch | contender | inference images/s (median) | rounds |", "|---|---|---|---|"]
        for name, values in rates.items():
            lines.append(f"| {batch} | {name} | {statistics.median(values):.0f} | "
                         f"{', '.join(f'{v:.0f}' for v in values)} |")
    return lines


if __name__ == "__main__":
    sys.exit(main())
