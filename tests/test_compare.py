"""python -m csae_tf.compare: one table row per requested model, figures, saved models, bad input."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import mnist_args

from csae_tf import compare, data
from csae_tf.config import FitConfig
from csae_tf.data import DatasetInfo


def table_rows(path):
    lines = path.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| model |"))
    rows = [line for line in lines[start + 2 :] if line.startswith("|")]
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in rows]


def test_compare_on_a_small_mnist_subset_writes_one_row_per_requested_model(tfds_dir, tmp_path):
    out = tmp_path / "cmp"
    models = ["csae_c", "cvae", "ddae", "conv_vae_simple"]
    assert compare.main([*mnist_args(tfds_dir, train=256, test=128), "--models", ",".join(models), "--epochs", "1",
                         "--batch-size", "64", "--kelm-centres", "100", "--verbose", "0", "--output", str(out)]) == 0
    rows = table_rows(out / "comparison.md")
    assert [r[0] for r in rows] == models
    by_name = {r[0]: r for r in rows}
    assert by_name["conv_vae_simple"][1] == "—" and by_name["conv_vae_simple"][2] != "—"  # no classifier
    for name in ("csae_c", "cvae", "ddae"):
        assert 0.0 <= float(by_name[name][1]) <= 1.0 and float(by_name[name][2]) > 0.0
    figures = json.loads((out / "comparison.json").read_text())
    # the comparison trains on the training images left after the validation hold-out (1 in 12)
    assert figures["header"]["num_train"] == 256 - 256 // 12 and figures["header"]["num_test"] == 128
    for name in models:
        assert (out / f"{name}_reconstructions.png").stat().st_size > 0
        assert (out / "models" / f"{name}.keras").exists()
    assert (out / "reconstructions.png").exists() and (out / "conv_vae_simple_latent.png").exists()
    # class-conditional generators draw their samples; the unconditional VAE has none to draw
    assert (out / "cvae_generated.png").stat().st_size > 0 and (out / "csae_c_generated.png").exists()
    assert not (out / "conv_vae_simple_generated.png").exists()


def test_saved_comparison_models_reload_with_the_reported_accuracy(tfds_dir, tmp_path):
    cfg = FitConfig(dataset="mnist", data_dir=str(tfds_dir), train_limit=256, test_limit=128, epochs=1, batch_size=64,
                    verbose=0)
    results = compare.run(cfg, compare.BaselineOptions(images=4), ["basenet"], str(tmp_path))
    loaded = keras.models.load_model(tmp_path / "models" / "basenet.keras")
    _, test, _ = data.load_datasets(cfg)
    x, y = data.as_numpy(test)
    assert results[0]["accuracy"] == pytest.approx((loaded.predict_labels(x).numpy() == y).mean())


def test_conv_vae_expands_to_the_three_variants():
    assert compare.expand_models("conv_vae,csae_c,conv_vae_deep") == [
        "conv_vae_simple", "conv_vae_16d", "conv_vae_deep", "csae_c"]


def test_an_unknown_model_is_an_error_before_any_training(tmp_path):
    code = compare.main(["--models", "csae_c,resnet", "--output", str(tmp_path / "x")])
    assert code == 2 and not (tmp_path / "x").exists()


def test_three_channel_synthetic_data_runs_through_the_whole_comparison(tmp_path):
    rng = np.random.default_rng(0)
    y = rng.integers(0, 10, 160).astype("int32")
    x = np.clip(rng.uniform(-1, 1, (10, 1, 1, 3))[y] * np.ones((1, 32, 32, 3))
                + 0.1 * rng.standard_normal((160, 32, 32, 3)), -1, 1).astype("float32")
    info = DatasetInfo("synthetic_colour", 10, (32, 32, 3), (32, 32, 3), 128, 32, tuple(map(str, range(10))))
    cfg = FitConfig(epochs=1, batch_size=32, verbose=0)
    train = tf.data.Dataset.from_tensor_slices((x[:128], y[:128])).batch(32)
    results = compare.run_on(train, (x[128:], y[128:]), info, cfg, compare.BaselineOptions(kelm_centres=64, images=4),
                             ["csae_c", "ddae", "conv_vae_deep", "fsae"], str(tmp_path))
    assert [r["model"] for r in results] == ["csae_c", "ddae", "conv_vae_deep", "fsae"]
    assert all(r["mse"] is not None and np.isfinite(r["mse"]) for r in results)
    assert (tmp_path / "reconstructions.png").exists() and (tmp_path / "conv_vae_deep_latent.png").exists()


def test_exact_kelm_solves_on_every_training_image_whatever_kelm_centres_says(tmp_path):
    # --kelm-centres is the Nystrom / subset size; the exact solver needs one centre per training image
    # (seed 002's 6,000-image subset, with the default 2,000, used to fail after training).
    rng = np.random.default_rng(0)
    y = rng.integers(0, 10, 112).astype("int32")
    x = rng.uniform(-1, 1, (112, 32, 32, 1)).astype("float32")
    info = DatasetInfo("synthetic", 10, (32, 32, 1), (32, 32, 1), 96, 16, tuple(map(str, range(10))))
    train = tf.data.Dataset.from_tensor_slices((x[:96], y[:96])).batch(32)
    results = compare.run_on(train, (x[96:], y[96:]), info, FitConfig(epochs=1, batch_size=32, verbose=0),
                             compare.BaselineOptions(kelm_method="exact", kelm_centres=16, images=4), ["ddae"],
                             str(tmp_path))
    assert "KELM exact, m=96" in results[0]["notes"] and 0.0 <= results[0]["accuracy"] <= 1.0
