"""Where the time of a CSAE-C training step goes: the top ops' share of step time, TF and PyTorch.

    python benchmarks/profile_step.py --data-dir runs/tfds --manual-dir ../shared/data/mnist --batch 128 \
        --steps 30 --output docs/results/profile/profile.json

TensorFlow: `tf.profiler.experimental` traces `--steps` steps of the real `model.fit` path (after a warm-up);
the trace (an XPlane protobuf) is read back and each executed op's self time is summed by op type
(Conv2DBackpropFilter, FusedBatchNormGradV3, ...). PyTorch: `torch.profiler` over the same number of
steps of benchmarks/pytorch_reference.py, self CPU time by aten op. Shares are of the summed op time.
"""

from __future__ import annotations

import argparse
import collections
import glob
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import csae_tf  # noqa: E402, F401  (first: it turns TensorFlow's oneDNN kernels on before TensorFlow loads)

# isort: split
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from csae_tf import data  # noqa: E402
from csae_tf.config import FitConfig  # noqa: E402


def _op_times_from_xplane(logdir: str) -> dict[str, float]:
    """Sum the self time (ms) of every TensorFlow op event in the trace, keyed by op type."""
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    files = glob.glob(os.path.join(logdir, "**", "*.xplane.pb"), recursive=True)
    space = xplane_pb2.XSpace()
    space.ParseFromString(Path(files[0]).read_bytes())
    totals: collections.Counter = collections.Counter()
    for plane in space.planes:
        if not plane.name.startswith("/host:CPU"):
            continue
        names = {k: m.name for k, m in plane.event_metadata.items()}
        for line in plane.lines:
            if "tf_data" in line.name.lower() or "python" in line.name.lower():
                continue
            stack: list[tuple[int, str]] = []  # (end, op type) of the enclosing op events on this thread
            for e in sorted(line.events, key=lambda e: e.offset_ps):
                name = names.get(e.metadata_id, "")
                if ":" not in name:  # TF op events are named "op_name:OpType"
                    continue
                while stack and stack[-1][0] <= e.offset_ps:
                    stack.pop()
                kind = name.rsplit(":", 1)[1]
                totals[kind] += e.duration_ps
                if stack:  # self time: a nested op's time is not its parent's
                    totals[stack[-1][1]] -= e.duration_ps
                stack.append((e.offset_ps + e.duration_ps, kind))
    return {k: v / 1e9 for k, v in totals.items() if v > 0}


def profile_tf(cfg: FitConfig, info, images, labels, steps: int) -> dict:
    from csae_tf.models import build_model
    from csae_tf.trainer import compile_model, set_precision

    set_precision(cfg.precision)
    model = compile_model(build_model(cfg, info.num_classes, info.image_shape), cfg, len(images) // cfg.batch_size,
                          steps_per_execution=1)
    ds = data.training_pipeline(data.Arrays(images, labels.astype("int32")), info, cfg.batch_size, seed=0,
                                epochs=10**6)
    model.fit(ds, epochs=1, steps_per_epoch=10, verbose=0, shuffle=False)  # warm-up: trace and build
    logdir = tempfile.mkdtemp(prefix="csae_profile_")
    start = time.perf_counter()
    tf.profiler.experimental.start(logdir)
    model.fit(ds, epochs=1, steps_per_epoch=steps, verbose=0, shuffle=False)
    tf.profiler.experimental.stop()
    wall = time.perf_counter() - start
    return {"ops_ms": _op_times_from_xplane(logdir), "wall_s": wall, "steps": steps}


def profile_torch(images, labels, batch: int, steps: int, channels_last: bool) -> dict:
    import pytorch_reference as ref
    import torch

    from csae_tf import pedcc

    torch.manual_seed(0)
    model = ref.CSAEC(torch.from_numpy(pedcc.generate(10, 40, seed=0)))
    step, _ = ref.make_trainer(model, compile=False, channels_last=channels_last)
    x = torch.from_numpy(np.asarray(data.to_model_input(images[: batch * 4], (32, 32, 1)))).permute(0, 3, 1, 2)
    y = torch.from_numpy(labels[: batch * 4].astype(np.int64))
    for i in range(5):
        step(x[(i % 4) * batch:(i % 4 + 1) * batch], y[(i % 4) * batch:(i % 4 + 1) * batch])
    start = time.perf_counter()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        for i in range(steps):
            step(x[(i % 4) * batch:(i % 4 + 1) * batch], y[(i % 4) * batch:(i % 4 + 1) * batch])
    wall = time.perf_counter() - start
    ops = {e.key: e.self_cpu_time_total / 1e3 for e in prof.key_averages() if e.self_cpu_time_total > 0}
    return {"ops_ms": ops, "wall_s": wall, "steps": steps}


def table(result: dict, top: int) -> list[dict]:
    total = sum(result["ops_ms"].values())
    rows = sorted(result["ops_ms"].items(), key=lambda kv: -kv[1])[:top]
    return [{"op": k, "ms_per_step": round(v / result["steps"], 2), "share": round(v / total, 3)} for k, v in rows]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", default="runs/tfds")
    parser.add_argument("--manual-dir", default="../shared/data/mnist")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--top", type=int, default=12)
    parser.add_argument("--precision", default=None, help="FitConfig precision (default: the config's)")
    parser.add_argument("--torch", action="store_true", help="also profile the PyTorch reference (channels-last)")
    parser.add_argument("--output", default=None, help="write the tables as JSON here")
    args = parser.parse_args()

    builder = data.prepare("mnist", args.data_dir, args.manual_dir)
    info = data.describe(builder, "conv")
    images, labels = data.as_numpy(data.load_split(builder, "train", limit=8192).batch(8192))
    cfg = FitConfig(batch_size=args.batch, lr=0.05, schedule="cosine", epochs=100)
    if args.precision:
        cfg.precision = args.precision
    results = {"tf": profile_tf(cfg, info, images, labels, args.steps)}
    if args.torch:
        results["torch_channels_last"] = profile_torch(images, labels, args.batch, args.steps, channels_last=True)
    report = {}
    for name, result in results.items():
        rows = table(result, args.top)
        report[name] = {"images_per_s": round(args.batch * result["steps"] / result["wall_s"], 1),
                        "op_ms_per_step": round(sum(result["ops_ms"].values()) / result["steps"], 1), "top": rows}
        print(f"\n{name}: {report[name]['images_per_s']} images/s under the profiler, "
              f"{report[name]['op_ms_per_step']} ms of op time per step")
        print(f"{'op':40s} {'ms/step':>8s} {'share':>6s}")
        for r in rows:
            print(f"{r['op'][:40]:40s} {r['ms_per_step']:8.2f} {r['share']:6.1%}")
    if args.output:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(json.dumps({"batch": args.batch, **report}, indent=2) + "\n")


if __name__ == "__main__":
    main()
