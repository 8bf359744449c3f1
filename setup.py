"""csae-tf: Classification Supervised Auto-Encoder on PEDCC, in TensorFlow/Keras.

TensorFlow comes as `tensorflow` (GPU-capable, the default) or `tensorflow-cpu` (smaller, for
machines without a GPU): set CSAE_TF_PACKAGE=tensorflow-cpu at install time to get the latter.
"""

import os

from setuptools import find_packages, setup

TENSORFLOW = os.environ.get("CSAE_TF_PACKAGE", "tensorflow")
if TENSORFLOW not in ("tensorflow", "tensorflow-cpu", "tensorflow[and-cuda]"):
    raise SystemExit(f"CSAE_TF_PACKAGE must be tensorflow, tensorflow-cpu or tensorflow[and-cuda], not {TENSORFLOW}")

setup(
    name="csae-tf",
    version="0.1.0",
    description="Classification Supervised Auto-Encoder on predefined evenly-distributed class centroids",
    long_description=open("README.md").read() if os.path.exists("README.md") else "",
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["csae_tf", "csae_tf.*", "tuning", "tuning.*", "export", "export.*"]),
    install_requires=[
        f"{TENSORFLOW}>=2.21,<2.22",
        "keras>=3.15,<3.16",  # private Keras behaviour is relied on: tests/test_keras_internals.py
        "tensorflow-datasets>=4.9.10",
        "keras-tuner[bayesian]>=1.4.8",  # [bayesian]: scipy + scikit-learn, for tuning.search --tuner bayesian
        "tensorboard>=2.21",
        "numpy>=1.26",
        "threadpoolctl>=3",  # csae_tf.pedcc: single-threaded BLAS (see pedcc.generate)
        "importlib_resources",  # TFDS 4.9.10 imports it on Python 3.11 without declaring it
        "pillow>=10",
        "matplotlib>=3.8",
    ],
    extras_require={
        "test": ["pytest>=8", "pytest-xdist>=3", "ruff>=0.6"],  # xdist: the suite on both cores (pyproject)
        "benchmarks": ["torch==2.13.0"],
    },
    entry_points={"console_scripts": ["csae=csae_tf.cli:main", "csae-fit=csae_tf.fit:main"]},
)
