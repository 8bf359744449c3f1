"""The KerasTuner hypermodel of a CSAE: β, λ1, λ2 (optionally the learning rate) per trial, the rest from one
FitConfig.

The tuned values are loss weights and the noise level, not architecture: each trial builds the model of
``dataclasses.replace(cfg, beta=..., lambda1=..., lambda2=...)`` with `csae_tf.models.build_model`, so they
reach the model's own `train_step`. A trial returns the validation (test-split) metrics of its last epoch;
a trial whose loss stops being finite is stopped and scored as the worst possible one instead of failing.
"""

from __future__ import annotations

import dataclasses
import math
import time

import keras
import keras_tuner

from csae_tf.callbacks import EpochStats
from csae_tf.config import FitConfig
from csae_tf.models import build_model
from csae_tf.schedules import build_optimizer
from tuning.space import DIVERGED_ACCURACY, DIVERGED_LOSS2, SearchSettings, balanced_score

REPORTED = ("val_accuracy", "val_loss", "val_loss1", "val_loss2", "val_loss3")


class DivergenceGuard(keras.callbacks.Callback):
    """Stops training at the first batch whose loss is not finite, and remembers it."""

    def __init__(self):
        super().__init__()
        self.diverged_at = None

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            self.diverged_at = batch
            self.model.stop_training = True


class BalancedScore(keras.callbacks.Callback):
    """Adds ``balanced = val_accuracy - weight * val_loss2`` to each epoch's logs (before the tuner reads them)."""

    def __init__(self, weight: float):
        super().__init__()
        self.weight = weight

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None and "val_accuracy" in logs and "val_loss2" in logs:
            logs["balanced"] = balanced_score(logs["val_accuracy"], logs["val_loss2"], self.weight)


class CSAEHyperModel(keras_tuner.HyperModel):
    """Builds and trains one CSAE per trial.

    Args:
        cfg: the FitConfig every trial starts from (data, architecture, optimiser, epochs, seed).
        settings: the search settings (bounds, objective, whether the learning rate is tuned).
        num_classes, image_shape: of the dataset.
        steps_per_epoch: training steps per epoch (for the learning-rate schedule).
    """

    def __init__(self, cfg: FitConfig, settings: SearchSettings, num_classes: int, image_shape: tuple,
                 steps_per_epoch: int):
        super().__init__(name="csae")
        self.cfg = cfg
        self.settings = settings
        self.num_classes = num_classes
        self.image_shape = tuple(image_shape)
        self.steps_per_epoch = steps_per_epoch

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
        keras.utils.set_random_seed(cfg.seed)  # every trial starts from the same weights and centroids
        model = build_model(cfg, self.num_classes, self.image_shape)
        model.compile(optimizer=build_optimizer(cfg, self.steps_per_epoch), steps_per_execution=cfg.steps_per_execution)
        return model

    def fit(self, hp, model, train, validation_data=None, callbacks=(), epochs=None, initial_epoch=0, **kwargs):
        guard = DivergenceGuard()
        start = time.time()
        history = model.fit(
            train, validation_data=validation_data, epochs=epochs or self.cfg.epochs, initial_epoch=initial_epoch,
            callbacks=[EpochStats(), guard, BalancedScore(self.settings.balance_weight), *callbacks],
            verbose=kwargs.get("verbose", self.cfg.verbose),
        )
        seconds = time.time() - start
        last = {name: float(values[-1]) for name, values in history.history.items() if values}
        results = trial_results(last, diverged=guard.diverged_at is not None, weight=self.settings.balance_weight)
        results.update(seconds=round(seconds, 2), epochs=float(len(history.epoch)))
        strategy = model.distribute_strategy
        print(f"  trial result ({type(strategy).__name__}, {strategy.num_replicas_in_sync} replica(s)): "
              + ", ".join(f"{k} {v:.4g}" for k, v in results.items()), flush=True)
        return results


def trial_results(last: dict, diverged: bool, weight: float) -> dict:
    """What a trial reports: the last epoch's validation metrics and `balanced`, or the worst scores if it
    diverged (a non-finite training loss, or non-finite or missing validation metrics)."""
    values = {name: last[name] for name in REPORTED if name in last}
    if diverged or len(values) < len(REPORTED) or not all(math.isfinite(v) for v in values.values()):
        return {"val_accuracy": DIVERGED_ACCURACY, "val_loss2": DIVERGED_LOSS2,
                "balanced": balanced_score(DIVERGED_ACCURACY, DIVERGED_LOSS2, weight), "diverged": 1.0}
    values["balanced"] = balanced_score(values["val_accuracy"], values["val_loss2"], weight)
    values["diverged"] = 0.0
    return values
