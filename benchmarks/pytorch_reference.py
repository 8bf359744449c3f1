"""The authors' CSAE-C in PyTorch (CPU): the comparison point of the csae-tf benchmarks, not part of the package.

Same layers as csae_tf.models (SPEC sections 2-4): conv3x3(16, no padding) -> BN -> ReLU -> three
residual blocks (32, 64, 64, stride 2) -> dense d; decoder dense -> 64x4x4 -> three decode blocks
(transposed conv 2x2 stride 2 to half the channels, conv3x3, BN, ReLU) -> conv1x1. Noise
sqrt(d) * beta * N(0, I) on the decoder input in training; Loss1 + lambda1 Loss2 + lambda2 Laplacian;
SGD momentum 0.9, coupled weight decay 5e-4 (PyTorch's `weight_decay`), BN momentum 0.1 (= Keras 0.9).

    pip install -r benchmarks/requirements.txt    # torch==2.13.0 (CPU wheel)
    python benchmarks/pytorch_reference.py        # a few timed steps on random data, as a smoke test
    python benchmarks/pytorch_reference.py --train --mnist ../shared/data/mnist --epochs 2 --lr 0.15
        # the `fast` recipe on MNIST: the test accuracy after the last epoch and the seconds from process start
"""

from __future__ import annotations

import math
import time

import torch
import torch.nn.functional as F
from torch import nn

LAPLACIAN = ((0.0, 1.0, 0.0), (1.0, -4.0, 1.0), (0.0, 1.0, 0.0))


class ResidualBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(y)) + self.shortcut(x))


class DecodeBlock(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.up = nn.ConvTranspose2d(cin, max(1, cin // 2), 2, 2)
        self.conv = nn.Conv2d(max(1, cin // 2), cout, 3, 1, 1, bias=False)
        self.bn = nn.BatchNorm2d(cout)

    def forward(self, x):
        return F.relu(self.bn(self.conv(self.up(x))))


class CSAEC(nn.Module):
    """CSAE-C for (C, 32, 32) inputs in [-1, 1]; `centroids` is the fixed (n, d) PEDCC buffer."""

    def __init__(self, centroids: torch.Tensor, channels: int = 1, beta: float = 0.04, lambda1: float = 1.0,
                 lambda2: float = 0.02):
        super().__init__()
        d = centroids.shape[1]
        self.beta, self.lambda1, self.lambda2, self.latent_dim = beta, lambda1, lambda2, d
        self.register_buffer("centroids", centroids.float())
        self.register_buffer("laplacian", torch.tensor(LAPLACIAN).repeat(channels, 1, 1, 1))
        self.stem = nn.Sequential(nn.Conv2d(channels, 16, 3, 1, 0, bias=False), nn.BatchNorm2d(16), nn.ReLU())
        self.blocks = nn.Sequential(ResidualBlock(16, 32, 2), ResidualBlock(32, 64, 2), ResidualBlock(64, 64, 2))
        self.latent = nn.Linear(64 * 4 * 4, d)
        self.project = nn.Linear(d, 64 * 4 * 4)
        self.up = nn.Sequential(DecodeBlock(64, 64), DecodeBlock(64, 32), DecodeBlock(32, 16))
        self.to_image = nn.Conv2d(16, channels, 1)

    def encode(self, x):
        return self.latent(torch.flatten(self.blocks(self.stem(x)), 1))

    def decode(self, z):
        return self.to_image(self.up(self.project(z).view(-1, 64, 4, 4)))

    def distances(self, z):
        return torch.cdist(z, self.centroids) ** 2

    def losses(self, x, y):
        """(total, accuracy) of one training batch: the three losses and the nearest-centroid accuracy."""
        z = self.encode(x)
        noisy = z + math.sqrt(self.latent_dim) * self.beta * torch.randn_like(z)
        rec = self.decode(noisy)
        loss1 = F.mse_loss(z, self.centroids[y])
        loss2 = F.mse_loss(rec, x)
        channels = x.shape[1]
        loss3 = F.conv2d(rec - x, self.laplacian, groups=channels).pow(2).mean()
        accuracy = (self.distances(z.detach()).argmin(1) == y).float().mean()
        return loss1 + self.lambda1 * loss2 + self.lambda2 * loss3, accuracy


def make_trainer(model: CSAEC, lr: float = 0.05, compile: bool = False, channels_last: bool = False,
                 bfloat16: bool = False):
    """A `step(x, y) -> loss` closure: forward, backward, SGD (momentum 0.9, weight decay 5e-4).

    `bfloat16`: the forward pass under `torch.autocast("cpu", dtype=torch.bfloat16)` (PyTorch's mixed precision).
    """
    import contextlib

    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4)
    forward = torch.compile(model.losses) if compile else model.losses
    autocast = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if bfloat16 else contextlib.nullcontext

    def step(x, y):
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        optimizer.zero_grad(set_to_none=True)
        with autocast():
            loss, accuracy = forward(x, y)
        loss.backward()
        optimizer.step()
        return loss

    model.train()
    return step, optimizer


@torch.inference_mode()
def classify(model: CSAEC, x):
    """Nearest-centroid labels (eval mode)."""
    return model.distances(model.encode(x)).argmin(1)


def read_mnist(folder: str):
    """(train images, train labels, test images, test labels) from the original idx files, uint8 / int64."""
    import gzip
    from pathlib import Path

    import numpy as np

    def read(name, offset):
        return np.frombuffer(gzip.open(Path(folder) / name).read(), np.uint8, offset=offset)

    return (read("train-images-idx3-ubyte.gz", 16).reshape(-1, 28, 28), read("train-labels-idx1-ubyte.gz", 8),
            read("t10k-images-idx3-ubyte.gz", 16).reshape(-1, 28, 28), read("t10k-labels-idx1-ubyte.gz", 8))


def to_input(images) -> torch.Tensor:
    """uint8 (N, 28, 28) -> float (N, 1, 32, 32) in [-1, 1], padded with -1 (csae_tf.data.to_model_input)."""
    x = torch.from_numpy(images.astype("float32") / 127.5 - 1.0)[:, None]
    return F.pad(x, (2, 2, 2, 2), value=-1.0)


def onecycle(step: int, peak: float, total: int, warmup: int) -> float:
    """csae_tf.schedules.LearningRate("onecycle"): linear warm-up, then cosine from peak to peak / 1e3."""
    if step < warmup:
        return peak * (step + 1) / max(warmup, 1)
    progress = min((step - warmup) / max(total - warmup, 1), 1.0)
    return peak * 1e-3 + (peak - peak * 1e-3) * 0.5 * (1 + math.cos(math.pi * progress))


def train_to_accuracy(args) -> int:
    """The `fast` recipe (one-cycle SGD) on MNIST less csae-tf's 5,000 validation images; prints JSON."""
    import json

    import numpy as np

    start = time.time()
    torch.manual_seed(args.seed)
    train_x, train_y, test_x, test_y = read_mnist(args.mnist)
    # the same hold-out as csae_tf.data.validation_indices(60000, 5000, seed)
    held = np.random.default_rng([args.seed, 0x5EED]).permutation(len(train_y))[len(train_y) - 5000:]
    keep = np.setdiff1d(np.arange(len(train_y)), held)
    x, y = to_input(train_x[keep]), torch.from_numpy(train_y[keep].astype(np.int64))
    test = to_input(test_x)
    centroids = torch.randn(10, 40)
    model = CSAEC(centroids * (math.sqrt(40) / centroids.norm(dim=1, keepdim=True)))
    step, optimizer = make_trainer(model, lr=args.lr, channels_last=args.channels_last, bfloat16=args.bf16)
    steps = len(y) // args.batch_size
    total, warmup = steps * args.epochs, int(round(args.warmup_epochs * steps))
    epochs, t = [], 0
    for epoch in range(args.epochs):
        began = time.time()
        order = torch.randperm(len(y))
        model.train()
        for i in range(steps):
            for group in optimizer.param_groups:
                group["lr"] = onecycle(t, args.lr, total, warmup)
            batch = order[i * args.batch_size:(i + 1) * args.batch_size]
            step(x[batch], y[batch])
            t += 1
        model.eval()
        with torch.inference_mode():
            labels = torch.cat([classify(model, test[i:i + 1000]) for i in range(0, len(test), 1000)])
        accuracy = float((labels.numpy() == test_y).mean())
        epochs.append({"epoch": epoch + 1, "seconds": round(time.time() - began, 1), "test_accuracy": accuracy})
        print(json.dumps(epochs[-1]), flush=True)
    print(json.dumps({"seconds_from_process_start": round(time.time() - start, 1), "test_accuracy": accuracy,
                      "torch": torch.__version__, "threads": torch.get_num_threads(), "epochs": epochs}))
    return 0


def main(argv=None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--train", action="store_true", help="train the fast recipe on MNIST instead of timing steps")
    parser.add_argument("--mnist", default="../shared/data/mnist", help="folder of the original MNIST .gz files")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--lr", type=float, default=0.15)
    parser.add_argument("--warmup-epochs", type=float, default=0.2)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--bf16", action="store_true", help="forward pass under bfloat16 autocast")
    args = parser.parse_args(argv)
    if args.train:
        return train_to_accuracy(args)
    torch.manual_seed(0)
    centroids = torch.randn(10, 40)
    model = CSAEC(centroids * (math.sqrt(40) / centroids.norm(dim=1, keepdim=True)))
    step, _ = make_trainer(model)
    x, y = torch.rand(128, 1, 32, 32) * 2 - 1, torch.randint(0, 10, (128,))
    step(x, y)
    start = time.perf_counter()
    for _ in range(10):
        loss = step(x, y)
    rate = 10 * 128 / (time.perf_counter() - start)
    print(f"PyTorch {torch.__version__} CSAE-C: {rate:.0f} training images/s (eager, channels-first, batch 128), "
          f"loss {float(loss.detach()):.4f}, {sum(p.numel() for p in model.parameters())} parameters")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
