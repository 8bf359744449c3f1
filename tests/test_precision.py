"""Mixed precision on the CPU: a bfloat16 run trains like a float32 one, keeps its centroids and losses in
float32, and exports the same uint8-in / float32-out signatures."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tensorflow as tf
from conftest import FIT_2000, mnist_args

from csae_tf import fit


@pytest.fixture(scope="module")
def runs(tfds_dir, tmp_path_factory, request):
    """The same run (conftest's FIT_2000) in mixed_bfloat16 and in float32, the latter shared with test_fit.
    The bfloat16 one compiles its steps with XLA (as `auto` does on CPUs without AVX-512), on every CPU."""
    bf16 = tmp_path_factory.mktemp("precision") / "mixed_bfloat16"
    assert fit.main([*mnist_args(tfds_dir, test=None), *FIT_2000, "--image-every", "0", "--precision",
                     "mixed_bfloat16", "--jit-compile", "on", "--output", str(bf16)]) == 0
    # asked for only now: by then test_fit, which runs first, has usually built it on the other worker
    return {"float32": request.getfixturevalue("mnist_2000_run"), "mixed_bfloat16": bf16}


def _metrics(run) -> dict:
    return json.loads((run / "metrics.json").read_text())


def test_a_bfloat16_run_trains_with_finite_losses_to_float32_accuracy(runs):
    f32, bf16 = _metrics(runs["float32"]), _metrics(runs["mixed_bfloat16"])
    assert all(np.isfinite(v) for k, v in bf16.items() if k.startswith(("val_", "test_")))
    # measured on the 10,000 test images: 0.9236 (float32) and 0.9207 (bfloat16 through XLA, CPUs without
    # AVX-512); on the first 500 before: 0.928, 0.930 and 0.934 (bfloat16 on Eigen). Two points is a wide margin
    assert bf16["test_accuracy"] > 0.8
    assert abs(bf16["test_accuracy"] - f32["test_accuracy"]) < 0.02


def test_a_bfloat16_model_keeps_float32_centroids_codes_and_outputs(runs):
    import keras

    import csae_tf  # noqa: F401

    model = keras.models.load_model(runs["mixed_bfloat16"] / "model.keras")
    assert model.pedcc.centroids.dtype == "float32"
    assert model.encoder.get_layer("stem_conv").compute_dtype == "bfloat16"
    images = np.zeros((2, 28, 28, 1), np.uint8)
    assert model.encode(images).dtype == tf.float32
    assert model.reconstruct(images).dtype == tf.float32
    labels, distances = model.classify(images)
    assert distances.dtype == tf.float32 and labels.shape == (2,)


def test_a_bfloat16_export_answers_like_a_float32_one(runs, tmp_path):
    from export import saved_model

    images = tf.constant(np.random.default_rng(0).integers(0, 256, (4, 28, 28, 1)), tf.uint8)
    answers = {}
    for precision, run in runs.items():
        target = saved_model.export(run, tmp_path / precision)
        classify = tf.saved_model.load(str(target)).signatures["classify"]
        answers[precision] = {k: v for k, v in classify(images=images).items()}
    f32, bf16 = answers["float32"], answers["mixed_bfloat16"]
    assert set(f32) == set(bf16)
    for key in f32:
        assert f32[key].dtype == bf16[key].dtype and f32[key].shape == bf16[key].shape, key


def test_bfloat16_on_a_cpu_without_avx512_warns_that_float32_trains_faster():
    from csae_tf.trainer import precision_warning

    assert "no AVX-512" in precision_warning("mixed_bfloat16", 0, {"avx2", "fma"}, xla=False)
    assert "XLA" in precision_warning("mixed_bfloat16", 0, {"avx2", "fma"}, xla=True)
    assert precision_warning("mixed_bfloat16", 0, {"avx2", "avx512f", "avx512_bf16"}, xla=False) is None
    assert precision_warning("mixed_bfloat16", 1, {"avx2"}, xla=False) is None  # a GPU computes it
    assert precision_warning("float32", 0, {"avx2"}, xla=False) is None
    assert precision_warning("mixed_bfloat16", 0, set(), xla=False) is None  # flags unknown: no guess


def test_jit_compile_auto_uses_xla_for_mixed_precision_on_a_cpu_without_avx512_only():
    from csae_tf.trainer import resolve_jit_compile

    avx2, avx512 = {"avx2", "fma"}, {"avx2", "avx512f", "avx512_bf16"}
    assert resolve_jit_compile("auto", "mixed_bfloat16", 0, avx2) is True
    assert resolve_jit_compile("auto", "mixed_float16", 0, avx2) is True
    assert resolve_jit_compile("auto", "float32", 0, avx2) == "auto"  # Keras: off on CPUs, measured slower
    assert resolve_jit_compile("auto", "mixed_bfloat16", 0, avx512) == "auto"  # oneDNN's bfloat16 kernels
    assert resolve_jit_compile("auto", "mixed_bfloat16", 1, avx2) == "auto"  # Keras: on for GPUs
    assert resolve_jit_compile("auto", "mixed_bfloat16", 0, avx2, replicas=2) == "auto"  # XLA fails mirrored on CPUs
    assert resolve_jit_compile("auto", "mixed_bfloat16", 0, avx2, deterministic=True) == "auto"
    assert resolve_jit_compile("auto", "mixed_bfloat16", 0, set()) == "auto"  # flags unknown: no guess
    assert resolve_jit_compile("off", "mixed_bfloat16", 0, avx2) is False
    assert resolve_jit_compile("on", "float32", 0, avx512) is True


def test_gpu_benchmark_without_a_gpu_runs_the_tiny_table_on_cpu_and_says_so(tfds_dir, tmp_path):
    import os
    import subprocess
    import sys

    from conftest import ROOT

    out = tmp_path / "gpu.json"
    # one batch size and CSAE-L: every row compiles its own step (XLA: 12-15 s for CSAE-C on a CPU; the
    # bfloat16 run above compiles CSAE-C with XLA)
    result = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu.sh"), "--data-dir", str(tfds_dir),
                             "--batch-sizes", "8", "--arch", "linear", "--output", str(out)], cwd=ROOT,
                            capture_output=True, text=True, timeout=600,
                            env={**os.environ, "PYTHON": sys.executable})  # the interpreter of these tests
    assert result.returncode == 0, result.stderr[-3000:]
    assert "no GPU visible" in result.stdout and "say nothing about a GPU" in result.stdout
    table = json.loads(out.read_text())
    assert table["device"].startswith("CPU") and table["arch"] == "linear"
    rows = {(r["precision"], r["xla"], r["batch"]) for r in table["rows"]}
    assert rows == {(p, x, b) for p in ("float32", "mixed_bfloat16", "mixed_float16") for x in (False, True)
                    for b in (8,)}
    assert all(r["images_per_s"] > 0 for r in table["rows"])


def test_xla_compiles_and_trains_a_float16_step_with_loss_scaling():
    import keras

    from csae_tf.config import FitConfig
    from csae_tf.models import build_model
    from csae_tf.trainer import compile_model, set_precision

    cfg = FitConfig(arch="linear", lr=0.05, precision="mixed_float16", jit_compile="on")
    set_precision(cfg.precision)
    try:
        keras.utils.set_random_seed(0)
        model = compile_model(build_model(cfg, 4, (16, 16, 1)), cfg, steps_per_epoch=4)
    finally:
        set_precision("float32")
    assert model.jit_compile is True and isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    rng = np.random.default_rng(0)
    images, labels = rng.uniform(-1, 1, (32, 16, 16, 1)).astype("float32"), rng.integers(0, 4, 32)
    logs = model.fit(images, labels, batch_size=8, epochs=1, verbose=0).history
    assert all(np.isfinite(values[-1]) for values in logs.values()), logs
    assert model.encoder.get_layer("hidden").compute_dtype == "float16"
    assert model.pedcc.centroids.dtype == "float32"
