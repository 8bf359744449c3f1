"""How close the KELM approximations come to exact KELM on the DDAE's top features (real MNIST).

    python benchmarks/kelm_approximation.py --model runs/compare_mnist/models/ddae.keras \
        --data-dir runs/tfds --train-limit 5000 --test-limit 10000

Exact KELM needs the N x N kernel (N = 5,000 here: 200 MB, seconds); on 60,000 samples it would
need 29 GB, hence the approximations. For m centres each prints test accuracy, the fraction of test
labels equal to exact KELM's, and the fit time; the model's own gamma and C are used.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import csae_tf  # noqa: E402, F401  (first: registers the model classes, turns oneDNN on before TensorFlow loads)

# isort: split
import keras  # noqa: E402
import numpy as np  # noqa: E402

import csae_tf.baselines  # noqa: E402,F401  (registers the classes)
from csae_tf import data  # noqa: E402
from csae_tf.baselines import kelm  # noqa: E402


def features(model, split, builder, info, limit):
    x, y = data.as_numpy(data.pipeline(data.load_split(builder, split, limit=limit), info, 500, training=False))
    return np.concatenate([model.features(x[i : i + 500]).numpy() for i in range(0, len(x), 500)]), y


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="a trained DDAE .keras file")
    parser.add_argument("--dataset", default="mnist")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--train-limit", type=int, default=5000)
    parser.add_argument("--test-limit", type=int, default=10000)
    parser.add_argument("--centres", default="250,500,1000,2000")
    args = parser.parse_args()
    model = keras.models.load_model(args.model)
    builder = data.prepare(args.dataset, args.data_dir)
    info = data.describe(builder, "conv")
    xtr, ytr = features(model, "train", builder, info, args.train_limit)
    xte, yte = features(model, "test", builder, info, args.test_limit)
    gamma, c, n = float(model.width.numpy()), model.kelm_c, model.num_classes
    print(f"{len(xtr)} train / {len(xte)} test features of dimension {xtr.shape[1]}; gamma {gamma:.4g}, C {c:g}")
    start = time.time()
    exact = kelm.predict(xte, *kelm.fit(xtr, ytr, n, c=c, gamma=gamma, method="exact"), gamma).argmax(1)
    print("| method | centres m | test accuracy | agreement with exact | fit seconds |")
    print("|---|---:|---:|---:|---:|")
    print(f"| exact | {len(xtr)} | {(exact == yte).mean():.4f} | 1.0000 | {time.time() - start:.1f} |")
    for m in (int(v) for v in args.centres.split(",")):
        for method in ("nystrom", "subset"):
            start = time.time()
            centres, coef = kelm.fit(xtr, ytr, n, c=c, gamma=gamma, method=method, centres=m, seed=0)
            seconds = time.time() - start
            labels = kelm.predict(xte, centres, coef, gamma).argmax(1)
            print(f"| {method} | {m} | {(labels == yte).mean():.4f} | {(labels == exact).mean():.4f} | {seconds:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
