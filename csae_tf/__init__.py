"""csae-tf: the Classification Supervised Auto-Encoder on predefined evenly-distributed class centroids.

Importing the package registers its Keras classes, so `keras.models.load_model("model.keras")` works,
and turns TensorFlow's oneDNN CPU kernels on where TensorFlow leaves them off: import it before TensorFlow.
The exceptions are the `csae` command itself and `python -m csae_tf.fit`: they import them (and
TensorFlow) only once a subcommand runs or the flags are valid, so that `csae --help` and a bad flag
answer at once.
"""

import os as _os
import platform as _platform
import sys as _sys
from pathlib import Path as _Path

# TensorFlow turns its oneDNN kernels on by default only on x86 CPUs with AVX-512 VNNI / BF16 or AMX; on
# AVX2-only CPUs CSAE-C trains 1.3-2.5x faster with them (docs/guides/performance.md, CPUs without AVX-512).
# It reads the switch when it loads, so csae-tf sets it before; TF_ENABLE_ONEDNN_OPTS=0 still turns them off.
if _platform.machine().lower() in ("x86_64", "amd64"):
    _os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")

from csae_tf.predictor import load  # noqa: E402

__all__ = ["CSAE", "FitConfig", "build_decoder", "build_encoder", "build_model", "generate_centroids", "load",
           "load_datasets"]
__version__ = "0.1.0"


def import_all() -> None:
    """Import the public names, registering the Keras classes (this loads TensorFlow)."""
    from csae_tf import layers, schedules  # noqa: F401  (registers serializable classes)
    from csae_tf.config import FitConfig
    from csae_tf.data import load_datasets
    from csae_tf.models import CSAE, build_decoder, build_encoder, build_model
    from csae_tf.pedcc import generate as generate_centroids

    globals().update(CSAE=CSAE, FitConfig=FitConfig, build_decoder=build_decoder, build_encoder=build_encoder,
                     build_model=build_model, generate_centroids=generate_centroids, load_datasets=load_datasets)


def _in_front_door() -> bool:
    """Whether this process is the `csae` command (its console script, or python -m csae_tf.cli) or
    python -m csae_tf.fit."""
    argv = list(getattr(_sys, "orig_argv", ()))
    script = getattr(_sys.modules.get("__main__"), "__file__", None) or ""
    modules = ("csae_tf.cli", "csae_tf.fit")
    return (_Path(script).stem == "csae" or any(f"-m{m}" in argv for m in modules)
            or any(a == "-m" and b in modules for a, b in zip(argv, argv[1:])))


def __getattr__(name: str):
    if name in __all__:
        import_all()
        return globals()[name]
    raise AttributeError(f"module 'csae_tf' has no attribute {name!r}")


if not _in_front_door():
    import_all()
