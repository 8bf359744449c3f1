"""Keras layers of the CSAE: the PEDCC constant, noise injection, augmentation, fused batch norm,
residual and decode blocks, per-class latent Gaussians."""

from __future__ import annotations

import math

import keras
import numpy as np
import tensorflow as tf

BN_MOMENTUM = 0.9  # PyTorch's default (0.1 there), as in the authors' code; Keras' 0.99 lags in short runs
BN_EPSILON = 1e-5  # PyTorch's default, as in the authors' code (Keras: 1e-3); docs/guides/training.md


def kernel_init() -> keras.initializers.Initializer:
    """U(+-1/sqrt(fan_in)): PyTorch's default for conv and linear weights, which the PyTorch CSAE uses.

    It reaches a given accuracy in fewer steps than He-normal (docs/guides/performance.md); biases start at 0.
    """
    return keras.initializers.VarianceScaling(scale=1 / 3, mode="fan_in", distribution="uniform")


@keras.saving.register_keras_serializable(package="csae_tf")
class BatchNormalization(keras.layers.BatchNormalization):
    """Keras' batch normalisation on the fused kernel (`FusedBatchNormV3`) for 4-D channels-last inputs.

    Keras 3 composes BN from unfused ops on TensorFlow (moments, then normalise): forward + backward
    of the CSAE's BN shapes ran 2-3x faster fused. The variables, their names and the moving-average
    rule are Keras' own (the moving variance takes the unbiased batch variance, as PyTorch does), so
    weights saved by the Keras layer load here. Synchronised, masked or non-4-D calls use Keras' path.
    """

    def __init__(self, momentum=BN_MOMENTUM, epsilon=BN_EPSILON, **kwargs):
        super().__init__(momentum=momentum, epsilon=epsilon, **kwargs)

    def _fusable(self, inputs, mask) -> bool:
        return (mask is None and not self.synchronized and not self.renorm and len(inputs.shape) == 4
                and self.axis in (-1, 3) and self.center and self.scale)

    def call(self, inputs, training=None, mask=None):
        if not self._fusable(inputs, mask):
            return super().call(inputs, training=training, mask=mask)
        gamma, beta = tf.convert_to_tensor(self.gamma), tf.convert_to_tensor(self.beta)
        if training and self.trainable:
            y, mean, variance = tf.compat.v1.nn.fused_batch_norm(
                inputs, gamma, beta, mean=tf.convert_to_tensor(self.moving_mean),
                variance=tf.convert_to_tensor(self.moving_variance), epsilon=self.epsilon, is_training=True,
                exponential_avg_factor=1.0 - self.momentum)
            self.moving_mean.assign(mean)  # already the new moving averages (exponential_avg_factor)
            self.moving_variance.assign(variance)
        else:
            y, _, _ = tf.compat.v1.nn.fused_batch_norm(
                inputs, gamma, beta, mean=tf.convert_to_tensor(self.moving_mean),
                variance=tf.convert_to_tensor(self.moving_variance), epsilon=self.epsilon, is_training=False)
        return tf.cast(y, self.compute_dtype)


@keras.saving.register_keras_serializable(package="csae_tf")
class Augmentation(keras.layers.Layer):
    """Random +-`shift` pixel translations (filled with -1, the background) and optional horizontal flips.

    Runs inside the training step on the device (matrix products, so XLA compiles it too), drawn
    statelessly from a (2,) int `seed` (the step and replica): a resumed run draws the same transforms.
    """

    def __init__(self, shift: int = 2, flip: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.shift = int(shift)
        self.flip = bool(flip)

    def call(self, images, seed):
        batch, height, width = tf.shape(images)[0], images.shape[1], images.shape[2]
        dtype = images.dtype
        x = tf.cast(images, tf.float32) + 1.0  # the background -1 becomes 0, what a shift fills in
        if self.shift:
            shifts = tf.random.stateless_uniform([batch, 2], seed, -self.shift, self.shift + 1, dtype=tf.int32)
            # one-hot shift matrices: out[r, c] = in[r - dy, c - dx] (zero where that falls outside)
            rows = tf.one_hot(tf.range(height)[None, :] - shifts[:, 1:], height)
            cols = tf.one_hot(tf.range(width)[None, :] - shifts[:, :1], width)
            x = tf.einsum("bij,bjkc,blk->bilc", rows, x, cols)
        if self.flip:
            mirror = tf.random.stateless_uniform([batch, 1, 1, 1], seed + tf.constant([0, 7_919])) < 0.5
            x = tf.where(mirror, tf.reverse(x, axis=[2]), x)
        return tf.cast(x - 1.0, dtype)

    def get_config(self):
        return {**super().get_config(), "shift": self.shift, "flip": self.flip}


@keras.saving.register_keras_serializable(package="csae_tf")
class PEDCCCentroids(keras.layers.Layer):
    """The fixed class centroids, a non-trainable (n, d) weight saved with the model.

    Called on latent codes z of shape (B, d) it returns the squared Euclidean distances to
    every centroid, shape (B, n); `centroids` is None when the values come from a saved model.
    """

    def __init__(self, num_classes: int, latent_dim: int, centroids: np.ndarray | None = None, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        # === Config ===
        self.num_classes = num_classes
        self.latent_dim = latent_dim
        # === Weights ===
        initial = "zeros" if centroids is None else keras.initializers.Constant(np.asarray(centroids, "float32"))
        self.centroids = self.add_weight(
            name="centroids", shape=(num_classes, latent_dim), initializer=initial, trainable=False
        )

    def call(self, z):
        z = tf.cast(z, tf.float32)  # distances stay float32 under a mixed-precision policy
        c = tf.convert_to_tensor(self.centroids)
        return (
            tf.reduce_sum(tf.square(z), axis=-1, keepdims=True)
            - 2.0 * tf.matmul(z, c, transpose_b=True)
            + tf.reduce_sum(tf.square(c), axis=-1)[None, :]
        )

    def get_config(self):
        return {**super().get_config(), "num_classes": self.num_classes, "latent_dim": self.latent_dim}


@keras.saving.register_keras_serializable(package="csae_tf")
class NoiseInjection(keras.layers.Layer):
    """Adds sqrt(d) * beta * N(0, I) to the latent code in training; the identity at inference.

    `seed`, a (2,) int tensor, makes the draw stateless (the train step derives it from the
    step number and the replica id, so replicas draw independent noise reproducibly).
    """

    def __init__(self, beta: float = 0.04, **kwargs):
        super().__init__(**kwargs)
        self.beta = float(beta)

    def call(self, z, training=False, seed=None):
        if not training or self.beta == 0.0:
            return z
        scale = math.sqrt(z.shape[-1]) * self.beta
        if seed is None:
            noise = tf.random.normal(tf.shape(z), dtype=z.dtype)
        else:
            noise = tf.random.stateless_normal(tf.shape(z), seed=seed, dtype=z.dtype)
        return z + scale * noise

    def get_config(self):
        return {**super().get_config(), "beta": self.beta}


@keras.saving.register_keras_serializable(package="csae_tf")
class ResidualBlock(keras.layers.Layer):
    """He et al.'s basic block: conv3x3(stride) -> BN -> ReLU -> conv3x3 -> BN, plus shortcut, ReLU.

    The shortcut is a strided 1x1 conv with BN when the shape changes, the identity otherwise.
    """

    def __init__(self, filters: int, strides: int = 1, sync_bn: bool = False, **kwargs):
        super().__init__(**kwargs)
        # === Config ===
        self.filters = filters
        self.strides = strides
        self.sync_bn = sync_bn
        # === Layers ===
        conv = dict(padding="same", use_bias=False)
        self.conv1 = keras.layers.Conv2D(filters, 3, strides=strides, kernel_initializer=kernel_init(), name="conv1",
                                         **conv)
        self.bn1 = BatchNormalization(synchronized=sync_bn, name="bn1")
        self.conv2 = keras.layers.Conv2D(filters, 3, kernel_initializer=kernel_init(), name="conv2", **conv)
        self.bn2 = BatchNormalization(synchronized=sync_bn, name="bn2")
        self.shortcut_conv = None
        self.shortcut_bn = None

    def build(self, input_shape):
        if self.strides != 1 or input_shape[-1] != self.filters:
            self.shortcut_conv = keras.layers.Conv2D(
                self.filters, 1, strides=self.strides, use_bias=False, kernel_initializer=kernel_init(),
                name="shortcut_conv",
            )
            self.shortcut_bn = BatchNormalization(synchronized=self.sync_bn, name="shortcut_bn")
            self.shortcut_conv.build(input_shape)
            self.shortcut_bn.build(self.shortcut_conv.compute_output_shape(input_shape))
        self.conv1.build(input_shape)
        mid = self.conv1.compute_output_shape(input_shape)
        self.bn1.build(mid)
        self.conv2.build(mid)
        self.bn2.build(mid)

    def call(self, x, training=False):
        y = tf.nn.relu(self.bn1(self.conv1(x), training=training))
        y = self.bn2(self.conv2(y), training=training)
        shortcut = x if self.shortcut_conv is None else self.shortcut_bn(self.shortcut_conv(x), training=training)
        return tf.nn.relu(y + shortcut)

    def compute_output_shape(self, input_shape):
        return self.conv1.compute_output_shape(input_shape)

    def get_config(self):
        return {**super().get_config(), "filters": self.filters, "strides": self.strides, "sync_bn": self.sync_bn}


@keras.saving.register_keras_serializable(package="csae_tf")
class DecodeBlock(keras.layers.Layer):
    """Upsampling block: transposed conv 2x2 stride 2 (to half the input channels) -> conv3x3 -> BN -> ReLU."""

    def __init__(self, filters: int, sync_bn: bool = False, **kwargs):
        super().__init__(**kwargs)
        # === Config ===
        self.filters = filters
        self.sync_bn = sync_bn
        # === Layers ===
        self.upsample = None
        self.conv = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False,
                                        kernel_initializer=kernel_init(), name="conv")
        self.bn = BatchNormalization(synchronized=sync_bn, name="bn")

    def build(self, input_shape):
        self.upsample = keras.layers.Conv2DTranspose(max(1, input_shape[-1] // 2), 2, strides=2,
                                                     kernel_initializer=kernel_init(), name="upsample")
        self.upsample.build(input_shape)
        mid = self.upsample.compute_output_shape(input_shape)
        self.conv.build(mid)
        self.bn.build(self.conv.compute_output_shape(mid))

    def call(self, x, training=False):
        return tf.nn.relu(self.bn(self.conv(self.upsample(x)), training=training))

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[1] * 2, input_shape[2] * 2, self.filters)

    def get_config(self):
        return {**super().get_config(), "filters": self.filters, "sync_bn": self.sync_bn}


@keras.saving.register_keras_serializable(package="csae_tf")
class LatentGaussians(keras.layers.Layer):
    """Per-class Gaussians of the latent codes (mean and Cholesky factor), for generation (paper §4.2).

    Fitted after training by `CSAE.fit_latent_gaussians`; `call(class_ids, seed)` draws one
    code per id from N(mean_c, cov_c), reproducibly for a given (2,) int seed. With
    `full_covariance=False` only the per-dimension standard deviations are kept (n x d instead
    of n x d x d values, for thousands of classes).
    """

    def __init__(self, num_classes: int, latent_dim: int, full_covariance: bool = True, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        # === Config ===
        self.num_classes = num_classes
        self.latent_dim = latent_dim
        self.full_covariance = full_covariance
        # === Weights ===
        self.means = self.add_weight(name="means", shape=(num_classes, latent_dim), initializer="zeros",
                                     trainable=False)
        if full_covariance:
            self.scale = self.add_weight(name="scale_tril", shape=(num_classes, latent_dim, latent_dim),
                                         initializer=_identity_stack, trainable=False)
        else:
            self.scale = self.add_weight(name="scale_diag", shape=(num_classes, latent_dim), initializer="ones",
                                         trainable=False)

    def call(self, class_ids, seed):
        class_ids = tf.cast(class_ids, tf.int32)
        eps = tf.random.stateless_normal(tf.stack([tf.shape(class_ids)[0], self.latent_dim]), seed=seed)
        mean = tf.gather(tf.convert_to_tensor(self.means), class_ids)
        scale = tf.gather(tf.convert_to_tensor(self.scale), class_ids)
        return mean + (tf.linalg.matvec(scale, eps) if self.full_covariance else scale * eps)

    def get_config(self):
        return {**super().get_config(), "num_classes": self.num_classes, "latent_dim": self.latent_dim,
                "full_covariance": self.full_covariance}


def _identity_stack(shape, dtype=None):
    return tf.eye(shape[-1], batch_shape=shape[:-2], dtype=dtype or "float32")
