"""Crash-safe training state: weights + optimizer + position (epoch, step) + the epoch's running metrics.

Each save writes a complete new file next to the old one and then atomically renames a small
JSON pointer (`state.json`) onto it, so a SIGKILL at any moment leaves either the previous
state or the new one, never a half-written file. Keras' own `BackupAndRestore` writes the
weights in place and its epoch counter separately, which a kill between the two can split.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import keras
import numpy as np

STATE = "state.json"


def write_json(path: str | Path, value: dict) -> None:
    """Write `value` as JSON atomically (a temporary file renamed onto `path`), durable on disk."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as f:
        json.dump(value, f, indent=2)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def read_state(directory: str | Path) -> dict | None:
    """The last complete saved state ({"epoch", "step", "weights", "metrics"}) or None."""
    path = Path(directory) / STATE
    if not path.exists():
        return None
    state = json.loads(path.read_text())
    return state if (Path(directory) / state["weights"]).exists() else None


def restore(model: keras.Model, directory: str | Path) -> tuple[int, int, dict]:
    """Load the last saved state into `model` (and its optimizer); return (epoch, step, running metrics)."""
    state = read_state(directory)
    if state is None:
        return 0, 0, {}
    if model.optimizer is not None and not model.optimizer.built:
        model.optimizer.build(model.trainable_variables)
    model.load_weights(str(Path(directory) / state["weights"]))
    return int(state["epoch"]), int(state.get("step", 0)), state.get("metrics", {})


def _local(model: keras.Model, variable) -> tuple:
    return model.distribute_strategy.experimental_local_results(variable.value)


def metric_states(model: keras.Model) -> dict:
    """The running sums of the model's epoch metrics ({name: [{"replicas": [each local replica's value]}]}).

    Per replica, not their sum: a resumed run then adds each step to the same partial sums as an
    uninterrupted one, and its epoch metrics are equal bit for bit under a mirrored strategy too.
    """
    return {m.name: [{"replicas": [np.asarray(x.numpy()).tolist() for x in _local(model, v)]} for v in m.variables]
            for m in model.metrics}


def set_metric_states(model: keras.Model, states: dict) -> None:
    for m in model.metrics:
        for v, value in zip(m.variables, states.get(m.name, [])):
            local = _local(model, v)
            if isinstance(value, dict) and len(value["replicas"]) == len(local):
                for x, part in zip(local, value["replicas"]):
                    x.assign(np.asarray(part, x.dtype.as_numpy_dtype))
            else:  # a sum (an older state), or another number of replicas: the sum, spread by the strategy
                v.assign(np.asarray(np.sum(value["replicas"], axis=0) if isinstance(value, dict) else value, v.dtype))


class TrainingState(keras.callbacks.Callback):
    """Saves the training state at each epoch end (so a rerun resumes at the next epoch).

    `before_save` runs first (the mirrored strategy averages batch-norm statistics there), so a
    saved state is the one a validation of the same moment would see.
    """

    def __init__(self, directory: str | Path, before_save: Callable[[], None] | None = None):
        super().__init__()
        self.directory = Path(directory)
        self.before_save = before_save

    def on_epoch_end(self, epoch, logs=None):
        self.save(epoch=epoch + 1, step=0)

    def save(self, epoch: int, step: int, metrics: dict | None = None) -> None:
        if self.before_save is not None:
            self.before_save()
        self.directory.mkdir(parents=True, exist_ok=True)
        previous = read_state(self.directory)
        name = f"state-e{epoch:04d}-s{step:06d}.weights.h5"
        tmp = self.directory / (name + ".tmp.weights.h5")
        self.model.save_weights(str(tmp), overwrite=True)
        os.replace(tmp, self.directory / name)
        write_json(self.directory / STATE, {"epoch": epoch, "step": step, "weights": name, "metrics": metrics or {}})
        if previous and previous["weights"] != name:
            (self.directory / previous["weights"]).unlink(missing_ok=True)


class PeriodicTrainingState(TrainingState):
    """Also saves every `save_freq` training steps, with the epoch's running metrics, for an exact resume.

    Steps are counted by the optimizer, not by calls into TensorFlow (`steps_per_execution` is chosen
    to divide `save_freq`). It reads the step counter after each execution: a host sync that the
    epoch-end-only `TrainingState` avoids.
    """

    def __init__(self, directory: str | Path, save_freq: int, steps_per_epoch: int,
                 before_save: Callable[[], None] | None = None):
        super().__init__(directory, before_save)
        self.save_freq = save_freq
        self.steps_per_epoch = steps_per_epoch

    def on_train_batch_end(self, batch, logs=None):
        step = int(self.model.optimizer.iterations.numpy())
        epoch, in_epoch = divmod(step, self.steps_per_epoch)
        if in_epoch and step % self.save_freq == 0:
            self.save(epoch=epoch, step=in_epoch, metrics=metric_states(self.model))
