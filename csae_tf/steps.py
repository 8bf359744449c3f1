"""Pieces shared by the custom train steps of CSAE and the comparison systems."""

from __future__ import annotations

import keras
import tensorflow as tf


def scale_loss(model: keras.Model, loss):
    """The loss to differentiate: scaled under float16 (a `LossScaleOptimizer`), as it is otherwise.

    Call it inside the `GradientTape`, so that the scaling is recorded.
    """
    optimizer = model.optimizer
    return optimizer.scale_loss(loss) if isinstance(optimizer, keras.optimizers.LossScaleOptimizer) else loss


def apply_gradients(model: keras.Model, tape: tf.GradientTape, loss, variables=None, weight_decay: float = 0.0):
    """One optimizer step on `loss` (divided by the global batch, through `scale_loss`), with coupled L2 decay.

    The decay is added to the gradients as PyTorch's SGD does; each replica adds `wd / replicas`
    because the optimizer sums the replicas' gradients. Under float16 the loss was scaled, and the
    decay is scaled alike, since the `LossScaleOptimizer` unscales the sum.
    """
    variables = model.trainable_variables if variables is None else variables
    optimizer = model.optimizer
    scaled = isinstance(optimizer, keras.optimizers.LossScaleOptimizer)
    grads = tape.gradient(loss, variables)
    if weight_decay:
        decay = weight_decay / tf.distribute.get_strategy().num_replicas_in_sync
        if scaled:
            decay = decay * optimizer.dynamic_scale
        grads = [g + tf.cast(decay, g.dtype) * tf.cast(v, g.dtype) for g, v in zip(grads, variables)]
    optimizer.apply_gradients(zip(grads, variables))


class OptimizerBuiltBeforeFit:
    """Mixin (before `keras.Model`): `fit` makes the optimizer's variables first, in the model's strategy. A
    `tf.function` that makes variables while it traces is traced again, so an optimizer left to build lazily
    would cost the first `fit` a second trace of the whole train step (seconds on a CPU)."""

    def fit(self, *args, **kwargs):
        if self.built and self.optimizer is not None and not self.optimizer.built:
            with self.distribute_strategy.scope():
                self.optimizer.build(self.trainable_variables)
        return super().fit(*args, **kwargs)


def update_trackers(trackers: dict, values: dict) -> dict:
    """Feed per-example (or scalar) values to their `keras.metrics.Mean` trackers; return the results."""
    for name, tracker in trackers.items():
        tracker.update_state(values[name])
    return {name: tracker.result() for name, tracker in trackers.items()}
