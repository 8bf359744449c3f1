"""Reproduce the paper's Tables 3-5, Fig. 9 and 11 and the comparison, row by row, resumably; write the report.

    nice -n 5 python benchmarks/reproduce.py --data-dir runs/tfds --shared-data ../shared/data --max-hours 10

Every row of `benchmarks/rows.py` (a system, a dataset, a seed, a budget; `--list` prints them with
their budgets and an estimate of their hours) is one run of the ordinary commands: `csae_tf.fit` then
`csae_tf.evaluate` (and `csae_tf.extrapolate` on the EMNIST letters for MNIST CSAE-C) for the CSAE rows,
`csae_tf.compare --models SYSTEM` for the others. The moment a row finishes its result is written as
`docs/results/reproduction/rows/<row-id>.json` (comparison rows: `docs/results/comparison_<dataset>/rows/`)
with its config, budget, seed, commands, date, machine, accuracy, test Loss1/2/3 and seconds; then the
report (docs/guides/reproduction.md, docs/results/reproduction/results.csv) is rebuilt from the rows there,
rows not run yet shown as such.

Resuming: a row whose JSON exists is skipped (`--rerun PATTERN` trains it again from scratch). Each row
keeps its run directory (`--runs`, default runs/reproduce/<row-id>): a CSAE row interrupted anywhere
resumes exactly where its last saved state left it (the trainer's own resume); a comparison row
restarts. `--rows PATTERN` selects rows (shell patterns or substrings, comma-separated), `--max-hours H`
starts no new row after H hours, `--report-only` only rebuilds the report, `--budget smoke` runs every
row at 1 epoch on 256 images into runs/reproduce_smoke/ (for tests; never into docs/).
"""

from __future__ import annotations

import argparse
import csv
import datetime
import json
import math
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import rows as rowset  # noqa: E402

PAPER_T5 = {"laplacian": (0.0447, 0.0764, 0.1221, 99.38), "none": (0.0357, 0.0922, 0.1319, 99.30)}
EMNIST = "emnist_letters/emnist_letters_train_balanced5200.npz"
EMNIST_SET = "emnist_letters_train_balanced5200"
NOT_FULL = "not yet run at full budget"
RANGE_OF_4 = 3.63  # the range of 4 draws of a normal distribution exceeds this many std 1 time in 20
# figures a comparison row's run leaves as <system>_<kind>.png, copied beside its rows as <row id>_<kind>.png
FIGURE_KINDS = {"latent": "latent scatter", "generated": "generated samples, a row per class"}
FIGURE_GROUPS = ("mnist-csae-c-b0.04-full", "fashion-csae-c-b0.04-full", "mnist-csae-c-b0.04-paper")
CSV_FIELDS = ("id", "table", "dataset", "system", "seed", "status", "epochs", "train_images", "test_images",
              "accuracy", "loss1", "loss2", "loss3", "reconstruction_mse", "generated_classified_as_their_class",
              "wall_seconds", "date", "machine")


# --- where things go -------------------------------------------------------------------------------------------

def paths(args) -> argparse.Namespace:
    """Default folders of a budget: `smoke` never writes into docs/."""
    smoke = args.budget == "smoke"
    base = Path("runs/reproduce_smoke") if smoke else None
    return argparse.Namespace(
        runs=Path(args.runs or (base / "runs" if smoke else "runs/reproduce")),
        results=Path(args.results or (base / "reproduction" if smoke else "docs/results/reproduction")),
        comparison=args.comparison or (str(base / "comparison_{dataset}") if smoke
                                       else "docs/results/comparison_{dataset}"),
        report=Path(args.report or (base / "reproduction.md" if smoke else "docs/guides/reproduction.md")))


def result_path(row: rowset.Row, where) -> Path:
    if row.table == "cmp":
        return Path(where.comparison.format(dataset=row.dataset)) / "rows" / f"{row.id}.json"
    return where.results / "rows" / f"{row.id}.json"


def read_result(row: rowset.Row, where) -> dict | None:
    path = result_path(row, where)
    return json.loads(path.read_text()) if path.exists() else None


# --- running one row -------------------------------------------------------------------------------------------

def _flags(values: dict) -> list[str]:
    out = []
    for key, value in values.items():
        if value is None:
            continue
        out += [f"--{key.replace('_', '-')}", ("true" if value else "false") if isinstance(value, bool) else str(value)]
    return out


def from_root(path) -> str:
    """`path` (relative to the working directory) as the commands, which run in the checkout, must name it:
    relative to the checkout when it lies in it or in the shared folder beside it (runs/..., ../shared/data), so
    that recorded commands hold no machine's folders; absolute otherwise."""
    path = Path(os.path.abspath(path))  # not resolved: ../shared may be a link
    near = path.is_relative_to(ROOT) or path.is_relative_to(ROOT.parent / "shared")
    return os.path.relpath(path, ROOT) if near else str(path)


def commands(row: rowset.Row, args, where) -> list[list[str]]:
    """The module command lines of the row, in order (each `python -m ...`)."""
    run = from_root(where.runs / row.id)
    data = ["--dataset", row.dataset, "--data-dir", from_root(args.data_dir),
            "--manual-dir", from_root(Path(args.shared_data) / row.dataset)]
    budget = row.budget(args.budget)
    if row.trainer:
        cmds = [["csae_tf.fit", *data, *_flags({**budget, "arch": "linear" if row.system == "csae_l" else "conv"}),
                 "--verbose", "2", "--output", run],
                ["csae_tf.evaluate", "--run", run]]
        letters = Path(args.shared_data) / EMNIST
        if row.dataset == "mnist" and row.system == "csae_c" and letters.exists():
            cmds.append(["csae_tf.extrapolate", "--run", run, "--images", from_root(letters)])
        return cmds
    rows_dir = from_root(result_path(row, where).parent)
    return [["csae_tf.compare", *data, "--models", row.system, "--row-id", row.id, "--rows", rows_dir,
             *_flags({k: v for k, v in {**budget, **row.options}.items() if k != "arch"}), "--verbose", "2",
             "--output", run]]


def shell(cmd: list[str]) -> str:
    return shlex.join(["python", "-m", *cmd])


def run_step(cmd: list[str], log: Path, timeout: float) -> None:
    with open(log, "a") as f:
        f.write(f"$ {shell(cmd)}\n")
        f.flush()
        result = subprocess.run([sys.executable, "-m", *cmd], cwd=ROOT, stdout=f, stderr=subprocess.STDOUT,
                                timeout=timeout, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    if result.returncode:
        raise RuntimeError(f"{cmd[0]} failed (exit {result.returncode}); see {log}")


def _load(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.exists() else None


def machine() -> str:
    """CPU model (from /proc/cpuinfo), cores, TensorFlow version; without importing TensorFlow here."""
    from importlib import metadata

    cpu = "unknown CPU"
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    tf_version = "?"
    for name in ("tensorflow", "tensorflow-cpu", "tensorflow-gpu"):
        try:
            tf_version = metadata.version(name)
            break
        except metadata.PackageNotFoundError:
            continue
    return f"{cpu}, {os.cpu_count()} CPU(s), TF {tf_version}"


def code_version() -> str:
    """The commit the row was trained with ("+changes" when the working tree differed from it)."""
    def git(*a):
        return subprocess.run(["git", *a], cwd=ROOT, capture_output=True, text=True).stdout.strip()

    commit = git("rev-parse", "--short", "HEAD") or "unknown"
    return commit + ("+changes" if git("status", "--porcelain", "--untracked-files=no", "csae_tf") else "")


def write_row(row: dict, path: Path) -> None:
    """One finished row as JSON, written whole (csae_tf.checkpoint.write_json's rule, without importing
    TensorFlow into the driver)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(row, indent=2) + "\n")
    os.replace(tmp, path)


def run_row(row: rowset.Row, args, where, rerun: bool = False) -> dict:
    """Train and evaluate one row (resuming its run directory), write and return its result JSON."""
    run = where.runs / row.id
    if rerun and run.exists():
        shutil.rmtree(run)
    run.parent.mkdir(parents=True, exist_ok=True)
    log = where.runs / f"{row.id}.log"
    cmds = commands(row, args, where)
    if rerun and not row.trainer:
        cmds[0] += ["--rerun", row.system]
    start = time.time()
    for cmd in cmds:
        run_step(cmd, log, args.step_timeout)
    wall = round(time.time() - start, 1)
    if not row.trainer:  # csae_tf.compare wrote the row itself; add the reproduction's fields
        result = json.loads(result_path(row, where).read_text())
        for kind in FIGURE_KINDS:
            figure = run / f"{row.system}_{kind}.png"
            if figure.exists():
                shutil.copyfile(figure, result_path(row, where).parent.parent / f"{row.id}_{kind}.png")
    else:
        cfg, metrics = _load(run / "config.json"), _load(run / "metrics.json")
        ev = _load(run / "evaluation" / "evaluation.json") or {}
        extra = _load(run / "extrapolation" / "extrapolation.json")
        result = {
            "id": row.id, "dataset": row.dataset, "system": row.system, "seed": row.seed, "config": cfg,
            "budget": {"epochs": cfg["epochs"], "train_images": metrics["num_train"],
                       "validation_images": metrics["num_validation"], "test_images": ev.get("num_images"),
                       "batch_size": cfg["batch_size"]},
            "command": [shell(c) for c in cmds], "run_dir": str(run),
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "machine": machine(), "code": code_version(), "wall_seconds": wall,
            "train_seconds": metrics.get("train_seconds"),
            "parameters": metrics.get("params"), "accuracy": ev.get("accuracy", metrics.get("test_accuracy")),
            "val_accuracy": metrics.get("val_accuracy"),
            **{k: ev.get(k, metrics.get(f"test_{k}")) for k in ("loss1", "loss2", "loss3")},
            **{k: ev.get(k) for k in ("reconstruction_mse", "class_mean_distance_mean", "class_mean_distance_std",
                                      "pedcc_distance_mean", "generated_classified_as_their_class")},
        }
        if extra:
            s = extra["sets"]
            result["extrapolation"] = {"seen_mse": s["seen"]["mse"], "letters_mse": s[EMNIST_SET]["mse"],
                                       "ratio": s[EMNIST_SET]["ratio_to_seen"]}
        copy_figures(row, run, where)
    result.update({"label": row.label, "table": row.table, "group": row.group, "budget_name": args.budget,
                   "schedule": row.describe(args.budget), "wall_seconds": wall, "reproduce": shell_command(row, args)})
    write_row(result, result_path(row, where))
    return result


def shell_command(row: rowset.Row, args) -> str:
    extra = " --budget smoke" if args.budget == "smoke" else ""
    return f"python benchmarks/reproduce.py --rows {row.id} --rerun {row.id}{extra}"


def copy_figures(row: rowset.Row, run: Path, where) -> None:
    """The headline rows' figures (seed 0) and the EMNIST reconstructions into RESULTS/figures/."""
    figures = where.results / "figures"
    wanted = []
    if row.group in FIGURE_GROUPS and row.seed == 0:
        wanted += [(run / "evaluation" / f"{k}.png", f"{row.id}_{k}.png") for k in ("generated", "reconstruction",
                                                                                      "distances")]
    wanted.append((run / "extrapolation" / f"{EMNIST_SET}.png", f"{row.id}_emnist.png"))
    for src, name in wanted:
        if src.exists():
            figures.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, figures / name)


# --- the report ------------------------------------------------------------------------------------------------

def at_full_budget(row: rowset.Row, r: dict | None) -> bool:
    """The result ran the row's own (full) budget: its epochs and its image limits."""
    if not r or r.get("budget_name", "full") != "full":
        return False
    cfg, want = r.get("config") or {}, row.budget("full")
    return (cfg.get("epochs") == row.epochs and cfg.get("train_limit") == want.get("train_limit")
            and cfg.get("test_limit") == want.get("test_limit"))


def _groups(all_rows):
    groups: dict[str, list] = {}
    for row in all_rows:
        groups.setdefault(row.group, []).append(row)
    return groups


def _pct(values: list[float]) -> str:
    if len(values) == 1:
        return f"{100 * values[0]:.2f}"
    return f"{100 * statistics.mean(values):.2f} ± {100 * statistics.stdev(values):.2f}"


def cell(rows_: list, R: dict, key: str = "accuracy", pct: bool = True, digits: int = 4) -> str:
    """mean ± std over the group's finished seeds, or what is missing."""
    done = [R[r.id][key] for r in rows_ if R.get(r.id) and R[r.id].get(key) is not None]
    if not done:
        return f"not run yet (budget {rows_[0].short()})"
    text = _pct(done) if pct else (f"{done[0]:.{digits}f}" if len(done) == 1 else
                                   f"{statistics.mean(done):.{digits}f} ± {statistics.stdev(done):.{digits}f}")
    if len(done) < len(rows_):
        text += f" ({len(done)} of {len(rows_)} seeds)"
    if not all(at_full_budget(r, R[r.id]) for r in rows_ if R.get(r.id)):
        text += " (smoke budget)"
    return text


def seeds(rows_) -> str:
    return ", ".join(str(r.seed) for r in rows_)


def full(rows_: list, R: dict) -> bool:
    return all(at_full_budget(r, R.get(r.id)) for r in rows_)


def mean(rows_, R, key="accuracy") -> float:
    return statistics.mean(R[r.id][key] for r in rows_)


def values(rows_, R, key="accuracy") -> list[float]:
    return [R[r.id][key] for r in rows_]


def validations(rows_, R) -> list[float]:
    """The rows' accuracies on the validation hold-out (0 where one has none): what picks a best recipe."""
    return [R[r.id].get("val_accuracy") or 0.0 for r in rows_]


def best_on_validation(recipes: list[list[rowset.Row]], R) -> list[rowset.Row]:
    """The recipe (its seeds' rows) with the highest mean validation accuracy: selection never reads test."""
    return max(recipes, key=lambda g: statistics.mean(validations(g, R)))


def retrained_on_all(chosen: list[rowset.Row], G: dict, R: dict) -> list[rowset.Row] | None:
    """The rows that ran the recipe `chosen` on the validation hold-out again on the whole training split, if run."""
    def recipe(row: rowset.Row) -> tuple:
        return row.dataset, row.system, {k: v for k, v in row.fit.items() if k not in ("seed", "validation_split")}

    wanted = recipe(chosen[0])
    return next((g for g in G.values()
                 if g[0].fit.get("validation_split") == 0 and recipe(g[0]) == wanted and full(g, R)), None)


def twice_std(xs: list[float]) -> float:
    """Twice the seed std of `xs` (0 for a single seed): the noise a difference must exceed to count."""
    return 2 * statistics.stdev(xs) if len(xs) > 1 else 0.0


def claims(G: dict, R: dict) -> list[str]:
    """The paper's claims, judged only from rows at full budget."""
    out = []
    betas = [G[f"mnist-csae-c-b{b}-full"] for b in (0.02, 0.04, 0.06, 0.1)]
    if all(full(g, R) for g in betas):
        accs = {g[0].fit["beta"]: 100 * mean(g, R) for g in betas}
        best = max(accs, key=accs.get)
        sd = statistics.stdev(values(G["mnist-csae-c-b0.04-full"], R)) * 100
        spread = max(accs.values()) - min(accs.values())
        noise = RANGE_OF_4 * sd  # what four runs of one β would span by seed noise alone, 1 time in 20
        out.append("- **β trend** (paper: 99.32 / 99.32 / 99.38 / 99.35, best at β 0.06): csae-tf "
                   + " / ".join(f"{v:.2f}" for v in accs.values()) + f", best at β {best}; spread {spread:.2f} "
                   f"points, against {noise:.2f}, what four runs of one β span 1 time in 20 at the seed std of β 0.04 "
                   f"({sd:.2f}): "
                   + ("within seed noise, no trend can be claimed" if spread <= noise else "larger than seed noise")
                   + (", and the paper's best β is not the best here." if best != 0.06 else "; best at β 0.06 as in "
                      "the paper."))
    else:
        out.append(f"- **β trend** (Table 3): {NOT_FULL}.")
    lap, nolap = G["mnist-csae-c-b0.04-full"], G["mnist-csae-c-b0.04-nolap-full"]
    if full(lap, R) and full(nolap, R):
        with_, without = (values(g, R, "loss2") for g in (lap, nolap))
        gap, noise = statistics.mean(without) - statistics.mean(with_), twice_std(with_)
        verdict = ("the Laplacian lowers Loss2 by more than twice the seed std, as in the paper" if gap > noise
                   else "within seed noise of each other" if gap >= -noise
                   else "the Laplacian raises Loss2, unlike the paper")
        accs = " vs ".join(_pct(values(g, R)) for g in (lap, nolap))
        out.append(f"- **Laplacian loss** (paper: lower Loss2 0.0764 vs 0.0922 and accuracy +0.08 with it): csae-tf "
                   f"test Loss2 {statistics.mean(with_):.4f} with ({len(with_)} seeds, twice the std "
                   f"{noise:.4f}), {statistics.mean(without):.4f} without ({len(without)}): {verdict}; accuracy "
                   f"{accs} with / without.")
    else:
        out.append(f"- **Laplacian loss** (Table 5): {NOT_FULL}.")
    for ds, name, paper in (("mnist", "MNIST", "99.30 vs 99.32"), ("fashion", "Fashion-MNIST", "92.44 vs 91.84")):
        enc, csae = G[f"{ds}-encoder-only-full"], G[f"{ds}-csae-c-b0.04-full"]
        if full(enc, R) and full(csae, R):
            accs = values(csae, R)
            gap, noise = 100 * (mean(enc, R) - statistics.mean(accs)), 100 * twice_std(accs)  # points
            verdict = (f"within seed noise (twice CSAE-C's seed std: {noise:.2f})" if abs(gap) <= noise else
                       f"{'the encoder alone' if gap > 0 else 'CSAE-C'} ahead by more than twice CSAE-C's seed std "
                       f"({noise:.2f})")
            out.append(f"- **encoder alone vs CSAE-C, {name}** (paper: {paper}): csae-tf {100 * mean(enc, R):.2f} "
                       f"({len(enc)} seed) vs {_pct(accs)} ({len(accs)} seeds): {verdict}.")
        else:
            out.append(f"- **encoder alone vs CSAE-C, {name}**: {NOT_FULL}.")
    for ds, name, paper in (("mnist", "MNIST", "99.32 vs 99.25"), ("fashion", "Fashion-MNIST", "91.84 vs 92.20")):
        csae, base = G[f"{ds}-csae-c-b0.04-full"], G[f"{ds}-basenet-full"]
        if full(csae, R) and full(base, R):
            a, b = (values(g, R) for g in (csae, base))
            diff = 100 * (statistics.mean(a) - statistics.mean(b))  # points, like the std
            se = 100 * (statistics.variance(a) / len(a) + statistics.variance(b) / len(b)) ** 0.5
            verdict = ("within seed noise (less than twice the standard error of the difference, "
                       f"{se:.2f})" if abs(diff) <= 2 * se else
                       f"{'CSAE-C' if diff > 0 else 'the basenet'} ahead by more than twice the standard error "
                       f"of the difference ({se:.2f})")
            ours = " vs ".join(_pct(v) for v in (a, b))
            out.append(f"- **CSAE-C vs the softmax basenet, {name}** (paper: {paper}): csae-tf {ours} "
                       f"({len(a)} seeds each): {verdict}.")
        else:
            out.append(f"- **CSAE-C vs the softmax basenet, {name}**: {NOT_FULL}.")
    g = G["mnist-csae-c-b0.04-full"]
    if full(g, R):
        cv = [R[r.id]["class_mean_distance_std"] / R[r.id]["class_mean_distance_mean"] for r in g]
        out.append(f"- **Fig. 9, equal distances** (paper: almost all ≈ 9.6): class-mean distances "
                   f"{mean(g, R, 'class_mean_distance_mean'):.2f}, relative spread {100 * statistics.mean(cv):.1f}% "
                   f"(PEDCC centroids {mean(g, R, 'pedcc_distance_mean'):.2f}): "
                   + ("almost all equal, as in the paper." if max(cv) < 0.05 else "not all equal (spread > 5%)."))
    else:
        out.append(f"- **Fig. 9, equal distances**: {NOT_FULL}.")
    return out


def _above(accuracies: list[float], paper: float) -> str:
    """Whether a recipe's test accuracies lie above the paper's figure, and by how much against their noise."""
    margin = statistics.mean(accuracies) - paper
    if margin <= 0:
        return ": not met."
    if len(accuracies) < 2:
        return ": met (one seed)."
    se = statistics.stdev(accuracies) / math.sqrt(len(accuracies))
    if margin >= 2 * se:
        return f": met, by {100 * margin:.2f} points (more than twice the standard error of the mean, {100 * se:.2f})."
    return (f": met by the mean, by {100 * margin:.2f} points, less than twice the standard error of the mean "
            f"({100 * se:.2f}): level with the paper, not clearly above it.")


def goals(G: dict, R: dict, where) -> list[str]:
    """The accuracy goals of this reproduction, each met or not, from full-budget rows only."""
    out = []
    for gid in (gid for gid, g in G.items() if gid.startswith("mnist-csae-c-b0.04-") and len(g) >= 3):
        g = G[gid]
        if not full(g, R):
            done = sum(at_full_budget(r, R.get(r.id)) for r in g)
            out.append(f"- **MNIST CSAE-C ≥ 99.60% as a three-seed mean**, `{gid}`: {done} of {len(g)} seeds run.")
            continue
        verdict = "met" if mean(g, R) >= 0.996 else "not met"
        out.append(f"- **MNIST CSAE-C ≥ 99.60% as a three-seed mean**, `{gid}` ({g[0].short()}): "
                   f"{_pct(values(g, R))}: {verdict}.")
    recipes = [ran for gid, g in G.items() if gid.startswith("fashion-csae-c-")
               if (ran := [r for r in g if at_full_budget(r, R.get(r.id))])]
    if recipes:
        ran = best_on_validation(recipes, R)
        test_mean = mean(ran, R)
        seeds_run = f"{len(ran)} seeds, " if len(ran) > 1 else ""
        line = (f"- **Fashion-MNIST CSAE-C ≥ 94.00%, any recipe**: of {len(recipes)} recipes run, the best on the "
                f"validation hold-out, `{ran[0].group}` ({seeds_run}{ran[0].short()}; validation "
                f"{_pct(validations(ran, R))}%), {_pct(values(ran, R))}% test accuracy with one view")
        views = _load(where.results.parent / "test_time_views" / f"{ran[0].id}.json") if len(ran) == 1 else None
        if views:
            chosen = views["chosen"]
            with_views = views["accuracy"][chosen]["test"]
            line += (f"; {100 * with_views:.2f}% with test-time views (`--views {chosen}`, chosen on the "
                     f"validation hold-out: {100 * views['accuracy'][chosen]['validation']:.2f}%)")
            verdict = ("met." if test_mean >= 0.94 else "met with test-time views only." if with_views >= 0.94
                       else "not met.")
        else:
            verdict = "met." if test_mean >= 0.94 else "not met."
        out.append(f"{line}: {verdict}")
    for ds, name, paper in (("mnist", "MNIST", 0.9797), ("fashion", "Fashion-MNIST", 0.8951)):
        ran = [g for gid, g in G.items() if gid.startswith(f"{ds}-csae-l-") and full(g, R) and any(validations(g, R))]
        if ran:
            g = best_on_validation(ran, R)
            line = (f"- **CSAE-L above the paper's {100 * paper:.2f}%, {name}**: of {len(ran)} recipes run, the "
                    f"best on the validation hold-out, `{g[0].group}` ({g[0].short()}; validation "
                    f"{_pct(validations(g, R))}), {_pct(values(g, R))} test accuracy")
            again = retrained_on_all(g, G, R)
            if again:
                line += (f"; the same recipe on all 60,000 training images, as the paper trains (`{again[0].group}`, "
                         f"seeds {seeds(again)}), {_pct(values(again, R))}")
            out.append(line + _above(values(again or g, R), paper))
        else:
            out.append(f"- **CSAE-L above the paper's {100 * paper:.2f}%, {name}**: {NOT_FULL}.")
    return out


def csae_l_sweep(sweep: Path, report_dir: Path, dataset: str = "mnist") -> str:
    """What the CSAE-L recipe variants in `sweep` (CSV, the recipe itself first) show, judged on validation."""
    with sweep.open() as f:
        recipe, *variants = ({k: (float(v) if k.endswith("accuracy") else v) for k, v in r.items()}
                             for r in csv.DictReader(f))
    best = max(variants, key=lambda r: r["val_accuracy"])
    base = recipe["val_accuracy"]
    noise = 2 * math.sqrt(base * (1 - base) / 5000)  # twice the standard error on the 5,000 held-out images
    verdict = (f"within validation noise (twice its standard error, {100 * noise:.2f} points)."
               if best["val_accuracy"] - base <= noise
               else f"ahead by more than validation noise ({100 * noise:.2f} points).")
    changed = dict.fromkeys(f for r in variants for f in r["flags"].split() if f.startswith("--"))
    return (f"CSAE-L variants on {rowset.TITLE[dataset]} (`python benchmarks/csae_l_sweep.py --dataset {dataset}`), "
            f"seed 0, 30 epochs unless the flags say otherwise "
            f"([{sweep.name}]({os.path.relpath(sweep, report_dir)}), each with its command): {len(variants)} changes "
            f"to the recipe ({', '.join(f'`{f}`' for f in changed)}); the best on "
            f"validation, `{best['flags']}`, {100 * best['val_accuracy']:.2f}% against the recipe's {100 * base:.2f}% "
            f"(test {100 * best['test_accuracy']:.2f}% against {100 * recipe['test_accuracy']:.2f}%): {verdict}")


def write_report(args, where) -> str:
    all_rows = rowset.rows()
    R = {r.id: read_result(r, where) for r in all_rows}
    G = _groups(all_rows)
    L: list[str] = []
    w = L.append
    done = sum(1 for v in R.values() if v)
    w("# Reproducing the paper's results\n")
    w(f"Generated by `benchmarks/reproduce.py` from the row results in `{where.results}/rows/` and "
      f"`{where.comparison.format(dataset='<dataset>')}/rows/` ({done} of {len(all_rows)} rows run; rebuilt "
      f"{datetime.date.today().isoformat()}). Each row is one training run; its JSON holds its config, budget, "
      "seed, commands, date, machine (CPU model) and seconds. The same figures as CSV: "
      f"`{where.results}/results.csv`. Where csae-tf departs from the paper (λ2, batch-norm momentum, coupled "
      "weight decay, ...): [training.md](training.md#where-csae-tf-differs-from-the-paper-or-the-authors-code).\n")
    w("## Running it\n")
    w("```bash\n# every row not run yet, most important first; stops starting rows after 10 hours\n"
      "nice -n 5 python benchmarks/reproduce.py --data-dir runs/tfds --shared-data ../shared/data --max-hours 10\n"
      "python benchmarks/reproduce.py --list                    # row ids, budgets, hours, done or not\n"
      "python benchmarks/reproduce.py --rows 'mnist-csae-c-*'    # some rows only\n"
      "python benchmarks/reproduce.py --rerun mnist-csae-l-full-s0 --rows mnist-csae-l-full-s0   # train one again\n"
      "python benchmarks/reproduce.py --report-only             # rebuild this page from the rows there\n```\n")
    w("An interrupted invocation loses nothing finished: each row's JSON is written when the row ends, "
      "and a CSAE row's run directory (`runs/reproduce/<row-id>`) resumes at its last saved state. Commit "
      "the row JSONs to carry on on another machine. A row's JSON: `id`, `label`, `dataset`, `system`/`model`, "
      "`seed`, `config` (every FitConfig value), `budget` (epochs, training / validation / test images, batch), "
      "`schedule`, `command` (the commands that trained and evaluated it) and `reproduce` (the driver command for "
      "that row alone), `run_dir`, `date`, `machine` (CPU model, cores, TensorFlow), `wall_seconds`, "
      "`train_seconds`, `accuracy`, `loss1`/`loss2`/`loss3` (test), `mse` or `reconstruction_mse`, class-mean and "
      "PEDCC distances, `generated_classified_as_their_class`, `extrapolation` (MNIST CSAE-C).\n")
    w("## Budgets\n")
    w("- **full** (CSAE-C, encoder alone, basenet): all 60,000 training images minus a seeded 5,000-image "
      "validation hold-out, 30 epochs, SGD lr 0.1, momentum 0.9, weight decay 5e-4, batch 128; the paper's "
      "step schedule (÷10 every 30 of 120 epochs) compressed in proportion: ÷10 every 8 of 30 epochs "
      "(`--schedule step --lr-step-epochs 8`: lr 0.1 for epochs 1-8, 0.01 for 9-16, 1e-3 for 17-24, 1e-4 for "
      "25-30), no warm-up, no augmentation unless the row says so. CSAE-L: Adam 1e-3 constant, 30 "
      "epochs (paper: up to 200). β 0.04, λ1 1, λ2 0.02 (Laplacian) unless a row says otherwise. Tested on "
      "all 10,000 test images.")
    w("- **paper**: the paper's own protocols, once each: CSAE-C for the headline MNIST row (`--preset paper-c`: "
      "120 epochs, ÷10 every 30), CSAE-L on both datasets (`--preset paper-l`: Adam 1e-3, 200 epochs).")
    w("- **comparison systems**: each at its own paper's protocol (seed 003's conv VAEs Adam 1e-4, batch 50, "
      "10 epochs; seed 002's DDAE on its 6,000 / 1,000 MNIST subset with exact KELM and on the full set with "
      "Nyström KELM; seed 004's FSAE; the CVAE) — see the rows.")
    w("- Three seeds (0, 1, 2) for the headline rows (CSAE-C β 0.04 and basenet, both datasets): mean ± "
      "sample std. Other rows: seed 0.\n")
    w("| row | budget | about hours (quiet 2-core CPU) | status |")
    w("|---|---|---:|---|")
    for row in all_rows:
        r = R[row.id]
        status = ("done" + ("" if at_full_budget(row, r) else f" ({r.get('budget_name', '?')} budget)")
                  + f", {r.get('date', '')[:10]}, {r.get('wall_seconds', 0):.0f} s") if r else "not run yet"
        w(f"| `{row.id}` | {row.describe()} | {row.hours():.2f} | {status} |")
    w("")

    def table(title: str, code: str, ids: list[str], note: str = "") -> None:
        """Groups `ids` in this order, then any other group of table `code` (so that no new row goes missing)."""
        ids = ids + [gid for gid, g in G.items() if g[0].table == code and gid not in ids]
        w(f"## {title}\n")
        if note:
            w(note + "\n")
        w("| model | paper (120 ep) | csae-tf test accuracy % | seeds | budget | rows |")
        w("|---|---|---|---|---|---|")
        for gid in ids:
            g = G[gid]
            w(f"| {g[0].label} | {g[0].paper or '—'} | {cell(g, R)} | {seeds(g)} | {g[0].short()} | "
              + ", ".join(f"`{r.id}`" for r in g) + " |")
        w("")

    table("Table 3: MNIST", "t3", ["mnist-csae-c-b0.02-full", "mnist-csae-c-b0.04-full",
                                   "mnist-csae-c-b0.04-cos15aug", "mnist-csae-c-b0.06-full", "mnist-csae-c-b0.1-full",
                                   "mnist-csae-c-b0.04-paper", "mnist-csae-l-full", "mnist-csae-l-all60k",
                                   "mnist-csae-l-paper", "mnist-csae-l-cos30aug", "mnist-csae-l-cos30",
                                   "mnist-csae-l-cos30-all60k", "mnist-encoder-only-full",
                                   "mnist-basenet-full", "mnist-csae-c-b0-full"],
          "Accuracies from `csae_tf.evaluate` (nearest centroid) or `csae_tf.compare` over the test split; each "
          "row's whole budget is in the Budgets table above.")
    table("Table 4: Fashion-MNIST", "t4", ["fashion-csae-c-b0.04-full", "fashion-csae-c-b0.04-aug-full",
                                           "fashion-csae-c-b0.04-aug60", "fashion-csae-c-b0.04-aug120",
                                           "fashion-csae-l-full", "fashion-csae-l-all60k", "fashion-csae-l-paper",
                                           "fashion-csae-l-cos30aug", "fashion-csae-l-cos30b0.2",
                                           "fashion-csae-l-cos30b0.2-all60k", "fashion-csae-l-cos30b0.5",
                                           "fashion-csae-l-cos30b0.5-all60k",
                                           "fashion-encoder-only-full",
                                           "fashion-basenet-full"])

    w("## Table 5: CSAE-C with and without the Laplacian loss (MNIST, β 0.04)\n")
    w("Test losses of `csae_tf.evaluate`; the paper's are test values after 100 epochs. Without the Laplacian "
      "term Loss3 is still measured (it is only left out of the training loss).\n")
    w("| Loss3 | source | test Loss1 | test Loss2 | test Loss3 | test acc % | seeds | budget |")
    w("|---|---|---|---|---|---|---|---|")
    for gid, kind in (("mnist-csae-c-b0.04-full", "laplacian"), ("mnist-csae-c-b0.04-nolap-full", "none")):
        p, g = PAPER_T5[kind], G[gid]
        w(f"| {kind} | paper | {p[0]:.4f} | {p[1]:.4f} | {p[2]:.4f} | {p[3]:.2f} | | 100 ep |")
        w(f"| {kind} | csae-tf | " + " | ".join(cell(g, R, k, pct=False) for k in ("loss1", "loss2", "loss3"))
          + f" | {cell(g, R)} | {seeds(g)} | {g[0].short()} |")
    w("")

    w("## Fig. 9: distances between the classes' mean latent codes\n")
    w("| rows | class-mean distance (mean over pairs) | its std over pairs | PEDCC centroid distance | paper |")
    w("|---|---|---|---|---|")
    for gid in ("mnist-csae-c-b0.04-full", "mnist-csae-c-b0.04-paper", "fashion-csae-c-b0.04-full"):
        g = G[gid]
        w(f"| `{gid}` (seed{'s' if len(g) > 1 else ''} {seeds(g)}) | "
          f"{cell(g, R, 'class_mean_distance_mean', False, 2)} | "
          f"{cell(g, R, 'class_mean_distance_std', False, 2)} | {cell(g, R, 'pedcc_distance_mean', False, 2)} | "
          "about 9.6, almost all equal |")
    w("")
    for gid in FIGURE_GROUPS:
        for kind in ("distances", "generated", "reconstruction"):
            fig = where.results / "figures" / f"{gid}-s0_{kind}.png"
            if fig.exists():
                w(f"![{gid} {kind}]({os.path.relpath(fig, where.report.parent)})\n")

    w("## Fig. 11: extrapolation to EMNIST letters (classes never seen)\n")
    w("Reconstruction MSE (Loss2, [-1, 1] scale, padded 32×32) of the 5,200 EMNIST letters of "
      "`../shared/data/emnist_letters/` against the MNIST test digits. The paper shows this qualitatively: "
      "letters blur as β grows and are hard to reconstruct at β 0.1.\n")
    w("| β | row | MNIST test digits (seen) | EMNIST letters (unseen) | ratio |")
    w("|---|---|---|---|---|")
    for beta in (0, 0.02, 0.04, 0.06, 0.1):
        row = G[f"mnist-csae-c-b{beta}-full"][0]
        e = (R[row.id] or {}).get("extrapolation")
        w(f"| {beta} | `{row.id}` | " + (f"{e['seen_mse']:.4f} | {e['letters_mse']:.4f} | {e['ratio']:.2f} |" if e
                                        else f"not run yet (budget {row.short()}) | | |"))
    w("")

    for ds, name in rowset.TITLE.items():
        short = rowset.SHORT[ds]
        w(f"## Comparison on {name}: each system at its own paper's protocol\n")
        w("`csae_tf.compare` rows (JSON in " f"`{where.comparison.format(dataset=ds)}/rows/`) beside the CSAE rows "
          "above. Reconstruction error: MSE of the test reconstructions on the model input ([-1, 1], padded "
          "32×32, the paper's Loss2; CSAE rows: test Loss2). Generated: samples drawn for each class that the "
          "system itself classifies as that class (— where a system does not generate by class or classify).\n")
        w("| system | test accuracy % | reconstruction error | generated as their class | seeds | budget | rows |")
        w("|---|---|---|---|---|---|---|")
        ids = [f"{short}-csae-c-b0.04-full", f"{short}-csae-l-full", f"{short}-encoder-only-full",
               f"{short}-basenet-full"] + [gid for gid, g in G.items() if g[0].table == "cmp" and g[0].dataset == ds]
        for gid in ids:
            g = G[gid]
            mse_key = "mse" if g[0].table == "cmp" or not g[0].trainer else "loss2"
            ran = [R[r.id] for r in g if R.get(r.id)]
            acc = cell(g, R) if not ran or ran[0].get("accuracy") is not None else "—"
            mse = cell(g, R, mse_key, False) if not ran or ran[0].get(mse_key) is not None else "—"
            gen = (cell(g, R, "generated_classified_as_their_class") if ran and
                   ran[0].get("generated_classified_as_their_class") is not None else ("—" if ran else ""))
            w(f"| {g[0].label} | {acc} | {mse} | {gen} | {seeds(g)} | {g[0].short()} | "
              + ", ".join(f"`{r.id}`" for r in g) + " |")
        w("")
        for r in (r for gid in ids for r in G[gid]):
            for kind, caption in FIGURE_KINDS.items():
                fig = Path(where.comparison.format(dataset=ds)) / f"{r.id}_{kind}.png"
                if fig.exists():
                    w(f"![{r.id} {caption}]({os.path.relpath(fig, where.report.parent)})\n")

    w("## The paper's claims\n")
    w("Judged only from rows that ran at their full budget; until then each says so.\n")
    L.extend(claims(G, R))
    w("")
    w("## Accuracy goals\n")
    w("What this reproduction set out to reach beyond the paper's own figures, from full-budget rows only.\n")
    L.extend(goals(G, R, where))
    w("")
    for dataset, short in rowset.SHORT.items():
        sweep = where.results / f"csae_l_sweep_{short}.csv"
        if sweep.exists():
            w(csae_l_sweep(sweep, where.report.parent, dataset) + "\n")
    others = sorted(where.results.joinpath("rows").glob("*.json")) if (where.results / "rows").is_dir() else []
    legacy = [json.loads(p.read_text()) for p in others if p.stem not in R]
    if legacy:
        w("## Earlier short-budget results (kept, not used for any claim)\n")
        w("Rows kept from earlier code or budgets: those imported from the earlier report (commit 2a9fc51), "
          "trained at their own short budgets before the row machinery existed, and rows trained by earlier "
          "code (each JSON's `source` and `code` say which). Their run directories are gone, so they cannot be "
          "resumed or rerun as they are. The figures in this folder without a row id in their name come from "
          "the imported rows.\n")
        w("| row | model | test accuracy % | test Loss1 / Loss2 / Loss3 | class-mean distance | EMNIST ratio "
          "| budget | seed |")
        w("|---|---|---|---|---|---|---|---|")
        for r in legacy:
            losses = " / ".join("—" if r.get(k) is None else f"{r[k]:.4f}" for k in ("loss1", "loss2", "loss3"))
            dist = (f"{r['class_mean_distance_mean']:.2f} ± {r['class_mean_distance_std']:.2f}"
                    if r.get("class_mean_distance_mean") else "")
            ratio = f"{r['extrapolation']['ratio']:.2f}" if r.get("extrapolation") else ""
            w(f"| `{r['id']}` | {r.get('label', '')} | {100 * r['accuracy']:.2f} | {losses} | {dist} | "
              f"{ratio} | {r.get('schedule', '')} | {r.get('seed', '')} |")
        w("")
        old = sorted(where.results.glob("*.png"))
        if old:
            w("Their figures: " + ", ".join(f"[{f.stem}]({os.path.relpath(f, where.report.parent)})" for f in old)
              + ".\n")
    w("## Notes\n")
    w("- Seconds are wall-clock seconds of the row's commands on the machine its JSON names; rows run on a shared "
      "machine compare only roughly.")
    w("- Rows with one seed carry no error bar: a difference between two such rows smaller than twice the seed std "
      "of the three-seed row beside them is within run-to-run noise.")
    w("- A comparison row (`csae_tf.compare`) interrupted before it finishes restarts from scratch on the next "
      "invocation (the systems' own training is not checkpointed); a CSAE row resumes where it stopped.")
    w("- TFDS pitfall met before: preparing `fashion_mnist` from `--manual-dir` in a data directory where `mnist` had "
      "been prepared the same way reused MNIST's extracted files (both name them `GZIP.<file name>`), so a first "
      "Fashion run trained on digits. When several datasets share one data directory, check the mean pixel of a "
      "few images (MNIST about 33, Fashion-MNIST about 73).")
    text = "\n".join(L) + "\n"
    where.report.parent.mkdir(parents=True, exist_ok=True)
    where.report.write_text(text)
    write_csv(all_rows, R, legacy, where.results / "results.csv")
    return text


def write_csv(all_rows, R: dict, legacy: list[dict], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        out = csv.DictWriter(f, CSV_FIELDS, extrasaction="ignore")
        out.writeheader()
        for row in all_rows:
            r = R[row.id] or {}
            b = r.get("budget") or {}
            out.writerow({**r, "id": row.id, "table": row.table, "dataset": row.dataset, "system": row.system,
                          "seed": row.seed, "epochs": b.get("epochs", row.epochs),
                          "train_images": b.get("train_images"),
                          "test_images": b.get("test_images"),
                          "reconstruction_mse": r.get("mse", r.get("reconstruction_mse")),
                          "status": ("full" if at_full_budget(row, r) else r.get("budget_name", "?")) if r
                          else f"not run yet (budget {row.short()})"})
        for r in legacy:
            b = r.get("budget") or {}
            out.writerow({**r, "status": "legacy", "epochs": b.get("epochs"), "train_images": b.get("train_images"),
                          "test_images": b.get("test_images")})


# --- command line ----------------------------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", default="runs/tfds", help="TFDS data directory")
    parser.add_argument("--shared-data", default=str(ROOT.parent / "shared" / "data"),
                        help="folder with mnist/, fashion_mnist/ (original files) and emnist_letters/")
    parser.add_argument("--rows", default=None, help="comma-separated row ids, shell patterns or substrings")
    parser.add_argument("--rerun", default=None, help="rows (same syntax) to train again from scratch although "
                        "their result exists")
    parser.add_argument("--list", action="store_true", help="print the row ids with their budgets and stop")
    parser.add_argument("--max-hours", type=float, default=None, help="start no new row after H hours")
    parser.add_argument("--budget", default="full", choices=rowset.BUDGETS,
                        help="full: each row's own budget; smoke: 1 epoch on 256 images (into runs/reproduce_smoke)")
    parser.add_argument("--runs", default=None, help="folder of the rows' run directories (default runs/reproduce)")
    parser.add_argument("--results", default=None, help="folder of rows/ and results.csv "
                        "(default docs/results/reproduction)")
    parser.add_argument("--comparison", default=None,
                        help="comparison rows' folder, with {dataset} (default docs/results/comparison_{dataset})")
    parser.add_argument("--report", default=None, help="Markdown report (default docs/guides/reproduction.md)")
    parser.add_argument("--step-timeout", type=float, default=3 * 3600, help="seconds per command before it is "
                        "stopped (its run directory resumes next time)")
    parser.add_argument("--report-only", action="store_true")
    return parser


def main(argv=None, runner=run_row) -> int:
    args = build_parser().parse_args(argv)
    where = paths(args)
    selected = rowset.select(rowset.rows(), args.rows)
    rerun = {r.id for r in rowset.select(rowset.rows(), args.rerun)} if args.rerun else set()
    if args.list:
        for row in selected:
            state = "done" if read_result(row, where) else "not run yet"
            print(f"{row.id:36s} {row.hours():5.2f} h  {state:11s}  {row.describe(args.budget)}")
        return 0
    if not selected:
        print(f"no row matches {args.rows!r}; see --list", file=sys.stderr)
        return 2
    start, failed = time.time(), []
    if not args.report_only:
        for row in selected:
            if read_result(row, where) and row.id not in rerun:
                print(f"{row.id}: done (skipped; --rerun {row.id} trains it again)", flush=True)
                continue
            if args.max_hours is not None and time.time() - start > args.max_hours * 3600:
                print(f"--max-hours {args.max_hours} reached: {row.id} and the rows after it not started", flush=True)
                break
            print(f"{row.id}: {row.describe(args.budget)}", flush=True)
            try:
                result = runner(row, args, where, rerun=row.id in rerun)
                print(f"{row.id}: accuracy {result.get('accuracy')}, {result.get('wall_seconds')} s", flush=True)
            except (RuntimeError, subprocess.TimeoutExpired) as err:
                failed.append(row.id)
                print(f"{row.id}: {err} (its run directory is kept; rerunning resumes it)", flush=True)
            write_report(args, where)
    write_report(args, where)
    print(f"report written to {where.report}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
