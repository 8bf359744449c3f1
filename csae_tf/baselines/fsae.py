"""Seed 004's functionally separate autoencoder: a frozen classifier and its learned inverse network."""

from __future__ import annotations

import keras
import tensorflow as tf

from csae_tf.baselines.base import Baseline
from csae_tf.steps import apply_gradients, update_trackers

_EPS = 1e-3  # probabilities are clipped to [eps, 1] before the inverse softmax (the seed's eq. 12)


@keras.saving.register_keras_serializable(package="csae_tf")
class FSAE(Baseline, keras.Model):
    """Functionally separate autoencoder (Wei & Ren, seed 004).

    The "abstract" network is a classifier with 3 conv layers and 2 dense layers, no pooling and no
    padding, leaky-ReLU units and a softmax output; it is trained first (cross-entropy, Adam) and then
    frozen. The "concrete" network is built as its inverse, layer for layer in reverse order:
    inverse softmax (log of the clipped probabilities, centred), dense layers, transposed 3x3 valid
    convolutions, each followed by the inverse leaky ReLU (x for x >= 0, x / slope below); it learns
    (MSE, Adam) to regenerate the input from the class output.

    Options (the seed's figure 3):
        rounding: round the class probabilities before the concrete network, so that every image of a
            class gives the same output, the class's "representative" (a generator from labels).
        jump: number of jump connections, from the top: the output of abstract layer k is averaged with
            the input of the symmetrical concrete layer (1 = the last hidden dense layer, up to 4).
        feedback: negative-feedback passes; each feeds input + (input - output) back through the whole
            network (works with jump connections, as the seed notes).

    Args:
        image_shape: (H, W, C) of the preprocessed images; the output has the same shape.
        num_classes: number of classes.
        filters: the three conv filter counts (the seed does not give them).
        dense: width of the hidden dense layer.
        slope: negative slope of the leaky ReLU.
    """

    def __init__(self, image_shape, num_classes: int, filters=(16, 32, 32), dense: int = 128, slope: float = 0.3,
                 rounding: bool = False, jump: int = 0, feedback: int = 0, **kwargs):
        super().__init__(**kwargs)
        # === Config ===
        self.image_shape = tuple(image_shape)
        self.num_classes = num_classes
        self.filters = list(filters)
        self.dense = int(dense)
        self.slope = float(slope)
        self.rounding = bool(rounding)
        self.jump = int(jump)
        self.feedback = int(feedback)
        self.stage = 1
        if not 0 <= self.jump <= 4 or self.feedback < 0:
            raise ValueError("jump must lie in 0..4 and feedback be >= 0")
        h, w, channels = self.image_shape
        act = dict(activation=keras.layers.LeakyReLU(negative_slope=self.slope))
        # === Layers ===
        self.abstract_layers = [keras.layers.Conv2D(f, 3, padding="valid", name=f"conv{i + 1}", **act)
                                for i, f in enumerate(self.filters)]
        self.abstract_layers += [keras.layers.Flatten(name="flatten"),
                                 keras.layers.Dense(self.dense, name="dense1", **act),
                                 keras.layers.Dense(num_classes, name="logits")]
        fh, fw = h - 2 * len(self.filters), w - 2 * len(self.filters)
        self.inv_dense2 = keras.layers.Dense(self.dense, name="inv_logits")
        self.inv_dense1 = keras.layers.Dense(fh * fw * self.filters[-1], name="inv_dense1")
        self.inv_reshape = keras.layers.Reshape((fh, fw, self.filters[-1]), name="inv_flatten")
        self.inv_convs = [keras.layers.Conv2DTranspose(f, 3, padding="valid", name=f"inv_conv{i + 1}")
                          for i, f in reversed(list(enumerate([channels, *self.filters[:-1]])))]
        self._forward(tf.zeros((1, *self.image_shape)), build=True)  # creates every layer's weights
        # === Metrics ===
        self.trackers = {name: keras.metrics.Mean(name=name) for name in ("loss", "accuracy")}
        self.built = True

    @property
    def metrics(self):
        return list(self.trackers.values())

    def _inv_act(self, x):
        return tf.where(x >= 0.0, x, x / self.slope)

    def abstract(self, images):
        """(logits, [conv1, conv2, conv3, dense1 activations])."""
        x, acts = images, []
        for layer in self.abstract_layers:
            x = layer(x)
            if layer.name != "flatten":
                acts.append(x)
        return x, acts[:-1]

    def concrete(self, probs, acts=None):
        """Regenerate images from class probabilities; `acts` are the abstract activations for jumps."""
        if self.rounding:
            probs = tf.round(probs)
        logs = tf.math.log(tf.clip_by_value(probs, _EPS, 1.0))
        x = logs - tf.reduce_mean(logs, axis=-1, keepdims=True)  # softmax^-1, up to its free constant
        x = self._inv_act(self.inv_dense2(x))
        x = self._jump(x, acts, 1)
        x = self.inv_reshape(self._inv_act(self.inv_dense1(x)))
        x = self._jump(x, acts, 2)
        for k, layer in enumerate(self.inv_convs):
            x = layer(x)
            if k < len(self.inv_convs) - 1:  # the input image had no activation
                x = self._jump(self._inv_act(x), acts, 3 + k)
        return x

    def _jump(self, x, acts, level):
        if acts is None or self.jump < level:
            return x
        return 0.5 * (x + acts[len(acts) - level])

    def _forward(self, images, build=False):
        target, x, outputs = images, images, None
        for _ in range(self.feedback + 1):
            logits, acts = self.abstract(x)
            outputs = self.concrete(tf.nn.softmax(logits), acts)
            if build:
                break
            x = x + (target - outputs)
        logits, _ = self.abstract(images)
        return logits, outputs

    def call(self, images, training=False):
        logits, reconstruction = self._forward(images)
        return {"logits": logits, "reconstruction": reconstruction}

    def _values(self, images, labels):
        if self.stage == 1:
            logits, _ = self.abstract(images)
            loss = keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True)
        else:
            logits, reconstruction = self._forward(images)
            loss = tf.reduce_mean(tf.square(reconstruction - images), axis=[1, 2, 3])
        correct = tf.cast(tf.equal(tf.argmax(logits, -1, output_type=labels.dtype), labels), "float32")
        return {"loss": loss, "accuracy": correct}

    def _stage_variables(self):
        concrete = [self.inv_dense2, self.inv_dense1, *self.inv_convs]
        layers = self.abstract_layers if self.stage == 1 else concrete  # stage 2: the classifier is frozen
        return [v for layer in layers for v in layer.trainable_weights]

    def train_step(self, data):
        images, labels = data[0], tf.cast(data[1], tf.int32)
        with tf.GradientTape() as tape:
            values = self._values(images, labels)
            loss = tf.nn.compute_average_loss(values["loss"])
        apply_gradients(self, tape, loss, variables=self._stage_variables())
        return update_trackers(self.trackers, values)

    def test_step(self, data):
        return update_trackers(self.trackers, self._values(data[0], tf.cast(data[1], tf.int32)))

    def train(self, dataset, epochs: int, verbose: int = 0) -> dict:
        """`epochs` for the classifier, then `epochs` for the inverse network."""
        return self.train_stages(dataset, epochs, ("classifier", "inverse"), verbose)

    def predict_labels(self, images):
        return tf.argmax(self.abstract(images)[0], axis=-1, output_type=tf.int32)

    def reconstruct(self, images, labels=None):
        return self._forward(images)[1]

    def generate(self, class_ids):
        """The concrete network's image for each class id (one-hot input, no jump connections)."""
        return self.concrete(tf.one_hot(tf.cast(class_ids, tf.int32), self.num_classes))

    def get_config(self):
        return {**super().get_config(), "image_shape": list(self.image_shape), "num_classes": self.num_classes,
                "filters": self.filters, "dense": self.dense, "slope": self.slope, "rounding": self.rounding,
                "jump": self.jump, "feedback": self.feedback}
