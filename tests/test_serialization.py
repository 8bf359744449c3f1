"""Config -> JSON -> object round trips for every csae_tf layer, the schedule and the CSAE, and `.keras`
round trips that give identical outputs (keras-hub's serialization and saving tests)."""

import inspect
import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from csae_tf import pedcc
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
from csae_tf.schedules import LearningRate

SHAPE = (16, 16, 1)
LATENT = 8

# (layer, the input shape of a call), one of each with non-default arguments
LAYERS = {
    "BatchNormalization": (lambda: BatchNormalization(momentum=0.8, epsilon=1e-4, name="bn"), (2, 8, 8, 3)),
    "Augmentation": (lambda: Augmentation(shift=3, flip=True, name="augmentation"), None),
    "PEDCCCentroids": (lambda: PEDCCCentroids(4, LATENT, pedcc.generate(4, LATENT), name="pedcc"), (3, LATENT)),
    "NoiseInjection": (lambda: NoiseInjection(0.07, name="noise"), (3, LATENT)),
    "ResidualBlock": (lambda: ResidualBlock(12, strides=2, sync_bn=True, name="res"), (2, 8, 8, 6)),
    "DecodeBlock": (lambda: DecodeBlock(5, name="up"), (2, 4, 4, 8)),
    "LatentGaussians": (lambda: LatentGaussians(4, LATENT, full_covariance=False, name="gaussians"), None),
}


def json_round_trip(obj):
    """serialize_keras_object -> JSON text -> deserialize_keras_object."""
    text = json.dumps(keras.saving.serialize_keras_object(obj))
    return keras.saving.deserialize_keras_object(json.loads(text))


def as_json(config: dict):
    """A config as JSON reads it back (tuples become lists): the form compared."""
    return json.loads(json.dumps(config))


def arguments(obj) -> dict:
    """The plain constructor arguments an object keeps as attributes of the same name (keras-hub style)."""
    names = [p for p in inspect.signature(type(obj).__init__).parameters if p not in ("self", "kwargs")]
    return {n: getattr(obj, n) for n in names
            if hasattr(obj, n) and isinstance(getattr(obj, n), (bool, int, float, str, tuple, type(None)))}


@pytest.mark.parametrize("name", list(LAYERS))
def test_layer_config_survives_json(name):
    layer = LAYERS[name][0]()
    copy = json_round_trip(layer)
    assert type(copy) is type(layer)
    assert arguments(copy) == arguments(layer)  # a constructor argument missing from get_config fails here
    assert as_json(copy.get_config()) == as_json(layer.get_config())
    assert as_json(type(layer).from_config(layer.get_config()).get_config()) == as_json(layer.get_config())


@pytest.mark.parametrize("name", [n for n, (_, shape) in LAYERS.items() if shape is not None])
def test_layer_keras_round_trip_gives_identical_outputs(name, tmp_path):
    make, shape = LAYERS[name]
    inputs = keras.Input(shape[1:])
    model = keras.Model(inputs, make()(inputs))
    rng = np.random.default_rng(0)
    for weight in model.weights:  # non-trivial values everywhere, moving statistics included
        weight.assign(rng.uniform(0.5, 1.5, weight.shape).astype(weight.dtype))
    x = rng.standard_normal(shape).astype("float32")
    model.save(tmp_path / "layer.keras")
    loaded = keras.models.load_model(tmp_path / "layer.keras")
    np.testing.assert_array_equal(loaded(x, training=False), model(x, training=False))
    assert type(loaded.layers[-1]) is type(model.layers[-1])


def test_seeded_layers_draw_the_same_after_a_round_trip():
    seed = tf.constant([3, 4])
    images = tf.random.stateless_uniform((4, *SHAPE), (1, 2), -1, 1)
    augmentation = LAYERS["Augmentation"][0]()
    np.testing.assert_array_equal(json_round_trip(augmentation)(images, seed=seed), augmentation(images, seed=seed))
    gaussians = LAYERS["LatentGaussians"][0]()
    gaussians.means.assign(np.arange(4 * LATENT, dtype="float32").reshape(4, LATENT))
    copy = json_round_trip(gaussians)
    copy.set_weights(gaussians.get_weights())
    ids = tf.constant([0, 3])
    np.testing.assert_array_equal(copy(ids, seed=seed), gaussians(ids, seed=seed))


def test_learning_rate_schedule_survives_json():
    schedule = LearningRate("onecycle", 0.2, total_steps=50, warmup_steps=5, step_every=7)
    copy = json_round_trip(schedule)
    assert copy.get_config() == schedule.get_config()
    assert [float(copy(s)) for s in (0, 5, 30, 50)] == [float(schedule(s)) for s in (0, 5, 30, 50)]


def small_csae(**kwargs):
    keras.utils.set_random_seed(0)
    return CSAE(build_encoder("conv", SHAPE, LATENT), build_decoder("conv", SHAPE, LATENT), pedcc.generate(4, LATENT),
                **kwargs)


NON_DEFAULTS = dict(beta=0.07, lambda1=0.5, lambda2=0.3, edge_loss="sobel", weight_decay=1e-3, augment=True,
                    flip=True, seed=9, arch="conv")


def test_csae_config_survives_json_with_every_argument():
    model = small_csae(**NON_DEFAULTS)
    copy = json_round_trip(model)
    assert isinstance(copy, CSAE)
    assert as_json(copy.get_config()) == as_json(model.get_config())
    assert {k: getattr(copy, k) for k in NON_DEFAULTS} == NON_DEFAULTS
    assert as_json(CSAE.from_config(model.get_config()).get_config()) == as_json(model.get_config())


def test_csae_keras_round_trip_gives_identical_outputs(tmp_path):
    model = small_csae(**NON_DEFAULTS)
    model.compile(keras.optimizers.SGD(0.01, momentum=0.9))
    rng = np.random.default_rng(0)
    x, y = rng.uniform(-1, 1, (32, *SHAPE)).astype("float32"), np.arange(32) % 4
    model.fit(x, y, batch_size=16, epochs=1, verbose=0)  # trained weights, moving statistics, optimizer slots
    model.fit_latent_gaussians([(x, y)])
    model.save(tmp_path / "csae.keras")
    loaded = keras.models.load_model(tmp_path / "csae.keras")
    assert as_json(loaded.get_config()) == as_json(model.get_config())
    for key, value in model(x).items():
        np.testing.assert_array_equal(loaded(x)[key], value, err_msg=key)
    np.testing.assert_array_equal(loaded.reconstruct(x), model.reconstruct(x))
    np.testing.assert_array_equal(loaded.classify(x)[1], model.classify(x)[1])
    np.testing.assert_array_equal(loaded.generate([0, 3], seed=(1, 2)), model.generate([0, 3], seed=(1, 2)))
    np.testing.assert_array_equal(loaded.pedcc.centroids.numpy(), model.pedcc.centroids.numpy())
    assert loaded.evaluate(x, y, verbose=0, return_dict=True) == model.evaluate(x, y, verbose=0, return_dict=True)
