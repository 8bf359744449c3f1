"""basenet (paper §4.3): the CSAE-C encoder trunk, 4x4 average pooling, softmax, cross-entropy."""

from __future__ import annotations

import keras
import tensorflow as tf

from csae_tf.baselines.base import OneLossClassifier
from csae_tf.models import conv_trunk


@keras.saving.register_keras_serializable(package="csae_tf")
class BaseNet(OneLossClassifier, keras.Model):
    """The plain CNN the paper compares CSAE with: same conv trunk as CSAE-C, softmax head.

    The trunk ends at 64 x (H/8) x (W/8) maps (4 x 4 for 32 x 32 inputs), which the paper's 4 x 4
    average pooling reduces to one 64-vector; a dense layer gives the class logits.

    Args:
        image_shape: (H, W, C) of the preprocessed images.
        num_classes: number of classes.
        weight_decay: coupled L2 decay added to the gradients (as the CSAE train step does).
        sync_bn: synchronised batch normalisation across replicas.

    Reference: Zhu & Zhang 2019, §4.3 ("basenet").
    """

    def __init__(self, image_shape, num_classes: int, weight_decay: float = 0.0, sync_bn: bool = False, **kwargs):
        super().__init__(**kwargs)
        # === Config ===
        self.image_shape = tuple(image_shape)
        self.num_classes = num_classes
        self.weight_decay = float(weight_decay)
        self.sync_bn = sync_bn
        # === Layers ===
        inputs = keras.Input(self.image_shape, name="images")
        x = conv_trunk(inputs, sync_bn)
        x = keras.layers.AveragePooling2D(pool_size=tuple(x.shape[1:3]), name="avg_pool")(x)
        x = keras.layers.Flatten(name="flatten")(x)
        self.network = keras.Model(inputs, keras.layers.Dense(num_classes, name="logits")(x), name="basenet")
        # === Metrics ===
        self.build_trackers()
        self.built = True

    def call(self, images, training=False):
        return self.network(images, training=training)

    def values(self, labels, logits):
        loss = keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True)
        correct = tf.cast(tf.equal(tf.argmax(logits, -1, output_type=labels.dtype), labels), "float32")
        return {"loss": loss, "accuracy": correct}

    def predict_labels(self, images):
        return tf.argmax(self.network(images, training=False), axis=-1, output_type=tf.int32)

    def get_config(self):
        return {**super().get_config(), "image_shape": list(self.image_shape), "num_classes": self.num_classes,
                "weight_decay": self.weight_decay, "sync_bn": self.sync_bn}
