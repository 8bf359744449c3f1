"""The paper's CVAE: a fully connected conditional VAE (pixels -> 400 -> 40-d latent, label-conditioned decoder)."""

from __future__ import annotations

import keras
import tensorflow as tf

from csae_tf.baselines.base import Baseline, from_unit, to_unit
from csae_tf.steps import apply_gradients, update_trackers


@keras.saving.register_keras_serializable(package="csae_tf")
class CVAE(Baseline, keras.Model):
    """Conditional VAE with the paper's layer sizes (Zhu & Zhang §4.1: 784 -> 400 -> 40, Adam 1e-3).

    Encoder q(z | x, y): [pixels, one-hot y] -> 400 (ReLU) -> mean and log-variance of z.
    Decoder p(x | z, y): [z, one-hot y] -> 400 (ReLU) -> pixels (sigmoid, on the [0, 1] scale).
    Loss: per-image binary cross-entropy summed over pixels + KL(q || N(0, I)).

    A CVAE has no classifier. `predict_labels` is the generative (Bayes) rule: the label whose
    conditional model explains x best, argmin_y of the negative ELBO with z at the posterior mean.
    `reconstruct(x, labels)` conditions on the given labels (on the predicted ones when None);
    `generate(class_ids)` decodes prior draws under the given labels.

    Args:
        image_shape: (H, W, C) of the preprocessed images (flattened inside).
        num_classes: number of classes.
        hidden: width of the hidden layer (400).
        latent_dim: d (40).
        seed: seeds the reparameterisation noise.
    """

    def __init__(self, image_shape, num_classes: int, hidden: int = 400, latent_dim: int = 40, seed: int = 0,
                 **kwargs):
        super().__init__(**kwargs)
        # === Config ===
        self.image_shape = tuple(image_shape)
        self.num_classes = num_classes
        self.hidden = hidden
        self.latent_dim = latent_dim
        self.seed = seed
        pixels = int(self.image_shape[0] * self.image_shape[1] * self.image_shape[2])
        # === Layers ===
        x_in, y_in = keras.Input((pixels,), name="pixels"), keras.Input((num_classes,), name="onehot")
        h = keras.layers.Dense(hidden, activation="relu", name="enc_hidden")(keras.layers.Concatenate()([x_in, y_in]))
        self.encoder = keras.Model([x_in, y_in], [keras.layers.Dense(latent_dim, name="mean")(h),
                                                  keras.layers.Dense(latent_dim, name="log_var")(h)], name="encoder")
        z_in = keras.Input((latent_dim,), name="latent")
        h = keras.layers.Dense(hidden, activation="relu", name="dec_hidden")(keras.layers.Concatenate()([z_in, y_in]))
        self.decoder = keras.Model([z_in, y_in], keras.layers.Dense(pixels, activation="sigmoid", name="pixels")(h),
                                   name="decoder")
        self.seed_generator = keras.random.SeedGenerator(seed)
        # === Metrics ===
        self.trackers = {name: keras.metrics.Mean(name=name) for name in ("loss", "reconstruction", "kl")}
        self.built = True

    @property
    def metrics(self):
        return list(self.trackers.values())

    def _flat(self, images):
        return tf.reshape(to_unit(images), [tf.shape(images)[0], -1])

    def _terms(self, target, onehot, z_mean, z_log_var, z):
        probs = self.decoder([z, onehot])
        reconstruction = tf.reduce_sum(keras.losses.binary_crossentropy(target[..., None], probs[..., None]), -1)
        kl = -0.5 * tf.reduce_sum(1.0 + z_log_var - tf.square(z_mean) - tf.exp(z_log_var), axis=-1)
        return {"loss": reconstruction + kl, "reconstruction": reconstruction, "kl": kl}

    def call(self, images, training=False):
        labels = self.predict_labels(images)
        return self.reconstruct(images, labels)

    def train_step(self, data):
        images, labels = data[0], tf.cast(data[1], tf.int32)
        target, onehot = self._flat(images), tf.one_hot(labels, self.num_classes)
        with tf.GradientTape() as tape:
            z_mean, z_log_var = self.encoder([target, onehot], training=True)
            eps = keras.random.normal(tf.shape(z_mean), seed=self.seed_generator)
            values = self._terms(target, onehot, z_mean, z_log_var, z_mean + tf.exp(0.5 * z_log_var) * eps)
            loss = tf.nn.compute_average_loss(values["loss"])
        apply_gradients(self, tape, loss)
        return update_trackers(self.trackers, values)

    def test_step(self, data):
        images, labels = data[0], tf.cast(data[1], tf.int32)
        target, onehot = self._flat(images), tf.one_hot(labels, self.num_classes)
        z_mean, z_log_var = self.encoder([target, onehot], training=False)
        return update_trackers(self.trackers, self._terms(target, onehot, z_mean, z_log_var, z_mean))

    def negative_elbo(self, images):
        """(B, n): the negative ELBO of each image under every class label (z at the posterior mean)."""
        target = self._flat(images)
        columns = []
        for c in range(self.num_classes):
            onehot = tf.one_hot(tf.fill([tf.shape(target)[0]], c), self.num_classes)
            z_mean, z_log_var = self.encoder([target, onehot], training=False)
            columns.append(self._terms(target, onehot, z_mean, z_log_var, z_mean)["loss"])
        return tf.stack(columns, axis=-1)

    def predict_labels(self, images):
        return tf.argmin(self.negative_elbo(images), axis=-1, output_type=tf.int32)

    def reconstruct(self, images, labels=None):
        labels = self.predict_labels(images) if labels is None else tf.cast(labels, tf.int32)
        onehot = tf.one_hot(labels, self.num_classes)
        z_mean, _ = self.encoder([self._flat(images), onehot], training=False)
        return from_unit(tf.reshape(self.decoder([z_mean, onehot]), tf.shape(images)))

    def generate(self, class_ids, seed=(0, 0)):
        """Class-conditional samples: prior draws z ~ N(0, I) decoded under each class id (reproducible per seed)."""
        class_ids = tf.cast(class_ids, tf.int32)
        z = tf.random.stateless_normal([tf.shape(class_ids)[0], self.latent_dim], seed=tf.constant(seed, tf.int32))
        probs = self.decoder([z, tf.one_hot(class_ids, self.num_classes)])
        return from_unit(tf.reshape(probs, [-1, *self.image_shape]))

    def get_config(self):
        return {**super().get_config(), "image_shape": list(self.image_shape), "num_classes": self.num_classes,
                "hidden": self.hidden, "latent_dim": self.latent_dim, "seed": self.seed}
