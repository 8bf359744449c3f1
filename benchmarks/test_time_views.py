"""Choose a set of test-time views on the validation hold-out of a run, then report it on the test split.

    python benchmarks/test_time_views.py --run runs/reproduce/fashion-csae-c-b0.04-aug60-s0 \
        --output docs/results/test_time_views/fashion-csae-c-b0.04-aug60-s0.json

For every view set of `csae_tf.views` the nearest-centroid accuracy of the mean code over the views, on
the run's seeded validation hold-out (the images `fit` held out of the training split) and on the test
split. The set is chosen by validation accuracy alone (ties: fewer views); the test figures are printed
for all, but only the chosen one is the result. Then `python -m csae_tf.evaluate --run RUN --views SET`
gives the same test figure with the rest of the evaluation.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def accuracies(run: str) -> dict:
    """{view set: {"validation": acc, "test": acc}} for the run's own splits."""
    import numpy as np

    from csae_tf import data, views
    from csae_tf.evaluate import nearest_labels
    from csae_tf.runs import load_run

    cfg, model = load_run(run)
    splits = data.load_splits(cfg)
    if splits.validation is None:
        raise SystemExit(f"{run} held no validation images out (--validation-split 0): nothing to choose on")
    centroids = np.asarray(model.pedcc.centroids)
    out = {}
    for view_set in views.VIEW_SETS:
        out[view_set] = {name: float(np.mean(nearest_labels(views.mean_codes(model, s.images, view_set), centroids)
                                             == s.labels))
                         for name, s in (("validation", splits.validation), ("test", splits.test))}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", required=True, help="run directory of python -m csae_tf.fit")
    parser.add_argument("--output", default=None, help="also write the figures as JSON here")
    args = parser.parse_args(argv)
    from csae_tf import views

    acc = accuracies(args.run)
    chosen = max(views.VIEW_SETS, key=lambda v: (acc[v]["validation"], -views.VIEW_SETS.index(v)))
    print(f"{'view set':<12} {'views':>5} {'validation':>10} {'test':>8}")
    for v in views.VIEW_SETS:
        mark = "   <- chosen on validation" if v == chosen else ""
        print(f"{v:<12} {views.count(v):>5} {acc[v]['validation']:>10.4f} {acc[v]['test']:>8.4f}{mark}")
    print(f"test accuracy: {acc['none']['test']:.4f} single view, {acc[chosen]['test']:.4f} with {chosen}")
    print(f"the same with the whole evaluation: python -m csae_tf.evaluate --run {args.run} --views {chosen}")
    if args.output:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(json.dumps({
            "run": args.run, "chosen": chosen, "accuracy": acc, "command": " ".join(["python", *sys.argv]),
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
