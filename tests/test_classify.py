"""`csae classify` and `csae_tf.load`: raw image files in, the same answers as the run and its export.

One small run (1,000 real MNIST images, one epoch) and its SavedModel export serve the whole module;
the images are real MNIST test digits written as PNG files.
"""

from __future__ import annotations

import csv
import io
import json
import shutil

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

import csae_tf
from csae_tf import classify, data, ood, predictor
from csae_tf.runs import load_run
from export import saved_model

DIGITS = 12


@pytest.fixture(scope="module")
def run_dir(small_run):
    return small_run


@pytest.fixture(scope="module")
def export_base(small_export):
    return small_export


@pytest.fixture(scope="module")
def digits(tfds_dir) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 (N, 28, 28, 1), labels) of the first MNIST test digits."""
    images, labels = data.as_numpy(data.load_split(data.prepare("mnist", str(tfds_dir)), "test", limit=DIGITS)
                                   .batch(DIGITS))
    return images, labels


@pytest.fixture(scope="module")
def png_dir(digits, tmp_path_factory):
    folder = tmp_path_factory.mktemp("pngs")
    for i, image in enumerate(digits[0]):
        Image.fromarray(image[..., 0]).save(folder / f"digit_{i:02d}.png")
    return folder


def classify_rows(capsys, *args: str) -> tuple[int, str, str]:
    status = classify.main(list(args))
    out = capsys.readouterr()
    return status, out.out, out.err


def test_classify_on_png_files_gives_the_labels_of_the_export_and_of_the_run(run_dir, export_base, png_dir, digits,
                                                                              capsys):
    """The same digits, three ways: PNG files through `csae classify`, the SavedModel's classify signature,
    and the run's Keras model."""
    status, out, err = classify_rows(capsys, "--model", str(run_dir), "--format", "json", str(png_dir))
    assert status == 0, err
    rows = json.loads(out)
    assert [r["file"] for r in rows] == [str(png_dir / f"digit_{i:02d}.png") for i in range(DIGITS)]
    from_pngs = np.array([r["label"] for r in rows])

    served = tf.saved_model.load(str(export_base / "1")).signatures["classify"](images=tf.constant(digits[0]))
    _, model = load_run(run_dir)
    from_run = np.asarray(model.classify(data.to_model_input(digits[0], tuple(model.image_shape)))[0])
    np.testing.assert_array_equal(from_pngs, served["label"].numpy())
    np.testing.assert_array_equal(from_pngs, from_run)


def test_classify_through_the_export_gives_the_same_rows_as_through_the_run(run_dir, export_base, png_dir, capsys):
    by_run = json.loads(classify_rows(capsys, "--model", str(run_dir), "--format", "json", str(png_dir))[1])
    by_export = json.loads(classify_rows(capsys, "--model", str(export_base), "--format", "json", str(png_dir))[1])
    assert [r["label"] for r in by_run] == [r["label"] for r in by_export]
    np.testing.assert_allclose([r["distance"] for r in by_run], [r["distance"] for r in by_export], atol=1e-3)


def test_csv_and_table_formats_hold_the_same_answers_as_json(run_dir, png_dir, capsys):
    rows = json.loads(classify_rows(capsys, "--model", str(run_dir), "--format", "json", str(png_dir))[1])
    parsed = list(csv.DictReader(io.StringIO(classify_rows(capsys, "--model", str(run_dir), "--format", "csv",
                                                           str(png_dir))[1])))
    assert list(parsed[0]) == ["file", "label", "class_name", "distance", "margin"]
    assert [(p["file"], int(p["label"]), p["class_name"]) for p in parsed] == \
        [(r["file"], r["label"], r["class_name"]) for r in rows]
    table = classify_rows(capsys, "--model", str(run_dir), str(png_dir))[1].splitlines()
    assert table[0].split() == ["file", "label", "class", "distance", "margin"]
    assert [line.split()[1] for line in table[1:]] == [str(r["label"]) for r in rows]


def test_class_names_are_the_datasets_and_margin_is_second_minus_nearest(run_dir, digits):
    answers = csae_tf.load(run_dir).classify(digits[0])
    assert set(answers) == {"label", "class_name", "distance", "margin"}  # no reject option: no `known`
    assert list(answers["class_name"]) == [str(label) for label in answers["label"]]  # mnist names "0".."9"
    _, model = load_run(run_dir)
    distances = np.sort(np.asarray(model.classify(data.to_model_input(digits[0], (32, 32, 1)))[1]), axis=1)
    np.testing.assert_allclose(answers["distance"], distances[:, 0], rtol=1e-5)
    np.testing.assert_allclose(answers["margin"], distances[:, 1] - distances[:, 0], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("which", ["run", "base", "version"])
def test_load_opens_a_run_an_export_base_and_one_export_version(run_dir, export_base, digits, which):
    path = {"run": run_dir, "base": export_base, "version": export_base / "1"}[which]
    loaded = csae_tf.load(path)
    assert isinstance(loaded, predictor.RunPredictor if which == "run" else predictor.SavedModelPredictor)
    answers = loaded.classify(digits[0][..., 0])  # (N, 28, 28): no channel axis
    assert answers["label"].shape == (DIGITS,) and answers["label"].dtype == np.int64
    assert (answers["margin"] >= 0).all()


def test_each_image_of_an_npy_file_is_answered_as_file_index(run_dir, digits, tmp_path, capsys):
    np.save(tmp_path / "batch.npy", digits[0][:3])
    status, out, _ = classify_rows(capsys, "--model", str(run_dir), "--format", "json", str(tmp_path / "batch.npy"))
    assert status == 0
    assert [r["file"] for r in json.loads(out)] == [f"{tmp_path / 'batch.npy'}[{i}]" for i in range(3)]


def test_bad_files_are_one_line_errors_naming_them_and_the_others_are_still_answered(run_dir, digits, tmp_path,
                                                                                     capsys):
    """A wrong size, a colour PNG for a grey model and a corrupt .npz: exit 1, no traceback, good files answered."""
    Image.fromarray(digits[0][0, ..., 0]).save(tmp_path / "good.png")
    Image.fromarray(digits[0][1, :20, :20, 0]).save(tmp_path / "small.png")
    Image.fromarray(digits[0][2, ..., 0]).convert("RGB").save(tmp_path / "colour.png")
    (tmp_path / "corrupt.npz").write_bytes(b"PK\x03\x04 not a zip archive")
    status, out, err = classify_rows(capsys, "--model", str(run_dir), "--format", "csv", str(tmp_path),
                                     str(tmp_path / "missing.png"))
    assert status == 1
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 4, err
    for name in ("small.png", "colour.png", "corrupt.npz", "missing.png"):
        assert any(line.startswith("error: ") and name in line for line in errors), name
    assert [row["file"] for row in csv.DictReader(io.StringIO(out))] == [str(tmp_path / "good.png")]


def test_a_missing_model_is_a_usage_error(tmp_path, png_dir, capsys):
    status, _, err = classify_rows(capsys, "--model", str(tmp_path / "nope"), str(png_dir))
    assert status == 2 and err.strip() == f"error: model {tmp_path / 'nope'} does not exist"


def test_a_model_path_that_is_a_file_is_a_usage_error(tmp_path, png_dir, capsys):
    (tmp_path / "model.keras").write_text("")
    status, _, err = classify_rows(capsys, "--model", str(tmp_path / "model.keras"), str(png_dir))
    assert status == 2 and "is a file" in err and len(err.strip().splitlines()) == 1


def test_a_run_with_an_open_set_threshold_adds_known_and_prints_unknown(run_dir, png_dir, tmp_path, capsys):
    """With RUN/ood_threshold.json (csae ood --calibrate), images scoring above the threshold are rejected."""
    run = shutil.copytree(run_dir, tmp_path / "run")
    distances = csae_tf.load(run).classify(np.stack([np.asarray(Image.open(p))
                                                     for p in sorted(png_dir.glob("*.png"))]))["distance"]
    threshold = float(np.median(distances))
    weights = {k: [0.0, 1.0] for k in ood.COMPONENTS}
    (run / ood.THRESHOLD_FILE).write_text(json.dumps({"score": "distance", "threshold": threshold, "weights": weights}))
    loaded = csae_tf.load(run)
    assert loaded.has_reject_option
    rows = json.loads(classify_rows(capsys, "--model", str(run), "--format", "json", str(png_dir))[1])
    known = np.array([r["known"] for r in rows])
    np.testing.assert_array_equal(known, distances <= threshold + 1e-6)
    assert 0 < known.sum() < len(rows)
    assert all(r["class_name"] == "unknown" for r in rows if not r["known"])


def test_export_to_an_output_that_is_a_file_is_a_one_line_error(run_dir, tmp_path, capsys):
    (tmp_path / "taken").write_text("")
    assert saved_model.main(["--run", str(run_dir), "--output", str(tmp_path / "taken")]) == 2
    assert capsys.readouterr().err.strip() == f"error: --output {tmp_path / 'taken'} is a file, not a folder"
