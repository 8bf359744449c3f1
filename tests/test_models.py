"""The CSAE model: training lowers every loss, .keras round trip, inference methods, shapes."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from csae_tf import pedcc
from csae_tf.config import FitConfig
from csae_tf.models import CSAE, build_decoder, build_encoder, build_model, nearest_centroid


def toy_data(n=256, side=16, channels=1, seed=0):
    """Bars at a class-dependent row: learnable in a few steps."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 4, n)
    x = -np.ones((n, side, side, channels), "float32")
    for i, label in enumerate(y):
        x[i, 2 + 3 * label : 4 + 3 * label, 2:-2, :] = 1.0
    return x + 0.05 * rng.standard_normal(x.shape).astype("float32"), y


def small_model(arch="conv", channels=1, **kwargs):
    keras.utils.set_random_seed(0)
    shape = (16, 16, channels)
    return CSAE(build_encoder(arch, shape, 8), build_decoder(arch, shape, 8), pedcc.generate(4, 8), arch=arch,
                **kwargs)


def test_any_keras_encoder_with_a_batch_by_d_output_works():
    """The model takes its parts: a user's own encoder (here a small MLP) trains and round-trips."""
    x, y = toy_data(128)
    inputs = keras.Input((16, 16, 1))
    z = keras.layers.Dense(8)(keras.layers.Dense(32, activation="relu")(keras.layers.Flatten()(inputs)))
    encoder = keras.Model(inputs, z, name="my_encoder")
    model = CSAE(encoder, build_decoder("linear", (16, 16, 1), 8), pedcc.generate(4, 8))
    model.compile(keras.optimizers.Adam(3e-3))
    logs = model.fit(x, y, batch_size=32, epochs=3, verbose=0).history
    assert logs["loss"][-1] < logs["loss"][0]
    assert model.image_shape == (16, 16, 1) and model.num_classes == 4


def test_an_encoder_whose_codes_do_not_match_the_centroids_is_refused():
    with pytest.raises(ValueError, match="codes of shape"):
        CSAE(build_encoder("linear", (16, 16, 1), 6), build_decoder("linear", (16, 16, 1), 8), pedcc.generate(4, 8))


@pytest.mark.parametrize("arch", ["conv", "linear"])
def test_a_few_steps_lower_every_loss(arch):
    x, y = toy_data()
    model = small_model(arch, beta=0.02)
    model.compile(keras.optimizers.Adam(3e-3))
    before = model.evaluate(x, y, batch_size=64, verbose=0, return_dict=True)
    model.fit(x, y, batch_size=32, epochs=4, verbose=0)
    after = model.evaluate(x, y, batch_size=64, verbose=0, return_dict=True)
    for name in ("loss", "loss1", "loss2", "loss3"):
        assert after[name] < before[name], name
    assert after["accuracy"] > 0.9


def test_the_first_fit_traces_the_train_step_once(monkeypatch):
    # An optimizer built lazily makes variables inside the traced step, and TensorFlow then traces it again
    traces = []
    train_step = CSAE.train_step
    monkeypatch.setattr(CSAE, "train_step", lambda self, data: traces.append(1) or train_step(self, data))
    x, y = toy_data(64)
    model = small_model()
    model.compile(keras.optimizers.Adam(1e-3))
    model.fit(x, y, batch_size=32, epochs=1, verbose=0)
    assert len(traces) == 1


def test_three_channel_images_are_supported():
    x, y = toy_data(64, channels=3)
    model = small_model(channels=3)
    model.compile(keras.optimizers.Adam(1e-3))
    logs = model.fit(x, y, batch_size=32, epochs=1, verbose=0).history
    assert set(logs) == {"loss", "loss1", "loss2", "loss3", "accuracy"}
    assert model.reconstruct(x[:2]).shape == (2, 16, 16, 3)


def test_keras_round_trip_gives_identical_outputs(tmp_path):
    x, y = toy_data(64)
    model = small_model(edge_loss="sobel")
    model.compile(keras.optimizers.SGD(0.01, momentum=0.9))
    model.fit(x, y, batch_size=32, epochs=1, verbose=0)
    model.fit_latent_gaussians([(x, y)])
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    assert isinstance(loaded, CSAE) and loaded.edge_loss == "sobel"
    np.testing.assert_array_equal(loaded.encode(x), model.encode(x))
    np.testing.assert_array_equal(loaded.reconstruct(x), model.reconstruct(x))
    np.testing.assert_array_equal(loaded.pedcc.centroids.numpy(), model.pedcc.centroids.numpy())
    np.testing.assert_array_equal(loaded.generate([0, 1], seed=(3, 4)), model.generate([0, 1], seed=(3, 4)))


def test_csae_l_encoder_with_unit_input_reads_pixels_in_zero_one():
    """`--linear-input unit`: the CSAE-L encoder of x computes what the symmetric one computes of (x + 1) / 2."""
    x, _ = toy_data(16)
    unit = build_encoder("linear", (16, 16, 1), 8, linear_input="unit")
    symmetric = build_encoder("linear", (16, 16, 1), 8)
    symmetric.set_weights(unit.get_weights())
    np.testing.assert_allclose(unit(x), symmetric((x + 1) / 2), rtol=1e-5, atol=1e-5)
    assert not np.allclose(unit(x), symmetric(x), atol=1e-3)


def test_linear_input_reaches_the_model_from_the_config_and_survives_a_keras_round_trip(tmp_path):
    x, _ = toy_data(16)
    unit = build_model(FitConfig(arch="linear", latent_dim=8, linear_input="unit"), 4, (16, 16, 1))
    default = build_model(FitConfig(arch="linear", latent_dim=8), 4, (16, 16, 1))
    assert "to_unit_range" in [layer.name for layer in unit.encoder.layers]
    # the default reads [-1, 1] as before, so that earlier runs' commands still give their results
    assert "to_unit_range" not in [layer.name for layer in default.encoder.layers]
    unit.save(tmp_path / "unit.keras")
    np.testing.assert_array_equal(keras.models.load_model(tmp_path / "unit.keras").encode(x), unit.encode(x))


def test_classify_is_the_nearest_centroid_of_the_latent_code():
    x, _ = toy_data(32)
    model = small_model()
    labels, distances = model.classify(x)
    z = model.encode(x).numpy()
    np.testing.assert_array_equal(labels, nearest_centroid(z, model.pedcc.centroids.numpy()))
    assert distances.shape == (32, 4)


def test_generation_draws_from_the_fitted_class_gaussians():
    x, y = toy_data(256)
    model = small_model()
    counts = model.fit_latent_gaussians([(x[i : i + 64], y[i : i + 64]) for i in range(0, 256, 64)])
    assert counts.sum() == 256
    z = model.encode(x).numpy()
    np.testing.assert_allclose(model.latent_gaussians.means.numpy()[1], z[y == 1].mean(0), atol=1e-4)
    scale = model.latent_gaussians.scale.numpy()[2]
    expected = np.cov(z[y == 2].astype(np.float64), rowvar=False, bias=True) + 1e-5 * np.eye(z.shape[1])
    np.testing.assert_allclose(scale @ scale.T, expected, atol=1e-4)
    a = model.generate(tf.constant([1, 2]), seed=(5, 6))
    np.testing.assert_array_equal(a, model.generate(tf.constant([1, 2]), seed=(5, 6)))
    assert not np.allclose(a, model.generate(tf.constant([1, 2]), seed=(7, 6)))


def test_kernels_start_uniform_within_one_over_sqrt_fan_in_as_in_pytorch():
    keras.utils.set_random_seed(0)
    encoder, decoder = build_encoder("conv", (32, 32, 1), 40), build_decoder("conv", (32, 32, 1), 40)
    kernels = [w for m in (encoder, decoder) for w in m.weights if w.path.endswith("kernel")]
    assert len(kernels) >= 14
    for w in kernels:
        k = w.numpy()
        fan_in = int(np.prod(k.shape[:-1]))  # Dense (in, out), conv (h, w, in, out), transposed (h, w, out, in)
        bound = 1 / np.sqrt(fan_in)
        assert np.abs(k).max() <= bound + 1e-7, w.path
        assert k.std() == pytest.approx(bound / np.sqrt(3), rel=0.25), w.path  # uniform, not He-normal
