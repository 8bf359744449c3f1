"""What a search tunes and optimises: the bounds of β, λ1, λ2 (and the learning rate), and the objectives.

Plain Python (no TensorFlow), so that bad command lines are refused before anything heavy loads.
"""

from __future__ import annotations

import dataclasses
import math


class SearchError(ValueError):
    """A search setting that cannot be used; its message is shown to the user as is."""


@dataclasses.dataclass(frozen=True)
class Bound:
    """The range of one tuned FitConfig field; `log` samples it uniformly in log space."""

    name: str
    low: float
    high: float
    log: bool

    def validate(self) -> Bound:
        flag = self.name.replace("_", "-")
        if not (math.isfinite(self.low) and math.isfinite(self.high)):
            raise SearchError(f"--{flag}-min and --{flag}-max must be finite numbers")
        if self.low > self.high:
            raise SearchError(f"--{flag}-min ({self.low:g}) must not exceed --{flag}-max ({self.high:g})")
        if self.log and self.low <= 0:
            raise SearchError(f"--{flag}-min must be > 0: {self.name} is sampled on a log scale (got {self.low:g})")
        if self.low < 0:
            raise SearchError(f"--{flag}-min must be >= 0 (got {self.low:g})")
        if self.name == "beta" and self.high > 1:
            raise SearchError(f"--beta-max must be <= 1 (got {self.high:g})")
        return self


# The default space: beta linear in [0, 0.2], lambda1 and lambda2 log-uniform, inside the region that trains at
# FitConfig's lr 0.1 (measured on MNIST, 1 epoch on 1,000 images and 3 epochs on 5,000: docs/guides/tuning.md);
# beyond lambda1 ~ 6 or lambda2 ~ 0.2 trials diverge at that learning rate.
DEFAULT_BOUNDS = {
    "beta": Bound("beta", 0.0, 0.2, log=False),
    "lambda1": Bound("lambda1", 0.1, 3.0, log=True),
    "lambda2": Bound("lambda2", 1e-3, 0.1, log=True),
    "lr": Bound("lr", 0.01, 0.2, log=True),  # only with --tune-lr
}

# Objective name -> direction. "balanced" = val_accuracy - balance_weight * val_loss2.
OBJECTIVES = {"val_accuracy": "max", "val_loss2": "min", "balanced": "max"}
TUNERS = ("random", "bayesian", "hyperband")

def balanced_score(val_accuracy: float, val_loss2: float, weight: float) -> float:
    """The `balanced` objective: accuracy minus `weight` times the reconstruction MSE (higher is better)."""
    return float(val_accuracy) - float(weight) * float(val_loss2)


@dataclasses.dataclass(frozen=True)
class SearchSettings:
    """Everything about a search that is not a FitConfig field."""

    tuner: str = "random"
    objective: str = "val_accuracy"
    max_trials: int = 10
    directory: str = "runs/tuning"
    project_name: str = "csae"
    balance_weight: float = 1.0
    tune_lr: bool = False
    hyperband_factor: int = 3
    trial_timeout: float = 600.0  # distributed: seconds of silence after which a worker's trial is lost (0: never)
    bounds: tuple[Bound, ...] = tuple(DEFAULT_BOUNDS[n] for n in ("beta", "lambda1", "lambda2"))

    def validate(self) -> SearchSettings:
        if self.tuner not in TUNERS:
            raise SearchError(f"--tuner must be one of {', '.join(TUNERS)} (got {self.tuner!r})")
        if self.objective not in OBJECTIVES:
            raise SearchError(f"--objective must be one of {', '.join(OBJECTIVES)} (got {self.objective!r})")
        if self.max_trials < 1:
            raise SearchError(f"--max-trials must be >= 1 (got {self.max_trials})")
        if not (math.isfinite(self.balance_weight) and self.balance_weight >= 0):
            raise SearchError(f"--balance-weight must be a finite number >= 0 (got {self.balance_weight})")
        if not (math.isfinite(self.trial_timeout) and self.trial_timeout >= 0):
            raise SearchError(f"--trial-timeout must be a number of seconds >= 0 (got {self.trial_timeout:g})")
        if self.hyperband_factor < 2:
            raise SearchError(f"--hyperband-factor must be >= 2 (got {self.hyperband_factor})")
        if not self.project_name or "/" in self.project_name:
            raise SearchError(f"--project-name must be a plain folder name (got {self.project_name!r})")
        for bound in self.bounds:
            bound.validate()
        return self

    @property
    def direction(self) -> str:
        return OBJECTIVES[self.objective]

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)
