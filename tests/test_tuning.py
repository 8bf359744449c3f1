"""`python -m tuning.search` on real MNIST: the trials table, best.json, resuming, TensorBoard hparams,
diverging trials, distributed chief/worker tuning, and clear errors.

The searches use CSAE-L (the linear architecture) on a few hundred images for 1 epoch: fast, and the search
machinery is the same for both architectures.
"""

import csv
import glob
import os
import signal
import socket
import subprocess
import sys
import time

import pytest
from conftest import ROOT, mnist_args, run_cli

from csae_tf.config import FitConfig
from tuning import search
from tuning.hypermodel import trial_results
from tuning.space import DIVERGED_LOSS2

TINY = ["--arch", "linear", "--latent-dim", "16", "--epochs", "1", "--batch-size", "64", "--verbose", "0"]
BOUNDS = {"beta": (0.01, 0.1), "lambda1": (0.5, 2.0), "lambda2": (0.001, 0.01)}
BOUND_FLAGS = [x for name, (lo, hi) in BOUNDS.items() for x in (f"--{name}-min", str(lo), f"--{name}-max", str(hi))]


def read_rows(project):
    with open(project / "trials.csv", newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def resumed_search(tfds_dir, tmp_path_factory):
    """A search stopped after its first trial (--max-trials 1), then rerun with --max-trials 3."""
    directory = tmp_path_factory.mktemp("tuning")
    args = [*mnist_args(tfds_dir, train=320, test=128), *TINY, *BOUND_FLAGS, "--directory", str(directory),
            "--project-name", "p", "--strategy", "mirrored", "--devices", "CPU:0"]
    first = run_cli("tuning.search", *args, "--max-trials", "1")
    assert first.returncode == 0, first.stderr[-3000:]
    first_rows = read_rows(directory / "p")
    second = run_cli("tuning.search", *args, "--max-trials", "3")
    assert second.returncode == 0, second.stderr[-3000:]
    return directory / "p", first, first_rows, second


def test_trials_table_has_distinct_values_inside_the_bounds(resumed_search):
    project, _, _, second = resumed_search
    rows = read_rows(project)
    assert [r["trial"] for r in rows] == ["0", "1", "2"]
    assert all(r["status"] == "ok" for r in rows)
    for name, (lo, hi) in BOUNDS.items():
        values = [float(r[name]) for r in rows]
        assert len(set(values)) == 3, (name, values)
        assert all(lo <= v <= hi for v in values), (name, values)
    for column in ("accuracy", "loss1", "loss2", "loss3", "seconds"):
        assert all(float(r[column]) >= 0 for r in rows), column
    header = [line.split() for line in second.stdout.splitlines() if line.lstrip().startswith("trial  status")]
    assert header == [["trial", "status", "beta", "lambda1", "lambda2", "accuracy", "loss", "loss1", "loss2", "loss3",
                       "balanced", "seconds"]]


def test_rerun_continues_without_running_the_finished_trial_again(resumed_search):
    project, first, first_rows, second = resumed_search
    assert "[tuner0] trial 0:" in first.stdout
    assert "[tuner0] trial 0:" not in second.stdout
    assert "[tuner0] trial 1:" in second.stdout and "[tuner0] trial 2:" in second.stdout
    assert read_rows(project)[0] == first_rows[0]  # same values, metrics and seconds: not retrained


def test_strategy_flag_reaches_every_trial(resumed_search):
    _, first, _, second = resumed_search
    results = [line for line in (first.stdout + second.stdout).splitlines() if "trial result" in line]
    assert len(results) == 3
    assert all("(MirroredStrategy, 1 replica(s))" in line for line in results)


def test_best_json_is_the_best_trial_and_csae_fit_trains_from_it(resumed_search):
    project, _, _, _ = resumed_search
    rows = read_rows(project)
    best = max(rows, key=lambda r: float(r["accuracy"]))
    cfg = FitConfig.load(project / "best.json")
    for name in BOUNDS:
        assert getattr(cfg, name) == pytest.approx(float(best[name]), rel=1e-9)
    assert cfg.arch == "linear" and cfg.train_limit == 320 and cfg.epochs == 1
    result = run_cli("csae_tf.fit", "--config", str(project / "best.json"))
    assert result.returncode == 0, result.stderr[-3000:]
    assert (project / "best_run" / "metrics.json").exists()


def test_each_trial_writes_its_hparams_to_tensorboard(resumed_search):
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
    from tensorboard.plugins.hparams import plugin_data_pb2

    project, _, _, _ = resumed_search
    rows = {r["trial"]: r for r in read_rows(project)}
    for trial_id, row in rows.items():
        files = glob.glob(str(project / "logs" / trial_id / "execution0" / "events.out.tfevents.*"))
        starts = [plugin_data_pb2.HParamsPluginData.FromString(v.metadata.plugin_data.content).session_start_info
                  for f in files for e in EventFileLoader(f).Load() for v in e.summary.value
                  if v.tag == "_hparams_/session_start_info"]
        assert len(starts) == 1, trial_id
        for name in BOUNDS:
            assert starts[0].hparams[name].number_value == pytest.approx(float(row[name]), rel=1e-9)
        assert glob.glob(str(project / "logs" / trial_id / "execution0" / "validation" / "events.*"))


def test_get_best_models_loads_the_best_trial(resumed_search, tfds_dir):
    import numpy as np

    from csae_tf import data
    from tuning.hypermodel import CSAEHyperModel
    from tuning.tuners import build_tuner

    project, _, _, _ = resumed_search
    best = FitConfig.load(project / "best.json")
    args = search.build_parser().parse_args(
        [*mnist_args(tfds_dir, train=320, test=128), *TINY, *BOUND_FLAGS, "--directory", str(project.parent),
         "--project-name", "p"])
    settings, cfg = search.settings_from_args(args), search.config_from_args(args)
    _, test, info = data.load_datasets(cfg)
    tuner = build_tuner(cfg, settings, CSAEHyperModel(cfg, settings, info.num_classes, info.image_shape, 5))
    model = tuner.get_best_models(1)[0]
    assert (model.beta, model.lambda1, model.lambda2) == pytest.approx((best.beta, best.lambda1, best.lambda2))
    accuracy = model.evaluate(test, verbose=0, return_dict=True)["accuracy"]
    best_row = next(r for r in read_rows(project) if float(r["beta"]) == pytest.approx(best.beta))
    assert np.isfinite(accuracy) and accuracy > 0.15  # trained weights (chance: 0.10)
    assert accuracy >= float(best_row["accuracy"]) - 1e-6  # the saved epoch is the best (here: the only) one


def test_diverging_trials_are_scored_worst_and_the_search_goes_on(tfds_dir, tmp_path):
    # lambda2 = 1e4..1e5 with the Laplacian loss at lr 0.1 gives a non-finite loss within a few steps.
    result = run_cli("tuning.search", *mnist_args(tfds_dir, train=256, test=128), *TINY,
                     "--lambda2-min", "1e4", "--lambda2-max", "1e5", "--max-trials", "2",
                     "--directory", str(tmp_path), "--project-name", "nan")
    assert result.returncode == 0, result.stderr[-3000:]
    rows = read_rows(tmp_path / "nan")
    assert [r["status"] for r in rows] == ["diverged", "diverged"]
    assert all(float(r["accuracy"]) == 0.0 and float(r["loss2"]) == DIVERGED_LOSS2 for r in rows)
    assert not (tmp_path / "nan" / "best.json").exists()
    assert "no trial finished without diverging" in result.stdout


def test_trial_results_replace_non_finite_metrics_by_the_worst_scores():
    finite = {"val_accuracy": 0.9, "val_loss": 1.0, "val_loss1": 0.5, "val_loss2": 0.1, "val_loss3": 0.2}
    ok = trial_results(finite, diverged=False, weight=2.0)
    assert ok["balanced"] == pytest.approx(0.9 - 2.0 * 0.1) and ok["diverged"] == 0.0
    bad = trial_results({**finite, "val_loss3": float("nan")}, diverged=False, weight=2.0)
    assert bad == {"val_accuracy": 0.0, "val_loss2": DIVERGED_LOSS2, "balanced": -2.0 * DIVERGED_LOSS2,
                   "diverged": 1.0}
    assert trial_results(finite, diverged=True, weight=1.0)["diverged"] == 1.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_chief_and_two_workers_complete_a_search_together(tfds_dir, tmp_path):
    port = _free_port()
    args = [*mnist_args(tfds_dir, train=256, test=128), *TINY, *BOUND_FLAGS, "--max-trials", "3",
            "--directory", str(tmp_path), "--project-name", "dist"]
    procs = {}
    try:
        for tuner_id in ("chief", "worker0", "worker1"):
            env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "KERASTUNER_TUNER_ID": tuner_id,
                   "KERASTUNER_ORACLE_IP": "127.0.0.1", "KERASTUNER_ORACLE_PORT": str(port)}
            procs[tuner_id] = subprocess.Popen(
                [sys.executable, "-m", "tuning.search", *args], cwd=ROOT, env=env, text=True,
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
        deadline = time.time() + 420
        outputs = {}
        for tuner_id, proc in procs.items():
            outputs[tuner_id] = proc.communicate(timeout=max(deadline - time.time(), 1))
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=30)
    for tuner_id, proc in procs.items():
        assert proc.returncode == 0, (tuner_id, outputs[tuner_id][1][-3000:])
    ran = {}
    for worker in ("worker0", "worker1"):
        ran[worker] = [line for line in outputs[worker][0].splitlines() if line.startswith(f"[{worker}] trial ")]
        assert len(ran[worker]) >= 1, outputs[worker][0][-2000:]
    assert len(ran["worker0"]) + len(ran["worker1"]) == 3
    assert "chief ran 0 trial(s)" in outputs["chief"][0]
    rows = read_rows(tmp_path / "dist")
    assert [r["trial"] for r in rows] == ["0", "1", "2"] and all(r["status"] == "ok" for r in rows)
    assert (tmp_path / "dist" / "best.json").exists()


@pytest.mark.parametrize("flags, message", [
    (["--beta-min", "0.3", "--beta-max", "0.1"], "error: --beta-min (0.3) must not exceed --beta-max (0.1)"),
    (["--objective", "val_loss9"], "error: --objective must be one of val_accuracy, val_loss2, balanced"),
    (["--tuner", "grid"], "error: --tuner must be one of random, bayesian, hyperband (got 'grid')"),
    (["--lambda2-min", "0"], "error: --lambda2-min must be > 0: lambda2 is sampled on a log scale (got 0)"),
    (["--max-trials", "0"], "error: --max-trials must be >= 1 (got 0)"),
])
def test_bad_search_settings_are_refused(flags, message, capsys, tmp_path):
    assert search.main([*flags, "--directory", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(message), err
    assert not any(tmp_path.iterdir())
