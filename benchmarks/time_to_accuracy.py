"""Wall-clock seconds from start to 99.0% MNIST test accuracy (as DAWNBench measures training), CSAE-C.

    python benchmarks/time_to_accuracy.py --data-dir runs/tfds --manual-dir ../shared/data/mnist
    python benchmarks/time_to_accuracy.py --preset paper --max-epochs 4 ...   # the paper's schedule

Presets: `fast` (default): batch 128, SGD 0.1 momentum 0.9, one-cycle (warm-up 0.2 epoch, cosine to
lr/1000) over 3 epochs, steps_per_execution 16; `fast2`: the same one-cycle compressed into 2 epochs;
`paper`: batch 128, SGD 0.1, step decay /10 every
30 epochs (the paper's 120-epoch schedule, stopped at --max-epochs). The test set is evaluated
every `--eval-every` fraction of an epoch; the clock stops at the first evaluation >= --target
(evaluation time included). Two clocks: from process start (imports, data, model included) and
from the first training step's call. Also prints the process's peak resident memory.
"""

from __future__ import annotations

import time

PROCESS_START = time.time()

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import resource  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import keras  # noqa: E402

from csae_tf import data  # noqa: E402
from csae_tf.config import FitConfig  # noqa: E402
from csae_tf.models import build_model  # noqa: E402
from csae_tf.schedules import build_optimizer  # noqa: E402

PRESETS = {
    "fast": dict(batch_size=128, lr=0.1, schedule="onecycle", warmup_epochs=0.2, epochs=3, steps_per_execution=16),
    "fast2": dict(batch_size=128, lr=0.1, schedule="onecycle", warmup_epochs=0.2, epochs=2, steps_per_execution=16),
    "paper": dict(batch_size=128, lr=0.1, schedule="step", lr_step_epochs=30, epochs=120, steps_per_execution=16),
}


class StopAtAccuracy(keras.callbacks.Callback):
    """Evaluate on the test set every `every` training steps; record the time and stop at `target`."""

    def __init__(self, test, target: float, every: int, fit_start: list):
        super().__init__()
        self.test, self.target, self.every, self.fit_start = test, target, every, fit_start
        self.evals, self.step, self.reached, self.last = [], 0, None, 0

    def on_train_begin(self, logs=None):
        self.fit_start.append(time.time())

    def on_train_batch_end(self, batch, logs=None):
        self.step = int(self.model.optimizer.iterations)
        if self.step - self.last < self.every and self.step % self.params["steps"]:
            return
        self.last = self.step
        result = self.model.evaluate(self.test, verbose=0, return_dict=True)
        now = time.time()
        self.evals.append({"step": self.step, "epochs": round(self.step / self.params["steps"], 2),
                           "test_accuracy": result["accuracy"],
                           "seconds_from_process_start": round(now - PROCESS_START, 1),
                           "seconds_from_fit_start": round(now - self.fit_start[0], 1)})
        print(json.dumps(self.evals[-1]), flush=True)
        if result["accuracy"] >= self.target and self.reached is None:
            self.reached = self.evals[-1]
            self.model.stop_training = True


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--manual-dir", default=None)
    parser.add_argument("--preset", choices=sorted(PRESETS), default="fast")
    parser.add_argument("--target", type=float, default=0.99)
    parser.add_argument("--max-epochs", type=int, default=None, help="stop after this many epochs in any case")
    parser.add_argument("--eval-every", type=float, default=0.5, help="evaluate every this fraction of an epoch")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--train-limit", type=int, default=None, help="first N training images (smoke tests)")
    parser.add_argument("--test-limit", type=int, default=None, help="first N test images (smoke tests)")
    parser.add_argument("--output", default=None, help="write the result as JSON here")
    args = parser.parse_args(argv)

    cfg = FitConfig(dataset="mnist", data_dir=args.data_dir, manual_dir=args.manual_dir, seed=args.seed,
                    train_limit=args.train_limit, test_limit=args.test_limit, **PRESETS[args.preset])
    keras.utils.set_random_seed(cfg.seed)
    train, test, info = data.load_datasets(cfg)
    steps = info.num_train // cfg.batch_size
    model = build_model(cfg, info.num_classes, info.image_shape)
    model.compile(optimizer=build_optimizer(cfg, steps), steps_per_execution=cfg.steps_per_execution)
    every = max(cfg.steps_per_execution, int(round(args.eval_every * steps)) // cfg.steps_per_execution
                * cfg.steps_per_execution)
    fit_start = []
    stopper = StopAtAccuracy(test, args.target, every, fit_start)
    epochs = min(cfg.epochs, args.max_epochs or cfg.epochs)
    model.fit(train, epochs=epochs, callbacks=[stopper], verbose=0)
    report = {
        "command": "python benchmarks/time_to_accuracy.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "preset": args.preset, "config": {k: getattr(cfg, k) for k in PRESETS[args.preset]},
        "target": args.target, "reached": stopper.reached, "evaluations": stopper.evals,
        "epochs_run": stopper.step / steps, "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
                                                                  / 1024, 1),
        "loadavg_end": os.getloadavg(), "date": time.strftime("%Y-%m-%d %H:%M"),
    }
    print(json.dumps(report, indent=2))
    if args.output:
        Path(args.output).write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
