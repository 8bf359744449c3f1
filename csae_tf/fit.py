"""Train a CSAE: ``python -m csae_tf.fit --dataset mnist --output runs/mnist``.

The run directory receives `config.json`, `centroids.npy`, `history.csv`, `checkpoints/`,
`logs/` (TensorBoard), `figures/` (the latest image summaries as PNG), then `model.keras` and
`metrics.json` when training ends. Rerunning
the same command resumes an interrupted run from its last saved epoch, and only reports a
finished one (``--overwrite`` starts over).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import sys
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from csae_tf import checkpoint, data, distribute
from csae_tf.callbacks import EpochStats, monitoring_callbacks
from csae_tf.config import ConfigError, FitConfig, add_config_arguments, config_from_args
from csae_tf.data import DataError
from csae_tf.distribute import make_strategy
from csae_tf.models import build_model
from csae_tf.schedules import build_optimizer

RUNTIME_FIELDS = ("verbose", "output", "logdir", "image_every", "manual_dir", "data_dir")


class RunError(RuntimeError):
    """The run directory cannot be used as asked."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m csae_tf.fit",
        description="Train a Classification Supervised Auto-Encoder on PEDCC class centroids.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add_config_arguments(parser)
    parser.add_argument("--overwrite", action="store_true", help="delete an existing run directory and start over")
    return parser


def _write_json(path: Path, value: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(value, indent=2) + "\n")
    os.replace(tmp, path)


def _check_run_dir(cfg: FitConfig, out: Path) -> None:
    """A resumed run must have the same configuration (runtime-only options aside)."""
    saved_path = out / "config.json"
    if not saved_path.exists():
        return
    saved = json.loads(saved_path.read_text())
    current = cfg.to_dict()
    changed = sorted(k for k in current if k not in RUNTIME_FIELDS and saved.get(k) != current[k])
    if changed:
        raise RunError(f"{out} holds a run with a different configuration ({', '.join(changed)}); "
                       "pass --overwrite to start over or choose another --output")


def _trim_history(path: Path, initial_epoch: int) -> None:
    """Drop history rows of epochs that will be run again (written after the last saved state)."""
    if not path.exists():
        return
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    if not rows:
        return
    kept = [rows[0]] + [r for r in rows[1:] if r and int(r[0]) < initial_epoch]
    with open(path, "w", newline="") as f:
        csv.writer(f).writerows(kept)


def run(cfg: FitConfig, overwrite: bool = False) -> dict:
    """Train (or resume, or report) the run described by `cfg`; return its metrics."""
    # In a cluster only the chief writes the run directory; other workers write a temporary one inside it.
    chief = distribute.is_chief(cfg)
    out = distribute.work_dir(cfg)
    if overwrite and out.exists():
        shutil.rmtree(out)
    metrics_path = Path(cfg.output) / "metrics.json"
    if metrics_path.exists() and not overwrite:  # a worker may see the chief's file before the chief deletes it
        _check_run_dir(cfg, out)
        metrics = json.loads(metrics_path.read_text())
        print(f"{out} is a finished run (use --overwrite to train again): "
              f"test accuracy {metrics['test_accuracy']:.4f}")
        return {**metrics, "status": "finished"}
    _check_run_dir(cfg, out)

    keras.utils.set_random_seed(cfg.seed)
    strategy = make_strategy(cfg)
    train, test, info = data.load_datasets(cfg)
    steps_per_epoch = info.num_train // cfg.batch_size
    replicas = strategy.num_replicas_in_sync
    if cfg.batch_size % replicas:
        raise ConfigError(f"--batch-size {cfg.batch_size} (global) must be divisible by the {replicas} replicas")
    print(f"{info.name}: {info.num_train} train / {info.num_test} test images {info.image_shape}, "
          f"{info.num_classes} classes; {replicas} replica(s), global batch {cfg.batch_size} "
          f"= {cfg.batch_size // replicas} per replica, {steps_per_epoch} steps per epoch", flush=True)

    out.mkdir(parents=True, exist_ok=True)
    cfg.save(out / "config.json")
    with strategy.scope():
        model = build_model(cfg, info.num_classes, info.image_shape)
        model.compile(optimizer=build_optimizer(cfg, steps_per_epoch), steps_per_execution=cfg.steps_per_execution)
        model.optimizer.build(model.trainable_variables)  # its slots are distributed like the weights
        initial_epoch = checkpoint.restore(model, out / "checkpoints")
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        distribute.prepare_multi_worker_fit(model)
        distribute.check_same_epoch(strategy, initial_epoch)
    np.save(out / "centroids.npy", model.pedcc.centroids.numpy())
    if initial_epoch:
        print(f"resuming {out} at epoch {initial_epoch + 1} of {cfg.epochs}", flush=True)
    _trim_history(out / "history.csv", initial_epoch)

    start = time.time()
    callbacks = [
        EpochStats(),
        *([distribute.AverageMovingStatistics(strategy)] if replicas > 1 else []),
        checkpoint.TrainingState(out / "checkpoints", save_freq=cfg.save_freq),
        keras.callbacks.CSVLogger(str(out / "history.csv"), append=True),
        keras.callbacks.TensorBoard(log_dir=(chief and cfg.logdir) or str(out / "logs"), histogram_freq=0,
                                    write_graph=False, profile_batch=0),
    ]
    if chief:  # TensorBoard images, latent projector and hparams (docs/monitoring.md)
        callbacks += monitoring_callbacks(cfg, info, test, cfg.logdir or out / "logs", out / "figures")
    if initial_epoch < cfg.epochs:
        model.fit(train, validation_data=test, epochs=cfg.epochs, initial_epoch=initial_epoch,
                  callbacks=callbacks, verbose=cfg.verbose)
    train_seconds = time.time() - start
    if replicas > 1:
        spread, weight = distribute.replica_spread(strategy, model)
        print(f"replicas agree: largest difference of weight sums {spread:.3g} ({weight})", flush=True)

    # Generation needs each class's latent Gaussian: fit it on the un-augmented training set.
    model.fit_latent_gaussians(data.pipeline(data.load_split(data.prepare(cfg.dataset, cfg.data_dir), "train",
                                                             limit=cfg.train_limit, classes=cfg.classes),
                                             info, 512, training=False))
    tmp = out / "model.tmp.keras"
    model.save(tmp)
    os.replace(tmp, out / "model.keras")
    results = model.evaluate(test, verbose=0, return_dict=True)
    if not chief:  # a worker's files only mirrored the chief's: remove them
        shutil.rmtree(out, ignore_errors=True)
        return {f"test_{k}": float(v) for k, v in results.items()} | {"status": "worker"}
    metrics = {f"test_{k}": float(v) for k, v in results.items()}
    metrics.update(epochs=cfg.epochs, train_seconds=round(train_seconds, 1), num_train=info.num_train,
                   num_test=info.num_test, num_classes=info.num_classes, params=int(model.count_params()))
    _write_json(metrics_path, metrics)
    print("test: " + ", ".join(f"{k[5:]} {v:.4f}" for k, v in metrics.items() if k.startswith("test_")), flush=True)
    return {**metrics, "status": "trained"}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        cfg = config_from_args(args)
        run(cfg, overwrite=args.overwrite)
    except KeyboardInterrupt:
        print("\ninterrupted: rerun the same command to resume from the last saved epoch", file=sys.stderr)
        return 130
    except (ConfigError, RunError, DataError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
