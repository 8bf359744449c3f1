"""Train CSAE and the systems it is compared with on the same data, seed and budget; write one table.

    python -m csae_tf.compare --dataset mnist --models csae_c,csae_l,encoder_only,basenet,cvae,ddae,conv_vae,fsae \
        --epochs 2 --train-limit 10000 --output runs/compare

Every system gets the same training images (the `csae_tf.data` pipeline: padded to a multiple of 8,
scaled to [-1, 1], shuffled with --seed), the same --epochs and --batch-size, and the same seed
before it is built. Layer-wise systems (ddae, fsae) get --epochs for each of their stages. Each
system keeps its own paper's optimizer, except that csae_c, encoder_only and basenet (one trunk, one
protocol in the paper) use the --optimizer / --lr / --schedule flags.

DIR/comparison.md holds the table (test accuracy where the system classifies, test reconstruction
MSE where it reconstructs, trainable parameters, training seconds); DIR/comparison.json the same
figures; DIR/reconstructions.png one row per reconstructing system under the test inputs, and
DIR/<model>_reconstructions.png each row alone; DIR/<model>_latent.png the class scatter of every
2-d latent space; DIR/<model>_generated.png ten samples per class of every class-conditional
generator; DIR/models/<model>.keras every trained model.

Each system's result is also written, the moment it finishes, as its own row ROWS/<row-id>.json
(--rows, default DIR/rows; --row-id, default the model name): config, budget, seed, command, date,
machine, accuracy, MSE, generated samples classified as their class, seconds. A system whose row
exists is skipped (--rerun MODEL,... or all trains it again), and the table is rebuilt from every
row in ROWS, so an interrupted comparison carries on where it stopped.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import platform
import sys
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from csae_tf import data, pedcc
from csae_tf.baselines import CONV_VAE_VARIANTS, CVAE, DDAE, FSAE, BaseNet, ConvVAE, EncoderOnly, kelm
from csae_tf.baselines.conv_vae import latent_scatter
from csae_tf.config import ConfigError, FitConfig, add_config_arguments, config_from_args
from csae_tf.errors import CsaeError, command, output_dir
from csae_tf.models import CSAE, build_model
from csae_tf.schedules import build_optimizer

SYSTEMS = ("csae_c", "csae_l", "encoder_only", "basenet", "cvae", "ddae", "conv_vae", "fsae")
CONV_VAES = tuple(f"conv_vae_{v}" for v in CONV_VAE_VARIANTS)
DESCRIPTIONS = {
    "csae_c": "CSAE-C (paper): residual encoder on PEDCC, decoder, Loss1+Loss2+Loss3",
    "csae_l": "CSAE-L (paper): pixels-400-40, Adam 1e-3",
    "encoder_only": "CSAE-C encoder only, Loss1, nearest centroid (paper §4.3)",
    "basenet": "CSAE-C trunk + 4x4 avg pool + softmax (paper §4.3)",
    "cvae": "conditional VAE pixels-400-40, Adam 1e-3; label = argmin_y -ELBO, recon given the true label",
    "ddae": "DropConnect AE + AE (sigmoid, tied), KELM (seed 002)",
    "conv_vae_simple": "conv VAE 32/64, 256/64, 2-d latent (seed 003)",
    "conv_vae_16d": "conv VAE 32/64, 256/64, 16-d latent (seed 003)",
    "conv_vae_deep": "conv VAE 32/128, 1024/256/32, 2-d latent, KL x0.5 (seed 003)",
    "fsae": "classifier (3 conv + 2 dense), frozen, + learned inverse network (seed 004)",
}
_SKIP = ("arch", "output", "logdir", "image_every", "save_freq", "strategy", "devices", "sync_bn")


class CompareError(CsaeError):
    """The comparison cannot run as asked; the message says why."""


@dataclasses.dataclass
class BaselineOptions:
    """Options of the comparison systems (CSAE's own come from FitConfig)."""

    kelm_c: float = dataclasses.field(default=10.0, metadata={"help": "ddae: KELM regularisation C"})
    kelm_gamma: float = dataclasses.field(
        default=0.0, metadata={"help": "ddae: Gaussian kernel width gamma (0: median heuristic)"})
    kelm_method: str = dataclasses.field(
        default="nystrom", metadata={"help": "ddae: KELM solver", "choices": kelm.METHODS})
    kelm_centres: int = dataclasses.field(
        default=2000, metadata={"help": "ddae: KELM centres m (Nystrom landmarks or subset size; exact: every "
                                       "training image)"})
    dropconnect: float = dataclasses.field(default=0.5, metadata={"help": "ddae: DropConnect drop probability"})
    ddae_hidden: str = dataclasses.field(default="400,200", metadata={"help": "ddae: the two hidden widths"})
    ddae_lr: float = dataclasses.field(default=0.01, metadata={"help": "ddae: SGD learning rate (momentum 0.9)"})
    vae_lr: float = dataclasses.field(default=1e-4, metadata={"help": "conv_vae: Adam learning rate (seed: 1e-4)"})
    fsae_rounding: bool = dataclasses.field(default=False, metadata={"help": "fsae: round the class output"})
    fsae_jump: int = dataclasses.field(default=0, metadata={"help": "fsae: jump connections (0-4, from the top)"})
    fsae_feedback: int = dataclasses.field(default=0, metadata={"help": "fsae: negative-feedback passes"})
    images: int = dataclasses.field(default=10, metadata={"help": "test images per reconstruction row"})

    def validate(self) -> BaselineOptions:
        if self.kelm_centres < 1 or self.images < 1 or not 0 <= self.dropconnect < 1:
            raise ConfigError("--kelm-centres and --images must be >= 1 and --dropconnect lie in [0, 1)")
        return self

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> BaselineOptions:
        """The options given on the command line (flags of `add_config_arguments`), defaults for the rest."""
        given = {f.name: getattr(args, f.name) for f in dataclasses.fields(cls) if getattr(args, f.name) is not None}
        return cls(**given).validate()


def build_parser() -> argparse.ArgumentParser:
    # "resolve": add_config_arguments gives both dataclasses a --config flag; FitConfig's, added last, is kept.
    parser = argparse.ArgumentParser(
        prog="python -m csae_tf.compare", description=__doc__.split("\n\n")[0], conflict_handler="resolve")
    parser.add_argument("--models", default=",".join(SYSTEMS),
                        help=f"comma-separated systems: {', '.join(SYSTEMS)} (conv_vae = {', '.join(CONV_VAES)}; "
                             "default: all)")
    parser.add_argument("--output", default="runs/compare", help="output directory (default: runs/compare)")
    parser.add_argument("--rows", default=None, help="folder of the per-system row JSON files (default: OUTPUT/rows)")
    parser.add_argument("--row-id", default="{model}",
                        help="row id template, with {model}, {dataset}, {seed} (default: {model})")
    parser.add_argument("--rerun", default="", help="comma-separated models to train again although their row "
                        "exists (all: every one)")
    add_config_arguments(parser, BaselineOptions)
    parser._action_groups[-1].title = "comparison systems (defaults from csae_tf.compare.BaselineOptions)"
    add_config_arguments(parser, FitConfig, skip=_SKIP)
    return parser


def expand_models(text: str) -> list[str]:
    """Model names in order, conv_vae expanded into its three variants; unknown names are an error."""
    names = []
    for name in (n.strip() for n in text.split(",")):
        if not name:
            continue
        expanded = list(CONV_VAES) if name == "conv_vae" else [name]
        for n in expanded:
            if n not in SYSTEMS + CONV_VAES:
                raise CompareError(f"unknown model {n!r}; choose from {', '.join(SYSTEMS + CONV_VAES)}")
            if n not in names:
                names.append(n)
    if not names:
        raise CompareError("--models is empty")
    return names


def kelm_centres(opts: BaselineOptions, num_train: int) -> int:
    """The DDAE's KELM centres: every training image for the exact solver, else at most m of them."""
    return num_train if opts.kelm_method == "exact" else min(opts.kelm_centres, num_train)


def build(name: str, cfg: FitConfig, opts: BaselineOptions, info, steps_per_epoch: int) -> keras.Model:
    """One compiled system; the caller seeds Keras first."""
    shape, n = info.image_shape, info.num_classes
    if name == "csae_c":
        model = build_model(dataclasses.replace(cfg, arch="conv"), n, shape)
        model.compile(optimizer=build_optimizer(cfg, steps_per_epoch))
    elif name == "csae_l":
        lin = dataclasses.replace(cfg, arch="linear", optimizer="adam", lr=1e-3, schedule="constant",
                                  warmup_epochs=0.0, weight_decay=0.0)
        model = build_model(lin, n, shape)
        model.compile(optimizer=build_optimizer(lin, steps_per_epoch))
    elif name in ("encoder_only", "basenet"):
        if name == "basenet":
            model = BaseNet(shape, n, weight_decay=cfg.weight_decay, name=name)
        else:
            centroids = pedcc.generate(n, cfg.latent_dim, method=cfg.pedcc_method, seed=cfg.seed)
            model = EncoderOnly(shape, n, cfg.latent_dim, centroids, weight_decay=cfg.weight_decay, name=name)
        model.compile(optimizer=build_optimizer(cfg, steps_per_epoch))
    elif name == "cvae":
        model = CVAE(shape, n, latent_dim=cfg.latent_dim, seed=cfg.seed, name=name)
    elif name == "ddae":
        hidden = [int(v) for v in opts.ddae_hidden.split(",")]
        model = DDAE(shape, n, hidden=hidden, dropconnect=opts.dropconnect, kelm_c=opts.kelm_c,
                     kelm_gamma=opts.kelm_gamma, kelm_method=opts.kelm_method,
                     kelm_centres=kelm_centres(opts, info.num_train), lr=opts.ddae_lr, seed=cfg.seed, name=name)
    elif name in CONV_VAES:
        model = ConvVAE.variant(name[len("conv_vae_"):], shape, lr=opts.vae_lr, seed=cfg.seed, name=name)
    elif name == "fsae":
        model = FSAE(shape, n, rounding=opts.fsae_rounding, jump=opts.fsae_jump, feedback=opts.fsae_feedback,
                     name=name)
    else:
        raise CompareError(f"unknown model {name!r}")
    return model


def train(model: keras.Model, dataset, epochs: int, verbose: int) -> None:
    if isinstance(model, CSAE):
        model.fit(dataset, epochs=epochs, verbose=verbose)
    else:
        model.train(dataset, epochs, verbose=verbose)


def classifies(model) -> bool:
    return isinstance(model, CSAE) or model.classifies


def reconstructs(model) -> bool:
    return isinstance(model, CSAE) or model.reconstructs


def predict_labels(model, images) -> np.ndarray:
    return np.asarray(model.classify(images)[0] if isinstance(model, CSAE) else model.predict_labels(images))


def reconstruct(model, images, labels) -> np.ndarray:
    return np.asarray(model.reconstruct(images) if isinstance(model, CSAE) else model.reconstruct(images, labels))


def evaluate(model, images: np.ndarray, labels: np.ndarray, batch: int = 500) -> dict:
    """Test accuracy and test reconstruction MSE ([-1, 1] scale, every pixel of the model input)."""
    correct, squared = 0, 0.0
    for i in range(0, len(images), batch):
        x, y = tf.constant(images[i : i + batch]), tf.constant(labels[i : i + batch])
        if classifies(model):
            correct += int((predict_labels(model, x) == labels[i : i + batch]).sum())
        if reconstructs(model):
            squared += float(np.square(reconstruct(model, x, y) - images[i : i + batch]).sum())
    return {"accuracy": correct / len(images) if classifies(model) else None,
            "mse": squared / images.size if reconstructs(model) else None}


def _trainable(model) -> int:
    return int(sum(np.prod(v.shape) for v in model.trainable_variables))


def _save_rows(rows: list[tuple[str, np.ndarray]], path: Path, source_shape) -> None:
    """A grid of images, one labelled row per entry, cropped back to the source size."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = len(rows[0][1])
    fig, axes = plt.subplots(len(rows), cols, figsize=(1.0 * cols + 1.6, 1.0 * len(rows)), squeeze=False)
    for r, (label, images) in enumerate(rows):
        shown = data.from_model_output(tf.constant(images), source_shape).numpy().astype("uint8")
        for c in range(cols):
            ax = axes[r][c]
            img = shown[c]
            ax.imshow(img[..., 0] if img.shape[-1] == 1 else img, cmap="gray", vmin=0, vmax=255)
            ax.set_xticks([])
            ax.set_yticks([])
        axes[r][0].set_ylabel(label, rotation=0, ha="right", va="center", fontsize=8)
    fig.subplots_adjust(left=1.5 / (1.0 * cols + 1.6), right=0.99, top=0.99, bottom=0.01, wspace=0.05, hspace=0.05)
    fig.savefig(path, dpi=80)
    plt.close(fig)


def _fmt(value, spec: str) -> str:
    return "—" if value is None else format(value, spec)


def machine() -> str:
    """CPU model (from /proc/cpuinfo), core count, GPU or not, TensorFlow version."""
    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    gpu = "GPU" if tf.config.list_physical_devices("GPU") else "no GPU"
    return f"{cpu}, {os.cpu_count()} CPU(s), {gpu}, TF {tf.__version__}"


def write_row(row: dict, path: Path) -> None:
    """One finished row as JSON, written whole (a reader never sees half a file)."""
    from csae_tf.checkpoint import write_json

    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(path, row)


def read_rows(folder: Path) -> dict[str, dict]:
    """Every comparison row JSON in `folder`, by row id (rows of other writers, without a "model", are left out)."""
    rows = {}
    for path in sorted(Path(folder).glob("*.json")):
        row = json.loads(path.read_text())
        if "model" in row:
            rows[row.get("id", path.stem)] = row
    return rows


def generated_accuracy(model, train_ds, num_classes: int, per_class: int = 10, save: Path | None = None,
                       source_shape=None) -> float | None:
    """Samples the system generates for each class, classified by the system itself as their class (fraction);
    None for systems that do not generate by class or do not classify. `save`: also draw them, a row per class."""
    if not classifies(model) or not hasattr(model, "generate"):
        return None
    ids = np.repeat(np.arange(num_classes, dtype="int32"), per_class)
    if isinstance(model, CSAE):
        model.fit_latent_gaussians(train_ds)
    images = np.asarray(model.generate(tf.constant(ids)))
    if save is not None:
        _save_rows([(f"class {c}", images[ids == c]) for c in range(num_classes)], save, source_shape)
    return float(np.mean(predict_labels(model, images) == ids))


def write_table(results: list[dict], header: dict, path: Path) -> None:
    lines = [f"# Comparison on {header['dataset']}", "",
             f"- data: {header['num_train']} training / {header['num_test']} test images "
             f"{tuple(header['image_shape'])}, "
             f"{header['num_classes']} classes; {header['epochs']} epoch(s) per training stage, batch "
             f"{header['batch_size']}, seed {header['seed']}",
             f"- machine: {header['machine']}; date {header['date']}",
             f"- command: `{header['command']}`",
             "- accuracy: fraction of test images classified right; MSE: mean squared error of the test "
             "reconstructions on the model input ([-1, 1] scale, all pixels of the padded image, the paper's Loss2)",
             "",
             "- generated: samples the system generates for each class that it classifies as that class",
             "",
             "| model | test accuracy | test reconstruction MSE | generated | trainable parameters | training seconds "
             "| notes | row | budget |",
             "|---|---:|---:|---:|---:|---:|---|---|---|"]
    for r in results:
        b = r.get("budget", {})
        budget = (f"{b.get('epochs')} ep, {b.get('train_images')} train / {b.get('test_images')} test, batch "
                  f"{b.get('batch_size')}, seed {r.get('seed')}") if b else ""
        lines.append(f"| {r['model']} | {_fmt(r['accuracy'], '.4f')} | {_fmt(r['mse'], '.4f')} | "
                     f"{_fmt(r.get('generated_classified_as_their_class'), '.2f')} | "
                     f"{r['parameters']:,} | {r['train_seconds']:.1f} | {r['notes']} | {r.get('id', '')} | {budget} |")
    path.write_text("\n".join(lines) + "\n")


def run(cfg: FitConfig, opts: BaselineOptions, models: list[str], output: str, command: str = "",
        rows: str | None = None, row_id: str = "{model}", rerun: tuple[str, ...] = ()) -> list[dict]:
    """Train every system in `models` and write the table, figures and models under `output`."""
    cfg = dataclasses.replace(cfg, arch="conv")  # one pipeline for all: images padded to a multiple of 8
    train_ds, test_ds, info = data.load_datasets(cfg)
    return run_on(train_ds, data.as_numpy(test_ds), info, cfg, opts, models, output, command, rows, row_id, rerun)


def run_on(train_ds, test: tuple[np.ndarray, np.ndarray], info, cfg: FitConfig, opts: BaselineOptions,
           models: list[str], output: str, command: str = "", rows: str | None = None, row_id: str = "{model}",
           rerun: tuple[str, ...] = ()) -> list[dict]:
    """`run` on given data: a (images, labels) training dataset, test arrays and their DatasetInfo.

    Systems whose row exists in `rows` (default OUTPUT/rows) are skipped unless named in `rerun` ("all": every one).
    """
    out = output_dir(output, "--output")
    output_dir(out / "models", "--output")
    rows_dir = Path(rows) if rows else out / "rows"
    done = read_rows(rows_dir) if rows_dir.is_dir() else {}
    test_x, test_y = test
    steps = info.num_train // cfg.batch_size
    shown = test_x[: opts.images]
    grid = [("input", shown)]
    print(f"{info.name}: {info.num_train} train / {info.num_test} test, {info.image_shape}; "
          f"{cfg.epochs} epoch(s) per stage, models: {', '.join(models)}", flush=True)
    results = []
    for name in models:
        rid = row_id.format(model=name, dataset=info.name, seed=cfg.seed)
        if rid in done and name not in rerun and "all" not in rerun:
            print(f"{name}: row {rid} exists in {rows_dir} (skipped; --rerun {name} trains it again)", flush=True)
            results.append(done[rid])
            continue
        wall = time.time()
        keras.utils.set_random_seed(cfg.seed)
        model = build(name, cfg, opts, info, steps)
        start = time.time()
        train(model, train_ds, cfg.epochs, cfg.verbose)
        seconds = time.time() - start
        metrics = evaluate(model, test_x, test_y)
        metrics["generated"] = generated_accuracy(model, train_ds, info.num_classes, save=out / f"{name}_generated.png",
                                                  source_shape=info.source_shape)
        notes = DESCRIPTIONS[name]
        if isinstance(model, DDAE):
            notes += (f"; KELM {model.kelm_method}, m={model.kelm_centres}, C={model.kelm_c:g}, "
                      f"gamma={float(model.width.numpy()):.3g}")
        if isinstance(model, ConvVAE):
            notes += f"; Adam {model.lr:g}"
        if isinstance(model, FSAE):
            notes += f"; rounding={model.rounding}, jump={model.jump}, feedback={model.feedback}"
        result = {"model": name, "accuracy": metrics["accuracy"], "mse": metrics["mse"],
                  "generated_classified_as_their_class": metrics["generated"],
                  "parameters": _trainable(model), "train_seconds": round(seconds, 1), "notes": notes}
        results.append(result)
        if reconstructs(model):
            row = reconstruct(model, tf.constant(shown), tf.constant(test_y[: opts.images]))
            grid.append((name, row))
            _save_rows([("input", shown), (name, row)], out / f"{name}_reconstructions.png", info.source_shape)
        if isinstance(model, ConvVAE) and model.latent_dim == 2 and info.num_classes <= 10:
            latent_scatter(model, test_x, test_y, out / f"{name}_latent.png",
                           title=f"{name} on {info.name}: test latent means by class")
        model.save(out / "models" / f"{name}.keras")
        result.update({
            "id": rid, "dataset": info.name, "seed": cfg.seed,
            "budget": {"epochs": cfg.epochs, "epochs_per": "stage" if name in ("ddae", "fsae") else "run",
                       "train_images": info.num_train, "test_images": int(len(test_x)), "batch_size": cfg.batch_size,
                       "validation_split": cfg.validation_split},
            "config": cfg.to_dict(), "options": dataclasses.asdict(opts),
            "command": command or "python -m csae_tf.compare", "output": str(out),
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "machine": machine(), "wall_seconds": round(time.time() - wall, 1)})
        write_row(result, rows_dir / f"{rid}.json")
        done[rid] = result
        print(f"{name}: accuracy {_fmt(metrics['accuracy'], '.4f')}, MSE {_fmt(metrics['mse'], '.4f')}, "
              f"{seconds:.1f} s", flush=True)
    if len(grid) > 1:
        _save_rows(grid, out / "reconstructions.png", info.source_shape)
    header = {"dataset": info.name, "num_train": info.num_train, "num_test": info.num_test,
              "image_shape": list(info.image_shape), "num_classes": info.num_classes, "epochs": cfg.epochs,
              "batch_size": cfg.batch_size, "seed": cfg.seed,
              "machine": f"{platform.machine()}, {os.cpu_count()} CPU(s), "
                         f"{'GPU' if tf.config.list_physical_devices('GPU') else 'no GPU'}, TF {tf.__version__}",
              "date": datetime.date.today().isoformat(), "command": command or "python -m csae_tf.compare"}
    # the table holds every row of the folder: this invocation's first, then the others found there
    ids = {r.get("id") for r in results}
    table = results + [r for rid, r in sorted(done.items()) if rid not in ids]
    write_table(table, header, out / "comparison.md")
    (out / "comparison.json").write_text(json.dumps({"header": header, "results": table}, indent=2) + "\n")
    return results


@command()
def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    models = expand_models(args.models)
    cfg = config_from_args(args)
    opts = BaselineOptions.from_args(args)
    output_dir(args.output, "--output")
    run(cfg, opts, models, args.output, command="python -m csae_tf.compare " + " ".join(argv), rows=args.rows,
        row_id=args.row_id, rerun=tuple(n.strip() for n in args.rerun.split(",") if n.strip()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
