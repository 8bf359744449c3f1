"""One CSAE training run, each concern in one place (as a TF Model Garden task): the strategy, the
inputs, the model, the callbacks, the restore, the training and the finish.

`Trainer(cfg).run()` is what ``python -m csae_tf.fit`` calls; the tuner and the benchmarks use the same
pieces. The run directory receives `config.json`, `centroids.npy`, `history.csv`, `checkpoints/`,
`logs/` (TensorBoard), `figures/`, then `model.keras` and `metrics.json` when training ends.

What is read where: per-epoch `val_*` metrics (and so every choice made from them) read the
validation images held out of the training split (`--validation-split`); the test split is read
once, for the final `test_*` figures of `metrics.json`.
"""

from __future__ import annotations

import csv
import functools
import json
import math
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
from csae_tf.config import RUNTIME_FIELDS, ConfigError, FitConfig
from csae_tf.errors import CsaeError
from csae_tf.models import CSAE, DIVERGED, build_model
from csae_tf.schedules import build_optimizer, build_schedule

MAX_STEPS_PER_EXECUTION = 32


class RunError(CsaeError):
    """The run cannot go on as asked; the message says why and what to do."""


def auto_steps_per_execution(steps_per_epoch: int, save_freq: int | None = None,
                             limit: int = MAX_STEPS_PER_EXECUTION) -> int:
    """The largest count <= `limit` that divides the epoch (and `save_freq`): whole executions per epoch,
    and a snapshot exactly every `save_freq` steps."""
    span = math.gcd(steps_per_epoch, save_freq) if save_freq else steps_per_epoch
    return max(k for k in range(1, min(limit, span) + 1) if span % k == 0)


def set_precision(precision: str) -> None:
    """The Keras mixed-precision policy of the run (float32, mixed_bfloat16, mixed_float16)."""
    keras.mixed_precision.set_global_policy(precision)


@functools.cache
def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags (Linux' /proc/cpuinfo, read once; empty where it cannot be read)."""
    try:
        with open("/proc/cpuinfo") as f:
            return next((frozenset(line.split(":", 1)[1].split()) for line in f if line.startswith("flags")),
                        frozenset())
    except OSError:
        return frozenset()


def _cpu_without_avx512(gpus: int, flags: set[str]) -> bool:
    """Training runs on a CPU known to lack AVX-512, where TensorFlow has no fast bfloat16 or float16 kernels."""
    return not gpus and bool(flags) and "avx512f" not in flags


def resolve_jit_compile(setting: str, precision: str, gpus: int, flags: set[str], replicas: int = 1,
                        deterministic: bool = False) -> bool | str:
    """`--jit-compile` as Keras' `compile` takes it. `auto` leaves the choice to Keras (XLA on GPUs, not on CPUs,
    where float32 ran slower with it), except for mixed precision on a CPU without AVX-512: TensorFlow's oneDNN
    has no bfloat16 or float16 kernels there and its Eigen fallback ran 2-10x slower than XLA
    (docs/guides/performance.md). XLA cannot run a mirrored step on CPU devices, nor under op determinism."""
    if setting != "auto":
        return setting == "on"
    slow_kernels = precision != "float32" and _cpu_without_avx512(gpus, flags)
    return True if slow_kernels and replicas == 1 and not deterministic else "auto"


def precision_warning(precision: str, gpus: int, flags: set[str], xla: bool) -> str | None:
    """Why `precision` will be slow here, if it will: TensorFlow's oneDNN computes bfloat16 only with AVX-512;
    without it bfloat16 runs about 10x slower than float32 on Eigen, and 1.2-1.4x slower through XLA."""
    if precision != "mixed_bfloat16" or not _cpu_without_avx512(gpus, flags):
        return None
    if xla:
        return ("note: this CPU has no AVX-512, so TensorFlow has no fast bfloat16 kernels for it; csae-tf compiles "
                "the step with XLA instead (--jit-compile auto), and --precision float32 still trains faster")
    return ("warning: this CPU has no AVX-512, so TensorFlow computes bfloat16 on its slow fallback (about 10x "
            "slower than float32 on such CPUs); --precision float32 or --jit-compile auto trains faster")


def compile_model(model: CSAE, cfg: FitConfig, steps_per_epoch: int, steps_per_execution: int | None = None,
                  strategy: tf.distribute.Strategy | None = None) -> CSAE:
    """Compile with the run's optimizer and schedule; build the optimizer (its slots distribute like the weights)."""
    replicas = strategy.num_replicas_in_sync if strategy is not None else 1
    gpus = len(tf.config.list_physical_devices("GPU"))
    jit = resolve_jit_compile(cfg.jit_compile, cfg.precision, gpus, cpu_flags(), replicas, cfg.deterministic)
    if jit is True and replicas > 1 and not gpus:
        raise ConfigError("--jit-compile on does not work under a mirrored strategy on CPU devices (TensorFlow "
                          "reads a CPU:1 resource from CPU:0); use --jit-compile auto")
    spe = steps_per_execution or cfg.steps_per_execution or auto_steps_per_execution(steps_per_epoch, cfg.save_freq)
    # Keras runs whole executions: a given count must divide the epoch (and --save-freq) like the automatic one
    spe = math.gcd(spe, math.gcd(steps_per_epoch, cfg.save_freq) if cfg.save_freq else steps_per_epoch)
    model.compile(optimizer=build_optimizer(cfg, steps_per_epoch), steps_per_execution=spe, jit_compile=jit)
    model.optimizer.build(model.trainable_variables)
    return model


def _check_run_dir(cfg: FitConfig, out: Path) -> None:
    """A resumed run must have the same configuration (runtime-only options aside)."""
    saved_path = out / "config.json"
    if saved_path.is_dir():
        raise RunError(f"{saved_path} is a folder: {out} is not a run directory")
    if not saved_path.exists():
        return
    try:
        saved = json.loads(saved_path.read_text())
    except json.JSONDecodeError:
        raise RunError(f"{saved_path} is not valid JSON: pass --overwrite to start over") from None
    current = cfg.to_dict()
    changed = sorted(k for k in current if k not in RUNTIME_FIELDS and saved.get(k, current[k]) != current[k])
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


class _RestoreRunningMetrics(keras.callbacks.Callback):
    """Puts back the interrupted epoch's running metric sums after `fit` resets them (exact history rows)."""

    def __init__(self, states: dict):
        super().__init__()
        self.states = states

    def on_epoch_begin(self, epoch, logs=None):
        if self.states:
            checkpoint.set_metric_states(self.model, self.states)
            self.states = {}


class Trainer:
    """The steps of one run of `cfg`: `run()` trains (or resumes, or reports) it and returns its metrics."""

    def __init__(self, cfg: FitConfig, overwrite: bool = False):
        self.cfg = cfg
        self.overwrite = overwrite
        self.chief = distribute.is_chief(cfg)
        self.out = distribute.work_dir(cfg)  # a worker writes a temporary mirror of the chief's folder
        self.metrics_path = Path(cfg.output) / "metrics.json"

    # --- the steps ---
    def build_strategy(self) -> tf.distribute.Strategy:
        cfg = self.cfg
        if cfg.deterministic:
            tf.config.experimental.enable_op_determinism()
        keras.utils.set_random_seed(cfg.seed)
        set_precision(cfg.precision)
        self.strategy = distribute.make_strategy(cfg)
        self.replicas = self.strategy.num_replicas_in_sync
        if cfg.batch_size % self.replicas:
            raise ConfigError(f"--batch-size {cfg.batch_size} (global) must be divisible by the {self.replicas} "
                              "replicas")
        return self.strategy

    def build_inputs(self) -> data.Splits:
        self.splits = data.load_splits(self.cfg)
        self.info = self.splits.info
        self.steps_per_epoch = self.info.num_train // self.cfg.batch_size
        return self.splits

    def build_model(self) -> CSAE:
        cfg = self.cfg
        with self.strategy.scope():
            self.model = build_model(cfg, self.info.num_classes, self.info.image_shape)
            compile_model(self.model, cfg, self.steps_per_epoch, strategy=self.strategy)
        warning = precision_warning(cfg.precision, len(tf.config.list_physical_devices("GPU")), cpu_flags(),
                                    xla=self.model.jit_compile is True)
        if warning and self.chief:
            print(warning, flush=True)
        return self.model

    def restore(self) -> tuple[int, int]:
        with self.strategy.scope():
            self.initial_epoch, self.initial_step, self.running = checkpoint.restore(self.model,
                                                                                    self.out / "checkpoints")
        if isinstance(self.strategy, tf.distribute.MultiWorkerMirroredStrategy):
            distribute.prepare_multi_worker_fit(self.model)
            distribute.check_same_epoch(self.strategy, self.initial_epoch * 10**6 + self.initial_step)
        return self.initial_epoch, self.initial_step

    def build_callbacks(self) -> list[keras.callbacks.Callback]:
        cfg, out = self.cfg, self.out
        average = distribute.AverageMovingStatistics(self.strategy) if self.replicas > 1 else None
        state = (checkpoint.PeriodicTrainingState(out / "checkpoints", cfg.save_freq, self.steps_per_epoch,
                                                  before_save=average)
                 if cfg.save_freq else checkpoint.TrainingState(out / "checkpoints", before_save=average))
        schedule = build_schedule(cfg, self.steps_per_epoch)
        callbacks = [EpochStats(schedule, self.steps_per_epoch), *([average] if average else []), state,
                     keras.callbacks.CSVLogger(str(out / "history.csv"), append=True),
                     keras.callbacks.TensorBoard(log_dir=(self.chief and cfg.logdir) or str(out / "logs"),
                                                 histogram_freq=0, write_graph=False, profile_batch=0)]
        if self.chief:  # TensorBoard images, latent projector and hparams (docs/guides/monitoring.md)
            shown = self.splits.validation if self.splits.validation is not None else self.splits.train
            callbacks += monitoring_callbacks(cfg, self.info, shown, self.splits.train,
                                              cfg.logdir or out / "logs", out / "figures")
        return callbacks

    def train(self) -> float:
        """Run the epochs left; an interrupted epoch resumes at its saved step. Returns the seconds spent."""
        cfg, info = self.cfg, self.info
        validation = (data.evaluation_pipeline(self.splits.validation, info, cfg.batch_size)
                      if self.splits.validation is not None else None)
        callbacks = self.build_callbacks()
        verbose = cfg.verbose if cfg.verbose != 1 or sys.stdout.isatty() else 2
        start = time.time()
        epoch, step = self.initial_epoch, self.initial_step
        try:
            if step and epoch < cfg.epochs:  # the rest of the interrupted epoch, its running metrics restored
                rest = data.training_pipeline(self.splits.train, info, cfg.batch_size, seed=cfg.seed,
                                              epochs=epoch + 1, initial_epoch=epoch, initial_step=step)
                self.model.fit(rest, validation_data=validation, epochs=epoch + 1, initial_epoch=epoch,
                               steps_per_epoch=self.steps_per_epoch - step, verbose=verbose, shuffle=False,
                               callbacks=[_RestoreRunningMetrics(self.running), *callbacks])
                epoch += 1
            if epoch < cfg.epochs:
                train = data.training_pipeline(self.splits.train, info, cfg.batch_size, seed=cfg.seed,
                                               epochs=cfg.epochs, initial_epoch=epoch)
                self.model.fit(train, validation_data=validation, epochs=cfg.epochs, initial_epoch=epoch,
                               steps_per_epoch=self.steps_per_epoch, verbose=verbose, shuffle=False,
                               callbacks=callbacks)
        except tf.errors.InvalidArgumentError as err:
            if DIVERGED not in str(err):
                raise
            saved = checkpoint.read_state(self.out / "checkpoints")
            kept = f"epoch {saved['epoch']}, step {saved['step']}" if saved else "none yet"
            raise RunError(f"training diverged: {DIVERGED} (lr {cfg.lr}, lambda1 {cfg.lambda1}, lambda2 "
                           f"{cfg.lambda2}); the last good saved state is kept ({kept}) and no model or metrics "
                           "were written: lower --lr or the loss weights and rerun with --overwrite") from None
        return time.time() - start

    def finish(self, train_seconds: float) -> dict:
        """Save the model, fit the per-class latent Gaussians, save again, report validation and test."""
        cfg, model, out = self.cfg, self.model, self.out
        if self.replicas > 1:
            spread, weight = distribute.replica_spread(self.strategy, model)
            print(f"replicas agree: largest difference of weight sums {spread:.3g} ({weight})", flush=True)
        self._save_model()  # the trained networks are safe before the Gaussians are fitted
        model.fit_latent_gaussians(data.evaluation_pipeline(self.splits.train, self.info, 512))
        self._save_model()
        results = {}
        if self.splits.validation is not None:
            val = model.evaluate(data.evaluation_pipeline(self.splits.validation, self.info, cfg.batch_size),
                                 verbose=0, return_dict=True)
            results.update({f"val_{k}": float(v) for k, v in val.items()})
        if self.splits.test is not None:
            test = model.evaluate(data.evaluation_pipeline(self.splits.test, self.info, cfg.batch_size),
                                  verbose=0, return_dict=True)
            results.update({f"test_{k}": float(v) for k, v in test.items()})
        if not all(math.isfinite(v) for v in results.values()):
            raise RunError("the trained model gives non-finite losses: no metrics.json was written")
        if not self.chief:  # a worker's files only mirrored the chief's: remove them
            shutil.rmtree(out, ignore_errors=True)
            return {**results, "status": "worker"}
        info = self.info
        metrics = {**results, "epochs": cfg.epochs, "train_seconds": round(train_seconds, 1),
                   "num_train": info.num_train,
                   "num_validation": len(self.splits.validation) if self.splits.validation is not None else 0,
                   "num_test": info.num_test, "num_classes": info.num_classes, "params": int(model.count_params())}
        checkpoint.write_json(self.metrics_path, metrics)
        shown = ", ".join(f"{k} {v:.4f}" for k, v in results.items() if k.endswith("accuracy") or k.endswith("loss"))
        print(shown, flush=True)
        return {**metrics, "status": "trained"}

    def _save_model(self) -> None:
        tmp = self.out / "model.tmp.keras"
        self.model.save(tmp)
        os.replace(tmp, self.out / "model.keras")

    # --- the whole run ---
    def run(self) -> dict:
        cfg, out = self.cfg, self.out
        if out.exists() and not out.is_dir():
            raise RunError(f"--output {out} is a file, not a folder")
        if self.overwrite and out.exists():
            shutil.rmtree(out)
        _check_run_dir(cfg, out)
        finished = self._finished_epochs()
        if finished is not None and finished >= cfg.epochs:
            metrics = json.loads(self.metrics_path.read_text())
            print(f"{out} is a finished run of {finished} epochs (use --overwrite to train again, or a larger "
                  f"--epochs to carry on): test accuracy {metrics.get('test_accuracy', float('nan')):.4f}")
            return {**metrics, "status": "finished"}
        try:
            self.build_strategy()
            self.build_inputs()
            self._describe()
            self._prepare_dir()
            self.build_model()
            self.restore()
            np.save(out / "centroids.npy", self.model.pedcc.centroids.numpy())
            if self.initial_epoch or self.initial_step:
                print(f"resuming {out} at epoch {self.initial_epoch + 1} of {cfg.epochs}"
                      + (f", step {self.initial_step}" if self.initial_step else ""), flush=True)
            _trim_history(out / "history.csv", self.initial_epoch)
            seconds = self.train()
            return self.finish(seconds)
        finally:
            set_precision("float32")

    def _finished_epochs(self) -> int | None:
        """The epochs of a finished run in the directory (its metrics.json), or None."""
        if not self.metrics_path.exists():
            return None
        try:
            return int(json.loads(self.metrics_path.read_text()).get("epochs", 0))
        except (json.JSONDecodeError, ValueError):
            return None

    def _prepare_dir(self) -> None:
        out = self.out
        try:
            out.mkdir(parents=True, exist_ok=True)
            self.cfg.save(out / "config.json")
        except OSError as err:
            raise RunError(f"cannot write the run directory {out}: {err.strerror or err}") from None
        if self.metrics_path.exists() and self.chief:  # carrying a finished run on to more epochs
            self.metrics_path.unlink()

    def _describe(self) -> None:
        info, cfg = self.info, self.cfg
        held = len(self.splits.validation) if self.splits.validation is not None else 0
        print(f"{info.name}: {info.num_train} train / {held} validation / {info.num_test} test images "
              f"{info.image_shape}, {info.num_classes} classes; {self.replicas} replica(s), global batch "
              f"{cfg.batch_size} = {cfg.batch_size // self.replicas} per replica, {self.steps_per_epoch} steps "
              f"per epoch" + ("" if held else "; no validation split: no val_* metrics"), flush=True)


def run(cfg: FitConfig, overwrite: bool = False) -> dict:
    """Train (or resume, or report) the run described by `cfg`; return its metrics."""
    return Trainer(cfg, overwrite).run()
