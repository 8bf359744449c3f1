"""Where a run trains: the tf.distribute strategy, its devices, and this process's role in a cluster.

One GPU or CPU: the default strategy. Several devices of one machine: `MirroredStrategy`
(``--devices GPU:0,GPU:1``; on a machine without GPUs, ``--devices CPU:0,CPU:1`` splits the CPU
into logical devices, which is how the tests run it). Several machines: `MultiWorkerMirroredStrategy`,
one process per machine, each with its own `TF_CONFIG` (TensorFlow's cluster description).

In a cluster only the chief writes the run directory; every other worker writes the same files
to ``OUTPUT/workertemp_<index>`` (TensorFlow's own naming), which it deletes when the run ends.
All workers write their checkpoints at the same moments (the same callbacks run on each), so a
save that reads cross-replica (sync-on-read) variables meets the same collective on every worker.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import keras
import tensorflow as tf

from csae_tf.config import ConfigError, FitConfig

_DEVICE = re.compile(r"^/?(?:device:)?(CPU|GPU):(\d+)$", re.IGNORECASE)


def parse_devices(devices: list[str]) -> list[tuple[str, int]]:
    """["CPU:0", "/gpu:1"] -> [("CPU", 0), ("GPU", 1)]; a malformed or repeated name is a ConfigError."""
    parsed = []
    for name in devices:
        match = _DEVICE.match(name.strip())
        if not match:
            raise ConfigError(f"--devices: {name!r} is not a device name like GPU:0 or CPU:1")
        parsed.append((match.group(1).upper(), int(match.group(2))))
    if len(set(parsed)) != len(parsed):
        raise ConfigError(f"--devices names a device twice: {','.join(devices)}")
    return parsed


def configure_devices(devices: list[str] | None) -> list[str]:
    """Make the named devices exist and return their canonical names ("/device:CPU:1", ...).

    GPUs must be visible. CPU:N with N > 0 splits the one physical CPU into N + 1 logical
    devices; that must happen before TensorFlow runs its first operation.
    """
    if not devices:
        return []
    parsed = parse_devices(devices)
    gpus = tf.config.list_physical_devices("GPU")
    for kind, index in parsed:
        if kind == "GPU" and index >= len(gpus):
            raise ConfigError(f"--devices: GPU:{index} is not visible ({len(gpus)} GPU(s) on this machine)")
    cpus_needed = 1 + max((i for kind, i in parsed if kind == "CPU"), default=0)
    if cpus_needed > 1:
        cpu = tf.config.list_physical_devices("CPU")[0]
        current = tf.config.get_logical_device_configuration(cpu)
        if current is None or len(current) < cpus_needed:
            try:
                tf.config.set_logical_device_configuration(
                    cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(cpus_needed)])
            except RuntimeError:  # TensorFlow is already running: the split can no longer change
                if len(tf.config.list_logical_devices("CPU")) < cpus_needed:
                    raise ConfigError(f"--devices needs {cpus_needed} logical CPU devices, but TensorFlow was "
                                      "initialised before they could be created") from None
    return [f"/device:{kind}:{index}" for kind, index in parsed]


def make_strategy(cfg: FitConfig) -> tf.distribute.Strategy:
    """auto: MirroredStrategy over --devices or over all GPUs when more than one is visible, else default."""
    devices = configure_devices(cfg.devices)
    kind = cfg.strategy
    if kind == "auto":
        many = len(devices) > 1 or (not devices and len(tf.config.list_physical_devices("GPU")) > 1)
        kind = "mirrored" if many else "default"
    if kind == "multi-worker":
        if devices:
            raise ConfigError("--devices does not apply to --strategy multi-worker: each worker uses all its "
                              "visible GPUs (restrict them with CUDA_VISIBLE_DEVICES) or its CPU")
        return tf.distribute.MultiWorkerMirroredStrategy()
    if kind == "mirrored":
        return tf.distribute.MirroredStrategy(devices=devices or None)
    if len(devices) > 1:
        raise ConfigError(f"--strategy default runs on one device, but --devices names {len(devices)}: "
                          "use --strategy mirrored")
    if devices:
        return tf.distribute.OneDeviceStrategy(devices[0])
    return tf.distribute.get_strategy()


# --- cluster roles ---------------------------------------------------------------------------------------

def cluster_task(cfg: FitConfig) -> tuple[str, int] | None:
    """(task type, index) of this process from TF_CONFIG under --strategy multi-worker, else None."""
    if cfg.strategy != "multi-worker":
        return None
    try:
        tf_config = json.loads(os.environ.get("TF_CONFIG") or "{}")
    except json.JSONDecodeError as err:
        raise ConfigError(f"TF_CONFIG is not valid JSON: {err}") from None
    task = tf_config.get("task") or {}
    cluster = tf_config.get("cluster") or {}
    if not cluster:
        return ("chief", 0)  # no cluster: a single local worker
    if task.get("type") not in cluster or not 0 <= int(task.get("index", -1)) < len(cluster[task["type"]]):
        raise ConfigError(f"TF_CONFIG task {task} is not a member of its cluster {sorted(cluster)}")
    return (task["type"], int(task["index"]))


def is_chief(cfg: FitConfig) -> bool:
    """The chief writes the run's results: task "chief", or worker 0 when the cluster has no chief."""
    task = cluster_task(cfg)
    if task is None or task[0] == "chief":
        return True
    cluster = json.loads(os.environ.get("TF_CONFIG") or "{}").get("cluster", {})
    return task == ("worker", 0) and "chief" not in cluster


def work_dir(cfg: FitConfig) -> Path:
    """Where this process writes: the run directory for the chief, OUTPUT/workertemp_<index> for a worker.

    The worker directory has a fixed name so that a restarted worker finds its own checkpoints.
    """
    out = Path(cfg.output)
    if is_chief(cfg):
        return out
    return out / f"workertemp_{cluster_task(cfg)[1]}"


# --- model.fit under MultiWorkerMirroredStrategy -----------------------------------------------------------

def prepare_multi_worker_fit(model) -> None:
    """Work around the two Keras 3.15 bugs that stop `model.fit` under MultiWorkerMirroredStrategy.

    1. keras-team/keras#20585: before training, Keras reduces a first input batch eagerly across
       workers to build the model symbolically; under MWMS that eager collective fails. The CSAE
       builds its weights in its constructor, so the caller builds the optimizer inside the scope,
       this calls the model once on a zero batch there, and skips the pre-build.
    2. tensorflow/tensorflow#72388: Keras reduces step results with ``strategy.reduce(MEAN, v,
       axis=0)``, which fails on scalars; the steps here return each value as a rank-1 tensor,
       which that reduce turns back into the cross-replica mean scalar.

    Both overrides are set on this model instance only (private Keras behaviour: re-check them
    when Keras changes); the saved model is unaffected.
    """
    if model.optimizer is None or not model.optimizer.built:
        raise RuntimeError("build the optimizer inside strategy.scope() first")
    with model.distribute_strategy.scope():
        model(tf.zeros((1, *model.image_shape)), training=False)  # builds what a first call would
    train_step, test_step = model.train_step, model.test_step
    model._maybe_symbolic_build = lambda iterator=None, data_batch=None: None
    model.train_step = lambda data: {k: tf.reshape(v, [1]) for k, v in train_step(data).items()}
    model.test_step = lambda data: {k: tf.reshape(v, [1]) for k, v in test_step(data).items()}


def replica_spread(strategy: tf.distribute.Strategy, model) -> tuple[float, str]:
    """(largest difference between replicas and workers of a weight's sum or sum of squares, its weight).

    0 means every replica holds the same weights and centroids. The per-class latent Gaussians are
    left out: they are fitted after training (monitoring may fit them on the chief alone). Must be
    called by every worker (it gathers across the cluster).
    """
    skip = {id(w) for w in model.latent_gaussians.weights}
    weights = [w for w in model.weights if id(w) not in skip]
    variables = [v.value if hasattr(v, "value") else v for v in weights]

    def fingerprint():
        return tf.stack([s for v in variables for s in (tf.reduce_sum(v), tf.reduce_sum(tf.square(v)))])[None]

    @tf.function
    def spread():
        gathered = strategy.gather(strategy.run(fingerprint), axis=0)
        return tf.reduce_max(gathered, 0) - tf.reduce_min(gathered, 0)

    differences = spread().numpy()
    worst = int(differences.argmax())
    return float(differences[worst]), weights[worst // 2].path


def _gather(strategy: tf.distribute.Strategy, value) -> tf.Tensor:
    """`value` (a number, the same on a worker's replicas) from every replica of the cluster, shape (R,)."""
    @tf.function
    def gather():
        return strategy.gather(strategy.run(lambda: tf.reshape(tf.cast(value, tf.float64), [1])), axis=0)

    return gather()


def check_same_epoch(strategy: tf.distribute.Strategy, epoch: int) -> None:
    """Every worker must resume at the same epoch, or their collective steps would not line up."""
    epochs = sorted({int(e) for e in _gather(strategy, epoch).numpy()})
    if len(epochs) > 1:
        raise RuntimeError(f"the workers' checkpoints are at different epochs {epochs}: restart them all "
                           "from the same state (or with --overwrite)")


class AverageMovingStatistics(keras.callbacks.Callback):
    """Before each validation and at each epoch end, sets every replica's non-trainable weights to their
    mean over all replicas, so `val_*` reads the statistics that the saved model will hold.

    Keras 3 creates batch-norm moving statistics as mirrored variables that each replica
    updates from its own sub-batch without aggregation, so the replicas drift apart and the
    saved model would hold replica 0's estimate only. Averaging them restores what Keras 2 did
    (moving statistics read as the mean over replicas). With --sync-bn they are already equal.
    Put it before the checkpoint callback; under multi-worker every worker must run it.
    """

    def __init__(self, strategy: tf.distribute.Strategy):
        super().__init__()
        self.strategy = strategy
        self._average = None

    def on_test_begin(self, logs=None):  # fit's validation runs its callbacks' test hooks
        self()

    def on_epoch_end(self, epoch, logs=None):
        self()

    def __call__(self):
        """Average now (the checkpoint callback's `before_save`: a mid-epoch state holds the mean too)."""
        if self._average is None:
            variables = [v.value for v in self.model.non_trainable_weights]

            def replica_fn():
                means = tf.distribute.get_replica_context().all_reduce(
                    "MEAN", [tf.identity(v) for v in variables])
                for v, mean in zip(variables, means):
                    v.assign(mean)

            self._average = tf.function(lambda: self.strategy.run(replica_fn))
        self._average()
