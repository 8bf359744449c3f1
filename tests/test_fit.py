"""`python -m csae_tf.fit` end to end on real MNIST: outputs, accuracy, resume, clear errors."""

import csv
import json

import keras
import numpy as np
import pytest
from conftest import FIT_2000, MNIST_FILES, mnist_args, run_cli

import csae_tf  # noqa: F401  (registers the model classes for load_model)
from csae_tf import fit
from csae_tf.config import ConfigError, FitConfig


@pytest.fixture(scope="module")
def finished_run(mnist_2000_run):
    """FIT_2000: 2 epochs on 2,000 training images (166 of them held out), tested on the whole test split."""
    return mnist_2000_run


def test_fit_writes_every_output_file(finished_run):
    out = finished_run
    for name in ("model.keras", "config.json", "centroids.npy", "history.csv", "metrics.json", "logs"):
        assert (out / name).exists(), name
    metrics = json.loads((out / "metrics.json").read_text())
    for key in ("test_accuracy", "test_loss1", "test_loss2", "test_loss3"):
        assert np.isfinite(metrics[key]), key
    rows = list(csv.DictReader(open(out / "history.csv")))
    assert [r["epoch"] for r in rows] == ["0", "1"]
    assert FitConfig.load(out / "config.json").epochs == 2


def test_two_epochs_on_2000_images_beat_chance_by_far(finished_run):
    # Measured 0.93-0.95 on this setup; chance is 0.10.
    out = finished_run
    assert json.loads((out / "metrics.json").read_text())["test_accuracy"] > 0.75


def test_saved_model_loads_and_its_centroids_match_the_saved_file(finished_run):
    out = finished_run
    model = keras.models.load_model(out / "model.keras")
    np.testing.assert_array_equal(model.pedcc.centroids.numpy(), np.load(out / "centroids.npy"))


def test_rerun_of_a_finished_run_reports_instead_of_training(finished_run, tfds_dir, capsys):
    out = finished_run
    before = (out / "model.keras").stat().st_mtime
    assert fit.main([*mnist_args(tfds_dir, test=None), *FIT_2000, "--output", str(out)]) == 0
    assert "finished run" in capsys.readouterr().out
    assert (out / "model.keras").stat().st_mtime == before


@pytest.mark.parametrize("flags,message", [
    (["--dataset", "no_such_dataset"], "unknown dataset"),
    (["--beta", "1.5"], "--beta must lie in [0, 1]"),
    (["--epochs", "-1"], "--epochs must be >= 0"),
    (["--latent-dim", "0"], "--latent-dim must be >= 1"),
])
def test_bad_input_is_a_one_line_error(flags, message, tmp_path, tfds_dir, capsys):
    assert fit.main([*mnist_args(tfds_dir), *flags, "--output", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_a_bad_flag_fails_before_tensorflow_is_imported(tmp_path):
    result = run_cli("csae_tf.fit", "--beta", "1.5", "--output", str(tmp_path / "x"),
                     env={"PYTHONPROFILEIMPORTTIME": "1"})
    assert result.returncode == 2 and "--beta must lie in [0, 1]" in result.stderr
    imported = [line.split("|")[-1].strip() for line in result.stderr.splitlines() if line.startswith("import time:")]
    assert "csae_tf.config" in imported and "tensorflow" not in imported and "keras" not in imported


def test_missing_offline_files_fail_fast_and_name_them(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert fit.main(["--dataset", "fashion_mnist", "--data-dir", str(tmp_path / "tfds"), "--manual-dir", str(empty),
                     "--output", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert "train-images-idx3-ubyte.gz" in err and len(err.strip().splitlines()) == 1


def test_config_file_values_are_overridden_by_flags(tmp_path):
    from csae_tf.config import config_from_args
    from csae_tf.fit import build_parser

    path = tmp_path / "c.json"
    FitConfig(beta=0.06, lambda1=2.0).save(path)
    cfg = config_from_args(build_parser().parse_args(["--config", str(path), "--lambda1", "3"]))
    assert (cfg.beta, cfg.lambda1) == (0.06, 3.0)


def test_unknown_config_keys_are_rejected(tmp_path):
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"betta": 0.1}))
    with pytest.raises(ConfigError, match="betta"):
        FitConfig.load(path)


def test_offline_files_exist_for_the_real_data_tests():
    assert (MNIST_FILES / "train-images-idx3-ubyte.gz").exists()


def test_datasets_with_identically_named_files_do_not_mix_in_one_data_dir(tfds_dir):
    # MNIST and Fashion-MNIST ship files of the same names; TFDS must not reuse one's extraction for the other.
    from csae_tf import data

    fashion_files = MNIST_FILES.parent / "fashion_mnist"
    mnist = data.load_split(data.prepare("mnist", str(tfds_dir), str(MNIST_FILES)), "train", limit=500)
    fashion = data.load_split(data.prepare("fashion_mnist", str(tfds_dir), str(fashion_files)), "train", limit=500)
    mnist_mean = np.mean([x.numpy().mean() for x, _ in mnist])
    fashion_mean = np.mean([x.numpy().mean() for x, _ in fashion])
    assert mnist_mean < 40 < 60 < fashion_mean  # MNIST mean pixel ~33, Fashion-MNIST ~73


def test_validation_metrics_cover_the_held_out_images_and_test_the_whole_test_split(finished_run):
    """val_* (every epoch) read all 166 held-out training images; metrics.json's test_* all 10,000 test images."""
    out = finished_run
    assert "ran out of data" not in out.with_suffix(".stderr").read_text()
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["num_validation"] == 2000 // 12 == 166 and metrics["num_test"] == 10_000
    accuracies = [float(r["val_accuracy"]) for r in csv.DictReader(open(out / "history.csv"))]
    for accuracy in [*accuracies, metrics["val_accuracy"]]:
        assert abs(accuracy * 166 - round(accuracy * 166)) < 1e-3, accuracy
    assert abs(metrics["test_accuracy"] * 10_000 - round(metrics["test_accuracy"] * 10_000)) < 1e-2
    assert accuracies[-1] == pytest.approx(metrics["val_accuracy"], abs=1e-6)  # the last epoch's = a fresh pass
    model = keras.models.load_model(out / "model.keras")
    labels, distances = model.classify(np.zeros((3, *model.image_shape), "float32"))
    assert labels.shape == (3,) and distances.shape == (3, 10)


def test_a_diverging_run_stops_at_once_with_a_clear_error_and_writes_no_model(tfds_dir, tmp_path, capsys):
    """The README's diverging setting: a non-zero exit naming the cause, no NaN model or metrics.json."""
    out = tmp_path / "diverged"
    status = fit.main([*mnist_args(tfds_dir, train=1024, test=128), "--lambda2", "1", "--lr", "0.1", "--epochs", "2",
                       "--image-every", "0", "--verbose", "2", "--output", str(out)])
    err = capsys.readouterr().err
    assert status == 2, err[-2000:]
    assert "training diverged" in err.strip().splitlines()[-1] and "Traceback" not in err
    assert not (out / "model.keras").exists() and not (out / "metrics.json").exists()


def test_presets_are_listed_in_help_recorded_in_config_and_overridden_by_flags(tmp_path):
    from csae_tf.config import PRESETS, config_from_args
    from csae_tf.fit import build_parser

    help_text = build_parser().format_help()
    assert all(name in help_text for name in PRESETS) and "(default: None)" not in help_text
    cfg = config_from_args(build_parser().parse_args(["--preset", "paper-l", "--epochs", "5"]))
    assert (cfg.preset, cfg.arch, cfg.optimizer, cfg.lr, cfg.epochs) == ("paper-l", "linear", "adam", 1e-3, 5)
    cfg.save(tmp_path / "config.json")
    again = config_from_args(build_parser().parse_args(["--config", str(tmp_path / "config.json")]))
    assert again == cfg
