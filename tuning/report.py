"""The outputs of a search: the trials table (printed and `trials.csv`) and `best.json`, a full FitConfig that
``python -m csae_tf.fit --config best.json`` trains from as is."""

from __future__ import annotations

import csv
import dataclasses
import math
import os
from pathlib import Path

from csae_tf.config import FitConfig
from tuning.space import SearchSettings

METRIC_COLUMNS = {"accuracy": "val_accuracy", "loss": "val_loss", "loss1": "val_loss1", "loss2": "val_loss2",
                  "loss3": "val_loss3", "balanced": "balanced", "seconds": "seconds"}


def _last(trial, name: str):
    return trial.metrics.get_last_value(name) if trial.metrics.exists(name) else None


def trial_status(trial) -> str:
    """ok, diverged (non-finite loss, scored as the worst), failed (an error), or running (not finished)."""
    status = str(trial.status)
    if status == "COMPLETED":
        return "diverged" if _last(trial, "diverged") else "ok"
    return {"FAILED": "failed", "INVALID": "failed"}.get(status, status.lower())


def trial_rows(oracle, settings: SearchSettings) -> list[dict]:
    """One row per trial, in trial order: status, tuned values, test-split metrics of its last epoch."""
    tuned = [b.name for b in settings.bounds]
    rows = []
    for trial_id in sorted(oracle.trials):
        trial = oracle.trials[trial_id]
        values = trial.hyperparameters.values
        row = {"trial": trial_id, "status": trial_status(trial)}
        row.update({name: values.get(name) for name in tuned})
        if "tuner/epochs" in values:
            row["epochs"] = values["tuner/epochs"]
        row.update({column: _last(trial, metric) for column, metric in METRIC_COLUMNS.items()})
        rows.append(row)
    return rows


def best_trial(oracle):
    """The best finished trial by the objective, diverged trials excluded (None if there is none)."""
    for trial in oracle.get_best_trials(len(oracle.trials)):
        if trial_status(trial) == "ok":
            return trial
    return None


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        return f"{value:.4f}" if 1e-3 <= abs(value) < 1e4 or value == 0 else f"{value:.3e}"
    return str(value)


def write_csv(rows: list[dict], path: Path) -> None:
    if not rows:
        return
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows({k: ("" if v is None else v) for k, v in row.items()} for row in rows)
    os.replace(tmp, path)


def format_table(rows: list[dict], best_id: str | None = None) -> str:
    """The rows as an aligned text table; the best trial is marked with '*'."""
    if not rows:
        return "(no trials)"
    columns = list(rows[0])
    cells = [[_cell(row[c]) + ("*" if c == "trial" and row["trial"] == best_id else "") for c in columns]
             for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.rjust(w) for c, w in zip(columns, widths))]
    lines += ["  ".join(v.rjust(w) for v, w in zip(r, widths)) for r in cells]
    return "\n".join(lines)


def best_config(cfg: FitConfig, trial, settings: SearchSettings, project_dir: Path) -> FitConfig:
    """The FitConfig of a trial: the search's config with the trial's tuned values and epochs."""
    values = {b.name: float(trial.hyperparameters.values[b.name]) for b in settings.bounds}
    if "tuner/epochs" in trial.hyperparameters.values:
        values["epochs"] = int(trial.hyperparameters.values["tuner/epochs"])
    return dataclasses.replace(cfg, **values, output=str(project_dir / "best_run"), logdir=None).validate()


def write_report(oracle, cfg: FitConfig, settings: SearchSettings, project_dir: Path) -> dict:
    """Print the table, write trials.csv and best.json; return a summary."""
    rows = trial_rows(oracle, settings)
    best = best_trial(oracle)
    write_csv(rows, project_dir / "trials.csv")
    print(f"\n{len(rows)} trial(s), objective {settings.objective} ({settings.direction}); "
          "metrics of each trial's last epoch on the test split; * = best")
    print(format_table(rows, best.trial_id if best else None), flush=True)
    print(f"table: {project_dir / 'trials.csv'}")
    summary = {"trials": len(rows), "best": None}
    if best is None:
        print("no trial finished without diverging: no best.json written")
        return summary
    best_cfg = best_config(cfg, best, settings, project_dir)
    tmp = project_dir / "best.json.tmp"
    best_cfg.save(tmp)
    os.replace(tmp, project_dir / "best.json")
    print(f"best trial {best.trial_id}: " + ", ".join(f"{b.name} {getattr(best_cfg, b.name):.4g}"
                                                     for b in settings.bounds)
          + f"; train it with: python -m csae_tf.fit --config {project_dir / 'best.json'}", flush=True)
    summary["best"] = best.trial_id
    return summary
