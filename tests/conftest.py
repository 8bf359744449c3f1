"""Shared test fixtures: real MNIST from ../shared/data prepared once through TFDS, CLI helpers."""

from __future__ import annotations

import contextlib
import fcntl
import io
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("CSAE_SHARED_DATA", ROOT.parent / "shared" / "data"))
MNIST_FILES = SHARED_DATA / "mnist"

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _import_csae_tf_quietly() -> None:
    """Import csae_tf (and so TensorFlow) with stderr's descriptor on /dev/null: TF 2.21 prints a few INFO
    lines through absl while its libraries load, whatever TF_CPP_MIN_LOG_LEVEL says (as in `csae_tf.cli`)."""
    sys.stderr.flush()
    saved, null = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, 2)
        import csae_tf  # noqa: F401  (before any test module loads TensorFlow: it sets TensorFlow's oneDNN switch)
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(null)


_import_csae_tf_quietly()


def _shared_root(tmp_path_factory, worker_id: str) -> Path:
    """A folder that every pytest-xdist worker of this test session sees (its own one without xdist)."""
    return tmp_path_factory.getbasetemp().parent if worker_id != "master" else tmp_path_factory.getbasetemp()


def built_once(tmp_path_factory, worker_id: str, name: str, build: Callable[[Path], None]) -> Path:
    """`root/name`, made by `build(path)` once per test session: the first worker to take the lock builds
    it, the others wait and reuse it. Tests must not change what it holds (copy it first)."""
    root = _shared_root(tmp_path_factory, worker_id)
    out, done = root / name, root / f"{name}.done"
    with open(root / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        if not done.exists():
            shutil.rmtree(out, ignore_errors=True)
            build(out)
            done.touch()
    return out


@pytest.fixture(scope="session")
def tfds_dir(tmp_path_factory, worker_id) -> Path:
    """A TFDS data directory with MNIST prepared from the real files (once per test session)."""
    from csae_tf import data

    if not MNIST_FILES.is_dir():
        pytest.fail(f"real MNIST files are required at {MNIST_FILES} (set CSAE_SHARED_DATA)")
    def prepare(out: Path) -> None:
        data.prepare("mnist", str(out), str(MNIST_FILES))

    if os.environ.get("CSAE_TEST_TFDS_DIR"):  # a folder of the caller's, prepared in place
        prepare(Path(os.environ["CSAE_TEST_TFDS_DIR"]))
        return Path(os.environ["CSAE_TEST_TFDS_DIR"])
    return built_once(tmp_path_factory, worker_id, "tfds", prepare)


# 250 steps on 1,000 images: generated samples mostly right (3 epochs at batch 16: 7 of 10 classes)
SMALL_RUN = ["--epochs", "4", "--batch-size", "16", "--optimizer", "adam", "--lr", "0.001", "--schedule", "constant",
             "--verbose", "2"]


@pytest.fixture(scope="session")
def small_run(tfds_dir, tmp_path_factory, worker_id) -> Path:
    """A finished MNIST run (1,000 training / 200 test images, SMALL_RUN, TensorBoard images every epoch),
    shared by the test modules."""
    def build(out):
        result = run_cli("csae_tf.fit", *mnist_args(tfds_dir, train=1000, test=200), *SMALL_RUN, "--image-every", "1",
                         "--output", str(out))
        assert result.returncode == 0, result.stderr[-3000:]

    return built_once(tmp_path_factory, worker_id, "small_run", build)


# 2 epochs of 2,000 MNIST images (166 held out) at batch 64, tested on the whole test split
FIT_2000 = ["--epochs", "2", "--batch-size", "64", "--lr", "0.05", "--schedule", "cosine", "--verbose", "2"]


@pytest.fixture(scope="session")
def mnist_2000_run(tfds_dir, tmp_path_factory, worker_id) -> Path:
    """A finished float32 run of FIT_2000 (test_fit's subject, test_precision's reference); its stderr is
    saved beside it as `mnist_2000_run.stderr`."""
    def build(out):
        result = run_cli("csae_tf.fit", *mnist_args(tfds_dir, test=None), *FIT_2000, "--output", str(out),
                         timeout=400)
        assert result.returncode == 0, result.stderr[-3000:]
        out.with_suffix(".stderr").write_text(result.stderr)

    return built_once(tmp_path_factory, worker_id, "mnist_2000_run", build)


@pytest.fixture(scope="session")
def small_export(small_run, tmp_path_factory, worker_id) -> Path:
    """`csae export` of `small_run`: an export base holding version 1."""
    from export import saved_model

    def build(base):
        assert f"{base / '1'}" in printed_by(saved_model.main, "--run", str(small_run), "--output", str(base))

    return built_once(tmp_path_factory, worker_id, "small_export", build)


def free_ports(n: int) -> list[int]:
    """`n` distinct free TCP ports on loopback (all held open together, so no two are the same)."""
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def run_cli(*args: str, timeout: float = 300, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run `python -m <args>` from the repository root; bounded in time."""
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})},
    )


def printed_by(main: Callable[[list[str]], int], *args: str) -> str:
    """What a command's `main(args)` printed, run in this process (no TensorFlow import of its own); it must
    succeed."""
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        status = main(list(args))
    assert status == 0, printed.getvalue()[-3000:]
    return printed.getvalue()


def mnist_args(tfds_dir: Path, train: int = 2000, test: int | None = 500) -> list[str]:
    """fit flags for the first `train` MNIST training images and `test` test images (None: all 10,000)."""
    return ["--dataset", "mnist", "--data-dir", str(tfds_dir), "--manual-dir", str(MNIST_FILES),
            "--train-limit", str(train), *(["--test-limit", str(test)] if test is not None else [])]


# The slowest modules first (their measured durations), so that pytest-xdist's workers, which take whole
# modules in this order (pyproject's --no-loadscope-reorder), end together instead of one finishing a long
# module alone. test_models, which needs no MNIST, runs second: it keeps the other worker busy while
# the first prepares MNIST for everything else.
SLOW_FIRST = ("test_resume", "test_models", "test_precision", "test_tuning", "test_baselines", "test_evaluate",
              "test_distribute", "test_fit", "test_compare", "test_ood", "test_reproduce", "test_export",
              "test_performance_paths")


def pytest_collection_modifyitems(items):
    rank = {name: i for i, name in enumerate(SLOW_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.stem, len(rank)))  # stable: the rest keep their order
