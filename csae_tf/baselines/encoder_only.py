"""CSAE_encoder (paper §4.3): the CSAE-C encoder on the PEDCC centroids, no decoder, Loss1 only."""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from csae_tf import losses
from csae_tf.baselines.base import OneLossClassifier
from csae_tf.layers import PEDCCCentroids
from csae_tf.models import build_encoder


@keras.saving.register_keras_serializable(package="csae_tf")
class EncoderOnly(OneLossClassifier, keras.Model):
    """CSAE-C without its decoder: the encoder learns to put z on its class's PEDCC centroid.

    Classification is the nearest centroid, as in CSAE; the loss is Loss1 alone (no
    reconstruction, no edge loss, no noise), so the comparison isolates what the decoder adds.

    Args:
        image_shape: (H, W, C) of the preprocessed images.
        num_classes: number of classes n.
        latent_dim: d.
        centroids: (n, d) PEDCC centroids; None when weights are loaded afterwards.
        weight_decay: coupled L2 decay added to the gradients.
        sync_bn: synchronised batch normalisation across replicas.

    Reference: Zhu & Zhang 2019, §4.3 ("CSAE_encoder").
    """

    def __init__(self, image_shape, num_classes: int, latent_dim: int = 40, centroids: np.ndarray | None = None,
                 weight_decay: float = 0.0, sync_bn: bool = False, **kwargs):
        super().__init__(**kwargs)
        # === Config ===
        self.image_shape = tuple(image_shape)
        self.num_classes = num_classes
        self.latent_dim = latent_dim
        self.weight_decay = float(weight_decay)
        self.sync_bn = sync_bn
        # === Layers ===
        self.encoder = build_encoder("conv", self.image_shape, latent_dim, sync_bn)
        self.pedcc = PEDCCCentroids(num_classes, latent_dim, centroids, name="pedcc")
        self.pedcc.build((None, latent_dim))
        # === Metrics ===
        self.build_trackers()
        self.built = True

    def call(self, images, training=False):
        z = self.encoder(images, training=training)
        return {"latent": z, "distances": self.pedcc(z)}

    def forward(self, images, training):
        return self.encoder(images, training=training)

    def values(self, labels, z):
        loss = losses.centroid_loss(z, tf.gather(tf.convert_to_tensor(self.pedcc.centroids), labels))
        correct = tf.cast(tf.equal(tf.argmin(self.pedcc(z), -1, output_type=labels.dtype), labels), "float32")
        return {"loss": loss, "accuracy": correct}

    def encode(self, images):
        return self.encoder(images, training=False)

    def predict_labels(self, images):
        return tf.argmin(self.pedcc(self.encode(images)), axis=-1, output_type=tf.int32)

    def get_config(self):
        return {**super().get_config(), "image_shape": list(self.image_shape), "num_classes": self.num_classes,
                "latent_dim": self.latent_dim, "weight_decay": self.weight_decay, "sync_bn": self.sync_bn}
