"""The comparison systems: a few steps on real MNIST lower each loss, .keras round trips, the KELM solver,
and the 3-channel 32x32 (CIFAR-10-shaped) code path on synthetic colour images."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from csae_tf import data, pedcc
from csae_tf.baselines import CVAE, DDAE, FSAE, BaseNet, ConvVAE, EncoderOnly, kelm

SHAPE = (32, 32, 1)
BUILDERS = {
    "basenet": lambda shape: BaseNet(shape, 10),
    "encoder_only": lambda shape: EncoderOnly(shape, 10, 40, pedcc.generate(10, 40)),
    "cvae": lambda shape: CVAE(shape, 10),
    "ddae": lambda shape: DDAE(shape, 10, kelm_centres=128),
    "conv_vae_simple": lambda shape: ConvVAE.variant("simple", shape),
    "conv_vae_16d": lambda shape: ConvVAE.variant("16d", shape),
    "conv_vae_deep": lambda shape: ConvVAE.variant("deep", shape),
    "fsae": lambda shape: FSAE(shape, 10, rounding=True, jump=2, feedback=1),
}


def build(name, shape=SHAPE):
    keras.utils.set_random_seed(0)
    return BUILDERS[name](shape)


@pytest.fixture(scope="module")
def mnist(tfds_dir):
    """512 real MNIST training images, padded to 32x32 and scaled to [-1, 1], with their labels."""
    builder = data.prepare("mnist", str(tfds_dir))
    info = data.describe(builder, "conv")
    return data.as_numpy(data.pipeline(data.load_split(builder, "train", limit=512), info, 128, training=False))


def batches(x, y, size=32):
    return tf.data.Dataset.from_tensor_slices((x, y)).batch(size)


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_a_few_steps_on_mnist_lower_the_loss_of_every_stage(name, mnist):
    x, y = mnist[0][:128], mnist[1][:128]
    model = build(name)
    stages = (1, 2) if isinstance(model, DDAE | FSAE) else (None,)
    for stage in stages:
        if stage is None:
            model.compile(optimizer=keras.optimizers.Adam(1e-3))
        else:
            model.set_stage(stage)
        before = model.evaluate(x, y, batch_size=128, verbose=0, return_dict=True)["loss"]
        # the basenet is evaluated through its batch norms' moving statistics, which lag the first ~20 steps
        model.fit(batches(x, y), epochs=8 if name == "basenet" else 2, verbose=0)
        after = model.evaluate(x, y, batch_size=128, verbose=0, return_dict=True)["loss"]
        assert np.isfinite(after) and after < before, (name, stage, before, after)


def test_the_first_fit_of_a_comparison_system_traces_its_train_step_once(mnist, monkeypatch):
    traces = []
    train_step = BaseNet.train_step
    monkeypatch.setattr(BaseNet, "train_step", lambda self, data: traces.append(1) or train_step(self, data))
    model = build("basenet")
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    model.fit(batches(mnist[0][:64], mnist[1][:64]), epochs=1, verbose=0)
    assert len(traces) == 1


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_keras_round_trip_gives_identical_outputs(name, mnist, tmp_path):
    x, y = mnist[0][:64], mnist[1][:64]
    model = build(name)
    model.train(batches(x, y), epochs=1)
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    assert type(loaded) is type(model) and loaded.get_config() == model.get_config()
    if model.classifies:
        np.testing.assert_array_equal(loaded.predict_labels(x), model.predict_labels(x))
    if model.reconstructs:
        np.testing.assert_allclose(loaded.reconstruct(x, y), model.reconstruct(x, y), atol=1e-6)


def test_kelm_classifies_a_separable_toy_problem_perfectly():
    rng = np.random.default_rng(0)
    means = np.array([[0.0, 0.0], [4.0, 0.0], [0.0, 4.0]])
    labels = rng.integers(0, 3, 300)
    points = means[labels] + 0.4 * rng.standard_normal((300, 2))  # 10 standard deviations apart
    for method in kelm.METHODS:
        centres, coef = kelm.fit(points[:200], labels[:200], 3, c=100.0, gamma=2.0, method=method, centres=50)
        predicted = kelm.predict(points, centres, coef, gamma=2.0).argmax(1)
        np.testing.assert_array_equal(predicted, labels, err_msg=method)


def test_nystrom_kelm_with_every_sample_as_landmark_equals_exact_kelm():
    rng = np.random.default_rng(1)
    x, labels = rng.standard_normal((150, 5)), rng.integers(0, 4, 150)
    exact = kelm.predict(x, *kelm.fit(x, labels, 4, c=10.0, gamma=2.0, method="exact"), gamma=2.0)
    centres, coef = kelm.fit(x, labels, 4, c=10.0, gamma=2.0, method="nystrom", centres=150)
    np.testing.assert_allclose(kelm.predict(x, centres, coef, gamma=2.0), exact, atol=1e-6)


def test_kelm_on_mnist_pixels_beats_chance_by_a_wide_margin(mnist):
    # Measured here: 0.875 test accuracy (Nystrom, 200 landmarks, C=10, median gamma 7.17; 384 train / 128 test;
    # exact KELM 0.867, subset 0.859); chance is 0.1. The bound leaves room for BLAS differences, not for a
    # broken solver.
    x, y = (mnist[0].reshape(len(mnist[0]), -1) + 1) / 2, mnist[1]
    gamma = kelm.median_gamma(x[:384])
    centres, coef = kelm.fit(x[:384], y[:384], 10, c=10.0, gamma=gamma, method="nystrom", centres=200)
    accuracy = (kelm.predict(x[384:], centres, coef, gamma).argmax(1) == y[384:]).mean()
    assert accuracy > 0.75


def test_ddae_dropconnect_draws_a_fresh_mask_per_sample():
    model = build("ddae")
    x = tf.ones((4, 32 * 32))  # identical samples: only the per-sample masks can make them differ
    y1 = model._hidden1(x, training=True).numpy()
    assert not np.allclose(y1[0], y1[1])
    np.testing.assert_allclose(model._hidden1(x).numpy()[0], model._hidden1(x).numpy()[1])


def test_ddae_train_solves_the_kelm_on_the_top_features(mnist):
    x, y = mnist
    model = build("ddae")
    model.train(batches(x[:384], y[:384], 64), epochs=1)
    assert float(model.width.numpy()) > 0 and np.abs(model.coef.numpy()).sum() > 0
    assert (model.predict_labels(x[384:]).numpy() == y[384:]).mean() > 0.3


def test_fsae_classifier_is_frozen_while_its_inverse_trains(mnist):
    x, y = mnist[0][:128], mnist[1][:128]
    model = build("fsae")
    model.set_stage(2)
    abstract = [v.numpy().copy() for layer in model.abstract_layers for v in layer.weights]
    concrete = model.inv_dense1.kernel.numpy().copy()
    model.fit(batches(x, y), epochs=1, verbose=0)
    for before, layer_var in zip(abstract, [v for layer in model.abstract_layers for v in layer.weights]):
        np.testing.assert_array_equal(before, layer_var.numpy())
    assert not np.array_equal(concrete, model.inv_dense1.kernel.numpy())


def test_fsae_rounding_gives_one_output_per_class(mnist):
    model = build("fsae")
    model.train(batches(mnist[0][:256], mnist[1][:256]), epochs=1)
    plain = FSAE(SHAPE, 10, rounding=True)  # no jumps: the output depends on the rounded class only
    plain.set_weights(model.get_weights())
    x = mnist[0][:64]
    labels = plain.predict_labels(x).numpy()
    probs = tf.nn.softmax(plain.abstract(x)[0]).numpy()
    confident = probs.max(1) > 0.5
    out = plain.reconstruct(x).numpy()
    first = {}
    for i in np.flatnonzero(confident):
        first.setdefault(labels[i], i)
        np.testing.assert_allclose(out[i], out[first[labels[i]]], atol=1e-5)
    assert confident.sum() >= 10


def synthetic_colour(n=64, seed=0):
    """32x32x3 images in [-1, 1]: class c is a square of colour c at a class-dependent place, plus noise."""
    rng = np.random.default_rng(seed)
    colours = rng.uniform(-1, 1, (10, 3))
    y = rng.integers(0, 10, n).astype("int32")
    x = -np.ones((n, 32, 32, 3), "float32")
    for i, c in enumerate(y):
        r, col = 2 + 2 * (c % 5), 2 + 10 * (c // 5)
        x[i, r : r + 12, col : col + 12] = colours[c]
    return np.clip(x + 0.05 * rng.standard_normal(x.shape), -1, 1).astype("float32"), y


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_three_channel_32x32_images_train_and_reconstruct_in_colour(name):
    x, y = synthetic_colour()
    model = build(name, (32, 32, 3))
    model.train(batches(x, y), epochs=1)
    if model.classifies:
        assert model.predict_labels(x[:8]).shape == (8,)
    if model.reconstructs:
        rec = model.reconstruct(x[:8], y[:8]).numpy()
        assert rec.shape == (8, 32, 32, 3) and np.isfinite(rec).all()


def test_cvae_generates_reproducible_class_conditional_samples_that_compare_scores(mnist):
    from csae_tf import compare

    model = build("cvae")
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    model.fit(batches(*mnist), epochs=2, verbose=0)
    ids = tf.constant(np.repeat(np.arange(10), 3), tf.int32)
    a, b, c = (model.generate(ids, seed=s).numpy() for s in ((0, 0), (0, 0), (1, 0)))
    assert a.shape == (30, *SHAPE) and -1.0 <= a.min() and a.max() <= 1.0
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - c).max() > 0.1
    assert 0.0 <= compare.generated_accuracy(model, batches(*mnist), 10) <= 1.0
