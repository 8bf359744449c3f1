"""Distributed training on real tf.distribute: 2 logical CPU devices, 2 local workers, SIGKILL and resume.

Logical devices must exist before TensorFlow starts, and a cluster needs one process per worker,
so every training here runs in its own bounded subprocess, killed by the test if it hangs or fails.
"""

import contextlib
import csv
import json
import os
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest
from conftest import ROOT, free_ports, mnist_args

import csae_tf  # noqa: F401  (registers the model classes for load_model)
from csae_tf import distribute
from csae_tf.config import ConfigError, FitConfig

TIMEOUT = 900  # seconds per process: the shared 2-core machine can be very busy

# One epoch of 4 steps (global batch 32) of the same CSAE from the same weights on one device and on
# two logical CPU devices. beta = 0: the noise is drawn per replica by design, so it cannot match.
EQUIVALENCE = """
import json, sys
import tensorflow as tf
tf.config.set_logical_device_configuration(tf.config.list_physical_devices("CPU")[0],
                                           [tf.config.LogicalDeviceConfiguration()] * 2)
import keras, numpy as np
from csae_tf.config import FitConfig
from csae_tf.models import build_model

sync_bn = sys.argv[1] == "sync"
rng = np.random.RandomState(0)
images = rng.uniform(-1, 1, (128, 32, 32, 1)).astype("float32")
labels = (np.arange(128) % 10).astype("int32")

def train(strategy, initial=None):
    cfg = FitConfig(beta=0.0, sync_bn=sync_bn, seed=1)  # weight decay 5e-4 on: it is scaled per replica
    with strategy.scope():
        model = build_model(cfg, 10, (32, 32, 1))
        model.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9))
    if initial is not None:
        model.set_weights(initial)
    start = [np.copy(w) for w in model.get_weights()]
    ds = tf.data.Dataset.from_tensor_slices((images, labels)).batch(32, drop_remainder=True)
    return start, model.get_weights, model.fit(ds, epochs=1, verbose=0).history

start, one, h1 = train(tf.distribute.OneDeviceStrategy("/device:CPU:0"))
_, two, h2 = train(tf.distribute.MirroredStrategy(["/device:CPU:0", "/device:CPU:1"]), start)
w1, w2 = one(), two()
print(json.dumps({
    "diff": max(float(np.max(np.abs(a - b))) for a, b in zip(w1, w2)),
    "moved": max(float(np.max(np.abs(a - b))) for a, b in zip(w1, start)),
    "metrics": {k: [h1[k][0], h2[k][0]] for k in ("loss", "loss1", "loss2", "loss3", "accuracy")},
}))
"""


def _env(**extra) -> dict:
    return {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": str(ROOT), **extra}


@contextlib.contextmanager
def _processes():
    """Start processes in their own sessions; kill every one still running on exit, pass or fail."""
    started = []

    def start(args, log, env=None):
        proc = subprocess.Popen(args, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=env or _env(),
                                start_new_session=True)
        started.append(proc)
        return proc

    try:
        yield start
    finally:
        for proc in started:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(30)


def _fit_command(tfds_dir, out, *extra) -> list[str]:
    return [sys.executable, "-m", "csae_tf.fit", *mnist_args(tfds_dir, train=512, test=128), "--batch-size", "64",
            "--lr", "0.05", "--verbose", "2", "--output", str(out), *extra]


def _epochs(out) -> list[str]:
    with open(out / "history.csv", newline="") as f:
        return [row["epoch"] for row in csv.DictReader(f)]


@pytest.fixture(scope="module")
def equivalence():
    """Both BN variants at once (one process each: two MirroredStrategy objects must not share one)."""
    procs = {kind: subprocess.Popen([sys.executable, "-c", EQUIVALENCE, kind], cwd=ROOT, env=_env(),
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                    start_new_session=True) for kind in ("sync", "local")}
    try:
        results = {}
        for kind, proc in procs.items():
            stdout, stderr = proc.communicate(timeout=TIMEOUT)
            assert proc.returncode == 0, stderr[-3000:]
            results[kind] = json.loads(stdout.strip().splitlines()[-1])
        return results
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(30)


def test_two_logical_cpus_train_like_one_device_with_sync_bn(equivalence):
    # Same global batch, same start: the only difference allowed is float32 rounding. The gradients
    # are summed in another order (two partial sums of 16, then an all-reduce), and Keras' synchronised
    # BN takes the variance as E[x^2] - E[x]^2 of all-reduced sums where one device computes the
    # moments directly: relative differences of ~1e-7 per operation, carried on by four SGD-momentum
    # steps. Measured here: 2.8e-5 (largest weight difference, with weights moving by up to 0.75).
    # 2e-4 leaves a 7x margin for other CPUs' kernels and stays 200x below what per-replica BN gives.
    result = equivalence["sync"]
    assert result["moved"] > 1e-1, result  # training did change the weights
    assert result["diff"] < 2e-4, result
    for name, (one, two) in result["metrics"].items():  # metrics aggregated over both replicas
        assert two == pytest.approx(one, rel=1e-4, abs=1e-5), name


def test_per_replica_batch_norm_differs_beyond_that_tolerance(equivalence):
    # Default BN normalises each replica's 16 images by their own moments: a different function,
    # so the same test's tolerance must catch it (it is what makes the tolerance meaningful).
    assert equivalence["local"]["diff"] > 2e-3, equivalence["local"]  # measured 4.3e-2


def test_devices_names_are_parsed_and_checked():
    assert distribute.parse_devices(["CPU:0", "/gpu:1", "/device:GPU:2"]) == [("CPU", 0), ("GPU", 1), ("GPU", 2)]
    with pytest.raises(ConfigError, match="not a device name"):
        distribute.parse_devices(["TPU:0"])
    with pytest.raises(ConfigError, match="twice"):
        distribute.parse_devices(["CPU:0", "cpu:0"])


def test_tf_config_decides_chief_and_worker_directories(monkeypatch, tmp_path):
    cfg = FitConfig(strategy="multi-worker", output=str(tmp_path / "run"))
    cluster = {"worker": ["127.0.0.1:1", "127.0.0.1:2"]}
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": cluster, "task": {"type": "worker", "index": 0}}))
    assert distribute.is_chief(cfg) and distribute.work_dir(cfg) == tmp_path / "run"
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": cluster, "task": {"type": "worker", "index": 1}}))
    assert not distribute.is_chief(cfg) and distribute.work_dir(cfg) == tmp_path / "run" / "workertemp_1"
    with_chief = {"chief": ["127.0.0.1:3"], **cluster}
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": with_chief, "task": {"type": "worker", "index": 0}}))
    assert not distribute.is_chief(cfg)
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": cluster, "task": {"type": "worker", "index": 5}}))
    with pytest.raises(ConfigError, match="not a member"):
        distribute.is_chief(cfg)


def _wait_for_state(path, epoch: int, step: int, procs, deadline: float) -> dict | None:
    """Poll a TrainingState pointer until it reaches (epoch, >= step); None if a process ends first."""
    while time.time() < deadline and all(p.poll() is None for p in procs):
        with contextlib.suppress(FileNotFoundError, json.JSONDecodeError):
            state = json.loads(path.read_text())
            if state["epoch"] == epoch and state["step"] >= step:
                return state
        time.sleep(0.02)
    return None


def _start_workers(start, command, cluster, logs):
    return [start(command, open(log, "w"), _env(TF_CONFIG=json.dumps(
        {"cluster": cluster, "task": {"type": "worker", "index": i}}))) for i, log in enumerate(logs)]


def test_two_local_workers_survive_a_killed_worker_and_only_the_chief_keeps_files(tfds_dir, tmp_path):
    out = tmp_path / "cluster"
    cluster = {"worker": [f"127.0.0.1:{p}" for p in free_ports(2)]}
    command = _fit_command(tfds_dir, out, "--epochs", "2", "--strategy", "multi-worker", "--save-freq", "2",
                           "--image-every", "0")
    first_logs = [tmp_path / f"first{i}.log" for i in range(2)]
    logs = [tmp_path / f"worker{i}.log" for i in range(2)]
    with _processes() as start:
        # 1. Kill worker 1 during epoch 2: the chief must stop (not hang) within its heartbeat timeout.
        chief, worker = _start_workers(start, command, cluster, first_logs)
        state = _wait_for_state(out / "workertemp_1" / "checkpoints" / "state.json", 1, 2, [chief, worker],
                                time.time() + TIMEOUT)
        assert state is not None, "\n---\n".join(log.read_text()[-3000:] for log in first_logs)
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait(30)
        assert chief.wait(300) != 0  # the collective aborted: the chief saw its peer die
        assert _epochs(out) == ["0"] and not (out / "metrics.json").exists()
        # 2. Restart both with the same command: they resume together and finish.
        procs = _start_workers(start, command, cluster, logs)
        deadline = time.time() + TIMEOUT
        for proc in procs:
            proc.wait(max(1, deadline - time.time()))
        texts = [log.read_text() for log in logs]
        assert [p.returncode for p in procs] == [0, 0], "\n---\n".join(t[-3000:] for t in texts)
    for text in texts:
        assert "2 replica(s), global batch 64 = 32 per replica" in text
        assert "at epoch 2 of 2" in text
        spread = float(text.split("replicas agree: largest difference of weight sums ")[1].split()[0])
        assert spread < 1e-6, text[-2000:]  # same centroids and weights on both workers
    assert not (out / "workertemp_1").exists()  # the worker removed its temporary directory
    assert _epochs(out) == ["0", "1"] and (out / "metrics.json").exists()
    model = keras.models.load_model(out / "model.keras")
    labels, distances = model.classify(np.zeros((3, *model.image_shape), "float32"))
    assert labels.shape == (3,) and distances.shape == (3, 10)
    np.testing.assert_array_equal(model.pedcc.centroids.numpy(), np.load(out / "centroids.npy"))
