"""The authors' CSAE-C in PyTorch (CPU): the comparison point of the csae-tf benchmarks, not part of the package.

Same layers as csae_tf.models (SPEC sections 2-4): conv3x3(16, no padding) -> BN -> ReLU -> three
residual blocks (32, 64, 64, stride 2) -> dense d; decoder dense -> 64x4x4 -> three decode blocks
(transposed conv 2x2 stride 2 to half the channels, conv3x3, BN, ReLU) -> conv1x1. Noise
sqrt(d) * beta * N(0, I) on the decoder input in training; Loss1 + lambda1 Loss2 + lambda2 Laplacian;
SGD momentum 0.9, coupled weight decay 5e-4 (PyTorch's `weight_decay`), BN momentum 0.1 (= Keras 0.9).

    pip install -r benchmarks/requirements.txt    # torch==2.13.0 (CPU wheel)
    python benchmarks/pytorch_reference.py        # a few timed steps on random data, as a smoke test
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


def main() -> int:
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
