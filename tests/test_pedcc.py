"""PEDCC: norms, the exact simplex, the paper's repulsion, packing beyond d + 1, determinism, errors."""

import math
import subprocess
import sys
import time

import numpy as np
import pytest

from csae_tf import pedcc


def unit_cosines(c):
    u = c / np.linalg.norm(c, axis=1, keepdims=True)
    cos = u @ u.T
    return cos[~np.eye(len(c), dtype=bool)]


@pytest.mark.parametrize("method", ["simplex", "repulsion", "packing", "auto"])
def test_every_centroid_has_norm_sqrt_d(method):
    c = pedcc.generate(10, 40, method=method)
    assert c.dtype == np.float32 and c.shape == (10, 40)
    np.testing.assert_allclose(np.linalg.norm(c, axis=1), math.sqrt(40), rtol=1e-6)


@pytest.mark.parametrize("n,d", [(2, 1), (10, 40), (11, 10), (100, 512)])
def test_simplex_pairwise_cosine_is_minus_one_over_n_minus_one(n, d):
    cos = unit_cosines(pedcc.generate(n, d, method="simplex").astype(np.float64))
    np.testing.assert_allclose(cos, -1.0 / (n - 1), atol=1e-6)


def test_paper_repulsion_reaches_the_simplex_for_10_classes_in_40_dims():
    # The paper's 200 iterations reach -0.1094 (1.5% short); 1,000 iterations converge.
    c = pedcc.generate(10, 40, method="repulsion", iterations=1000)
    assert abs(unit_cosines(c).max() - (-1 / 9)) <= 0.01 / 9


def test_paper_repulsion_is_vectorised_and_keeps_its_defaults():
    short = pedcc.generate(10, 40, method="repulsion")
    assert unit_cosines(short).max() < -0.10  # 200 iterations, step 0.01, eps 0.01


def test_20_points_on_the_sphere_approach_the_tammes_optimum():
    # Tammes problem, N = 20 on S^2: optimal minimum angle 47.431 degrees (Sloane's packing tables).
    q = pedcc.quality(pedcc.generate(20, 3))
    assert q["min_angle_degrees"] >= 47.0


def test_1000_classes_in_512_dims_near_rankins_bound_in_bounded_time():
    # Rankin's bound: n >= d + 2 forces max cosine >= 0, reached by the cross-polytope for n <= 2d.
    start = time.time()
    q = pedcc.quality(pedcc.generate(1000, 512))
    assert time.time() - start < 60
    assert q["best_max_cosine_bound"] == 0.0
    assert q["max_cosine"] <= 0.02


@pytest.mark.parametrize("n,d,method", [(10, 40, "simplex"), (41, 40, "simplex"), (42, 40, "cross-polytope"),
                                        (80, 40, "cross-polytope"), (100, 64, "cross-polytope"), (81, 40, "packing")])
def test_auto_takes_the_exact_layout_wherever_one_exists(n, d, method):
    # n <= d + 1: the simplex (max cosine -1/(n-1)); n <= 2d: the cross-polytope reaches Rankin's bound 0
    # exactly; beyond, no exact layout is known and the packing solver is used.
    assert pedcc.auto_method(n, d) == method
    auto = pedcc.generate(n, d, seed=5, **({"iterations": 50} if method == "packing" else {}))
    named = pedcc.generate(n, d, method=method, seed=5, **({"iterations": 50} if method == "packing" else {}))
    assert np.array_equal(auto, named)
    q = pedcc.quality(auto)
    if method != "packing":
        assert q["gap_to_bound"] == pytest.approx(0, abs=1e-6), q


def test_auto_for_100_classes_in_64_dims_has_zero_max_cosine():
    # Issue 13 item 6: the packing solver gave 6.2e-4 here where an exact layout with 0 exists.
    assert pedcc.quality(pedcc.generate(100, 64))["max_cosine"] == pytest.approx(0, abs=1e-6)


def test_same_seed_gives_identical_centroids_and_other_seed_differs():
    for method, n, d in (("simplex", 8, 12), ("repulsion", 12, 8), ("packing", 12, 8), ("cross-polytope", 12, 8),
                         ("auto", 30, 8)):
        a = pedcc.generate(n, d, method=method, seed=3)
        assert np.array_equal(a, pedcc.generate(n, d, method=method, seed=3))
        assert not np.array_equal(a, pedcc.generate(n, d, method=method, seed=4))


def test_same_seed_gives_the_same_bits_in_another_process():
    # A fresh interpreter (its own BLAS state and thread pool) reproduces the array bit for bit. It loads
    # pedcc.py alone: the module needs numpy only, and the csae_tf package would load TensorFlow.
    code = ("import importlib.util, sys; spec = importlib.util.spec_from_file_location('pedcc', sys.argv[1]); "
            "m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m); "
            "sys.stdout.write(m.generate(30, 8, seed=3).tobytes().hex())")
    child = subprocess.run([sys.executable, "-c", code, pedcc.__file__], capture_output=True, text=True, timeout=120)
    assert child.returncode == 0, child.stderr[-2000:]
    assert bytes.fromhex(child.stdout) == pedcc.generate(30, 8, seed=3).tobytes()


def test_quality_report_names_the_simplex_bound():
    q = pedcc.quality(pedcc.generate(10, 40))
    assert q["simplex_bound"] == pytest.approx(-1 / 9)
    assert q["min_distance_unit"] == pytest.approx(math.sqrt(2 * 10 / 9), rel=1e-6)


def test_cross_polytope_reaches_zero_max_cosine():
    assert pedcc.quality(pedcc.generate(30, 16, method="cross-polytope"))["max_cosine"] == pytest.approx(0, abs=1e-6)


@pytest.mark.parametrize("kwargs,message", [
    (dict(num_classes=0, latent_dim=4), "num_classes"),
    (dict(num_classes=3, latent_dim=0), "latent_dim"),
    (dict(num_classes=12, latent_dim=4, method="simplex"), "latent_dim >= 11"),
    (dict(num_classes=3, latent_dim=4, method="magic"), "unknown PEDCC method"),
])
def test_bad_arguments_raise_clear_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        pedcc.generate(**kwargs)


def test_cli_prints_the_report_and_saves(tmp_path, capsys):
    out = tmp_path / "c.npy"
    assert pedcc.main(["--classes", "10", "--latent-dim", "40", "--output", str(out)]) == 0
    assert '"max_cosine"' in capsys.readouterr().out
    assert np.load(out).shape == (10, 40)


def test_cli_bad_input_exits_non_zero(capsys):
    assert pedcc.main(["--classes", "0", "--latent-dim", "40"]) == 2
    assert "num_classes" in capsys.readouterr().err
