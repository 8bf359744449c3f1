"""The `csae` command: one front door to every tool of csae-tf.

    csae --help                      the subcommands (answers without loading TensorFlow)
    csae fit --dataset mnist --output runs/mnist
    csae classify --model runs/mnist digit.png more_digits/
    csae SUBCOMMAND --help           that subcommand's options

Each subcommand is the `main(argv)` of one module (`csae fit` = ``python -m csae_tf.fit``), imported
only when it runs. Errors are reported the same way everywhere (`csae_tf.errors`): ``error: ...`` on
stderr and exit status 2, Ctrl-C status 130. TensorFlow's C++ log lines are hidden
(TF_CPP_MIN_LOG_LEVEL=2) unless you set the variable yourself or pass ``--verbose 2``.
"""

from __future__ import annotations

import importlib
import os
import sys

from csae_tf.errors import USAGE

# name: (module with main(argv), one-line description)
SUBCOMMANDS = {
    "fit": ("csae_tf.fit", "train a CSAE on a TFDS dataset (resumes an interrupted run)"),
    "evaluate": ("csae_tf.evaluate", "test accuracy, losses, confusion, distances and figures of a run"),
    "generate": ("csae_tf.generate", "class-conditional samples from a run's latent Gaussians, as a PNG grid"),
    "extrapolate": ("csae_tf.extrapolate", "reconstruction error on images of classes the run never saw"),
    "classify": ("csae_tf.classify", "classify PNG / JPEG / .npy / .npz images with a run or an export"),
    "export": ("export.saved_model", "export a run as a SavedModel for TF Serving"),
    "tune": ("tuning.search", "KerasTuner search of beta, lambda1, lambda2 (and the learning rate)"),
    "compare": ("csae_tf.compare", "train CSAE and the comparison systems on the same data; one table"),
    "pedcc": ("csae_tf.pedcc", "generate PEDCC class centroids and report their separation"),
    "ood": ("csae_tf.ood", "open-set scores: how well a run tells unknown images from known ones"),
}
# Subcommands whose module loads TensorFlow only after reading its flags: their --help and flag errors
# answer at once, as `python -m csae_tf.fit` does, instead of after TensorFlow's import (4-9 s on 2 cores).
FLAGS_FIRST = ("fit", "tune", "pedcc", "classify", "generate", "extrapolate", "evaluate")


def usage() -> str:
    width = max(map(len, SUBCOMMANDS))
    lines = ["usage: csae SUBCOMMAND [options]   (csae SUBCOMMAND --help for its options)", "",
             "Classification Supervised Auto-Encoder on predefined evenly-distributed class centroids.", "",
             "subcommands:"]
    lines += [f"  {name:<{width}}  {description}" for name, (_, description) in SUBCOMMANDS.items()]
    lines += ["", "options:", "  -h, --help  show this message", "  --version   show the version"]
    return "\n".join(lines)


def _verbose(argv: list[str]) -> str | None:
    """The value of a --verbose option in `argv`, if any."""
    for i, arg in enumerate(argv):
        if arg == "--verbose" and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith("--verbose="):
            return arg.split("=", 1)[1]
    return None


def quiet_tensorflow(argv: list[str]) -> None:
    """Hide TensorFlow's C++ log lines unless the user set TF_CPP_MIN_LOG_LEVEL or asked for --verbose 2.

    TF_CPP_MIN_LOG_LEVEL=2 silences TensorFlow's own logging, but TF 2.21 still prints a few INFO lines
    through absl while its libraries load (before absl's log is initialised): the import runs with the
    stderr file descriptor pointed at /dev/null. A failing import still shows its traceback.
    """
    if "TF_CPP_MIN_LOG_LEVEL" in os.environ or _verbose(argv) == "2":
        return
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
    sys.stderr.flush()
    saved, null = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, 2)
        import tensorflow  # noqa: F401
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(null)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage())
        return 0 if argv else USAGE
    if argv[0] == "--version":
        from csae_tf import __version__

        print(f"csae {__version__}")
        return 0
    name, rest = argv[0], argv[1:]
    if name not in SUBCOMMANDS:
        print(f"{usage()}\n\nerror: unknown subcommand {name!r} (choose from {', '.join(SUBCOMMANDS)})",
              file=sys.stderr)
        return USAGE
    module_name = SUBCOMMANDS[name][0]
    if name not in FLAGS_FIRST:
        quiet_tensorflow(rest)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        if err.name != module_name:
            raise
        print(f"error: csae {name} is not available in this installation ({module_name} is missing)", file=sys.stderr)
        return USAGE
    if name in FLAGS_FIRST:
        module.build_parser().parse_args(rest)  # --help and a bad flag exit here, before TensorFlow loads
        quiet_tensorflow(rest)
    import csae_tf

    csae_tf.import_all()  # as `python -m`: the Keras classes registered before any model is loaded
    return module.main(rest)


if __name__ == "__main__":
    sys.exit(main())
