"""csae-tf: the Classification Supervised Auto-Encoder on predefined evenly-distributed class centroids.

Importing the package registers its Keras classes, so `keras.models.load_model("model.keras")` works.
"""

from csae_tf import layers, schedules  # noqa: F401  (registers serializable classes)
from csae_tf.config import FitConfig
from csae_tf.data import load_datasets
from csae_tf.models import CSAE, build_model
from csae_tf.pedcc import generate as generate_centroids

__all__ = ["CSAE", "FitConfig", "build_model", "generate_centroids", "load_datasets"]
__version__ = "0.1.0"
