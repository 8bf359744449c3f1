"""`python -m tuning.search` on real MNIST: the trials table, best.json and its exact retraining, resuming,
TensorBoard hparams, diverging trials, the message of a search with no finished trial, distributed chief/worker
tuning with a worker killed mid-trial, and clear errors.

The searches use CSAE-L (the linear architecture) on a few hundred images for 1 epoch: fast, and the search
machinery is the same for both architectures. They read a TFDS directory whose test split is missing: a search
must never read it.
"""

import csv
import dataclasses
import glob
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import MNIST_FILES, ROOT, free_ports, mnist_args, run_cli

from csae_tf.config import FitConfig
from tuning import search
from tuning.hypermodel import trial_results

TINY = ["--arch", "linear", "--latent-dim", "16", "--epochs", "1", "--batch-size", "64", "--verbose", "0"]
BOUNDS = {"beta": (0.01, 0.1), "lambda1": (0.5, 2.0), "lambda2": (0.001, 0.01)}
BOUND_FLAGS = [x for name, (lo, hi) in BOUNDS.items() for x in (f"--{name}-min", str(lo), f"--{name}-max", str(hi))]
METRICS = {"accuracy": "val_accuracy", "loss": "val_loss", "loss1": "val_loss1", "loss2": "val_loss2",
           "loss3": "val_loss3"}


def read_rows(project):
    with open(project / "trials.csv", newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def no_test_split(tfds_dir, tmp_path_factory):
    """A TFDS data directory with MNIST's training split and metadata but no test split: reading it fails."""
    directory = tmp_path_factory.mktemp("tfds_no_test")
    for source in (tfds_dir / "mnist").rglob("*"):
        if source.is_file() and "mnist-test.tfrecord" not in source.name:
            target = directory / source.relative_to(tfds_dir)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.symlink_to(source)
    assert glob.glob(str(tfds_dir / "mnist" / "*" / "mnist-test.tfrecord*"))
    assert not list(directory.rglob("mnist-test.tfrecord*"))
    return directory


def search_args(data_dir, train=320):
    return ["--dataset", "mnist", "--data-dir", str(data_dir), "--manual-dir", str(MNIST_FILES),
            "--train-limit", str(train), *TINY]


@pytest.fixture(scope="module")
def resumed_search(no_test_split, tmp_path_factory):
    """A deterministic search stopped after its first trial (--max-trials 1), then rerun with --max-trials 3; no
    test split to read."""
    directory = tmp_path_factory.mktemp("tuning")
    args = [*search_args(no_test_split), *BOUND_FLAGS, "--directory", str(directory), "--project-name", "p",
            "--strategy", "mirrored", "--devices", "CPU:0", "--deterministic"]
    first = run_cli("tuning.search", *args, "--max-trials", "1")
    assert first.returncode == 0, first.stderr[-3000:]
    first_rows = read_rows(directory / "p")
    second = run_cli("tuning.search", *args, "--max-trials", "3")
    assert second.returncode == 0, second.stderr[-3000:]
    return directory / "p", first, first_rows, second


def test_trials_are_scored_on_the_validation_split_without_reading_the_test_split(resumed_search):
    project, first, _, second = resumed_search
    assert "294 train / 26 validation images (held out of the training split; the test split is not read)" \
        in first.stdout
    assert "on the 26 validation images held out of the training split" in second.stdout
    assert {r["status"] for r in read_rows(project)} == {"ok"}


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


def test_csae_fit_retrains_best_json_and_any_trial_to_its_figures_bit_for_bit(resumed_search, tfds_dir, tmp_path):
    project, _, _, _ = resumed_search
    rows = {r["trial"]: r for r in read_rows(project)}
    cfg = FitConfig.load(project / "best.json")
    best_id = next(t for t, r in rows.items() if all(getattr(cfg, name) == float(r[name]) for name in BOUNDS))
    top = max(float(r["accuracy"]) for r in rows.values())
    assert float(rows[best_id]["accuracy"]) == top and best_id == min(t for t, r in rows.items()
                                                                       if float(r["accuracy"]) == top)
    assert (cfg.arch, cfg.train_limit, cfg.epochs, cfg.deterministic, cfg.steps_per_execution) == \
        ("linear", 320, 1, True, 4)
    # best.json, and trial 2 (the second trial its process built) written out the same way
    other = "2" if best_id != "2" else "1"
    other_cfg = dataclasses.replace(cfg, **{name: float(rows[other][name]) for name in BOUNDS},
                                    output=str(tmp_path / "other"))
    other_cfg.save(tmp_path / "other.json")
    runs = {}
    for trial_id, config in ((best_id, project / "best.json"), (other, tmp_path / "other.json")):
        with open(tmp_path / f"fit{trial_id}.err", "w") as err:  # both at once; fit also reports the test split,
            runs[trial_id] = config, subprocess.Popen(  # so it reads the complete data directory
                [sys.executable, "-m", "csae_tf.fit", "--config", str(config), "--data-dir", str(tfds_dir)],
                cwd=ROOT, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}, stdout=subprocess.DEVNULL, stderr=err)
    for trial_id, (config, proc) in runs.items():
        assert proc.wait(timeout=600) == 0, (tmp_path / f"fit{trial_id}.err").read_text()[-3000:]
        metrics = json.loads((Path(FitConfig.load(config).output) / "metrics.json").read_text())
        for column, name in METRICS.items():
            assert metrics[name] == float(rows[trial_id][column]), (trial_id, name, metrics[name], rows[trial_id])
        assert "test_accuracy" in metrics


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


def test_get_best_models_loads_the_best_trial(resumed_search, no_test_split):
    import numpy as np

    from csae_tf import data
    from tuning.hypermodel import CSAEHyperModel
    from tuning.tuners import build_tuner

    project, _, _, _ = resumed_search
    args = search.build_parser().parse_args(
        [*search_args(no_test_split), *BOUND_FLAGS, "--directory", str(project.parent), "--project-name", "p"])
    settings, cfg = search.settings_from_args(args), search.config_from_args(args)
    splits = data.load_splits(cfg, test=False)
    tuner = build_tuner(cfg, settings, CSAEHyperModel(cfg, settings, splits))
    model = tuner.get_best_models(1)[0]
    validation = data.evaluation_pipeline(splits.validation, splits.info, cfg.batch_size)
    accuracy = model.evaluate(validation, verbose=0, return_dict=True)["accuracy"]
    rows = read_rows(project)
    row = next(r for r in rows if float(r["beta"]) == pytest.approx(model.beta, rel=1e-6))  # a best one (ties)
    assert float(row["accuracy"]) == max(float(r["accuracy"]) for r in rows)
    assert (model.lambda1, model.lambda2) == pytest.approx((float(row["lambda1"]), float(row["lambda2"])))
    assert np.isfinite(accuracy) and accuracy > 0.15  # trained weights (chance: 0.10)
    assert accuracy == pytest.approx(float(row["accuracy"]), abs=1e-6)  # the saved (only) epoch


def test_the_default_search_trains(no_test_split, tmp_path, capsys):
    # the default space and optimiser (CSAE-C, SGD lr 0.1), 3 epochs on 1,000 images: both trials finish
    status = search.main(["--dataset", "mnist", "--data-dir", str(no_test_split), "--manual-dir", str(MNIST_FILES),
                          "--train-limit", "1000", "--epochs", "3", "--max-trials", "2", "--verbose", "0",
                          "--directory", str(tmp_path), "--project-name", "default"])
    assert status == 0, capsys.readouterr().err[-2000:]
    rows = read_rows(tmp_path / "default")
    assert [r["status"] for r in rows] == ["ok", "ok"], rows
    assert all(float(r["accuracy"]) > 0.2 for r in rows), [r["accuracy"] for r in rows]  # chance: 0.10
    assert (tmp_path / "default" / "best.json").exists()


def lambda2_search(data_dir, project, low: str, high: str, trials: int, capsys):
    """A tiny search (256 images) of `trials` trials over lambda2 in [low, high], run in this process: its exit
    status and what it printed."""
    status = search.main([*search_args(data_dir, train=256), "--lambda2-min", low, "--lambda2-max", high,
                          "--max-trials", str(trials), "--directory", str(project.parent), "--project-name",
                          project.name])
    return status, capsys.readouterr()


DIVERGED_TRIALS = pytest.mark.filterwarnings("ignore:All-NaN:RuntimeWarning")  # KerasTuner's, on a NaN trial


@DIVERGED_TRIALS
def test_diverged_trials_fail_and_the_search_goes_on_to_a_finished_trial(no_test_split, tmp_path, capsys):
    # lambda2 log-uniform in [1e-3, 1e5] with the Laplacian loss at lr 0.1: above ~1 it diverges within a few steps
    status, printed = lambda2_search(no_test_split, tmp_path / "mixed", "1e-3", "1e5", 3, capsys)
    assert status == 0, printed.err[-3000:]
    rows = read_rows(tmp_path / "mixed")
    statuses = [r["status"] for r in rows]
    assert "diverged" in statuses and "ok" in statuses, rows
    assert all(r["accuracy"] == "" for r in rows if r["status"] == "diverged")
    best = FitConfig.load(tmp_path / "mixed" / "best.json")
    assert best.lambda2 in [float(r["lambda2"]) for r in rows if r["status"] == "ok"]
    assert "Traceback" not in printed.out + printed.err  # a divergence is an outcome, not a crash


@DIVERGED_TRIALS
def test_a_search_with_no_finished_trial_fails_and_says_what_to_change(no_test_split, tmp_path, capsys):
    status, printed = lambda2_search(no_test_split, tmp_path / "nan", "1e4", "1e5", 2, capsys)
    assert status == 2, printed.out[-2000:]
    assert [r["status"] for r in read_rows(tmp_path / "nan")] == ["diverged", "diverged"]
    assert not (tmp_path / "nan" / "best.json").exists()
    err = printed.err.strip().splitlines()[-1]
    assert err.startswith("error: no trial finished (2 in all): 2 diverged"), err
    assert "lower --lr (now 0.1, e.g. --lr 0.02)" in err and "--lambda2-max (now 100000)" in err, err


def test_trial_results_are_the_validation_metrics_or_none_when_not_finite():
    finite = {"val_accuracy": 0.9, "val_loss": 1.0, "val_loss1": 0.5, "val_loss2": 0.1, "val_loss3": 0.2,
              "accuracy": 0.5}
    ok = trial_results(finite, weight=2.0)
    assert ok == {**{k: v for k, v in finite.items() if k.startswith("val_")}, "balanced": pytest.approx(0.7)}
    assert trial_results({**finite, "val_loss3": float("nan")}, weight=2.0) is None
    assert trial_results({"val_accuracy": 0.9}, weight=2.0) is None


class _Oracle:
    """The parts of a KerasTuner oracle that the chief's watchdog uses."""

    def __init__(self):
        self.trials, self.ongoing_trials, self.tuner_ids, self.ended = {}, {}, set(), []

    def create_trial(self, tuner_id):
        from keras_tuner.src.engine import trial as trial_module

        trial = trial_module.Trial(None, trial_id=str(len(self.trials)), status="RUNNING")
        self.trials[trial.trial_id] = self.ongoing_trials[tuner_id] = trial
        self.tuner_ids.add(tuner_id)
        return trial

    def update_trial(self, trial_id, metrics, step=0):
        return self.trials[trial_id]

    def end_trial(self, trial):
        self.ended.append((trial.trial_id, trial.status))
        self.ongoing_trials = {t: tr for t, tr in self.ongoing_trials.items() if tr.trial_id != trial.trial_id}

    def get_trial(self, trial_id):
        return self.trials[trial_id]


def test_the_watchdog_ends_the_trial_of_a_silent_worker_only_and_heartbeats_keep_a_worker_alive():
    from tuning.distributed import Heartbeat, Watchdog

    now = [0.0]
    oracle = _Oracle()
    watchdog = Watchdog(oracle, timeout=10, clock=lambda: now[0])
    oracle.create_trial("w0")
    oracle.create_trial("w1")
    # w1 sends heartbeats (GetTrial of its running trial) every 4 s; w0 says nothing after asking for its trial
    for t, lost in ((4, []), (8, []), (12, [("w0", "0")]), (16, [])):
        now[0] = t
        oracle.get_trial("1")
        assert watchdog.check() == lost, t
    assert oracle.ended == [("0", "FAILED")] and oracle.trials["0"].message.startswith("lost: worker w0")
    assert oracle.tuner_ids == {"w1"} and watchdog.lost_workers == {"w0"} and "w1" in oracle.ongoing_trials
    oracle.end_trial(oracle.trials["0"])  # w0 comes back late: ignored
    assert oracle.ended == [("0", "FAILED")]

    calls = []
    client = type("Client", (), {"get_trial": lambda self, trial_id: calls.append(trial_id)})()
    beat = Heartbeat(client, "7", interval=0.05).start()
    time.sleep(0.4)
    beat.stop()
    assert len(calls) >= 3 and set(calls) == {"7"}


def test_a_worker_killed_mid_trial_does_not_stall_the_chief(tfds_dir, tmp_path):
    port = free_ports(1)[0]
    args = [*mnist_args(tfds_dir, train=256, test=128), *TINY, *BOUND_FLAGS, "--max-trials", "3",
            "--trial-timeout", "10", "--directory", str(tmp_path), "--project-name", "dist"]
    procs, logs = {}, {}
    try:
        for tuner_id in ("chief", "worker0", "worker1"):
            env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "KERASTUNER_TUNER_ID": tuner_id,
                   "KERASTUNER_ORACLE_IP": "127.0.0.1", "KERASTUNER_ORACLE_PORT": str(port)}
            logs[tuner_id] = tmp_path / f"{tuner_id}.out"
            with open(logs[tuner_id], "w") as out, open(tmp_path / f"{tuner_id}.err", "w") as err:
                procs[tuner_id] = subprocess.Popen([sys.executable, "-m", "tuning.search", *args], cwd=ROOT,
                                                   env=env, text=True, stdout=out, stderr=err,
                                                   start_new_session=True)
        # kill the first worker that starts a trial, in that trial
        killed, deadline = None, time.time() + 240
        while killed is None and time.time() < deadline:
            for worker in ("worker0", "worker1"):
                if f"[{worker}] trial " in logs[worker].read_text():
                    killed = worker
                    os.killpg(procs[worker].pid, signal.SIGKILL)
                    break
            time.sleep(0.2)
        assert killed, {k: p.read_text()[-2000:] for k, p in logs.items()}
        killed_at = time.time()
        survivor = "worker1" if killed == "worker0" else "worker0"
        for tuner_id in ("chief", survivor):
            procs[tuner_id].wait(timeout=max(killed_at + 150 - time.time(), 1))
        chief_seconds = time.time() - killed_at
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=30)
    out = {k: p.read_text() for k, p in logs.items()}
    for tuner_id in ("chief", survivor):
        assert procs[tuner_id].returncode == 0, (tuner_id, (tmp_path / f"{tuner_id}.err").read_text()[-3000:])
    assert f"[chief] lost: worker {killed} sent nothing for 10 s (--trial-timeout)" in out["chief"], out["chief"]
    assert "chief ran 0 trial(s)" in out["chief"]
    ran = [line for line in out[survivor].splitlines() if line.startswith(f"[{survivor}] trial ")]
    rows = read_rows(tmp_path / "dist")
    assert [r["trial"] for r in rows] == ["0", "1", "2"]
    assert sorted(r["status"] for r in rows) == ["lost", "ok", "ok"] and len(ran) == 2, (rows, ran)
    assert (tmp_path / "dist" / "best.json").exists()
    print(f"chief finished {chief_seconds:.0f} s after the kill")


@pytest.mark.parametrize("flags, message", [
    (["--beta-min", "0.3", "--beta-max", "0.1"], "error: --beta-min (0.3) must not exceed --beta-max (0.1)"),
    (["--objective", "val_loss9"], "error: --objective must be one of val_accuracy, val_loss2, balanced"),
    (["--tuner", "grid"], "error: --tuner must be one of random, bayesian, hyperband (got 'grid')"),
    (["--lambda2-min", "0"], "error: --lambda2-min must be > 0: lambda2 is sampled on a log scale (got 0)"),
    (["--max-trials", "0"], "error: --max-trials must be >= 1 (got 0)"),
    (["--trial-timeout", "-1"], "error: --trial-timeout must be a number of seconds >= 0 (got -1)"),
    (["--validation-split", "0"], "error: --validation-split 0 holds out no images: a search scores its trials"),
])
def test_bad_search_settings_are_refused(flags, message, capsys, tmp_path):
    assert search.main([*flags, "--directory", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(message), err
    assert not any(tmp_path.iterdir())
