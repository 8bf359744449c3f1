"""Learning-rate schedules: the paper's step decay, cosine and one-cycle, with linear warm-up."""

from __future__ import annotations

import math

import keras
import tensorflow as tf

from csae_tf.config import FitConfig


@keras.saving.register_keras_serializable(package="csae_tf")
class LearningRate(keras.optimizers.schedules.LearningRateSchedule):
    """Per-step learning rate: linear warm-up to `peak`, then one of

    - ``step``: divide by 10 every `step_every` steps (the paper: every 30 epochs);
    - ``cosine``: half-cosine from `peak` to 0 at `total_steps`;
    - ``onecycle``: cosine from `peak` down to `peak / 1e3`, after a warm-up (give one);
    - ``constant``.
    """

    def __init__(self, kind: str, peak: float, total_steps: int, warmup_steps: int = 0, step_every: int = 1):
        self.kind = kind
        self.peak = float(peak)
        self.total_steps = int(max(total_steps, 1))
        self.warmup_steps = int(warmup_steps)
        self.step_every = int(max(step_every, 1))

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        warm = float(max(self.warmup_steps, 1))
        after = tf.maximum(step - self.warmup_steps, 0.0)
        span = float(max(self.total_steps - self.warmup_steps, 1))
        progress = tf.minimum(after / span, 1.0)
        if self.kind == "step":
            rate = self.peak * tf.pow(0.1, tf.floor(step / self.step_every))
        elif self.kind == "cosine":
            rate = self.peak * 0.5 * (1.0 + tf.cos(math.pi * progress))
        elif self.kind == "onecycle":
            floor = self.peak * 1e-3
            rate = floor + (self.peak - floor) * 0.5 * (1.0 + tf.cos(math.pi * progress))
        else:
            rate = tf.constant(self.peak)
        if self.warmup_steps:
            rate = tf.where(step < self.warmup_steps, self.peak * (step + 1.0) / warm, rate)
        return rate

    def get_config(self):
        return {"kind": self.kind, "peak": self.peak, "total_steps": self.total_steps,
                "warmup_steps": self.warmup_steps, "step_every": self.step_every}


def build_schedule(cfg: FitConfig, steps_per_epoch: int) -> LearningRate:
    """The per-step learning rate of a run."""
    return LearningRate(
        cfg.schedule, cfg.lr, total_steps=cfg.epochs * steps_per_epoch,
        warmup_steps=int(round(cfg.warmup_epochs * steps_per_epoch)), step_every=cfg.lr_step_epochs * steps_per_epoch,
    )


def build_optimizer(cfg: FitConfig, steps_per_epoch: int) -> keras.optimizers.Optimizer:
    """The optimizer of a run; weight decay is applied by the model's train step, not here."""
    schedule = build_schedule(cfg, steps_per_epoch)
    if cfg.optimizer == "adam":
        return keras.optimizers.Adam(schedule)
    return keras.optimizers.SGD(schedule, momentum=cfg.momentum)
