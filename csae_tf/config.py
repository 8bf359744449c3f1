"""The one configuration of a CSAE run: every default lives here.

`FitConfig` feeds the command-line flags of ``python -m csae_tf.fit`` (one flag per field,
help text from the field), the KerasTuner search and the exporter. Values are read in the
order defaults -> ``--config file.json`` -> explicit flags.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import typing
from pathlib import Path

ARCHS = ("conv", "linear")
EDGE_LOSSES = ("laplacian", "sobel", "none")
OPTIMIZERS = ("sgd", "adam")
SCHEDULES = ("step", "cosine", "onecycle", "constant")
STRATEGIES = ("auto", "default", "mirrored", "multi-worker")


class ConfigError(ValueError):
    """A configuration value the run cannot use; its message is shown to the user as is."""


def _field(default, help: str, choices=None, flag: bool = True):
    return dataclasses.field(default=default, metadata={"help": help, "choices": choices, "flag": flag})


@dataclasses.dataclass
class FitConfig:
    """Everything that defines a CSAE training run (the paper's CSAE-C setup by default)."""

    # --- data ---
    dataset: str = _field("mnist", "TFDS dataset name (mnist, fashion_mnist, cifar10, emnist/letters, ...)")
    data_dir: str | None = _field(None, "TFDS data directory (default: TFDS's own, ~/tensorflow_datasets)")
    manual_dir: str | None = _field(None, "folder holding the original dataset files, for offline preparation")
    train_limit: int | None = _field(None, "use only the first N training examples")
    test_limit: int | None = _field(None, "use only the first N test examples")
    classes: list[int] | None = _field(None, "train on these class ids only, e.g. 0,1,2,3,4 (others held out)")
    augment: bool = _field(False, "random +-2 pixel shifts of training images (not in the paper)")
    flip: bool = _field(False, "random horizontal flips of training images, for classes that mirror (e.g. "
                        "fashion_mnist, cifar10; not digits or letters; not in the paper)")
    # --- model ---
    arch: str = _field("conv", "CSAE-C (conv, residual encoder) or CSAE-L (linear, 784-400-d)", ARCHS)
    latent_dim: int = _field(40, "latent dimension d (one PEDCC centroid per class in R^d)")
    pedcc_method: str = _field("auto", "centroid layout: auto, simplex, repulsion, packing, cross-polytope")
    beta: float = _field(0.04, "noise level: z + sqrt(d) * beta * N(0, I) feeds the decoder in training")
    lambda1: float = _field(1.0, "weight of Loss2, the pixel MSE of the reconstruction")
    lambda2: float = _field(0.02, "weight of Loss3, the edge loss (1 diverges at lr 0.1: see README)")
    edge_loss: str = _field("laplacian", "Loss3: the paper's Laplacian, the authors' code's Sobel energy, or none",
                            EDGE_LOSSES)
    sync_bn: bool = _field(False, "synchronise batch-norm statistics across replicas")
    # --- optimisation ---
    epochs: int = _field(120, "training epochs")
    batch_size: int = _field(128, "global batch size (split across all replicas and workers)")
    optimizer: str = _field("sgd", "optimizer", OPTIMIZERS)
    lr: float = _field(0.1, "peak learning rate")
    momentum: float = _field(0.9, "SGD momentum")
    weight_decay: float = _field(5e-4, "L2 weight decay added to the gradients, as PyTorch's SGD does")
    schedule: str = _field("step", "learning-rate schedule: step (/10 every --lr-step-epochs), cosine, onecycle, "
                           "constant", SCHEDULES)
    lr_step_epochs: int = _field(30, "epochs between /10 steps of the step schedule")
    warmup_epochs: float = _field(0.0, "linear warm-up epochs before the schedule")
    steps_per_execution: int = _field(1, "training steps run per call into TensorFlow")
    seed: int = _field(0, "seed for PEDCC, weights, shuffling and noise")
    # --- distribution ---
    strategy: str = _field("auto", "tf.distribute strategy: auto picks mirrored when >1 GPU is visible",
                           STRATEGIES)
    devices: list[str] | None = _field(None, "devices for the mirrored strategy, e.g. GPU:0,GPU:1 "
                                       "(CPU:0,CPU:1 splits the CPU into logical devices)")
    save_freq: int | None = _field(None, "also back up the training state every N steps (default: each epoch)")
    # --- output ---
    output: str = _field("runs/csae", "run directory: model, config, centroids, history, checkpoints, metrics")
    logdir: str | None = _field(None, "TensorBoard log directory (default: OUTPUT/logs)")
    image_every: int = _field(1, "write image summaries every N epochs (0: never)")
    verbose: int = _field(1, "Keras progress output: 0 silent, 1 progress bar, 2 one line per epoch")

    def validate(self) -> FitConfig:
        """Raise ConfigError with a one-line message for any value out of range."""
        checks = [
            (0.0 <= self.beta <= 1.0, f"--beta must lie in [0, 1] (got {self.beta})"),
            (self.latent_dim >= 1, f"--latent-dim must be >= 1 (got {self.latent_dim})"),
            (self.epochs >= 0, f"--epochs must be >= 0 (got {self.epochs})"),
            (self.batch_size >= 1, f"--batch-size must be >= 1 (got {self.batch_size})"),
            (self.lr > 0, f"--lr must be > 0 (got {self.lr})"),
            (self.lambda1 >= 0 and self.lambda2 >= 0, "--lambda1 and --lambda2 must be >= 0"),
            (self.weight_decay >= 0, f"--weight-decay must be >= 0 (got {self.weight_decay})"),
            (self.steps_per_execution >= 1, "--steps-per-execution must be >= 1"),
            (self.lr_step_epochs >= 1, "--lr-step-epochs must be >= 1"),
            (self.image_every >= 0, "--image-every must be >= 0"),
            (self.train_limit is None or self.train_limit >= 1, "--train-limit must be >= 1"),
            (self.test_limit is None or self.test_limit >= 1, "--test-limit must be >= 1"),
            (self.save_freq is None or self.save_freq >= 1, "--save-freq must be >= 1"),
            (all(math.isfinite(v) for v in (self.beta, self.lambda1, self.lambda2, self.lr)),
             "numeric options must be finite"),
        ]
        for f in dataclasses.fields(self):
            choices = f.metadata.get("choices")
            if choices and getattr(self, f.name) not in choices:
                checks.append((False, f"--{_flag(f.name)} must be one of {', '.join(choices)} "
                                      f"(got {getattr(self, f.name)!r})"))
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)
        return self

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def from_dict(cls, values: dict) -> FitConfig:
        """Build a config from a dict; unknown keys are an error (a typo must not pass silently)."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise ConfigError(f"unknown config key(s): {', '.join(unknown)}")
        return cls(**values)

    @classmethod
    def load(cls, path: str | Path) -> FitConfig:
        try:
            values = json.loads(Path(path).read_text())
        except FileNotFoundError:
            raise ConfigError(f"config file not found: {path}") from None
        except json.JSONDecodeError as err:
            raise ConfigError(f"config file {path} is not valid JSON: {err}") from None
        if not isinstance(values, dict):
            raise ConfigError(f"config file {path} must hold a JSON object")
        return cls.from_dict(values)


def _flag(name: str) -> str:
    return name.replace("_", "-")


def _parse_list(item_type):
    def parse(text: str):
        try:
            return [item_type(v) for v in text.split(",") if v.strip()]
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a comma-separated list, got {text!r}") from None
    return parse


def _parse_bool(text: str) -> bool:
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true/false, got {text!r}")


def add_config_arguments(parser: argparse.ArgumentParser, cls=FitConfig, skip: tuple[str, ...] = ()) -> None:
    """Add one flag per config field; defaults are left as None so that --config files can fill them."""
    hints = typing.get_type_hints(cls)
    defaults = cls()
    group = parser.add_argument_group("run configuration (defaults from csae_tf.config.FitConfig)")
    for f in dataclasses.fields(cls):
        if f.name in skip or not f.metadata.get("flag", True):
            continue
        hint = hints[f.name]
        args = typing.get_args(hint)
        base = next((a for a in args if a is not type(None)), hint) if args else hint
        kwargs = {"default": None, "dest": f.name,
                  "help": f"{f.metadata['help']} (default: {getattr(defaults, f.name)})"}
        if base is bool:
            kwargs.update(nargs="?", const=True, type=_parse_bool, metavar="BOOL")
        elif typing.get_origin(base) is list:
            kwargs.update(type=_parse_list(typing.get_args(base)[0]), metavar="A,B,...")
        else:
            kwargs["type"] = base
            if f.metadata.get("choices"):
                kwargs["choices"] = f.metadata["choices"]
        group.add_argument(f"--{_flag(f.name)}", **kwargs)
    parser.add_argument("--config", default=None, help="JSON file of config values; explicit flags override it")


def config_from_args(args: argparse.Namespace, cls=FitConfig) -> FitConfig:
    """defaults -> --config file -> explicit flags, then validate."""
    values = cls.load(args.config).to_dict() if getattr(args, "config", None) else cls().to_dict()
    for f in dataclasses.fields(cls):
        value = getattr(args, f.name, None)
        if value is not None:
            values[f.name] = value
    return cls.from_dict(values).validate()
