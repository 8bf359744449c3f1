"""Keras callbacks of a CSAE run."""

from __future__ import annotations

import time

import keras


class EpochStats(keras.callbacks.Callback):
    """Adds the epoch's wall time and learning rate to the logs (so history.csv and TensorBoard get them)."""

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.time()

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["seconds"] = time.time() - self._start
            logs["learning_rate"] = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
