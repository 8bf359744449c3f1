"""Shared test fixtures: real MNIST from ../shared/data prepared once through TFDS, CLI helpers."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("CSAE_SHARED_DATA", ROOT.parent / "shared" / "data"))
MNIST_FILES = SHARED_DATA / "mnist"

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@pytest.fixture(scope="session")
def tfds_dir(tmp_path_factory, worker_id) -> Path:
    """A TFDS data directory with MNIST prepared from the real files, once per test session: the
    pytest-xdist workers share one, the first to take the lock prepares it."""
    from csae_tf import data

    if not MNIST_FILES.is_dir():
        pytest.fail(f"real MNIST files are required at {MNIST_FILES} (set CSAE_SHARED_DATA)")
    shared = tmp_path_factory.getbasetemp().parent if worker_id != "master" else tmp_path_factory.mktemp("data")
    directory = Path(os.environ.get("CSAE_TEST_TFDS_DIR") or shared / "tfds")
    with open(shared / "tfds.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        data.prepare("mnist", str(directory), str(MNIST_FILES))
    return directory


def run_cli(*args: str, timeout: float = 300, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run `python -m <args>` from the repository root; bounded in time."""
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})},
    )


def mnist_args(tfds_dir: Path, train: int = 2000, test: int = 500) -> list[str]:
    return ["--dataset", "mnist", "--data-dir", str(tfds_dir), "--manual-dir", str(MNIST_FILES),
            "--train-limit", str(train), "--test-limit", str(test)]
