"""KerasTuner's three tuners, each printing which trial it runs with which values (on the chief, locally,
and on every worker of a distributed search)."""

from __future__ import annotations

import keras_tuner

from csae_tf.config import FitConfig
from tuning.space import SearchSettings


class _TrialLog:
    """Prints and remembers the trials this tuner process runs."""

    def on_trial_begin(self, trial):
        super().on_trial_begin(trial)
        self.__dict__.setdefault("ran_trials", []).append(trial.trial_id)
        values = ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                           for k, v in trial.hyperparameters.values.items())
        print(f"[{self.tuner_id}] trial {trial.trial_id}: {values}", flush=True)


class RandomSearch(_TrialLog, keras_tuner.RandomSearch):
    """keras_tuner.RandomSearch that logs its trials."""


class BayesianOptimization(_TrialLog, keras_tuner.BayesianOptimization):
    """keras_tuner.BayesianOptimization that logs its trials."""


class Hyperband(_TrialLog, keras_tuner.Hyperband):
    """keras_tuner.Hyperband that logs its trials."""


def build_tuner(cfg: FitConfig, settings: SearchSettings, hypermodel, strategy=None, overwrite: bool = False):
    """The tuner of `settings`; `strategy` (a MirroredStrategy or None) runs each trial."""
    common = dict(
        hypermodel=hypermodel,
        objective=keras_tuner.Objective(settings.objective, settings.direction),
        seed=cfg.seed + 1,  # KerasTuner reads seed 0 as "no seed"
        directory=settings.directory, project_name=settings.project_name, overwrite=overwrite,
        distribution_strategy=strategy,
    )
    if settings.tuner == "random":
        return RandomSearch(max_trials=settings.max_trials, **common)
    if settings.tuner == "bayesian":
        return BayesianOptimization(max_trials=settings.max_trials, **common)
    return Hyperband(max_epochs=cfg.epochs, factor=settings.hyperband_factor, **common)
