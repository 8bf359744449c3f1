"""The outputs of a search: the trials table (printed and `trials.csv`) and `best.json`, a full FitConfig that
``python -m csae_tf.fit --config best.json`` trains from as is, to the same validation figures as its trial.

Every metric here is read on the validation images held out of the training split; the test split is never
read by a search. A search in which no trial finished ends with `SearchError`, whose message says what to
change.
"""

from __future__ import annotations

import csv
import dataclasses
import math
import os
from pathlib import Path

from csae_tf.config import FitConfig
from tuning.distributed import LOST
from tuning.space import SearchError, SearchSettings
from tuning.tuners import DIVERGED_METRIC

METRIC_COLUMNS = {"accuracy": "val_accuracy", "loss": "val_loss", "loss1": "val_loss1", "loss2": "val_loss2",
                  "loss3": "val_loss3", "balanced": "balanced", "seconds": "seconds"}


def _last(trial, name: str):
    return trial.metrics.get_last_value(name) if trial.metrics.exists(name) else None


def trial_status(trial) -> str:
    """ok; diverged (a non-finite loss), lost (its worker stopped reporting), failed (an error): the three
    failed kinds; or running (not finished)."""
    status = str(trial.status)
    if status == "COMPLETED":
        return "ok"
    if status in ("FAILED", "INVALID"):
        message = trial.message or ""
        if _last(trial, DIVERGED_METRIC) or message.startswith("diverged") or "TrialDiverged" in message:
            return "diverged"
        return "lost" if message.startswith(LOST) else "failed"
    return status.lower()


def trial_rows(oracle, settings: SearchSettings) -> list[dict]:
    """One row per trial, in trial order: status, tuned values, validation metrics of its last epoch (finished
    trials only)."""
    tuned = [b.name for b in settings.bounds]
    rows = []
    for trial_id in sorted(oracle.trials):
        trial = oracle.trials[trial_id]
        values = trial.hyperparameters.values
        row = {"trial": trial_id, "status": trial_status(trial)}
        row.update({name: values.get(name) for name in tuned})
        if "tuner/epochs" in values:
            row["epochs"] = values["tuner/epochs"]
        ok = row["status"] == "ok"
        row.update({column: _last(trial, metric) if ok else None for column, metric in METRIC_COLUMNS.items()})
        rows.append(row)
    return rows


def best_trial(oracle):
    """The best finished trial by the objective, the earliest of equal ones (None if no trial finished)."""
    finished = [t for t in oracle.trials.values() if trial_status(t) == "ok"]
    if not finished:
        return None
    sign = -1.0 if oracle.objective.direction == "max" else 1.0
    return min(finished, key=lambda t: (sign * t.score, t.trial_id))


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


def best_config(cfg: FitConfig, trial, settings: SearchSettings, project_dir: Path, steps_per_epoch: int) -> FitConfig:
    """The FitConfig of a trial: the search's config with the trial's tuned values, epochs and steps per execution
    (as resolved in the trial), so that `csae fit` trains exactly what the trial trained."""
    from csae_tf.trainer import auto_steps_per_execution

    values = {b.name: float(trial.hyperparameters.values[b.name]) for b in settings.bounds}
    if "tuner/epochs" in trial.hyperparameters.values:
        values["epochs"] = int(trial.hyperparameters.values["tuner/epochs"])
    values["steps_per_execution"] = cfg.steps_per_execution or auto_steps_per_execution(steps_per_epoch, cfg.save_freq)
    return dataclasses.replace(cfg, **values, output=str(project_dir / "best_run"), logdir=None).validate()


def no_finished_trial(rows: list[dict], cfg: FitConfig, settings: SearchSettings) -> str:
    """What to change when no trial finished, by what happened to the trials."""
    counts = {s: sum(r["status"] == s for r in rows) for s in ("diverged", "lost", "failed", "running")}
    bounds = {b.name: b for b in settings.bounds}
    advice = []
    if counts["diverged"]:
        lr = (f"--lr-max (now {bounds['lr'].high:g})" if "lr" in bounds else f"--lr (now {cfg.lr:g}, e.g. --lr "
              f"{cfg.lr / 5:g})")
        advice.append(f"{counts['diverged']} diverged (the training loss stopped being finite): lower {lr}, "
                      f"or --lambda1-max (now {bounds['lambda1'].high:g}) and --lambda2-max (now "
                      f"{bounds['lambda2'].high:g})" + ("" if "lr" in bounds else ", or tune the learning rate with "
                                                         "--tune-lr"))
    if counts["lost"]:
        advice.append(f"{counts['lost']} lost their worker (no report within --trial-timeout {settings.trial_timeout:g}"
                      " s): check the workers, or raise --trial-timeout")
    if counts["failed"]:
        advice.append(f"{counts['failed']} failed with an error: see the trials' messages above (or the workers' "
                      "output)")
    if counts["running"]:
        advice.append(f"{counts['running']} did not end: rerun the same command to continue")
    return f"no trial finished ({len(rows)} in all): " + "; ".join(advice or ["no trial ran"])


def write_report(oracle, cfg: FitConfig, settings: SearchSettings, project_dir: Path, steps_per_epoch: int,
                 validation_images: int) -> dict:
    """Print the table, write trials.csv and best.json; return a summary. No finished trial: SearchError."""
    rows = trial_rows(oracle, settings)
    best = best_trial(oracle)
    write_csv(rows, project_dir / "trials.csv")
    print(f"\n{len(rows)} trial(s), objective {settings.objective} ({settings.direction}); metrics of each "
          f"trial's last epoch on the {validation_images} validation images held out of the training split (the "
          "test split is not read); * = best")
    print(format_table(rows, best.trial_id if best else None), flush=True)
    print(f"table: {project_dir / 'trials.csv'}")
    for trial in oracle.trials.values():
        if trial_status(trial) == "failed" and trial.message:
            print(f"trial {trial.trial_id} failed: {trial.message.strip().splitlines()[-1]}")
    if best is None:
        raise SearchError(no_finished_trial(rows, cfg, settings) + f"; no best.json written ({project_dir})")
    best_cfg = best_config(cfg, best, settings, project_dir, steps_per_epoch)
    tmp = project_dir / "best.json.tmp"
    best_cfg.save(tmp)
    os.replace(tmp, project_dir / "best.json")
    objective = _last(best, settings.objective)
    print(f"best trial {best.trial_id}: " + ", ".join(f"{b.name} {getattr(best_cfg, b.name):.4g}"
                                                     for b in settings.bounds)
          + f" ({settings.objective} {objective:.4f}); train it again with: python -m csae_tf.fit --config "
          f"{project_dir / 'best.json'}", flush=True)
    return {"trials": len(rows), "best": best.trial_id}
