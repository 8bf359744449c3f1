"""The CSAE train and test steps, checked against what they must compute.

Each test fails if one piece of the step is removed or miswired: the noise on the decoder input
(training only), the weighted sum of the three losses, Loss1 on the noise-free code, the coupled
weight decay (and its division by the replicas), the batch-level Sobel loss, the batch-norm averaging
across replicas; and the networks have the paper's shapes and parameter count.

What needs two replicas runs once in a subprocess (`MIRRORED`): logical CPU devices must be
configured before TensorFlow starts, and this process has started it.
"""

import inspect
import json
import math
import os
import signal
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import ROOT

from csae_tf import losses, pedcc, steps
from csae_tf.models import CSAE, build_decoder, build_encoder

SHAPE = (16, 16, 1)
LATENT = 8
CLASSES = 4
TIMEOUT = 600


class Record(keras.layers.Layer):
    """The identity, keeping its last eager input (to look inside a step run eagerly)."""

    def call(self, x):
        if tf.executing_eagerly():
            self.seen = np.array(x)
        return x


def recording_csae(**kwargs):
    """A tiny CSAE whose encoder output, decoder input and decoder output are recorded."""
    keras.utils.set_random_seed(0)
    record = {name: Record(name=f"record_{name}") for name in ("z", "decoder_input", "reconstruction")}
    images = keras.Input(SHAPE)
    encoder = keras.Model(images, record["z"](build_encoder("conv", SHAPE, LATENT)(images)))
    codes = keras.Input((LATENT,))
    decoder = keras.Model(codes, record["reconstruction"](build_decoder("conv", SHAPE, LATENT)(
        record["decoder_input"](codes))))
    model = CSAE(encoder, decoder, pedcc.generate(CLASSES, LATENT), **kwargs)
    model.compile(keras.optimizers.SGD(0.01))
    return model, record


def batch(n=32, seed=0):
    rng = np.random.default_rng(seed)
    return rng.uniform(-1, 1, (n, *SHAPE)).astype("float32"), (np.arange(n) % CLASSES).astype("int32")


def numpy_filter(images, kernel):
    """Valid 3x3 cross-correlation of (B, H, W, 1) images, as tf.nn.depthwise_conv2d computes it."""
    b, h, w, _ = images.shape
    out = np.zeros((b, h - 2, w - 2))
    for i in range(3):
        for j in range(3):
            out += kernel[i, j] * images[:, i : i + h - 2, j : j + w - 2, 0]
    return out


# --- noise: training only ---

def test_train_step_feeds_the_decoder_a_noisy_code():
    model, record = recording_csae(beta=0.1)
    model.train_step(batch())
    noise = record["decoder_input"].seen - record["z"].seen
    assert noise.std() == pytest.approx(math.sqrt(LATENT) * 0.1, rel=0.2)  # sqrt(d) * beta, 256 draws


def test_test_step_feeds_the_decoder_the_code_itself():
    model, record = recording_csae(beta=0.1)
    model.test_step(batch())
    np.testing.assert_array_equal(record["decoder_input"].seen, record["z"].seen)


def test_noise_differs_from_step_to_step_and_is_reproducible_from_the_seed():
    draws = []
    for _ in range(2):
        model, record = recording_csae(beta=0.1, seed=3)
        steps_noise = []
        for _ in range(2):
            model.train_step(batch())
            steps_noise.append(record["decoder_input"].seen - record["z"].seen)
        draws.append(steps_noise)
    assert not np.allclose(draws[0][0], draws[0][1])  # a new draw at each optimizer step
    np.testing.assert_allclose(draws[0][1], draws[1][1], atol=1e-5)  # same seed and step, same noise


# --- the losses of a real step ---

def test_logged_loss_is_loss1_plus_lambda1_loss2_plus_lambda2_loss3():
    model, _ = recording_csae(beta=0.05, lambda1=0.7, lambda2=0.3)
    logs = {k: float(v) for k, v in model.train_step(batch()).items()}
    assert logs["loss3"] > 0 and logs["loss2"] > 0
    assert logs["loss"] == pytest.approx(logs["loss1"] + 0.7 * logs["loss2"] + 0.3 * logs["loss3"], rel=1e-5)


def test_without_an_edge_loss_loss3_is_the_laplacian_measured_but_not_trained():
    # Table 5 of the paper reports the Laplacian loss of the model trained without it
    model, record = recording_csae(beta=0.05, lambda1=0.7, lambda2=0.3, edge_loss="none")
    images, labels = batch()
    logs = {k: float(v) for k, v in model.train_step((images, labels)).items()}
    laplacian = numpy_filter(record["reconstruction"].seen - images, losses.LAPLACIAN)
    assert logs["loss3"] == pytest.approx(np.mean(laplacian**2), rel=1e-4)
    assert logs["loss"] == pytest.approx(logs["loss1"] + 0.7 * logs["loss2"], rel=1e-5)


def test_step_losses_are_taken_on_the_clean_code_and_the_real_images():
    # Loss1 compares z (not the noisy code) with the label's centroid; Loss2 and Loss3 compare the
    # decoder output with the step's images.
    model, record = recording_csae(beta=0.1)
    images, labels = batch()
    logs = {k: float(v) for k, v in model.train_step((images, labels)).items()}
    z, rec = record["z"].seen, record["reconstruction"].seen
    centroids = model.pedcc.centroids.numpy()
    assert logs["loss1"] == pytest.approx(np.mean((z - centroids[labels]) ** 2), rel=1e-5)
    assert logs["loss2"] == pytest.approx(np.mean((rec - images) ** 2), rel=1e-5)
    laplacian = numpy_filter(rec - images, losses.LAPLACIAN)
    assert logs["loss3"] == pytest.approx(np.mean(laplacian**2), rel=1e-4)
    assert logs["accuracy"] == pytest.approx(np.mean(np.argmin(
        ((z[:, None] - centroids[None]) ** 2).sum(-1), axis=1) == labels))


def test_sobel_loss_is_the_authors_batch_level_edge_energy_difference():
    # 0.02 * |mean(S(x)^2) - mean(S(x*)^2)| over the whole batch, S = Sobel_x + Sobel_y; the per-example
    # variant (mean of the absolute differences) is another number on a batch whose signs differ.
    rng = np.random.default_rng(1)
    x = rng.uniform(-1, 1, (8, 12, 12, 1)).astype("float32")
    x_rec = np.concatenate([0.5 * x[:4], 1.2 * x[4:]])  # less edge energy, then more
    expected = 0.02 * abs(np.mean(numpy_filter(x, losses.SOBEL_SUM) ** 2)
                          - np.mean(numpy_filter(x_rec, losses.SOBEL_SUM) ** 2))
    assert float(tf.reduce_mean(losses.sobel_energy_loss(x_rec, x))) == pytest.approx(expected, rel=1e-5)
    per_example = float(tf.reduce_mean(losses.sobel_per_example_loss(x_rec, x)))
    assert per_example > expected * 1.5


# --- coupled weight decay ---

class Linear(keras.Model):
    """y = x W + b with a summed-square loss per example, stepped by the shared `apply_gradients`."""

    def __init__(self, weight_decay):
        super().__init__()
        self.dense = keras.layers.Dense(3)
        self.weight_decay = weight_decay

    def call(self, x):
        return self.dense(x)

    def train_step(self, data):
        x, y = data
        with tf.GradientTape() as tape:
            loss = tf.nn.compute_average_loss(tf.reduce_sum(tf.square(self(x) - y), axis=-1))
        steps.apply_gradients(self, tape, loss, weight_decay=self.weight_decay)
        return {"loss": loss}


def test_coupled_weight_decay_is_one_sgd_step_computed_by_hand():
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((8, 4)).astype("float32"), rng.standard_normal((8, 3)).astype("float32")
    model = Linear(weight_decay=0.1)
    model(np.zeros((1, 4), "float32"))
    model.compile(keras.optimizers.SGD(0.5))
    w, b = (v.numpy().astype(np.float64) for v in (model.dense.kernel, model.dense.bias))
    model.train_step((x, y))
    residual = x @ w + b - y
    grad_w, grad_b = 2 * x.T @ residual / 8, 2 * residual.sum(0) / 8  # d/dW of mean_i |x_i W + b - y_i|^2
    np.testing.assert_allclose(model.dense.kernel.numpy(), w - 0.5 * (grad_w + 0.1 * w), atol=1e-6)
    np.testing.assert_allclose(model.dense.bias.numpy(), b - 0.5 * (grad_b + 0.1 * b), atol=1e-6)


def test_csae_train_step_decays_every_trainable_weight_by_lr_times_weight_decay():
    # Two copies from the same weights, one step of plain SGD with and without decay: they differ by
    # -lr * wd * W in every trainable weight (the gradients of the losses are the same in both).
    images, labels = batch()
    models = []
    for decay in (0.0, 0.01):
        model, _ = recording_csae(beta=0.0, weight_decay=decay)
        model.compile(keras.optimizers.SGD(0.1))
        if models:
            model.set_weights(models[0].get_weights())
        models.append(model)
    before = [v.numpy() for v in models[0].trainable_variables]
    for model in models:
        model.train_step((images, labels))
    for w0, plain, decayed in zip(before, models[0].trainable_variables, models[1].trainable_variables):
        np.testing.assert_allclose(decayed.numpy() - plain.numpy(), -0.1 * 0.01 * w0, atol=2e-6, err_msg=plain.path)


# --- the networks: SPEC section 2 ---

def test_csae_c_has_the_papers_shapes_and_282329_trainable_parameters():
    encoder, decoder = build_encoder("conv", (32, 32, 1), 40), build_decoder("conv", (32, 32, 1), 40)
    shapes = {name: tuple(encoder.get_layer(name).output.shape[1:]) for name in ("stem_conv", "res1", "res2", "res3")}
    assert shapes == {"stem_conv": (30, 30, 16), "res1": (15, 15, 32), "res2": (8, 8, 64), "res3": (4, 4, 64)}
    assert tuple(encoder.output.shape[1:]) == (40,)
    shapes = {name: tuple(decoder.get_layer(name).output.shape[1:]) for name in ("reshape", "up1", "up2", "up3")}
    assert shapes == {"reshape": (4, 4, 64), "up1": (8, 8, 64), "up2": (16, 16, 32), "up3": (32, 32, 16)}
    assert tuple(decoder.output.shape[1:]) == (32, 32, 1)
    model = CSAE(encoder, decoder, pedcc.generate(10, 40))
    assert sum(int(np.prod(w.shape)) for w in model.trainable_weights) == 282_329
    assert all(w is not model.pedcc.centroids for w in model.trainable_weights)


def test_csae_defaults_are_the_fit_commands_defaults():
    # CSAE(...) from Python and `python -m csae_tf.fit` with no flags must train the same model: every
    # keyword of the constructor that is also a FitConfig field has FitConfig's default, and the CLI's
    # parsed defaults are FitConfig's. A default changed in one place only fails here.
    from csae_tf.config import FitConfig, config_from_args
    from csae_tf.fit import build_parser

    cli = config_from_args(build_parser().parse_args([]))
    assert cli == FitConfig()
    # `arch` is left out: for CSAE it names the builder of the networks it is given ("custom" by default).
    shared = {name: p.default for name, p in inspect.signature(CSAE.__init__).parameters.items()
              if name in FitConfig.__dataclass_fields__ and name != "arch"}
    assert set(shared) >= {"beta", "lambda1", "lambda2", "edge_loss", "weight_decay", "augment", "flip", "seed"}
    assert shared == {name: getattr(cli, name) for name in shared}
    for builder in (build_encoder, build_decoder):
        defaults = {n: p.default for n, p in inspect.signature(builder).parameters.items()}
        assert (defaults["arch"], defaults["latent_dim"]) == (cli.arch, cli.latent_dim), builder.__name__
    assert inspect.signature(build_encoder).parameters["linear_input"].default == cli.linear_input
    model = CSAE(build_encoder(), build_decoder(), pedcc.generate(10, cli.latent_dim))
    assert {name: getattr(model, name) for name in shared} == shared


def test_docstring_example_of_csae_runs_and_trains():
    # The `Example:` of CSAE's docstring, run line by line as written; the data it names are the user's.
    lines = [line.strip()[4:] for line in inspect.getdoc(CSAE).splitlines() if line.strip().startswith(">>> ")]
    assert any("model.fit(" in line for line in lines)
    images, labels = np.random.default_rng(0).uniform(-1, 1, (64, 32, 32, 1)).astype("float32"), np.arange(64) % 10
    data = tf.data.Dataset.from_tensor_slices((images, labels)).batch(16)
    namespace = {"train_ds": data, "val_ds": data.take(1)}
    for line in lines:
        exec(line, namespace)
    model = namespace["model"]
    history = model.history.history
    assert {"loss", "loss1", "loss2", "loss3", "accuracy", "val_loss"} <= set(history)
    assert all(np.isfinite(v[-1]) for v in history.values())
    assert int(model.optimizer.iterations) == 4


# --- two replicas (a subprocess) ---

MIRRORED = r"""
import json
import tensorflow as tf
tf.config.set_logical_device_configuration(tf.config.list_physical_devices("CPU")[0],
                                           [tf.config.LogicalDeviceConfiguration()] * 2)
import keras, numpy as np
from csae_tf import losses, steps
from csae_tf.distribute import AverageMovingStatistics
from csae_tf.layers import BatchNormalization

{LINEAR}

one = tf.distribute.OneDeviceStrategy("/device:CPU:0")
two = tf.distribute.MirroredStrategy(["/device:CPU:0", "/device:CPU:1"])
result = {}
rng = np.random.default_rng(0)

# 1. coupled weight decay: one SGD step of the same global batch on one device and on two replicas
x, y = rng.standard_normal((8, 4)).astype("float32"), rng.standard_normal((8, 3)).astype("float32")
keras.utils.set_random_seed(0)
start = None
weights = {}
for name, strategy in (("one", one), ("two", two)):
    with strategy.scope():
        model = Linear(weight_decay=0.1)
        model(np.zeros((1, 4), "float32"))
        model.compile(keras.optimizers.SGD(0.5))
    if start is None:
        start = model.get_weights()
    model.set_weights(start)
    model.fit(tf.data.Dataset.from_tensor_slices((x, y)).batch(8), epochs=1, verbose=0)
    weights[name] = model.get_weights()
result["decay_difference"] = max(float(np.abs(a - b).max()) for a, b in zip(weights["one"], weights["two"]))
result["decay_term"] = max(float(np.abs(0.5 * 0.1 * w).max()) for w in start)

# 2. the batch-level Sobel loss: its global value over two replicas and on one device
x = rng.uniform(-1, 1, (8, 12, 12, 1)).astype("float32")
x_rec = np.concatenate([0.5 * x[:4], 1.2 * x[4:]])  # replica 0 loses edge energy, replica 1 gains some
halves = [(x_rec[:4], x[:4]), (x_rec[4:], x[4:])]
values = two.experimental_distribute_values_from_function(lambda ctx: halves[ctx.replica_id_in_sync_group])

@tf.function
def global_sobel(pair):
    def replica(pair):
        return tf.nn.compute_average_loss(losses.sobel_energy_loss(pair[0], pair[1]))
    return two.reduce("SUM", two.run(replica, args=(pair,)), axis=None)

result["sobel_two"] = float(global_sobel(values))
result["sobel_one"] = float(tf.reduce_mean(losses.sobel_energy_loss(x_rec, x)))

# 3. batch-norm moving statistics: each replica's own, then their mean after AverageMovingStatistics
with two.scope():
    inputs = keras.Input((4, 4, 2))
    model = keras.Model(inputs, BatchNormalization(name="bn")(inputs))
    model.compile(keras.optimizers.SGD(0.1), loss="mse")
images = rng.standard_normal((16, 4, 4, 2)).astype("float32")
images[np.arange(16) % 8 >= 4] += 5.0  # in every global batch of 8: replica 0 gets mean 0, replica 1 mean 5
model.fit(images, images, batch_size=8, epochs=1, verbose=0, shuffle=False)
moving = model.get_layer("bn").moving_mean
local = lambda: [np.asarray(v).tolist() for v in two.experimental_local_results(moving.value)]
before = local()
average = AverageMovingStatistics(two)
average.set_model(model)
average()
result["bn_before"], result["bn_after"] = before, local()
print(json.dumps(result))
"""


@pytest.fixture(scope="module")
def mirrored():
    script = MIRRORED.replace("{LINEAR}", inspect.getsource(Linear))  # the same class as in this process
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": str(ROOT)})
    try:
        stdout, stderr = proc.communicate(timeout=TIMEOUT)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(30)
    assert proc.returncode == 0, stderr[-3000:]
    return json.loads(stdout.strip().splitlines()[-1])


def test_weight_decay_is_divided_by_the_replicas(mirrored):
    # Each replica adds wd / R * W to its gradient and the optimizer sums the replicas' gradients: the
    # step equals one device's. Without the division the decay counts twice: a difference of
    # lr * wd * |W| (the decay term, ~1e-2 here) instead of float32 rounding (measured ~1e-7).
    assert mirrored["decay_term"] > 1e-2
    assert mirrored["decay_difference"] < 1e-5, mirrored


def test_sobel_loss_over_two_replicas_is_the_global_batch_value(mirrored):
    # The sign of the energy difference is that of the whole global batch (all-reduced), not each
    # replica's: here the replicas' own signs differ, so a per-replica sign gives another value.
    assert mirrored["sobel_two"] == pytest.approx(mirrored["sobel_one"], rel=1e-5), mirrored


def test_average_moving_statistics_makes_the_replicas_equal_to_their_mean(mirrored):
    before, after = (np.array(mirrored[k]) for k in ("bn_before", "bn_after"))
    assert np.abs(before[0] - before[1]).max() > 0.5  # each replica kept its own sub-batch's statistics
    np.testing.assert_array_equal(after[0], after[1])
    np.testing.assert_allclose(after[0], before.mean(0), rtol=1e-6)
