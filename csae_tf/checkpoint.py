"""Crash-safe training state: weights + optimizer + epoch, written atomically, restored on restart.

Each save writes a complete new file next to the old one and then atomically renames a small
JSON pointer (`state.json`) onto it, so a SIGKILL at any moment leaves either the previous
state or the new one, never a half-written file. Keras' own `BackupAndRestore` writes the
weights in place and its epoch counter separately, which a kill between the two can split.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import keras

STATE = "state.json"


def _write_json(path: Path, value: dict) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "w") as f:
        json.dump(value, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def read_state(directory: str | Path) -> dict | None:
    """The last complete saved state ({"epoch", "step", "weights"}) or None."""
    path = Path(directory) / STATE
    if not path.exists():
        return None
    state = json.loads(path.read_text())
    return state if (Path(directory) / state["weights"]).exists() else None


def restore(model: keras.Model, directory: str | Path) -> int:
    """Load the last saved state into `model` (and its optimizer); return the epoch to start at."""
    state = read_state(directory)
    if state is None:
        return 0
    if model.optimizer is not None and not model.optimizer.built:
        model.optimizer.build(model.trainable_variables)
    model.load_weights(str(Path(directory) / state["weights"]))
    return int(state["epoch"])


class TrainingState(keras.callbacks.Callback):
    """Saves the training state at each epoch end, and every `save_freq` steps if given.

    A mid-epoch save keeps the weights' progress; on restart the interrupted epoch is run
    again from its first batch (the input pipeline's position is not saved).
    """

    def __init__(self, directory: str | Path, save_freq: int | None = None):
        super().__init__()
        self.directory = Path(directory)
        self.save_freq = save_freq
        self._epoch = 0
        self._steps = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        self._steps += 1
        if self.save_freq and self._steps % self.save_freq == 0:
            self.save(epoch=self._epoch, step=batch + 1)

    def on_epoch_end(self, epoch, logs=None):
        self.save(epoch=epoch + 1, step=0)

    def save(self, epoch: int, step: int) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        previous = read_state(self.directory)
        name = f"state-e{epoch:04d}-s{step:06d}.weights.h5"
        tmp = self.directory / (name + ".tmp.weights.h5")
        self.model.save_weights(str(tmp), overwrite=True)
        os.replace(tmp, self.directory / name)
        _write_json(self.directory / STATE, {"epoch": epoch, "step": step, "weights": name})
        if previous and previous["weights"] != name:
            (self.directory / previous["weights"]).unlink(missing_ok=True)
