"""Search β, λ1, λ2 (and optionally the learning rate) with KerasTuner:
``python -m tuning.search --dataset mnist --epochs 3 --max-trials 12 --objective balanced``.

Takes every data/model flag of ``python -m csae_tf.fit`` (one FitConfig, one set of defaults) plus the search's
own: the tuner, the objective, the bounds of the space. Trials train on the training split less the validation
images `csae_tf.data.load_splits` holds out of it (`--validation-split`), and are scored on those; the test split
is never read. Writes to ``<directory>/<project-name>/``: KerasTuner's
state (one `trial_*` folder per trial), `logs/` (TensorBoard, one run per trial with its hparams), `trials.csv`
and `best.json`. Rerunning the same command continues an interrupted search; finished trials are not run again.

Distributed: set KERASTUNER_TUNER_ID (``chief`` for the oracle process, any other id for a worker),
KERASTUNER_ORACLE_IP and KERASTUNER_ORACLE_PORT, and start the same command on every machine. The chief serves
the oracle and writes the report; each worker runs trials until the oracle has no more. A worker silent for
`--trial-timeout` seconds (workers send a heartbeat while they train) loses its trial: the chief ends it as
failed and does not wait for that worker (`tuning.distributed`).

A search in which no trial finished (all diverged, failed or were lost) exits with status 2 and a message that
says what to change.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

from csae_tf.config import RUNTIME_FIELDS, ConfigError, FitConfig, add_config_arguments, config_from_args
from csae_tf.errors import command
from tuning.space import DEFAULT_BOUNDS, OBJECTIVES, TUNERS, Bound, SearchError, SearchSettings

# FitConfig fields a search does not take from the command line: the tuned ones, and fit-only outputs.
SKIPPED_FIELDS = ("beta", "lambda1", "lambda2", "output", "save_freq", "image_every")
# The fields that may differ when a search is resumed, or between the chief and the workers: config's
# RUNTIME_FIELDS, extended for a search. `epochs` is not one (every trial of a search trains the same budget);
# the strategy and its devices are (a chief without accelerators sizes no trial; each worker has its own).
SEARCH_RUNTIME_FIELDS = tuple(f for f in RUNTIME_FIELDS if f != "epochs") + ("strategy", "devices")
DEFAULTS = SearchSettings()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m tuning.search",
        description="KerasTuner search of the CSAE's noise level beta and loss weights lambda1, lambda2.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    search = parser.add_argument_group("search")
    search.add_argument("--tuner", default=DEFAULTS.tuner, help=f"one of {', '.join(TUNERS)}")
    search.add_argument("--objective", default=DEFAULTS.objective,
                        help=f"one of {', '.join(f'{k} ({v})' for k, v in OBJECTIVES.items())}; "
                             "balanced = val_accuracy - balance_weight * val_loss2")
    search.add_argument("--balance-weight", type=float, default=DEFAULTS.balance_weight,
                        help="weight of val_loss2 (pixel MSE in [-1, 1] scale) in the balanced objective")
    search.add_argument("--max-trials", type=int, default=DEFAULTS.max_trials,
                        help="trials in all (random, bayesian); hyperband sizes itself from --epochs")
    search.add_argument("--hyperband-factor", type=int, default=DEFAULTS.hyperband_factor,
                        help="hyperband's reduction factor")
    search.add_argument("--directory", default=DEFAULTS.directory, help="folder of search projects")
    search.add_argument("--project-name", default=DEFAULTS.project_name, help="this search's folder in --directory")
    search.add_argument("--overwrite", action="store_true", help="delete the project and start the search over")
    search.add_argument("--trial-timeout", type=float, default=DEFAULTS.trial_timeout,
                        help="distributed search: seconds without a word from a worker (it sends a heartbeat while "
                             "it trains) after which the chief ends its trial as failed and stops waiting for it; "
                             "0 waits forever")
    space = parser.add_argument_group("search space (--X-min equal to --X-max fixes X)")
    for bound in DEFAULT_BOUNDS.values():
        flag = bound.name.replace("_", "-")
        scale = "log" if bound.log else "linear"
        space.add_argument(f"--{flag}-min", type=float, default=bound.low,
                           help=f"lower bound of {bound.name} ({scale})")
        space.add_argument(f"--{flag}-max", type=float, default=bound.high, help=f"upper bound of {bound.name}")
    space.add_argument("--tune-lr", action="store_true", help="also tune the learning rate (else --lr is used)")
    add_config_arguments(parser, FitConfig, skip=SKIPPED_FIELDS)
    return parser


def settings_from_args(args: argparse.Namespace) -> SearchSettings:
    names = ["beta", "lambda1", "lambda2"] + (["lr"] if args.tune_lr else [])
    bounds = tuple(Bound(n, getattr(args, f"{n}_min"), getattr(args, f"{n}_max"), DEFAULT_BOUNDS[n].log)
                   for n in names)
    return SearchSettings(tuner=args.tuner, objective=args.objective, max_trials=args.max_trials,
                          directory=args.directory, project_name=args.project_name,
                          balance_weight=args.balance_weight, tune_lr=args.tune_lr,
                          hyperband_factor=args.hyperband_factor, trial_timeout=args.trial_timeout,
                          bounds=bounds).validate()


def distributed_role() -> str | None:
    """None when searching alone, else 'chief' or 'worker' from KerasTuner's environment variables."""
    if "KERASTUNER_ORACLE_IP" not in os.environ:
        return None
    missing = [v for v in ("KERASTUNER_ORACLE_PORT", "KERASTUNER_TUNER_ID") if not os.environ.get(v)]
    if missing:
        raise SearchError(f"KERASTUNER_ORACLE_IP is set but {' and '.join(missing)} is not: set all three "
                          "(KERASTUNER_TUNER_ID=chief for the oracle, another id for each worker)")
    return "chief" if "chief" in os.environ["KERASTUNER_TUNER_ID"] else "worker"


def check_project(project_dir: Path, cfg: FitConfig, settings: SearchSettings) -> None:
    """A resumed search (or a worker) must search the same space with the same configuration."""
    current = {"config": {k: v for k, v in cfg.to_dict().items() if k not in SEARCH_RUNTIME_FIELDS},
               "search": {k: v for k, v in settings.to_dict().items()
                          if k not in ("max_trials", "directory", "trial_timeout")}}
    current = json.loads(json.dumps(current))  # tuples -> lists, as read back
    path = project_dir / "search.json"
    if path.exists():
        saved = json.loads(path.read_text())
        changed = sorted([f"config.{k}" for k in current["config"] if saved["config"].get(k) != current["config"][k]]
                         + [k for k in current["search"] if saved["search"].get(k) != current["search"][k]])
        if changed:
            raise SearchError(f"{project_dir} holds a search with other settings ({', '.join(changed)}); "
                              "pass --overwrite to start over or choose another --project-name")
        return
    project_dir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"search.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(current, indent=2) + "\n")
    os.replace(tmp, path)


def run(cfg: FitConfig, settings: SearchSettings, overwrite: bool = False) -> dict:
    """Run (or continue, or join) the search; return a summary of what this process did."""
    import keras
    import tensorflow as tf

    from csae_tf import data
    from csae_tf.distribute import make_strategy
    from csae_tf.trainer import set_precision
    from tuning.hypermodel import CSAEHyperModel
    from tuning.report import write_report
    from tuning.tuners import build_tuner

    role = distributed_role()
    if cfg.strategy == "multi-worker":
        raise SearchError("--strategy multi-worker is not supported within a trial: spread trials over machines "
                          "with KerasTuner's chief/worker mode instead (KERASTUNER_* variables)")
    if cfg.validation_split <= 0:
        raise SearchError("--validation-split 0 holds out no images: a search scores its trials on images held out "
                          "of the training split (the test split is never read)")
    project_dir = Path(settings.directory) / settings.project_name
    if overwrite and role != "worker" and project_dir.exists():
        shutil.rmtree(project_dir)
    check_project(project_dir, cfg, settings)

    if cfg.deterministic:  # as the trainer: TF op determinism, so that best.json retrains bit for bit
        tf.config.experimental.enable_op_determinism()
    strategy = make_strategy(cfg)
    replicas = strategy.num_replicas_in_sync
    if cfg.batch_size % replicas:
        raise ConfigError(f"--batch-size {cfg.batch_size} (global) must be divisible by the {replicas} replicas")
    splits = data.load_splits(cfg, test=False)  # a search never reads the test split
    info = splits.info
    if splits.validation is None:
        raise SearchError(f"--validation-split {cfg.validation_split:g} holds out no images of the {info.num_train} "
                          "training images: a search scores its trials on held-out images")
    mirrored = strategy if type(strategy).__name__ == "MirroredStrategy" else None
    hypermodel = CSAEHyperModel(cfg, settings, splits, mirrored)
    tuner = build_tuner(cfg, settings, hypermodel, mirrored, role=role)
    space = ", ".join(f"{b.name} in [{b.low:g}, {b.high:g}]{' log' if b.log else ''}" for b in settings.bounds)
    lr = "" if settings.tune_lr else f" at lr {cfg.lr:g}"
    print(f"{info.name}: {info.num_train} train / {len(splits.validation)} validation images (held out of the "
          f"training split; the test split is not read); {settings.tuner} search of {space}{lr}; objective "
          f"{settings.objective} ({settings.direction}); {cfg.epochs} epoch(s) per trial; {type(strategy).__name__} "
          f"with {replicas} replica(s) per trial; role {role or 'local'} (tuner id {tuner.tuner_id}); project "
          f"{project_dir}", flush=True)

    logdir = cfg.logdir or str(project_dir / "logs")
    # The class must be named TensorBoard: KerasTuner redirects it per trial and adds the hparams session.
    tensorboard = keras.callbacks.TensorBoard(log_dir=logdir, histogram_freq=0, write_graph=False, profile_batch=0)
    verbose = cfg.verbose if cfg.verbose != 1 or sys.stdout.isatty() else 2
    try:
        tuner.search(callbacks=[tensorboard], verbose=verbose)
    finally:
        set_precision("float32")
    ran = list(getattr(tuner, "ran_trials", []))
    print(f"{tuner.tuner_id} ran {len(ran)} trial(s): {', '.join(ran) or '-'}", flush=True)
    if role == "worker":
        return {"role": role, "ran": ran}
    summary = write_report(tuner.oracle, cfg, settings, project_dir, hypermodel.steps_per_epoch,
                           len(splits.validation))
    return {"role": role or "local", "ran": ran, **summary}


@command(interrupted="interrupted: rerun the same command to continue the search")
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    settings = settings_from_args(args)
    cfg = config_from_args(args)
    run(cfg, settings, overwrite=args.overwrite)
    return 0


if __name__ == "__main__":
    sys.exit(main())
