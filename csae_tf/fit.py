"""Train a CSAE: ``python -m csae_tf.fit --dataset mnist --output runs/mnist`` (or ``csae fit``).

The run itself is `csae_tf.trainer.Trainer`; this command reads the flags (every field of
`csae_tf.config.FitConfig`, a `--preset`, a `--config` file) and reports. Rerunning the same command
resumes an interrupted run exactly where its last saved state left it; rerunning a finished run with
a larger `--epochs` carries it on; `--overwrite` starts over.
"""

from __future__ import annotations

import argparse
import sys

from csae_tf.config import FitConfig, add_config_arguments, config_from_args
from csae_tf.errors import command


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="csae fit", description="Train a Classification Supervised Auto-Encoder on PEDCC class centroids.")
    add_config_arguments(parser)
    parser.add_argument("--overwrite", action="store_true", help="delete an existing run directory and start over")
    return parser


@command(interrupted="interrupted: rerun the same command to resume from the last saved state")
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    cfg = config_from_args(args)  # bad flags fail here, before TensorFlow is imported
    run(cfg, overwrite=args.overwrite)
    return 0


def run(cfg: FitConfig, overwrite: bool = False) -> dict:
    """Train (or resume, or report) the run of `cfg`: `csae_tf.trainer.run`."""
    from csae_tf.trainer import run as train

    return train(cfg, overwrite)


def __getattr__(name: str):
    if name == "RunError":  # the errors of a run, re-exported (imports TensorFlow)
        from csae_tf.trainer import RunError

        return RunError
    raise AttributeError(f"module 'csae_tf.fit' has no attribute {name!r}")


if __name__ == "__main__":
    sys.exit(main())
