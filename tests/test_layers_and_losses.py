"""Layers and losses: noise only in training with std sqrt(d)*beta, frozen centroids, hand-computed edge losses."""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from csae_tf import losses, pedcc
from csae_tf.layers import (
    Augmentation,
    BatchNormalization,
    DecodeBlock,
    LatentGaussians,
    NoiseInjection,
    PEDCCCentroids,
    ResidualBlock,
)
from csae_tf.models import CSAE, build_decoder, build_encoder


def test_noise_is_zero_at_inference():
    z = tf.random.normal((64, 40))
    np.testing.assert_array_equal(NoiseInjection(0.1)(z, training=False), z)


def test_noise_has_std_alpha_beta_in_training():
    z = tf.zeros((4096, 40))
    noise = NoiseInjection(0.06)(z, training=True).numpy()
    assert noise.std() == pytest.approx(math.sqrt(40) * 0.06, rel=0.02)
    assert abs(noise.mean()) < 0.01


def test_seeded_noise_is_reproducible_and_differs_per_seed():
    layer, z = NoiseInjection(0.04), tf.zeros((8, 40))
    a = layer(z, training=True, seed=tf.constant([1, 2]))
    np.testing.assert_array_equal(a, layer(z, training=True, seed=tf.constant([1, 2])))
    assert not np.allclose(a, layer(z, training=True, seed=tf.constant([2, 2])))


def test_centroid_layer_returns_squared_distances():
    c = pedcc.generate(10, 40)
    z = np.random.default_rng(0).standard_normal((5, 40)).astype("float32")
    d2 = PEDCCCentroids(10, 40, c)(z).numpy()
    np.testing.assert_allclose(d2, ((z[:, None] - c[None]) ** 2).sum(-1), rtol=1e-4)


def test_centroid_weights_are_untouched_by_fit():
    c = pedcc.generate(10, 16)
    model = CSAE(build_encoder("conv", (16, 16, 1), 16), build_decoder("conv", (16, 16, 1), 16), c, beta=0.1,
                 weight_decay=5e-4)
    model.compile(keras.optimizers.SGD(0.01, momentum=0.9))
    x = np.random.default_rng(0).uniform(-1, 1, (64, 16, 16, 1)).astype("float32")
    y = np.arange(64) % 10
    model.fit(x, y, batch_size=16, epochs=1, verbose=0)
    np.testing.assert_array_equal(model.pedcc.centroids.numpy(), c)
    assert all(v is not model.pedcc.centroids for v in model.trainable_variables)


def test_laplacian_loss_matches_a_hand_computed_value():
    x = np.zeros((1, 4, 4, 1), "float32")
    x_rec = x.copy()
    x_rec[0, 1, 1, 0] = 1.0  # a single bright pixel in a 4x4 image
    # Valid 3x3 Laplacian of the difference on the 2x2 interior: centre -4, right and down
    # neighbours 1, diagonal 0 -> mean of squares (16 + 1 + 1 + 0) / 4.
    assert float(losses.laplacian_loss(x_rec, x)[0]) == pytest.approx(18 / 4)


def test_sobel_energy_loss_matches_a_hand_computed_value():
    x = np.zeros((1, 3, 3, 1), "float32")
    x_rec = x.copy()
    x_rec[0, 2, 2, 0] = 1.0  # one valid position; Sobel_x + Sobel_y has weight 2 at the corner
    assert float(losses.sobel_energy_loss(x_rec, x)[0]) == pytest.approx(0.02 * 4)


def test_centroid_and_reconstruction_losses_are_per_example_mse():
    z, mu = tf.ones((2, 4)), tf.zeros((2, 4))
    np.testing.assert_allclose(losses.centroid_loss(z, mu), [1.0, 1.0])
    a, b = tf.zeros((2, 3, 3, 1)), tf.fill((2, 3, 3, 1), 2.0)
    np.testing.assert_allclose(losses.reconstruction_loss(a, b), [4.0, 4.0])


@pytest.mark.parametrize("layer", [
    NoiseInjection(0.05), PEDCCCentroids(3, 4), ResidualBlock(8, strides=2), DecodeBlock(8), BatchNormalization(),
    Augmentation(2, flip=True),
    LatentGaussians(3, 4), LatentGaussians(3, 4, full_covariance=False),
])
def test_layer_config_round_trips(layer):
    config = layer.get_config()
    assert type(layer).from_config(config).get_config() == config


def test_residual_and_decode_blocks_have_the_paper_shapes():
    assert ResidualBlock(32, strides=2)(tf.zeros((1, 30, 30, 16))).shape == (1, 15, 15, 32)
    assert DecodeBlock(32)(tf.zeros((1, 8, 8, 64))).shape == (1, 16, 16, 32)


def test_fused_batch_norm_equals_keras_batch_norm():
    """The fused kernel gives Keras' outputs and moving statistics (the latter with the unbiased variance)."""
    x = tf.random.stateless_normal((8, 5, 5, 3), seed=(1, 2)) * 2.0 + 1.0
    fused, plain = BatchNormalization(), keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-5)
    for layer in (fused, plain):
        layer.build(x.shape)
    fused.set_weights(plain.get_weights())
    np.testing.assert_allclose(fused(x, training=True), plain(x, training=True), atol=1e-4)
    np.testing.assert_allclose(fused.moving_mean.numpy(), plain.moving_mean.numpy(), atol=1e-6)
    n = 8 * 5 * 5
    unbiased = plain.moving_variance.numpy() * 0 + 0.9 + 0.1 * np.var(x.numpy(), axis=(0, 1, 2)) * n / (n - 1)
    np.testing.assert_allclose(fused.moving_variance.numpy(), unbiased, rtol=1e-4)
    np.testing.assert_allclose(fused(x, training=False), plain(x, training=False), atol=1e-2)


def test_augmentation_shifts_fill_with_background_and_repeat_for_a_seed():
    x = tf.ones((4, 8, 8, 1))
    layer = Augmentation(2)
    a, b = layer(x, seed=tf.constant([1, 2])), layer(x, seed=tf.constant([1, 2]))
    np.testing.assert_array_equal(a, b)
    assert set(np.unique(a.numpy())) <= {-1.0, 1.0}
    assert not np.array_equal(a, layer(x, seed=tf.constant([1, 3])))
