"""The three CSAE losses, per example (shape (B,)) so that a distributed step can average them
over the global batch.

- Loss1 `centroid_loss`: MSE between the latent code and its class's PEDCC centroid.
- Loss2 `reconstruction_loss`: per-pixel MSE between the reconstruction and the input.
- Loss3 `laplacian_loss` (the paper), `sobel_energy_loss` (the authors' code, batch-level) or
  `sobel_per_example_loss`.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

LAPLACIAN = np.array([[0, 1, 0], [1, -4, 1], [0, 1, 0]], dtype="float32")
SOBEL_SUM = np.array([[-2, -2, 0], [-2, 0, 2], [0, 2, 2]], dtype="float32")  # Sobel_x + Sobel_y
SOBEL_WEIGHT = 0.02  # the constant factor of the authors' edge loss


def centroid_loss(z: tf.Tensor, target_centroids: tf.Tensor) -> tf.Tensor:
    """Loss1: mean over the d latent dimensions of (z - mu_y)^2."""
    return tf.reduce_mean(tf.square(z - target_centroids), axis=-1)


def reconstruction_loss(x_rec: tf.Tensor, x: tf.Tensor) -> tf.Tensor:
    """Loss2: mean over pixels and channels of (x* - x)^2."""
    return tf.reduce_mean(tf.square(x_rec - x), axis=[1, 2, 3])


def _filter(images: tf.Tensor, kernel: np.ndarray) -> tf.Tensor:
    """Apply a 3x3 kernel to every channel separately, 'valid' padding (no border artefacts)."""
    channels = images.shape[-1]
    k = tf.constant(np.tile(kernel[:, :, None, None], (1, 1, channels, 1)))
    return tf.nn.depthwise_conv2d(images, k, strides=[1, 1, 1, 1], padding="VALID")


def laplacian_loss(x_rec: tf.Tensor, x: tf.Tensor) -> tf.Tensor:
    """Loss3 (paper): mean of (G * x* - G * x)^2, G the 3x3 Laplacian.

    G is linear, so this is one filter of the difference: G * (x* - x).
    """
    return tf.reduce_mean(tf.square(_filter(x_rec - x, LAPLACIAN)), axis=[1, 2, 3])


def _edge_energy(images: tf.Tensor) -> tf.Tensor:
    """Per-example mean of (S * x)^2, S = Sobel_x + Sobel_y."""
    return tf.reduce_mean(tf.square(_filter(images, SOBEL_SUM)), axis=[1, 2, 3])


def sobel_energy_loss(x_rec: tf.Tensor, x: tf.Tensor) -> tf.Tensor:
    """Loss3 (authors' code): 0.02 * |E(x) - E(x*)|, E the mean of (S * images)^2 over the whole global batch.

    Returned per example so that it averages like the other losses: example i contributes
    0.02 * sign * (E_i(x) - E_i(x*)), where sign is that of the global-batch difference (summed across
    replicas). The global-batch mean of these is exactly the authors' batch-level loss, and so is its gradient.
    """
    difference = _edge_energy(x) - _edge_energy(x_rec)
    total = tf.reduce_sum(difference)
    replica = tf.distribute.get_replica_context()
    if replica is not None and replica.num_replicas_in_sync > 1:
        total = replica.all_reduce("SUM", total)
    return SOBEL_WEIGHT * tf.stop_gradient(tf.sign(total)) * difference


def sobel_per_example_loss(x_rec: tf.Tensor, x: tf.Tensor) -> tf.Tensor:
    """Loss3, per-example variant of the authors' form: 0.02 * |E_i(x) - E_i(x*)| for each example i."""
    return SOBEL_WEIGHT * tf.abs(_edge_energy(x) - _edge_energy(x_rec))


EDGE_LOSSES = {"laplacian": laplacian_loss, "sobel": sobel_energy_loss, "sobel-per-example": sobel_per_example_loss,
               "none": None}


def edge_loss(kind: str):
    """The Loss3 function named by `kind` (laplacian, sobel, sobel-per-example), or None for none."""
    return EDGE_LOSSES[kind]
