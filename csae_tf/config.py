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

from csae_tf.errors import CsaeError

ARCHS = ("conv", "linear")
LINEAR_INPUTS = ("symmetric", "unit")
EDGE_LOSSES = ("laplacian", "sobel", "sobel-per-example", "none")
OPTIMIZERS = ("sgd", "adam")
SCHEDULES = ("step", "cosine", "onecycle", "constant")
STRATEGIES = ("auto", "default", "mirrored", "multi-worker")
PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")
JIT = ("auto", "on", "off")

# Named recipes: `--preset NAME` sets these fields; explicit flags (and --config files) override them.
PRESETS: dict[str, dict] = {
    # the paper's CSAE-C protocol: SGD 0.1, momentum 0.9, decay 5e-4, 120 epochs, /10 every 30
    "paper-c": dict(arch="conv", optimizer="sgd", lr=0.1, momentum=0.9, weight_decay=5e-4, epochs=120,
                    schedule="step", lr_step_epochs=30, warmup_epochs=0.0, batch_size=128, augment=False),
    # the paper's CSAE-L protocol: 784-400-d, Adam 1e-3, 200 epochs
    "paper-l": dict(arch="linear", optimizer="adam", lr=1e-3, weight_decay=0.0, epochs=200, schedule="constant",
                    warmup_epochs=0.0, batch_size=128, augment=False),
    # the fastest recipe to 99% MNIST test accuracy: one-cycle SGD to lr 0.2 over 1 epoch, chosen on
    # validation accuracy (benchmarks/fast_recipe.py, benchmarks/time_to_accuracy.py; docs/guides/performance.md)
    "fast": dict(arch="conv", optimizer="sgd", lr=0.2, momentum=0.9, epochs=1, schedule="onecycle",
                 warmup_epochs=0.3, batch_size=128, image_every=0),
}
# Fields that do not change what is trained: a resumed run may change them.
RUNTIME_FIELDS = ("verbose", "output", "logdir", "image_every", "manual_dir", "data_dir", "epochs", "save_freq",
                  "steps_per_execution", "jit_compile", "preset")


class ConfigError(CsaeError, ValueError):
    """A configuration value the run cannot use; its message is shown to the user as is."""


def _describe(values: dict) -> str:
    return ", ".join(f"{k.replace('_', '-')} {v}" for k, v in values.items())


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
    validation_split: float = _field(5000, "training images held out for validation (a count, or a fraction < 1; "
                                     "seeded, the same after a resume); 0 trains on all of them and logs no val_*")
    classes: list[int] | None = _field(None, "train on these class ids only, e.g. 0,1,2,3,4 (others held out)")
    augment: bool = _field(False, "random +-2 pixel shifts of training images (not in the paper)")
    flip: bool = _field(False, "random horizontal flips of training images, for classes that mirror (e.g. "
                        "fashion_mnist, cifar10; not digits or letters; not in the paper)")
    # --- model ---
    arch: str = _field("conv", "CSAE-C (conv, residual encoder) or CSAE-L (linear, 784-400-d)", ARCHS)
    linear_input: str = _field("symmetric", "pixel range CSAE-L's encoder reads: symmetric [-1, 1], the range it "
                               "reconstructs, or unit [0, 1], where the blank background feeds its 784-400 layer "
                               "zeros (not in the paper; conv ignores it, its batch norm absorbs an input offset)",
                               LINEAR_INPUTS)
    latent_dim: int = _field(40, "latent dimension d (one PEDCC centroid per class in R^d)")
    pedcc_method: str = _field("auto", "centroid layout: auto, simplex, repulsion, packing, cross-polytope")
    beta: float = _field(0.04, "noise level: z + sqrt(d) * beta * N(0, I) feeds the decoder in training")
    lambda1: float = _field(1.0, "weight of Loss2, the pixel MSE of the reconstruction")
    lambda2: float = _field(0.02, "weight of Loss3, the edge loss (1 diverges at lr 0.1: see README)")
    edge_loss: str = _field("laplacian", "Loss3: the paper's Laplacian, the authors' code's Sobel energy, or none "
                            "(the Laplacian is then reported, not trained on)", EDGE_LOSSES)
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
    steps_per_execution: int = _field(0, "training steps run per call into TensorFlow (0: chosen automatically)")
    precision: str = _field("float32", "compute precision (Keras mixed-precision policy); centroids and losses "
                            "stay float32", PRECISIONS)
    jit_compile: str = _field("auto", "XLA compilation of the train step: auto uses it on GPUs, and for mixed "
                              "precision on CPUs without AVX-512", JIT)
    deterministic: bool = _field(False, "TensorFlow op determinism: reruns and resumed runs equal bit for bit")
    seed: int = _field(0, "seed for PEDCC, weights, shuffling, augmentation and noise")
    # --- distribution ---
    strategy: str = _field("auto", "tf.distribute strategy: auto picks mirrored when >1 GPU is visible",
                           STRATEGIES)
    devices: list[str] | None = _field(None, "devices for the mirrored strategy, e.g. GPU:0,GPU:1 "
                                       "(CPU:0,CPU:1 splits the CPU into logical devices)")
    save_freq: int | None = _field(None, "also back up the training state every N steps (default: each epoch)")
    # --- output ---
    output: str = _field("runs/csae", "run directory: model, config, centroids, history, checkpoints, metrics")
    logdir: str | None = _field(None, "TensorBoard log directory (default: OUTPUT/logs)")
    image_every: int = _field(5, "write image summaries every N epochs and after the last (0: never); each "
                              "costs a few seconds")
    verbose: int = _field(1, "progress output: 0 silent, 1 progress bar on a terminal (one line per epoch "
                          "otherwise), 2 one line per epoch and TensorFlow's own log lines")
    preset: str | None = _field(None, "a named recipe whose values explicit flags override: "
                                + "; ".join(f"{k}: {_describe(v)}" for k, v in PRESETS.items()),
                                tuple(PRESETS))

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
            (self.steps_per_execution >= 0, "--steps-per-execution must be >= 0 (0: automatic)"),
            (self.validation_split >= 0, f"--validation-split must be >= 0 (got {self.validation_split})"),
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
            if choices and getattr(self, f.name) not in choices and not (f.name == "preset" and self.preset is None):
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
        return cls.from_dict(_read_json(path))


def _read_json(path: str | Path) -> dict:
    """The JSON object of a config file, with one-line errors for every way it can be wrong."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"config file {path} is a folder, not a JSON file")
    try:
        values = json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ConfigError(f"config file {path} is not valid JSON: {err}") from None
    if not isinstance(values, dict):
        raise ConfigError(f"config file {path} must hold a JSON object")
    return values


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
        default = getattr(defaults, f.name)
        shown = "" if default is None else f" (default: {default})"
        kwargs = {"default": None, "dest": f.name, "help": f"{f.metadata['help']}{shown}"}
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
    """defaults -> --preset -> --config file -> explicit flags, then validate."""
    from_file = _read_json(args.config) if getattr(args, "config", None) else {}
    flags = {f.name: getattr(args, f.name) for f in dataclasses.fields(cls) if getattr(args, f.name, None) is not None}
    preset = flags.get("preset") or from_file.get("preset")
    if preset is not None and preset not in PRESETS:
        raise ConfigError(f"--preset must be one of {', '.join(PRESETS)} (got {preset!r})")
    values = {**cls().to_dict(), **PRESETS.get(preset, {}), **from_file, **flags}
    return cls.from_dict(values).validate()
