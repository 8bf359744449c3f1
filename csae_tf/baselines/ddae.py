"""Seed 002's DDAE: two stacked sigmoid autoencoders (the first with DropConnect), then a kernel ELM."""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from csae_tf.baselines import kelm
from csae_tf.baselines.base import Baseline, from_unit, to_unit
from csae_tf.steps import apply_gradients, update_trackers


def _bce(target, probs):
    """Per-example binary cross-entropy summed over units: the seed's sum_i KL(x_i || z_i) up to a constant."""
    probs = tf.clip_by_value(probs, 1e-7, 1.0 - 1e-7)
    return -tf.reduce_sum(target * tf.math.log(probs) + (1.0 - target) * tf.math.log(1.0 - probs), axis=-1)


@keras.saving.register_keras_serializable(package="csae_tf")
class DDAE(Baseline, keras.Model):
    """DropConnect deep autoencoder + kernel ELM (Pan & Zhao, seed 002).

    Stage 1: autoencoder pixels -> h1 with tied weights and sigmoid units,
    y1 = s((M * W1) x + b1), x* = s(W1^T y1 + c1); M is a fresh Bernoulli(1 - dropconnect) mask for
    every sample and every weight, scaled by 1 / (1 - dropconnect) so that inference uses W1 as is
    (the seed's eq. 7). Stage 2: autoencoder h1 -> h2 on the stage-1 features, tied, sigmoid, no
    DropConnect. Both minimise the per-example cross-entropy (the seed's KL(x || z)) with SGD.
    Stage 3: a KELM on the h2 features, Gaussian kernel exp(-|a - b|^2 / 2 gamma^2),
    beta = (I/C + Omega)^-1 Y, solved in closed form (see `csae_tf.baselines.kelm` for the
    ``nystrom`` / ``subset`` approximations used when N is large).

    Args:
        image_shape: (H, W, C) of the preprocessed images (flattened inside).
        num_classes: number of classes.
        hidden: the two hidden widths (the seed does not give them; 400, 200 here).
        dropconnect: probability of dropping each input weight of the first autoencoder.
        kelm_c: the KELM's regularisation C.
        kelm_gamma: kernel width gamma; 0 picks it from the median heuristic at fit time.
        kelm_method: "nystrom", "subset" or "exact".
        kelm_centres: m, the number of KELM centres (landmarks or subset size).
        lr: SGD learning rate of the two autoencoders (momentum 0.9).
        seed: seeds the DropConnect masks and the choice of KELM centres.
    """

    def __init__(self, image_shape, num_classes: int, hidden=(400, 200), dropconnect: float = 0.5,
                 kelm_c: float = 10.0, kelm_gamma: float = 0.0, kelm_method: str = "nystrom", kelm_centres: int = 2000,
                 lr: float = 0.1, seed: int = 0, **kwargs):
        super().__init__(**kwargs)
        # === Config ===
        self.image_shape = tuple(image_shape)
        self.num_classes = num_classes
        self.hidden = list(hidden)
        self.dropconnect = float(dropconnect)
        self.kelm_c = float(kelm_c)
        self.kelm_gamma = float(kelm_gamma)
        self.kelm_method = kelm_method
        self.kelm_centres = int(kelm_centres)
        self.lr = float(lr)
        self.seed = seed
        self.stage = 1
        if kelm_method not in kelm.METHODS:
            raise ValueError(f"unknown KELM method {kelm_method!r}; choose from {', '.join(kelm.METHODS)}")
        pixels = int(np.prod(self.image_shape))
        h1, h2 = self.hidden
        # === Weights ===
        glorot = keras.initializers.GlorotUniform(seed=seed)
        self.w1 = self.add_weight(name="w1", shape=(pixels, h1), initializer=glorot)
        self.b1 = self.add_weight(name="b1", shape=(h1,), initializer="zeros")
        self.c1 = self.add_weight(name="c1", shape=(pixels,), initializer="zeros")
        self.w2 = self.add_weight(name="w2", shape=(h1, h2), initializer=keras.initializers.GlorotUniform(seed + 1))
        self.b2 = self.add_weight(name="b2", shape=(h2,), initializer="zeros")
        self.c2 = self.add_weight(name="c2", shape=(h1,), initializer="zeros")
        self.centres = self.add_weight(name="kelm_centres", shape=(self.kelm_centres, h2), initializer="zeros",
                                       trainable=False)
        self.coef = self.add_weight(name="kelm_coef", shape=(self.kelm_centres, num_classes), initializer="zeros",
                                    trainable=False)
        self.width = self.add_weight(name="kelm_width", shape=(), initializer="ones", trainable=False)
        self.seed_generator = keras.random.SeedGenerator(seed)
        # === Metrics ===
        self.trackers = {"loss": keras.metrics.Mean(name="loss")}
        self.built = True

    @property
    def metrics(self):
        return list(self.trackers.values())

    def _pixels(self, images):
        return tf.reshape(to_unit(images), [tf.shape(images)[0], -1])

    def _hidden1(self, x, training=False):
        if training and self.dropconnect > 0:
            keep = 1.0 - self.dropconnect
            seed = tf.cast(self.seed_generator.next(), tf.int32)
            shape = tf.stack([tf.shape(x)[0], *self.w1.shape])
            mask = tf.cast(tf.random.stateless_uniform(shape, seed=seed) < keep, x.dtype) / keep
            return tf.sigmoid(tf.einsum("bp,bph->bh", x, mask * self.w1) + self.b1)
        return tf.sigmoid(x @ self.w1 + self.b1)

    def features(self, images):
        """The top features x^3 = s(W2 s(W1 x + b1) + b2) fed to the KELM, (B, h2)."""
        return tf.sigmoid(self._hidden1(self._pixels(images)) @ self.w2 + self.b2)

    def _stage_loss(self, images, training):
        x = self._pixels(images)
        if self.stage == 1:
            y1 = self._hidden1(x, training)
            return _bce(x, tf.sigmoid(tf.matmul(y1, self.w1, transpose_b=True) + self.c1))
        y1 = self._hidden1(x)
        y2 = tf.sigmoid(y1 @ self.w2 + self.b2)
        return _bce(y1, tf.sigmoid(tf.matmul(y2, self.w2, transpose_b=True) + self.c2))

    def _stage_variables(self):
        return [self.w1, self.b1, self.c1] if self.stage == 1 else [self.w2, self.b2, self.c2]

    def train_step(self, data):
        with tf.GradientTape() as tape:
            values = {"loss": self._stage_loss(data[0], training=True)}
            loss = tf.nn.compute_average_loss(values["loss"])
        apply_gradients(self, tape, loss, variables=self._stage_variables())
        return update_trackers(self.trackers, values)

    def test_step(self, data):
        return update_trackers(self.trackers, {"loss": self._stage_loss(data[0], training=False)})

    def default_optimizer(self):
        return keras.optimizers.SGD(self.lr, momentum=0.9)

    def train(self, dataset, epochs: int, verbose: int = 0) -> dict:
        """Layer-wise: `epochs` for each autoencoder, then the closed-form KELM."""
        history = self.train_stages(dataset, epochs, ("ae1", "ae2"), verbose)
        self.fit_kelm(dataset)
        return history

    def fit_kelm(self, dataset) -> dict:
        """Solve the KELM on the top features of every (images, labels) batch of `dataset`; returns its facts."""
        feats, labels = [], []
        for images, y in dataset:
            feats.append(self.features(images).numpy())
            labels.append(np.asarray(y))
        feats, labels = np.concatenate(feats).astype(np.float64), np.concatenate(labels)
        gamma = self.kelm_gamma or kelm.median_gamma(feats, seed=self.seed)
        method = self.kelm_method
        if method == "exact" and len(feats) > self.kelm_centres:
            raise ValueError(f"exact KELM on {len(feats)} samples needs kelm_centres >= {len(feats)}")
        centres, coef = kelm.fit(feats, labels, self.num_classes, c=self.kelm_c, gamma=gamma, method=method,
                                 centres=self.kelm_centres, seed=self.seed)
        m = len(centres)  # fewer samples than centres: the unused rows keep zero coefficients
        self.centres.assign(np.pad(centres, [(0, self.kelm_centres - m), (0, 0)]).astype("float32"))
        self.coef.assign(np.pad(coef, [(0, self.kelm_centres - m), (0, 0)]).astype("float32"))
        self.width.assign(gamma)
        return {"gamma": gamma, "centres": m, "train_samples": len(feats)}

    def scores(self, images):
        """KELM class scores K(x, centres) @ coef, (B, n)."""
        f, c = self.features(images), tf.convert_to_tensor(self.centres)
        d2 = (tf.reduce_sum(f * f, -1, keepdims=True) - 2.0 * tf.matmul(f, c, transpose_b=True)
              + tf.reduce_sum(c * c, -1))
        return tf.exp(-tf.maximum(d2, 0.0) / (2.0 * tf.square(self.width))) @ self.coef

    def call(self, images, training=False):
        return self.scores(images)

    def predict_labels(self, images):
        return tf.argmax(self.scores(images), axis=-1, output_type=tf.int32)

    def reconstruct(self, images, labels=None):
        y1 = self._hidden1(self._pixels(images))
        y2 = tf.sigmoid(y1 @ self.w2 + self.b2)
        y1_rec = tf.sigmoid(tf.matmul(y2, self.w2, transpose_b=True) + self.c2)
        x_rec = tf.sigmoid(tf.matmul(y1_rec, self.w1, transpose_b=True) + self.c1)
        return from_unit(tf.reshape(x_rec, tf.shape(images)))

    def get_config(self):
        return {**super().get_config(), "image_shape": list(self.image_shape), "num_classes": self.num_classes,
                "hidden": self.hidden, "dropconnect": self.dropconnect, "kelm_c": self.kelm_c,
                "kelm_gamma": self.kelm_gamma, "kelm_method": self.kelm_method, "kelm_centres": self.kelm_centres,
                "lr": self.lr, "seed": self.seed}
