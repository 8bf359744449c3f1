"""What every comparison system offers: training on (images, labels) batches, labels, reconstructions.

The systems differ in how they learn (one loss, several stages, a closed-form classifier), so each
one says how it is trained through `train`; `compare` only calls `train`, `predict_labels` and
`reconstruct` and reads `classifies` / `reconstructs` to know which columns it fills.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from csae_tf.steps import OptimizerBuiltBeforeFit, apply_gradients, update_trackers


class Baseline(OptimizerBuiltBeforeFit):
    """Mixin for the comparison systems (used as `class X(Baseline, keras.Model)`).

    Images are float32 (B, H, W, C) in [-1, 1], labels int32 (B,), as `csae_tf.data` yields them.
    `reconstruct` returns images on that same [-1, 1] scale.
    """

    classifies: bool = True
    reconstructs: bool = True

    def default_optimizer(self) -> keras.optimizers.Optimizer:
        """The optimizer of the system's own paper, used when `train` finds the model uncompiled."""
        return keras.optimizers.Adam(1e-3)

    def train(self, dataset, epochs: int, verbose: int = 0) -> dict:
        """Train for `epochs` passes over `dataset`; returns the history of the last stage."""
        if not self.compiled:
            self.compile(optimizer=self.default_optimizer())
        return self.fit(dataset, epochs=epochs, verbose=verbose).history

    def set_stage(self, stage: int) -> None:
        """For systems trained in stages: select the stage (1, 2, ...) that `fit` trains; recompiles."""
        self.stage = stage
        self.compile(optimizer=self.default_optimizer())

    def train_stages(self, dataset, epochs: int, names: tuple[str, ...], verbose: int = 0) -> dict:
        """`epochs` for each stage in turn; the history keys are prefixed with the stage's name."""
        history = {}
        for stage, name in enumerate(names, start=1):
            self.set_stage(stage)
            history.update({f"{name}_{k}": v for k, v in self.fit(dataset, epochs=epochs, verbose=verbose)
                            .history.items()})
        return history

    def predict_labels(self, images) -> tf.Tensor:
        raise NotImplementedError(f"{type(self).__name__} does not classify")

    def reconstruct(self, images, labels=None) -> tf.Tensor:
        raise NotImplementedError(f"{type(self).__name__} does not reconstruct")


class OneLossClassifier(Baseline):
    """Mixin for the systems trained by one supervised loss (basenet, the encoder alone).

    A subclass gives `values(labels, outputs)` (per-example "loss" and "accuracy") of what `forward`
    returns (by default the model's call); the mixin holds the trackers and the train and test steps,
    with coupled weight decay.
    """

    reconstructs = False

    def forward(self, images, training: bool):
        return self(images, training=training)

    def build_trackers(self) -> None:
        self.trackers = {name: keras.metrics.Mean(name=name) for name in ("loss", "accuracy")}

    @property
    def metrics(self):
        return list(self.trackers.values())

    def train_step(self, data):
        images, labels = data[0], tf.cast(data[1], tf.int32)
        with tf.GradientTape() as tape:
            values = self.values(labels, self.forward(images, training=True))
            loss = tf.nn.compute_average_loss(values["loss"])
        apply_gradients(self, tape, loss, weight_decay=self.weight_decay)
        return update_trackers(self.trackers, values)

    def test_step(self, data):
        images, labels = data[0], tf.cast(data[1], tf.int32)
        return update_trackers(self.trackers, self.values(labels, self.forward(images, training=False)))

    def default_optimizer(self):
        return keras.optimizers.SGD(0.1, momentum=0.9)


def to_unit(images):
    """[-1, 1] images -> [0, 1] (the scale of the sigmoid-output systems)."""
    return (images + 1.0) * 0.5


def from_unit(images):
    """[0, 1] -> [-1, 1]."""
    return images * 2.0 - 1.0
