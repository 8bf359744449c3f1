"""TensorBoard monitoring of a real MNIST run: scalars, images, projector and hparams, read back through
TensorBoard's own event loader and its HTTP server."""

import io
import json
import math
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from conftest import free_ports, mnist_args

from csae_tf import fit, viz

TRAIN, EPOCHS = 1000, 4  # conftest's small_run: SMALL_RUN (Adam, constant lr 1e-3) with --image-every 1
VALIDATION = TRAIN // 12  # the default --validation-split holds out 1 image in 12: what the projector shows
MNIST_SHAPE = (28, 28, 1)
SCALARS = ("loss", "loss1", "loss2", "loss3", "accuracy")
IMAGE_TAGS = ("reconstruction", "generated", "class_mean_distances", "pedcc_distances")
HPARAMS = {"dataset": "mnist", "arch": "conv", "latent_dim": 40.0, "beta": 0.04, "lambda1": 1.0, "lambda2": 0.02,
           "optimizer": "adam"}


@pytest.fixture(scope="module")
def run_dir(small_run):
    return small_run


def _multiplexer(logdir: Path):
    from tensorboard.backend.event_processing import event_multiplexer

    mux = event_multiplexer.EventMultiplexer(size_guidance={"tensors": 0})
    mux.AddRunsFromDirectory(str(logdir))
    mux.Reload()
    return mux


def _values(mux, run: str, tag: str) -> list[float]:
    import tensorflow as tf

    return [float(tf.make_ndarray(e.tensor_proto)) for e in mux.Tensors(run, tag)]


def _image_sizes(mux, run: str, tag: str) -> list[tuple]:
    """(height, width, channels) of each image event, decoded from the stored PNG."""
    import tensorflow as tf
    from PIL import Image

    sizes = []
    for event in mux.Tensors(run, tag):
        width, height, png = tf.make_ndarray(event.tensor_proto)[:3]
        image = np.asarray(Image.open(io.BytesIO(png)))
        assert image.shape[:2] == (int(height), int(width))
        sizes.append((*image.shape[:2], 1 if image.ndim == 2 else image.shape[2]))
    return sizes


def _heatmap_shape(num_classes: int = 10) -> tuple:
    return viz.heatmap(np.zeros((num_classes, num_classes)), "size").shape


def test_loss_accuracy_and_learning_rate_are_logged_each_epoch_for_train_and_validation(run_dir):
    mux = _multiplexer(run_dir / "logs")
    for run in ("train", "validation"):
        for name in SCALARS:
            values = _values(mux, run, f"epoch_{name}")
            assert len(values) == EPOCHS, (run, name)
            assert all(math.isfinite(v) for v in values), (run, name, values)
    assert _values(mux, "train", "epoch_learning_rate") == pytest.approx([0.001] * EPOCHS)
    # Loss1 (centroid MSE) must fall as the classes gather round their centroids.
    assert _values(mux, "train", "epoch_loss1")[-1] < _values(mux, "train", "epoch_loss1")[0]


def test_each_image_tag_holds_one_image_per_epoch_of_the_expected_size(run_dir):
    mux = _multiplexer(run_dir / "logs")
    expected = {
        "reconstruction": viz.grid_shape(2, 10, MNIST_SHAPE),
        "generated": viz.grid_shape(10, 10, MNIST_SHAPE),
        "class_mean_distances": _heatmap_shape(),
        "pedcc_distances": _heatmap_shape(),
    }
    for tag in IMAGE_TAGS:
        assert _image_sizes(mux, "images", tag) == [expected[tag]] * EPOCHS, tag


def test_png_figures_have_the_grid_sizes(run_dir):
    from PIL import Image

    def size(name):
        image = Image.open(run_dir / "figures" / name)
        return image.height, image.width

    assert size("reconstruction.png") == viz.grid_shape(2, 10, MNIST_SHAPE)[:2]
    assert size("generated.png") == viz.grid_shape(10, 10, MNIST_SHAPE)[:2]
    heat = _heatmap_shape()
    assert size("distances.png") == (heat[0], 2 * heat[1])


def test_projector_holds_the_validation_codes_and_centroids_with_labels_and_sprite(run_dir):
    import tensorflow as tf
    from PIL import Image

    folder = run_dir / "logs" / "projector"
    codes = tf.train.load_variable(tf.train.latest_checkpoint(str(folder)), "latent/.ATTRIBUTES/VARIABLE_VALUE")
    assert codes.shape == (VALIDATION + 10, 40) and np.all(np.isfinite(codes))
    np.testing.assert_allclose(codes[VALIDATION:], np.load(run_dir / "centroids.npy"), atol=1e-6)
    rows = (folder / "metadata.tsv").read_text().splitlines()
    assert rows[0] == "label\tname\tkind" and len(rows) == 1 + VALIDATION + 10
    assert rows[-1].split("\t") == ["9", "9", "centroid"]
    side = math.ceil(math.sqrt(VALIDATION + 10)) * 28
    assert Image.open(folder / "sprite.png").size == (side, side)
    assert any(p.name.startswith("events.out.tfevents") for p in folder.iterdir())


def test_image_every_zero_writes_no_images_but_keeps_scalars(tfds_dir, tmp_path):
    out = tmp_path / "noimages"
    assert fit.main([*mnist_args(tfds_dir, train=256, test=64), "--epochs", "1", "--batch-size", "64",
                     "--verbose", "0", "--image-every", "0", "--output", str(out)]) == 0
    assert not (out / "logs" / "images").exists() and not (out / "figures").exists()
    assert len(_values(_multiplexer(out / "logs"), "validation", "epoch_loss2")) == 1


# --- the real TensorBoard server ---

@pytest.fixture(scope="module")
def server(run_dir, tmp_path_factory):
    port = free_ports(1)[0]
    log_path = tmp_path_factory.mktemp("tensorboard") / "tensorboard.log"
    log = open(log_path, "w")
    process = subprocess.Popen(
        [str(Path(sys.executable).parent / "tensorboard"), "--logdir", str(run_dir / "logs"), "--host", "127.0.0.1",
         "--port", str(port), "--reload_interval", "1"],
        stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 120
        while True:
            assert process.poll() is None, log_path.read_text()[-2000:]
            try:
                tags = _get(base, "/data/plugin/scalars/tags")
                if {"train", "validation"} <= set(tags):
                    break
            except OSError:
                pass
            assert time.time() < deadline, "tensorboard did not serve the runs within 120 s"
            time.sleep(1)
        yield base
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=20)
        log.close()


def _get(base: str, path: str, body: dict | None = None):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(base + path, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def test_server_serves_the_scalar_and_image_tags(server):
    scalars = _get(server, "/data/plugin/scalars/tags")
    for run in ("train", "validation"):
        assert {f"epoch_{name}" for name in SCALARS} <= set(scalars[run]), run
    assert "epoch_learning_rate" in scalars["train"]
    points = _get(server, "/data/plugin/scalars/scalars?run=validation&tag=epoch_loss1")
    assert [p[1] for p in points] == list(range(EPOCHS))
    assert set(_get(server, "/data/plugin/images/tags")["images"]) == set(IMAGE_TAGS)


def test_server_serves_the_projector_config_of_the_latent_codes(server):
    assert "projector" in _get(server, "/data/plugin/projector/runs")
    info = _get(server, "/data/plugin/projector/info?run=projector")
    [embedding] = info["embeddings"]
    assert embedding["tensorName"] == "latent/.ATTRIBUTES/VARIABLE_VALUE"
    assert embedding["tensorShape"] == [VALIDATION + 10, 40]
    assert embedding["metadataPath"] == "metadata.tsv" and embedding["sprite"]["singleImageDim"] == [28, 28]


def test_server_serves_hyperparameters_with_the_final_metrics(server, run_dir):
    experiment = _get(server, "/data/plugin/hparams/experiment", {"experimentName": ""})
    assert set(HPARAMS) <= {h["name"] for h in experiment["hparamInfos"]}
    groups = _get(server, "/data/plugin/hparams/session_groups", {
        "experimentName": "", "startIndex": 0, "sliceSize": 10, "colParams": [],
        "allowedStatuses": ["STATUS_UNKNOWN", "STATUS_SUCCESS", "STATUS_FAILURE", "STATUS_RUNNING"]})
    [group] = groups["sessionGroups"]
    assert {k: group["hparams"][k] for k in HPARAMS} == HPARAMS
    final = {m["name"]["tag"]: m["value"] for m in group["metricValues"]}
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert final["final/val_accuracy"] == pytest.approx(metrics["val_accuracy"], abs=1e-6)
    assert final["final/val_loss1"] == pytest.approx(metrics["val_loss1"], rel=1e-5)


def test_open_set_scores_of_validation_images_are_histogrammed_each_epoch(run_dir):
    import tensorflow as tf

    mux = _multiplexer(run_dir / "logs")
    for tag in ("ood/distance", "ood/reconstruction"):
        events = mux.Tensors("ood", tag)
        assert [e.step for e in events] == list(range(EPOCHS)), tag
        buckets = tf.make_ndarray(events[-1].tensor_proto)  # (bucket, 3): left edge, right edge, count
        assert buckets[:, 2].sum() == pytest.approx(VALIDATION), tag
