"""Open-set scores (csae_tf.ood) on a CSAE trained briefly on real MNIST digits 0-5, and their serving.

One model per module: 2,000 MNIST training images (digits 0-5 kept, 6-9 held out), 2 epochs. The
known images are MNIST test digits 0-5; the unknowns are Fashion-MNIST test images (read from the
original files) and the held-out digits 6-9.
"""

from __future__ import annotations

import gzip
import json
import shutil

import numpy as np
import pytest
import tensorflow as tf
from conftest import SHARED_DATA, mnist_args, printed_by

from csae_tf import data, fit, ood, runs
from export import saved_model

KNOWN = [0, 1, 2, 3, 4, 5]
COUNT = 300  # images per set in the ranking tests
# AUROC of Fashion-MNIST (unknown) against MNIST digits 0-5 (known), measured on this module's model
# (seed 0): distance 0.972, margin 0.963, reconstruction 0.678, mahalanobis 0.873, combined 0.963;
# later 0.966 / 0.946 / 0.671 / 0.887 / 0.955 and mahalanobis_shared 0.921
# (another 2-epoch model, all ten digits: 0.95 / 0.94 / 0.80 / 0.93 / 0.98). The bounds leave a margin
# for run-to-run differences of the 2-epoch model; 0.5 is chance.
AUROC_BOUNDS = {"distance": 0.9, "margin": 0.88, "reconstruction": 0.6, "mahalanobis": 0.8,
                "mahalanobis_shared": 0.82, "combined": 0.9}


@pytest.fixture(scope="module")
def run_dir(tfds_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("ood_run") / "mnist_0to5"
    assert fit.main([*mnist_args(tfds_dir), "--classes", ",".join(map(str, KNOWN)), "--epochs", "2", "--batch-size",
                     "64", "--image-every", "0", "--verbose", "2", "--output", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def loaded(run_dir):
    return runs.load_run(run_dir)


@pytest.fixture(scope="module")
def threshold(run_dir, loaded):
    cfg, model = loaded
    return ood.calibrate(run_dir, model=model, cfg=cfg)


@pytest.fixture(scope="module")
def mnist_known(loaded):
    cfg, _ = loaded
    images, labels, _ = runs.dataset_split(cfg, "test", limit=COUNT * 2, classes=KNOWN)
    assert set(np.unique(labels)) <= set(KNOWN)
    return images[:COUNT]


@pytest.fixture(scope="module")
def fashion():
    """Fashion-MNIST test images, uint8 (COUNT, 28, 28, 1), straight from the original IDX file."""
    with gzip.open(SHARED_DATA / "fashion_mnist" / "t10k-images-idx3-ubyte.gz") as f:
        raw = np.frombuffer(f.read(), np.uint8, offset=16)
    return raw.reshape(-1, 28, 28, 1)[:COUNT]


@pytest.fixture(scope="module")
def served(run_dir, threshold, tmp_path_factory):
    base = tmp_path_factory.mktemp("ood_serving") / "csae"
    assert "score" in printed_by(saved_model.main, "--run", str(run_dir), "--output", str(base))
    return tf.saved_model.load(str(base / "1"))


# --- metrics on toy inputs: exact values ---

def test_auroc_of_toy_scores_counts_pairs_and_half_ties():
    # 16 (known, unknown) pairs: 13 ranked right, 2 ties (2 vs 2, 3 vs 3), 1 wrong (2 < 3): 14 / 16
    assert ood.auroc([0, 1, 2, 3], [2, 3, 4, 5]) == 0.875
    assert ood.auroc([0, 1], [2, 3]) == 1.0
    assert ood.auroc([2, 3], [0, 1]) == 0.0
    assert ood.auroc([1, 1], [1, 1]) == 0.5


def test_fpr_at_95_tpr_counts_the_unknowns_under_the_threshold_accepting_95_percent():
    known = np.arange(1, 21)  # 95% of 20 = 19 accepted: threshold 19
    assert ood.threshold_at(known) == 19
    assert ood.fpr_at_tpr(known, [18.5, 19, 19.5, 25]) == 0.5
    assert ood.fpr_at_tpr(known, [30, 40]) == 0.0


def test_aupr_of_toy_scores():
    assert ood.aupr([0], [1]) == 1.0
    assert ood.aupr([1], [0]) == 0.5  # recall 1 reached only at precision 1/2
    # unknowns ranked 1st and 3rd: AP = (1/1 + 2/3) / 2
    assert ood.aupr([0, 2], [1, 3]) == pytest.approx((1 + 2 / 3) / 2, abs=1e-15)


def test_metrics_agree_with_sklearn_on_random_scores_with_ties():
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(0)
    known, unknown = rng.integers(0, 30, 400).astype(float), rng.integers(10, 40, 300).astype(float)
    y = np.r_[np.zeros(len(known)), np.ones(len(unknown))]
    s = np.r_[known, unknown]
    assert ood.auroc(known, unknown) == pytest.approx(metrics.roc_auc_score(y, s), abs=1e-12)
    assert ood.aupr(known, unknown) == pytest.approx(metrics.average_precision_score(y, s), abs=1e-12)
    assert ood.metrics(known, unknown)["aupr_in"] == pytest.approx(metrics.average_precision_score(1 - y, -s),
                                                                   abs=1e-12)


# --- the scores on the trained model ---

def test_every_score_ranks_fashion_mnist_above_known_mnist_digits(loaded, threshold, mnist_known, fashion):
    cfg, model = loaded
    known = ood.scores(model, mnist_known, classes=KNOWN, weights=threshold["weights"])
    unknown = ood.scores(model, fashion, classes=KNOWN, weights=threshold["weights"])
    measured = {k: ood.auroc(known[k], unknown[k]) for k in ood.SCORES}
    for name, bound in AUROC_BOUNDS.items():
        assert measured[name] >= bound, measured


def test_mahalanobis_equals_the_inverse_covariance_formula(loaded, mnist_known):
    _, model = loaded
    z = np.asarray(model.encode(runs.to_input(model, mnist_known[:50])), np.float64)
    means = model.latent_gaussians.means.numpy().astype(np.float64)[KNOWN]
    scale = model.latent_gaussians.scale.numpy().astype(np.float64)[KNOWN]
    inverse = np.linalg.inv(scale @ np.transpose(scale, (0, 2, 1)))
    diff = z[:, None, :] - means[None]
    expected = np.sqrt(np.einsum("bni,nij,bnj->bn", diff, inverse, diff).min(1))
    got = ood.mahalanobis(model.latent_gaussians, tf.constant(z, tf.float32), KNOWN).numpy()
    np.testing.assert_allclose(got, expected, rtol=2e-3)


def test_shared_mahalanobis_uses_the_classes_averaged_covariance(loaded, mnist_known):
    _, model = loaded
    z = np.asarray(model.encode(runs.to_input(model, mnist_known[:50])), np.float64)
    means = model.latent_gaussians.means.numpy().astype(np.float64)[KNOWN]
    scale = model.latent_gaussians.scale.numpy().astype(np.float64)[KNOWN]
    inverse = np.linalg.inv((scale @ np.transpose(scale, (0, 2, 1))).mean(0))
    diff = z[:, None, :] - means[None]
    expected = np.sqrt(np.einsum("bni,ij,bnj->bn", diff, inverse, diff).min(1))
    got = ood.mahalanobis_shared(model.latent_gaussians, tf.constant(z, tf.float32), KNOWN).numpy()
    np.testing.assert_allclose(got, expected, rtol=2e-3)


def test_the_score_function_is_traced_once_per_model_not_per_call(loaded, mnist_known):
    _, model = loaded
    ood.scores(model, mnist_known[:64], classes=KNOWN)
    compiled = ood._compiled_scores(model, KNOWN, None)
    traces = compiled.experimental_get_tracing_count()
    ood.scores(model, mnist_known[64:128], classes=KNOWN)  # e.g. the next epoch's histogram
    assert ood._compiled_scores(model, KNOWN, None) is compiled
    assert compiled.experimental_get_tracing_count() == traces


def test_scores_count_only_the_runs_classes(loaded, mnist_known):
    _, model = loaded
    z = model.encode(runs.to_input(model, mnist_known[:50]))
    distances = np.sqrt(np.maximum(model.pedcc(z).numpy(), 0))
    got = ood.scores(model, mnist_known[:50], classes=KNOWN)
    np.testing.assert_allclose(got["distance"], distances[:, KNOWN].min(1), rtol=1e-4)  # float32 sums
    ordered = np.sort(distances[:, KNOWN], 1)
    np.testing.assert_allclose(got["margin"], ordered[:, 0] - ordered[:, 1], rtol=1e-4, atol=1e-5)


# --- calibration and the reject option ---

def test_threshold_accepts_95_percent_of_the_validation_images(run_dir, loaded, threshold):
    cfg, model = loaded
    record = json.loads((run_dir / ood.THRESHOLD_FILE).read_text())
    assert record["score"] == "combined" and record["classes"] == KNOWN
    assert set(record["weights"]) == set(ood.COMPONENTS)
    validation = ood.validation_images(cfg)
    assert record["validation_images"] == len(validation) > 50
    accepted = ood.known(model, record, images=validation).mean()
    assert 0.95 <= accepted <= 0.95 + 2 / len(validation)
    assert record["validation_acceptance"] == pytest.approx(accepted)


def test_validation_images_are_the_trainers_held_out_images(loaded):
    cfg, _ = loaded
    images, _, _ = runs.dataset_split(cfg, "train", limit=cfg.train_limit, classes=cfg.classes)
    validation = ood.validation_images(cfg)
    held = data.validation_indices(len(images), cfg.validation_split, cfg.seed)
    assert len(validation) == len(held) > 50
    np.testing.assert_array_equal(validation, images[held])


def test_served_score_signature_equals_the_python_scores(served, loaded, threshold, mnist_known, fashion):
    _, model = loaded
    images = np.concatenate([mnist_known[:100], fashion[:100]])
    expected = ood.scores(model, images, classes=threshold["classes"], weights=threshold["weights"])
    got = {k: v.numpy() for k, v in served.signatures["score"](images=tf.constant(images)).items()}
    assert set(got) == {*ood.SCORES, "known"}
    for name in ood.SCORES:
        assert got[name].dtype == np.float32
        np.testing.assert_allclose(got[name], expected[name], rtol=1e-4, atol=1e-4)
    python_known = ood.known(expected, threshold)
    near = np.abs(expected[threshold["score"]] - threshold["threshold"]) < 1e-3
    np.testing.assert_array_equal(got["known"][~near], python_known[~near])
    assert got["known"][:100].mean() > got["known"][100:].mean()  # digits kept, clothes rejected more often


def test_every_served_signature_answers_an_empty_batch(served):
    sig = served.signatures
    for name in ("serving_default", "classify", "encode", "reconstruct", "score"):
        for size in (28, 32):
            outputs = sig[name](images=tf.zeros([0, size, size, 1], tf.uint8))
            assert outputs and all(v.shape[0] == 0 for v in outputs.values()), (name, outputs)
    assert sig["score"](images=tf.zeros([0, 28, 28, 1], tf.uint8))["known"].dtype == tf.bool
    images = sig["generate"](class_id=tf.zeros([0], tf.int32), seed=tf.constant(1, tf.int64))["images"]
    assert images.shape == (0, 28, 28, 1)


def test_export_without_a_threshold_file_has_no_score_signature(run_dir, tmp_path, capsys):
    bare = tmp_path / "run"
    bare.mkdir()
    for name in ("model.keras", "config.json"):
        shutil.copy(run_dir / name, bare / name)
    assert saved_model.main(["--run", str(bare), "--output", str(tmp_path / "serving")]) == 0
    assert "no score signature" in capsys.readouterr().out
    info = json.loads((tmp_path / "serving" / "1" / "assets.extra" / "csae.json").read_text())
    assert "score" not in info["signatures"] and info["ood_threshold"] is None
    assert "score" not in tf.saved_model.load(str(tmp_path / "serving" / "1")).signatures


# --- the command ---

def test_ood_command_writes_tables_and_roc_plots_with_the_basenet_beside(run_dir, fashion, tmp_path, capsys):
    np.save(tmp_path / "fashion.npy", fashion[:200])
    out = tmp_path / "report"
    assert ood.main(["--run", str(run_dir), "--out", f"clothes={tmp_path / 'fashion.npy'},heldout", "--limit", "200",
                     "--baseline-epochs", "1", "--output", str(out)]) == 0
    report = json.loads((out / "ood.json").read_text())
    assert set(report["sets"]) == {"clothes", "heldout"}
    assert report["sets"]["heldout"]["source"] == "mnist test, classes 6,7,8,9"
    for entry in report["sets"].values():
        assert set(entry["scores"]) == {*ood.SCORES, *ood.BASELINE_SCORES}
        for m in entry["scores"].values():
            assert set(m) == {"auroc", "aupr_out", "aupr_in", "fpr_at_95_tpr"}
    assert (out / "roc_clothes.png").stat().st_size > 1000 and (out / "roc_heldout.png").exists()
    assert "| basenet_energy |" in (out / "ood.md").read_text()
    assert (out / "basenet" / "basenet.keras").exists()
    # a second call reuses the cached basenet
    capsys.readouterr()
    assert ood.main(["--run", str(run_dir), "--out", "heldout", "--limit", "100", "--baseline-epochs", "1",
                     "--output", str(out)]) == 0
    assert "training basenet" not in capsys.readouterr().out


@pytest.mark.parametrize("args, words", [
    (["--out", "heldout"], None),  # placeholder replaced below: a run dir that does not exist
    (["--out", "/nonexistent/file.npy"], "no such file"),
    (["--out", "no_such_dataset_xyz"], "no_such_dataset_xyz"),
    (["--out", "heldout", "--limit", "0"], "--limit"),
    ([], "nothing to do"),
])
def test_bad_input_gives_a_one_line_error(run_dir, tmp_path, capsys, args, words):
    if words is None:
        code = ood.main(["--run", str(tmp_path / "missing"), *args])
        words = "does not exist"
    else:
        code = ood.main(["--run", str(run_dir), *args])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.startswith("error:") and len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert words in err, err


def test_images_of_the_wrong_size_are_refused(run_dir, tmp_path, capsys):
    np.save(tmp_path / "big.npy", np.zeros((4, 40, 40), np.uint8))
    assert ood.main(["--run", str(run_dir), "--out", str(tmp_path / "big.npy"), "--baseline-epochs", "0"]) == 2
    assert "do not fit the model's input" in capsys.readouterr().err


def test_score_histogram_writes_distance_and_reconstruction_histograms(loaded, mnist_known, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    _, model = loaded
    callback = ood.ScoreHistogram(tmp_path / "ood", mnist_known[:64], classes=KNOWN)
    callback.set_model(model)
    callback.on_epoch_end(0)
    callback.on_epoch_end(1)
    callback.on_train_end()
    events = EventAccumulator(str(tmp_path / "ood"), size_guidance={"tensors": 0}).Reload()
    assert {"ood/distance", "ood/reconstruction"} <= set(events.Tags()["tensors"])
    steps = [e.step for e in events.Tensors("ood/distance")]
    assert steps == [0, 1]
    counts = tf.make_ndarray(events.Tensors("ood/distance")[0].tensor_proto)[:, 2].sum()
    assert counts == 64
