"""KerasTuner search of the CSAE's noise level β and loss weights λ1, λ2: ``python -m tuning.search``."""

from tuning.space import DEFAULT_BOUNDS, OBJECTIVES, TUNERS, Bound, SearchError, SearchSettings, balanced_score

__all__ = ["DEFAULT_BOUNDS", "OBJECTIVES", "TUNERS", "Bound", "SearchError", "SearchSettings", "balanced_score"]
