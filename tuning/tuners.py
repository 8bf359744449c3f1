"""KerasTuner's three tuners, each printing which trial it runs with which values (on the chief, locally,
and on every worker of a distributed search), recording diverged trials, and surviving lost workers
(`tuning.distributed`)."""

from __future__ import annotations

import keras_tuner
from keras_tuner.src.engine import trial as trial_module

from csae_tf.config import FitConfig
from tuning import distributed
from tuning.hypermodel import TrialDiverged
from tuning.space import SearchSettings

# The metric that marks a diverged trial: a failed trial's message does not reach the chief over gRPC.
DIVERGED_METRIC = "diverged"


class _SearchTuner:
    """What the three tuners add to KerasTuner's: trial log lines, the divergence mark, heartbeats, the watchdog."""

    role: str | None = None  # None (alone), "chief" or "worker"
    trial_timeout: float = 0.0

    def search(self, *args, **kwargs):
        if self.role != "chief":
            return super().search(*args, **kwargs)
        if "verbose" in kwargs:
            self.oracle.verbose = kwargs["verbose"]
        self.save()
        self.watchdog = distributed.serve(self.oracle, self.trial_timeout)
        return None

    def on_trial_begin(self, trial):
        super().on_trial_begin(trial)
        self.__dict__.setdefault("ran_trials", []).append(trial.trial_id)
        values = ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                           for k, v in trial.hyperparameters.values.items())
        print(f"[{self.tuner_id}] trial {trial.trial_id}: {values}", flush=True)
        if self.role == "worker" and self.trial_timeout:
            interval = distributed.heartbeat_interval(self.trial_timeout)
            self._heartbeat = distributed.Heartbeat(self.oracle, trial.trial_id, interval).start()

    def on_trial_end(self, trial):
        heartbeat = self.__dict__.pop("_heartbeat", None)
        if heartbeat is not None:
            heartbeat.stop()
        super().on_trial_end(trial)

    def _run_and_update_trial(self, trial, *args, **kwargs):
        try:
            super()._run_and_update_trial(trial, *args, **kwargs)
        except TrialDiverged as err:  # an expected end, not a bug: no traceback, the search goes on
            print(f"[{self.tuner_id}] trial {trial.trial_id} {err}", flush=True)
            self.oracle.update_trial(trial.trial_id, {self.oracle.objective.name: float("nan"),
                                                      DIVERGED_METRIC: 1.0})
            self.__dict__.setdefault("_diverged", {})[trial.trial_id] = str(err)

    def _try_run_and_update_trial(self, trial, *args, **kwargs):
        super()._try_run_and_update_trial(trial, *args, **kwargs)
        message = self.__dict__.get("_diverged", {}).pop(trial.trial_id, None)
        if message is not None:
            trial.status = trial_module.TrialStatus.FAILED
            trial.message = message


class RandomSearch(_SearchTuner, keras_tuner.RandomSearch):
    """keras_tuner.RandomSearch with this project's trial log, divergence mark and lost-worker watchdog."""


class BayesianOptimization(_SearchTuner, keras_tuner.BayesianOptimization):
    """keras_tuner.BayesianOptimization with this project's trial log, divergence mark and lost-worker watchdog."""


class Hyperband(_SearchTuner, keras_tuner.Hyperband):
    """keras_tuner.Hyperband with this project's trial log, divergence mark and lost-worker watchdog."""


def build_tuner(cfg: FitConfig, settings: SearchSettings, hypermodel, strategy=None, overwrite: bool = False,
                role: str | None = None):
    """The tuner of `settings`; `strategy` (a MirroredStrategy or None) runs each trial; `role` is None, "chief"
    or "worker" (`tuning.search.distributed_role`)."""
    common = dict(
        hypermodel=hypermodel,
        objective=keras_tuner.Objective(settings.objective, settings.direction),
        seed=cfg.seed + 1,  # KerasTuner reads seed 0 as "no seed"
        directory=settings.directory, project_name=settings.project_name, overwrite=overwrite,
        distribution_strategy=strategy,
        # Failed (diverged, lost) trials never stop the search: it ends after its trials, then reports.
        max_consecutive_failed_trials=10**9,
    )
    if settings.tuner == "random":
        tuner = RandomSearch(max_trials=settings.max_trials, **common)
    elif settings.tuner == "bayesian":
        tuner = BayesianOptimization(max_trials=settings.max_trials, **common)
    else:
        tuner = Hyperband(max_epochs=cfg.epochs, factor=settings.hyperband_factor, **common)
    tuner.role, tuner.trial_timeout = role, settings.trial_timeout
    return tuner
