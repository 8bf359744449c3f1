"""The KerasTuner hypermodel of a CSAE: β, λ1, λ2 (optionally the learning rate) per trial, the rest from one
FitConfig.

A trial is a ``python -m csae_tf.fit`` run of ``dataclasses.replace(cfg, beta=..., lambda1=..., lambda2=...)``
through the trainer's own pieces: `keras.utils.set_random_seed(cfg.seed)` then `csae_tf.models.build_model` and
`csae_tf.trainer.compile_model` (same optimizer, schedule and steps per execution), the batches of
`csae_tf.data.training_pipeline` (the same order, epoch by epoch) and the validation images that
`csae_tf.data.load_splits` holds out of the training split. So `best.json`, retrained with `csae fit`, gives its
trial's figures again (bit for bit with ``--deterministic``). The test split is never read.

A trial reports the validation metrics of its last epoch. A trial whose training loss stops being finite
(`csae_tf.models.DIVERGED`) raises `TrialDiverged`: KerasTuner scores it as failed and the search goes on.
"""

from __future__ import annotations

import dataclasses
import math
import time

import keras
import keras_tuner
import tensorflow as tf

from csae_tf import data
from csae_tf.callbacks import EpochStats
from csae_tf.config import FitConfig
from csae_tf.models import DIVERGED, build_model
from csae_tf.trainer import compile_model, set_precision
from tuning.space import SearchSettings, balanced_score

REPORTED = ("val_accuracy", "val_loss", "val_loss1", "val_loss2", "val_loss3")


class TrialDiverged(keras_tuner.errors.FailedTrialError):
    """The trial's training loss (or a validation metric) is not finite: the trial failed, the search goes on."""


class BalancedScore(keras.callbacks.Callback):
    """Adds ``balanced = val_accuracy - weight * val_loss2`` to each epoch's logs (before the tuner reads them)."""

    def __init__(self, weight: float):
        super().__init__()
        self.weight = weight

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None and "val_accuracy" in logs and "val_loss2" in logs:
            logs["balanced"] = balanced_score(logs["val_accuracy"], logs["val_loss2"], self.weight)


class CSAEHyperModel(keras_tuner.HyperModel):
    """Builds and trains one CSAE per trial, as `csae_tf.trainer.Trainer` does.

    Args:
        cfg: the FitConfig every trial starts from (data, architecture, optimiser, epochs, seed).
        settings: the search settings (bounds, objective, whether the learning rate is tuned).
        splits: the training and validation images (`csae_tf.data.load_splits(cfg, test=False)`).
        strategy: the tf.distribute strategy of each trial, or None.
    """

    def __init__(self, cfg: FitConfig, settings: SearchSettings, splits: data.Splits,
                 strategy: tf.distribute.Strategy | None = None):
        super().__init__(name="csae")
        if splits.validation is None:
            raise ValueError("a search needs validation images (validation_split > 0)")
        self.cfg = cfg
        self.settings = settings
        self.splits = splits
        self.strategy = strategy
        self.steps_per_epoch = splits.info.num_train // cfg.batch_size

    def tuned_values(self, hp) -> dict:
        """Declare (first call) and read the tuned FitConfig fields of a trial."""
        values = {}
        for b in self.settings.bounds:
            if b.low == b.high:
                values[b.name] = float(hp.Fixed(b.name, b.low))
            else:
                values[b.name] = float(hp.Float(b.name, b.low, b.high, sampling="log" if b.log else "linear"))
        return values

    def config(self, hp) -> FitConfig:
        return dataclasses.replace(self.cfg, **self.tuned_values(hp))

    def build(self, hp):
        cfg = self.config(hp)
        info = self.splits.info
        set_precision(cfg.precision)
        keras.utils.set_random_seed(cfg.seed)  # as the trainer: every trial starts from the same weights
        model = build_model(cfg, info.num_classes, info.image_shape)
        return compile_model(model, cfg, self.steps_per_epoch, strategy=self.strategy)

    def fit(self, hp, model, *args, callbacks=(), epochs=None, initial_epoch=0, **kwargs):
        cfg, info = self.config(hp), self.splits.info
        epochs = epochs or cfg.epochs
        train = data.training_pipeline(self.splits.train, info, cfg.batch_size, seed=cfg.seed, epochs=epochs,
                                       initial_epoch=initial_epoch)
        validation = data.evaluation_pipeline(self.splits.validation, info, cfg.batch_size)
        start = time.time()
        try:
            history = model.fit(
                train, validation_data=validation, epochs=epochs, initial_epoch=initial_epoch,
                steps_per_epoch=self.steps_per_epoch, shuffle=False, verbose=kwargs.get("verbose", cfg.verbose),
                callbacks=[EpochStats(), BalancedScore(self.settings.balance_weight), *callbacks],
            )
        except tf.errors.InvalidArgumentError as err:
            if DIVERGED not in str(err):
                raise
            raise TrialDiverged(f"diverged: {DIVERGED} ({describe(cfg, self.settings)})") from None
        seconds = time.time() - start
        last = {name: float(values[-1]) for name, values in history.history.items() if values}
        results = trial_results(last, self.settings.balance_weight)
        if results is None:
            raise TrialDiverged(f"diverged: non-finite validation metrics ({describe(cfg, self.settings)})")
        results.update(seconds=round(seconds, 2), epochs=float(len(history.epoch)))
        strategy = model.distribute_strategy
        print(f"  trial result ({type(strategy).__name__}, {strategy.num_replicas_in_sync} replica(s)): "
              + ", ".join(f"{k} {v:.4g}" for k, v in results.items()), flush=True)
        return results


def describe(cfg: FitConfig, settings: SearchSettings) -> str:
    names = dict.fromkeys([b.name for b in settings.bounds] + ["lr"])
    return ", ".join(f"{name} {getattr(cfg, name):.4g}" for name in names)


def trial_results(last: dict, weight: float) -> dict | None:
    """What a trial reports: the last epoch's validation metrics and `balanced`; None if one of them is missing
    or not finite."""
    values = {name: last[name] for name in REPORTED if name in last}
    if len(values) < len(REPORTED) or not all(math.isfinite(v) for v in values.values()):
        return None
    values["balanced"] = balanced_score(values["val_accuracy"], values["val_loss2"], weight)
    return values
