"""`python -m export.saved_model` on a model trained on real MNIST, checked from a process without csae_tf.

A CSAE is trained briefly on 1,000 MNIST images and exported. A separate Python process, which never
imports csae_tf, loads the SavedModel with `tf.saved_model.load`, calls every signature (and sends
bad requests) and saves what it got; the tests compare that with the Keras model in this process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import ROOT

import csae_tf  # noqa: F401  (registers the model classes for load_model)
from csae_tf import data
from csae_tf.models import nearest_centroid
from export import saved_model

SEEDS = (1, 2)
CLASS_IDS = np.repeat(np.arange(10), 10).astype(np.int32)  # 10 samples of every class
SAVED_MODEL_CLI = Path(sys.executable).parent / "saved_model_cli"

# Runs in its own process: TensorFlow and numpy only; any import of csae_tf fails there, even where the
# package is installed (as in CI), so the SavedModel cannot lean on it.
CLIENT = textwrap.dedent("""
    import importlib.util, json, sys

    class BlockCsaeTf:
        def find_spec(self, name, path=None, target=None):
            if name == "csae_tf" or name.startswith("csae_tf."):
                raise ModuleNotFoundError(f"{name} is blocked in this client")
            return None

    sys.meta_path.insert(0, BlockCsaeTf())

    def _importable(name):
        try:
            return importlib.util.find_spec(name) is not None
        except ModuleNotFoundError:
            return False

    import numpy as np
    import tensorflow as tf

    export_dir, inputs, outputs = sys.argv[1:4]
    model = tf.saved_model.load(export_dir)
    sig = model.signatures
    x = np.load(inputs)["images"]
    x32 = np.pad(x, [(0, 0), (2, 2), (2, 2), (0, 0)])
    ids = tf.constant(np.load(inputs)["class_ids"])
    result = {}
    for key, value in sig["classify"](images=tf.constant(x)).items():
        result["classify_" + key] = value.numpy()
    for key, value in sig["serving_default"](images=tf.constant(x)).items():
        result["default_" + key] = value.numpy()
    result["classify32_label"] = sig["classify"](images=tf.constant(x32))["label"].numpy()
    result["encode_latent"] = sig["encode"](images=tf.constant(x))["latent"].numpy()
    result["reconstruct"] = sig["reconstruct"](images=tf.constant(x))["reconstruction"].numpy()
    result["reconstruct32"] = sig["reconstruct"](images=tf.constant(x32))["reconstruction"].numpy()
    for name, seed in (("a", 1), ("b", 1), ("c", 2)):
        result["generate_" + name] = sig["generate"](class_id=ids, seed=tf.constant(seed, tf.int64))["images"].numpy()
    pixels = tf.cast(tf.round(result["generate_a"]), tf.uint8)
    result["generated_label"] = sig["classify"](images=pixels)["label"].numpy()
    np.savez(outputs, **result)

    bad = {
        "rank": lambda: sig["classify"](images=tf.zeros([28, 28, 1], tf.uint8)),
        "size": lambda: sig["classify"](images=tf.zeros([2, 30, 30, 1], tf.uint8)),
        "channels": lambda: sig["encode"](images=tf.zeros([2, 28, 28, 3], tf.uint8)),
        "class_id_high": lambda: sig["generate"](class_id=tf.constant([0, 10]), seed=tf.constant(0, tf.int64)),
        "class_id_negative": lambda: sig["generate"](class_id=tf.constant([-1]), seed=tf.constant(0, tf.int64)),
    }
    empty = {}  # every signature on an empty batch: {name: {output: [shape, dtype]}} or the error
    for name in ("serving_default", "classify", "encode", "reconstruct"):
        for size in (28, 32):
            try:
                outs = sig[name](images=tf.zeros([0, size, size, 1], tf.uint8))
                empty[f"{name}{size}"] = {k: [v.shape.as_list(), v.dtype.name] for k, v in outs.items()}
            except tf.errors.InvalidArgumentError as err:
                empty[f"{name}{size}"] = err.message
    try:
        outs = sig["generate"](class_id=tf.zeros([0], tf.int32), seed=tf.constant(1, tf.int64))
        empty["generate"] = {k: [v.shape.as_list(), v.dtype.name] for k, v in outs.items()}
    except tf.errors.InvalidArgumentError as err:
        empty["generate"] = err.message
    errors = {}
    for name, call in bad.items():
        try:
            call()
            errors[name] = None
        except tf.errors.InvalidArgumentError as err:
            errors[name] = err.message
    print(json.dumps({"signatures": sorted(sig), "errors": errors, "empty": empty,
                      "imported_csae_tf": any(m.startswith("csae_tf") for m in sys.modules),
                      "csae_tf_importable": _importable("csae_tf")}))
""")


def _run(cmd: list[str], cwd: Path = ROOT, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env={**env, "TF_CPP_MIN_LOG_LEVEL": "2"})


@pytest.fixture(scope="module")
def run_dir(small_run) -> Path:
    return small_run


@pytest.fixture(scope="module")
def export_base(small_export) -> Path:
    return small_export


@pytest.fixture(scope="module")
def test_images(tfds_dir) -> np.ndarray:
    """The 200 MNIST test images, uint8 [200, 28, 28, 1], as a client would send them."""
    images, _ = data.as_numpy(data.load_split(data.prepare("mnist", str(tfds_dir)), "test", limit=200).batch(200))
    return images


@pytest.fixture(scope="module")
def client(export_base, test_images, tmp_path_factory):
    """(outputs, report) of the SavedModel called in a process that does not import csae_tf.

    It runs outside the repository (without PYTHONPATH), where csae_tf could not even be imported.
    """
    folder = tmp_path_factory.mktemp("client")
    np.savez(folder / "inputs.npz", images=test_images, class_ids=CLASS_IDS)
    result = _run([sys.executable, "-c", CLIENT, str(export_base / "1"), str(folder / "inputs.npz"),
                   str(folder / "outputs.npz")], cwd=folder)
    assert result.returncode == 0, result.stderr[-3000:]
    return dict(np.load(folder / "outputs.npz")), json.loads(result.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def keras_model(run_dir):
    return keras.models.load_model(run_dir / "model.keras")


def assert_close_on_model_scale(pixels, expected_pixels, atol=1e-4):
    """Images in 0..255 agree within `atol` on the model's [-1, 1] scale (float32 rounding x 127.5 would
    exceed 1e-4 in grey levels: 2.6e-4 was measured)."""
    np.testing.assert_allclose(pixels / 127.5 - 1.0, expected_pixels / 127.5 - 1.0, atol=atol)


def _keras_input(model, images):
    return data.to_model_input(tf.constant(images), model.image_shape)


def test_export_writes_a_numbered_savedmodel_in_tf_serving_layout(export_base):
    version = export_base / "1"
    assert (version / "saved_model.pb").is_file()
    assert (version / "variables" / "variables.index").is_file()
    assert [p.name for p in export_base.iterdir()] == ["1"]  # no temporary folder left behind
    info = json.loads((version / "assets.extra" / "csae.json").read_text())
    assert info["source_shape"] == [28, 28, 1] and info["image_shape"] == [32, 32, 1]


def test_export_refuses_to_overwrite_an_existing_version(export_base, run_dir, capsys):
    before = (export_base / "1" / "saved_model.pb").stat().st_mtime
    assert saved_model.main(["--run", str(run_dir), "--output", str(export_base), "--version", "1"]) == 2
    assert "exists" in capsys.readouterr().err
    assert (export_base / "1" / "saved_model.pb").stat().st_mtime == before


def test_export_of_a_folder_without_a_model_says_what_is_missing(tmp_path, capsys):
    assert saved_model.main(["--run", str(tmp_path), "--output", str(tmp_path / "out")]) == 2
    assert "model.keras" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_next_version_follows_the_highest_numeric_folder(tmp_path):
    assert saved_model.next_version(tmp_path / "none") == 1
    for name in ("1", "7", "latest", ".tmp-9-1"):
        (tmp_path / name).mkdir()
    assert saved_model.next_version(tmp_path) == 8


def test_savedmodel_loads_without_csae_tf_and_has_the_four_signatures(client):
    _, report = client
    assert report["imported_csae_tf"] is False
    assert report["csae_tf_importable"] is False
    assert report["signatures"] == ["classify", "encode", "generate", "reconstruct", "serving_default"]


def test_classify_labels_equal_the_keras_models_nearest_centroid_labels(client, keras_model, test_images):
    outputs, _ = client
    latent = keras_model.encode(_keras_input(keras_model, test_images)).numpy()
    expected = nearest_centroid(latent, keras_model.pedcc.centroids.numpy())
    assert outputs["classify_label"].dtype == np.int64
    np.testing.assert_array_equal(outputs["classify_label"], expected)
    np.testing.assert_array_equal(outputs["default_label"], expected)  # serving_default is classify


def test_classify_distances_and_latent_agree_with_keras_within_1e_4(client, keras_model, test_images):
    outputs, _ = client
    labels, distances = keras_model.classify(_keras_input(keras_model, test_images))
    latent = keras_model.encode(_keras_input(keras_model, test_images)).numpy()
    assert outputs["classify_distances"].shape == (200, 10) and outputs["classify_distances"].dtype == np.float32
    np.testing.assert_allclose(outputs["classify_distances"], distances.numpy(), atol=1e-4)
    np.testing.assert_allclose(outputs["classify_latent"], latent, atol=1e-4)
    np.testing.assert_allclose(outputs["encode_latent"], latent, atol=1e-4)


def test_classify_gives_the_same_labels_for_images_sent_padded_to_32x32(client):
    outputs, _ = client
    np.testing.assert_array_equal(outputs["classify32_label"], outputs["classify_label"])


def test_reconstruct_agrees_with_keras_within_1e_4_in_0_255_at_the_input_size(client, keras_model, test_images):
    outputs, _ = client
    reconstruction = keras_model.reconstruct(_keras_input(keras_model, test_images))
    expected = data.from_model_output(reconstruction, (28, 28, 1)).numpy()
    assert outputs["reconstruct"].shape == (200, 28, 28, 1)
    assert outputs["reconstruct"].min() >= 0.0 and outputs["reconstruct"].max() <= 255.0
    assert outputs["reconstruct"].max() > 100.0  # really in 0..255, not [-1, 1] or [0, 1]
    assert_close_on_model_scale(outputs["reconstruct"], expected)
    assert outputs["reconstruct32"].shape == (200, 32, 32, 1)
    assert_close_on_model_scale(outputs["reconstruct32"][:, 2:30, 2:30], expected)


def test_generate_is_deterministic_per_seed_and_differs_across_seeds(client):
    outputs, _ = client
    assert outputs["generate_a"].shape == (len(CLASS_IDS), 28, 28, 1)
    np.testing.assert_array_equal(outputs["generate_a"], outputs["generate_b"])
    assert np.abs(outputs["generate_a"] - outputs["generate_c"]).mean() > 1.0  # pixels in 0..255


def test_generate_matches_the_keras_models_samples_for_the_same_seed(client, keras_model):
    outputs, _ = client
    # The int64 seed reaches the model as its two int32 halves.
    images = keras_model.generate(CLASS_IDS, seed=tf.bitcast(tf.constant(SEEDS[0], tf.int64), tf.int32))
    assert_close_on_model_scale(outputs["generate_a"], data.from_model_output(images, (28, 28, 1)).numpy())


def test_generated_images_of_class_c_are_classified_as_c_by_a_clear_majority(client):
    outputs, _ = client
    correct = outputs["generated_label"] == CLASS_IDS
    assert correct.mean() >= 0.7, correct.mean()
    per_class = [correct[CLASS_IDS == c].mean() for c in range(10)]
    assert sum(p > 0.5 for p in per_class) >= 8, per_class


@pytest.mark.parametrize("request_name, words", [
    ("rank", ["wrong rank", "rank 4"]),
    ("size", ["wrong size", "28x28 or 32x32"]),
    ("channels", ["wrong number of channels", "must be 1"]),
    ("class_id_high", ["class_id out of range", "0..9"]),
    ("class_id_negative", ["class_id out of range", "0..9"]),
])
def test_bad_request_fails_with_an_error_that_names_the_problem(client, request_name, words):
    _, report = client
    message = report["errors"][request_name]
    assert message is not None, f"{request_name}: no error raised"
    for word in words:
        assert word in message, message


def test_every_signature_answers_an_empty_batch_with_empty_outputs(client):
    _, report = client
    expected = {"label": [[0], "int64"], "distances": [[0, 10], "float32"], "latent": [[0, 40], "float32"]}
    for name in ("serving_default", "classify"):
        for size in (28, 32):
            assert report["empty"][f"{name}{size}"] == expected, report["empty"][f"{name}{size}"]
    assert report["empty"]["encode28"] == {"latent": [[0, 40], "float32"]}
    assert report["empty"]["reconstruct28"] == {"reconstruction": [[0, 28, 28, 1], "float32"]}
    assert report["empty"]["reconstruct32"] == {"reconstruction": [[0, 32, 32, 1], "float32"]}
    assert report["empty"]["generate"] == {"images": [[0, 28, 28, 1], "float32"]}


def test_source_shape_comes_from_the_run_not_from_tfds(keras_model, run_dir, monkeypatch):
    import tensorflow_datasets as tfds

    from csae_tf.config import FitConfig

    def no_tfds(*args, **kwargs):
        raise AssertionError("export read TFDS")

    monkeypatch.setattr(tfds, "builder", no_tfds)
    cfg = FitConfig.load(run_dir / "config.json")
    cfg.data_dir = "/nonexistent"
    assert saved_model.source_shape_of(cfg, keras_model) == (28, 28, 1)
    cfg.dataset = "some_new_dataset"  # not known: images are accepted at the model's input size
    assert saved_model.source_shape_of(cfg, keras_model) == (32, 32, 1)


def test_saved_model_cli_show_all_lists_the_four_signatures(export_base):
    result = _run([str(SAVED_MODEL_CLI), "show", "--all", "--dir", str(export_base / "1")])
    assert result.returncode == 0, result.stderr[-2000:]
    for name in ("serving_default", "classify", "encode", "reconstruct", "generate"):
        assert f"signature_def['{name}']" in result.stdout
    for name in ("images", "class_id", "seed"):
        assert f"inputs['{name}']" in result.stdout
    for name in ("label", "distances", "latent", "reconstruction"):
        assert f"outputs['{name}']" in result.stdout


def test_saved_model_cli_run_classify_on_a_npy_file_prints_the_labels(export_base, client, test_images, tmp_path):
    outputs, _ = client
    np.save(tmp_path / "images.npy", test_images[:8])
    result = _run([str(SAVED_MODEL_CLI), "run", "--dir", str(export_base / "1"), "--tag_set", "serve",
                   "--signature_def", "classify", "--inputs", f"images={tmp_path / 'images.npy'}"])
    assert result.returncode == 0, result.stderr[-2000:]
    printed = result.stdout.split("Result for output key label:")[1].split("Result for")[0]
    labels = [int(t) for t in printed.replace("[", " ").replace("]", " ").split()]
    assert labels == outputs["classify_label"][:8].tolist()
