"""The speed paths of csae_tf (PEDCC solvers, cached splits) give the same answers as the plain ones."""

import os
import subprocess
import sys
import tracemalloc
from pathlib import Path

import numpy as np

from csae_tf import pedcc
from tests.conftest import ROOT

sys.path.insert(0, str(ROOT / "benchmarks"))


def test_helmert_simplex_equals_the_qr_construction_up_to_rotation():
    n = 7
    centred = np.eye(n) - 1.0 / n
    basis, _ = np.linalg.qr(centred[:, : n - 1])
    by_qr = pedcc._normalise(centred @ basis)
    by_helmert = pedcc._normalise(pedcc._helmert(n))
    np.testing.assert_allclose(by_helmert @ by_helmert.T, by_qr @ by_qr.T, atol=1e-12)


def test_chunked_packing_equals_unchunked(monkeypatch):
    dense = pedcc.generate(60, 8, method="packing", iterations=50, seed=1)
    monkeypatch.setattr(pedcc, "_CHUNK", 7)
    chunked = pedcc.generate(60, 8, method="packing", iterations=50, seed=1)
    np.testing.assert_allclose(chunked, dense, atol=1e-4)


def test_neighbour_lists_reach_the_all_pairs_separation(monkeypatch):
    all_pairs = pedcc.quality(pedcc.generate(300, 8, method="packing", iterations=300))["max_cosine"]
    monkeypatch.setattr(pedcc, "_NEIGHBOUR_WORK", 0)
    near = pedcc.quality(pedcc.generate(300, 8, method="packing", iterations=300))["max_cosine"]
    assert near <= all_pairs + 0.03
    assert np.array_equal(pedcc.generate(300, 8, method="packing", iterations=40, seed=2),
                          pedcc.generate(300, 8, method="packing", iterations=40, seed=2))


def test_neighbour_packing_never_holds_an_n_by_n_matrix(monkeypatch):
    n, d = 3000, 16
    monkeypatch.setattr(pedcc, "_NEIGHBOUR_WORK", 0)
    monkeypatch.setattr(pedcc, "_CHUNK", 256)  # memory is O(chunk * n): 256 rows of 3000 cosines
    tracemalloc.start()
    pedcc.generate(n, d, method="packing", iterations=4)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < n * n * 4  # less than one float32 Gram matrix


def test_delsarte_certificate_reproduces_rankin_and_levenshtein():
    import pedcc_scale

    # s = 0: Rankin's 2d; s = 0.05, d = 128: Levenshtein's L3 = d (1-s)(2+(d+1)s) / (1-d s^2) = 1511.06.
    assert abs(pedcc_scale.delsarte_capacity(128, 0.0) - 256) < 1e-6
    assert abs(pedcc_scale.delsarte_capacity(128, 0.05) - 1511.0588) < 0.01
    s = pedcc_scale.delsarte_bound(5000, 128)
    assert pedcc_scale.delsarte_capacity(128, s) < 5000 <= pedcc_scale.delsarte_capacity(128, s + 2e-4)


def test_forward_flops_of_csae_c_count_the_spec_layers():
    import throughput

    assert throughput.forward_flops() == 2 * 15_446_592


def test_a_decoded_split_is_cached_and_read_back_without_tfds(tfds_dir, monkeypatch):
    from csae_tf import data

    builder = data.prepare("mnist", str(tfds_dir))
    cache = Path(builder.data_dir) / "csae_arrays" / "test.npz"
    cache.unlink(missing_ok=True)
    decoded = data.read_split(builder, "test", limit=700, classes=[1, 7])  # TFDS's own filtered read
    assert not cache.exists()  # a part of a split is not cached
    first = data.read_split(builder, "test")  # decodes the whole split through TFDS and caches it
    assert cache.is_file()

    def no_tfds(*args, **kwargs):
        raise AssertionError("read through TFDS although the split is cached")

    monkeypatch.setattr(data, "load_split", no_tfds)
    again = data.read_split(builder, "test")
    np.testing.assert_array_equal(again.images, first.images)
    np.testing.assert_array_equal(again.labels, first.labels)
    cached = data.read_split(builder, "test", limit=700, classes=[1, 7])
    np.testing.assert_array_equal(cached.images, decoded.images)
    np.testing.assert_array_equal(cached.labels, decoded.labels)
    assert cached.labels.dtype == np.int32


def test_no_pipeline_starts_a_tf_data_autotuning_thread():
    """Deleting an iterator waits for its autotuning thread's sleep: the idle seconds at epoch boundaries."""
    import tensorflow as tf

    from csae_tf import data

    arrays = data.Arrays(np.zeros((64, 28, 28, 1), np.uint8), np.zeros(64, np.int32))
    info = data.DatasetInfo("mnist", 10, (32, 32, 1), (28, 28, 1), 64, 64, tuple("0123456789"))
    pipelines = [data.training_pipeline(arrays, info, 16, seed=0, epochs=2),
                 data.evaluation_pipeline(arrays, info, 16),
                 data.pipeline(tf.data.Dataset.from_tensor_slices((arrays.images, arrays.labels)), info, 16,
                               training=True)]
    assert [ds.options().autotune.enabled for ds in pipelines] == [False, False, False]


def test_onednn_verbose_lines_between_the_markers_are_summed_per_step_and_shape():
    import onednn_primitives as op

    exec_line = ("onednn_verbose,v1,primitive,exec,cpu,convolution,jit:avx512_core,backward_weights,src:f32 dst:f32,,"
                 "alg:convolution_direct,mb128_ic16oc16_ih32oh32kh3sh1dh0ph1_iw32ow32kw3sw1dw0pw1,{ms}")
    reorder = "onednn_verbose,v1,primitive,exec,cpu,reorder,jit:uni,undef,src:f32 dst:f32,,,16x16x3x3,{ms}"
    log = "\n".join([exec_line.format(ms=9.0), op.START, exec_line.format(ms=2.0), exec_line.format(ms=4.0),
                     reorder.format(ms=0.5), reorder.format(ms=1.5), "onednn_verbose,v1,info,cpu,isa:avx512",
                     op.END, exec_line.format(ms=9.0)])
    prims = op.primitives(log, steps=2)
    conv = prims["convolution backward_weights mb128_ic16oc16_ih32oh32kh3sh1dh0ph1_iw32ow32kw3sw1dw0pw1"]
    assert (conv["ms"], conv["calls"], conv["impl"]) == (3.0, 1, "jit:avx512_core")
    assert prims["reorder (weights)"]["ms"] == 1.0
    assert op.families(prims) == {"convolution backward_weights": 3.0, "reorder (weights)": 1.0}


def _onednn_state(**env: str) -> list[str]:
    """(TF_ENABLE_ONEDNN_OPTS, whether TensorFlow runs its oneDNN kernels) of a fresh process importing csae_tf."""
    code = ("import os, csae_tf\nfrom tensorflow.python.framework import test_util\n"
            "print(os.environ.get('TF_ENABLE_ONEDNN_OPTS'), test_util.IsMklEnabled())")
    child = {k: v for k, v in os.environ.items() if k != "TF_ENABLE_ONEDNN_OPTS"} | env
    done = subprocess.run([sys.executable, "-c", code], env=child, capture_output=True, text=True, timeout=120)
    return done.stdout.split()[-2:]


def test_importing_csae_tf_turns_tensorflows_onednn_kernels_on_for_cpus_tensorflow_leaves_them_off_on():
    """TensorFlow enables oneDNN by default only with AVX-512 VNNI / BF16 or AMX; AVX2 CPUs train faster with it."""
    assert _onednn_state() == ["1", "True"]


def test_tf_enable_onednn_opts_0_still_turns_tensorflows_onednn_kernels_off():
    assert _onednn_state(TF_ENABLE_ONEDNN_OPTS="0") == ["0", "False"]
