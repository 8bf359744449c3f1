"""The private Keras (and KerasTuner, argparse) behaviour csae-tf relies on, checked so that an upgrade
that moves it fails here, loudly and by name, instead of silently changing a run.

Where it is relied on:
- csae_tf/distribute.py `prepare_multi_worker_fit`: replaces `Trainer._maybe_symbolic_build`.
- csae_tf/trainer.py `Trainer.train`: one multi-epoch dataset given to `fit` with `steps_per_epoch`; Keras
  must keep one iterator across epochs, run whole executions, call `on_train_batch_end` once per
  execution, and reset the metrics *before* `on_epoch_begin` (`_RestoreRunningMetrics` puts an interrupted
  epoch's sums back there).
- csae_tf/checkpoint.py `metric_states`: the `Mean` trackers' variables (and their per-replica values).
- tuning/tuners.py: overrides KerasTuner's `Tuner._run_and_update_trial` / `_try_run_and_update_trial`.
- csae_tf/compare.py: retitles `argparse.ArgumentParser._action_groups[-1]`.
setup.py pins keras to the minor version these were checked on.
"""

import argparse
import inspect

import keras
import numpy as np
import pytest
import tensorflow as tf

from csae_tf import checkpoint

CHECKED_ON = "3.15"


def internal(condition: bool, name: str, where: str) -> None:
    """Fail with a message naming the internal and the project code that relies on it."""
    if not condition:
        pytest.fail(f"Keras {keras.__version__}: the internal {name} moved or changed; {where} relies on it "
                    f"(checked on Keras {CHECKED_ON}): re-check it there, then here", pytrace=False)


class Seen(keras.Model):
    """Records the first value of each batch it trains on, and the optimizer step after each execution."""

    def __init__(self):
        super().__init__()
        self.dense = keras.layers.Dense(1)
        self.tracker = keras.metrics.Mean(name="value")

    @property
    def metrics(self):
        return [self.tracker]

    def call(self, x):
        return self.dense(x)

    def train_step(self, data):
        x, _ = data
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.square(self(x)))
        self.optimizer.apply_gradients(zip(tape.gradient(loss, self.trainable_variables), self.trainable_variables))
        self.tracker.update_state(x[0, 0])
        return {"value": self.tracker.result(), "first": x[0, 0]}


def numbered_batches(count: int) -> tf.data.Dataset:
    """Batch i holds the value i in every element."""
    return tf.data.Dataset.range(count).map(lambda i: (tf.fill([2, 1], tf.cast(i, tf.float32)), tf.zeros([2, 1])))


class Log(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.events = []

    def on_train_batch_end(self, batch, logs=None):
        self.events.append(("batch_end", batch, int(self.model.optimizer.iterations.numpy()), float(logs["first"])))


def seen_model(steps_per_execution=1):
    keras.utils.set_random_seed(0)
    model = Seen()
    model(np.zeros((1, 1), "float32"))
    model.compile(keras.optimizers.SGD(0.0), steps_per_execution=steps_per_execution)
    return model


def test_keras_is_the_checked_minor_version():
    internal(keras.__version__.startswith(CHECKED_ON + "."), f"Keras version (got {keras.__version__})",
             "every test in this file")


def test_fit_keeps_one_iterator_across_epochs_with_steps_per_epoch():
    model, log = seen_model(), Log()
    model.fit(numbered_batches(12), epochs=3, steps_per_epoch=4, verbose=0, callbacks=[log])
    firsts = [e[3] for e in log.events]
    internal(firsts == list(range(12)), "EpochIterator's iterator reuse when steps_per_epoch is given "
             f"(batches seen {firsts}, expected 0..11 in order)", "csae_tf/trainer.py Trainer.train (one "
             "multi-epoch pipeline, each epoch continuing where the last stopped)")


def test_fit_runs_whole_executions_and_reports_each_once():
    model, log = seen_model(steps_per_execution=3), Log()
    model.fit(numbered_batches(12), epochs=2, steps_per_epoch=6, verbose=0, callbacks=[log])
    ends = [(e[1], e[2]) for e in log.events]
    internal(ends == [(2, 3), (5, 6), (2, 9), (5, 12)],
             f"on_train_batch_end once per execution of steps_per_execution steps (got (batch, step) {ends})",
             "csae_tf/checkpoint.py PeriodicTrainingState (reads optimizer.iterations at each call)")


def test_fit_resets_metrics_before_on_epoch_begin():
    class Restore(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            checkpoint.set_metric_states(self.model, {"value": [100.0, 1.0]})  # total 100 over 1 example

    model = seen_model()
    history = model.fit(numbered_batches(4), epochs=1, steps_per_epoch=1, verbose=0, callbacks=[Restore()]).history
    internal(history["value"] == [pytest.approx(50.0)],  # (100 + batch 0's value 0) / 2
             f"Trainer.fit calling reset_metrics() before callbacks.on_epoch_begin (got {history['value']})",
             "csae_tf/trainer.py _RestoreRunningMetrics")


def test_mean_tracker_state_is_its_variables():
    model = seen_model()
    model.tracker.update_state([1.0, 2.0, 6.0])
    states = checkpoint.metric_states(model)
    fresh = seen_model()
    checkpoint.set_metric_states(fresh, states)
    internal(len(model.tracker.variables) == 2 and float(fresh.tracker.result()) == 3.0,
             "keras.metrics.Mean's state as its variables (total, count)", "csae_tf/checkpoint.py metric_states")
    internal(all(hasattr(v, "value") for v in model.tracker.variables)
             and len(model.distribute_strategy.experimental_local_results(model.tracker.variables[0].value)) == 1,
             "keras.Variable.value (the tf.Variable under a strategy)", "csae_tf/checkpoint.py metric_states")


def test_symbolic_build_hook_that_multi_worker_fit_replaces():
    from keras.src.backend.tensorflow.trainer import TensorFlowTrainer

    hook = getattr(TensorFlowTrainer, "_maybe_symbolic_build", None)
    internal(hook is not None and list(inspect.signature(hook).parameters) == ["self", "iterator", "data_batch"],
             "TensorFlowTrainer._maybe_symbolic_build(iterator=None, data_batch=None)",
             "csae_tf/distribute.py prepare_multi_worker_fit")
    for method in ("fit", "evaluate"):
        internal("self._maybe_symbolic_build(" in inspect.getsource(getattr(TensorFlowTrainer, method)),
                 f"TensorFlowTrainer.{method} calling self._maybe_symbolic_build", "csae_tf/distribute.py "
                 "prepare_multi_worker_fit")


def test_keras_tuner_trial_hooks_that_the_tuners_override():
    import keras_tuner

    tuner = keras_tuner.Tuner
    for name in ("_run_and_update_trial", "_try_run_and_update_trial"):
        method = getattr(tuner, name, None)
        internal(method is not None and list(inspect.signature(method).parameters)[:2] == ["self", "trial"],
                 f"keras_tuner BaseTuner.{name}(self, trial, ...)", "tuning/tuners.py _SearchTuner")
    internal("self._run_and_update_trial(" in inspect.getsource(tuner._try_run_and_update_trial),
             "keras_tuner BaseTuner._try_run_and_update_trial calling _run_and_update_trial",
             "tuning/tuners.py _SearchTuner (a diverged trial is marked there)")


def test_argparse_keeps_its_argument_groups():
    parser = argparse.ArgumentParser()
    parser.add_argument_group("extra")
    internal(isinstance(getattr(parser, "_action_groups", None), list) and parser._action_groups[-1].title == "extra",
             "argparse.ArgumentParser._action_groups", "csae_tf/compare.py (retitles the last group)")
