"""Choosing the tf.distribute strategy of a run."""

from __future__ import annotations

import tensorflow as tf

from csae_tf.config import FitConfig


def make_strategy(cfg: FitConfig) -> tf.distribute.Strategy:
    """auto: MirroredStrategy when more than one GPU is visible, else the default strategy."""
    kind = cfg.strategy
    if kind == "auto":
        kind = "mirrored" if len(tf.config.list_logical_devices("GPU")) > 1 else "default"
    if kind == "default":
        return tf.distribute.get_strategy()
    if kind == "mirrored":
        return tf.distribute.MirroredStrategy(devices=cfg.devices or None)
    return tf.distribute.MultiWorkerMirroredStrategy()
