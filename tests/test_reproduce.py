"""benchmarks/reproduce.py and the comparison's rows: one JSON per finished row, skipped next time, resumed when
interrupted, a report rebuilt from the rows present ("not run yet" for the others), budgets listed."""

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from conftest import ROOT, SHARED_DATA

sys.path.insert(0, str(ROOT / "benchmarks"))

import reproduce  # noqa: E402
import rows as rowset  # noqa: E402

from csae_tf import compare  # noqa: E402
from csae_tf.config import FitConfig  # noqa: E402
from csae_tf.data import DatasetInfo  # noqa: E402


def dirs(tmp_path) -> list[str]:
    return ["--runs", str(tmp_path / "runs"), "--results", str(tmp_path / "results"),
            "--comparison", str(tmp_path / "comparison_{dataset}"), "--report", str(tmp_path / "report.md")]


def fake_result(row, accuracy=0.99, budget="full", **extra) -> dict:
    """What run_row writes for `row`, with made-up figures (at the row's own budget unless `budget` says not)."""
    cfg = {**FitConfig().to_dict(), **row.budget(budget)}
    cfg["epochs"] = cfg.get("epochs") if "epochs" in row.budget(budget) else row.epochs
    return {"id": row.id, "dataset": row.dataset, "system": row.system, "seed": row.seed, "config": cfg,
            "budget": {"epochs": cfg["epochs"], "train_images": 55000, "test_images": 10000}, "budget_name": budget,
            "accuracy": accuracy, "loss1": 0.04, "loss2": 0.08, "loss3": 0.12, "mse": 0.08, "wall_seconds": 1.0,
            "class_mean_distance_mean": 9.3, "class_mean_distance_std": 0.05, "pedcc_distance_mean": 9.43,
            "date": "2026-12-01T00:00:00+00:00", "machine": "test", "val_accuracy": accuracy, **extra}


class FakeRunner:
    """Stands in for run_row: records the rows it is asked for and writes their JSON as run_row does."""

    def __init__(self, accuracy=0.99):
        self.calls, self.accuracy = [], accuracy

    def __call__(self, row, args, where, rerun=False):
        self.calls.append((row.id, rerun))
        result = fake_result(row, self.accuracy)
        reproduce.write_row(result, reproduce.result_path(row, where))
        return result


def test_a_smoke_row_writes_its_json_when_it_finishes_and_the_next_invocation_skips_it(tfds_dir, tmp_path):
    argv = ["--budget", "smoke", "--rows", "mnist-csae-l-full-s0", "--data-dir", str(tfds_dir),
            "--shared-data", str(SHARED_DATA), *dirs(tmp_path)]
    assert reproduce.main(argv) == 0
    row_json = tmp_path / "results" / "rows" / "mnist-csae-l-full-s0.json"
    result = json.loads(row_json.read_text())
    assert result["config"]["epochs"] == 1 and result["config"]["train_limit"] == 256 and result["seed"] == 0
    assert result["budget"]["epochs"] == 1 and result["budget"]["test_images"] == 500
    assert result["budget_name"] == "smoke" and 0.0 <= result["accuracy"] <= 1.0
    assert all(result[k] is not None for k in ("loss1", "loss2", "loss3", "wall_seconds", "date", "machine"))
    assert result["command"][0].startswith("python -m csae_tf.fit") and "--output" in result["command"][0]
    run = tmp_path / "runs" / "mnist-csae-l-full-s0"
    assert (run / "metrics.json").exists() and (run / "evaluation" / "evaluation.json").exists()  # kept

    runner = FakeRunner()
    assert reproduce.main(argv, runner=runner) == 0
    assert runner.calls == []  # skipped: its result exists
    assert reproduce.main([*argv, "--rerun", "mnist-csae-l-full-s0"], runner=runner) == 0
    assert runner.calls == [("mnist-csae-l-full-s0", True)]


def test_an_interrupted_row_resumes_in_its_own_run_directory(tmp_path, monkeypatch):
    """The real run_row with the commands stood in for: the first fit saves a state and is stopped (timeout);
    the next invocation runs the same fit command on the same directory, which still holds that state."""
    row = rowset.select(rowset.rows(), "mnist-csae-c-b0.02-full-s0")[0]
    fits = []

    def fake_step(cmd, log, timeout):
        out = Path(cmd[cmd.index("--output") + 1] if "--output" in cmd else cmd[cmd.index("--run") + 1])
        if cmd[0] == "csae_tf.fit":
            fits.append((cmd, (out / "checkpoints" / "state.json").exists()))
            if len(fits) == 1:
                (out / "checkpoints").mkdir(parents=True)
                (out / "checkpoints" / "state.json").write_text("{}")
                raise subprocess.TimeoutExpired(cmd, timeout)
            (out / "config.json").write_text(json.dumps({**FitConfig().to_dict(), **row.budget()}))
            (out / "metrics.json").write_text(json.dumps({"num_train": 55000, "num_validation": 5000, "params": 1,
                                                          "train_seconds": 1.0, "test_accuracy": 0.99}))
        elif cmd[0] == "csae_tf.evaluate":
            (out / "evaluation").mkdir()
            (out / "evaluation" / "evaluation.json").write_text(json.dumps(
                {"num_images": 10000, "accuracy": 0.991, "loss1": 0.04, "loss2": 0.08, "loss3": 0.12}))

    monkeypatch.setattr(reproduce, "run_step", fake_step)
    argv = ["--rows", row.id, "--shared-data", str(tmp_path / "no_letters"), *dirs(tmp_path)]
    assert reproduce.main(argv) == 1  # the row failed: no result, its run directory kept
    assert not (tmp_path / "results" / "rows" / f"{row.id}.json").exists()
    assert reproduce.main(argv) == 0
    assert [state for _, state in fits] == [False, True]  # the second attempt found the first one's state
    assert fits[0][0] == fits[1][0] and fits[0][0][-1] == str(tmp_path / "runs" / row.id)
    assert "--overwrite" not in fits[1][0]
    flags = dict(zip(fits[0][0][1::2], fits[0][0][2::2]))
    assert flags["--epochs"] == "30" and flags["--lr-step-epochs"] == "8" and flags["--seed"] == "0"
    result = json.loads((tmp_path / "results" / "rows" / f"{row.id}.json").read_text())
    assert result["accuracy"] == 0.991 and result["loss3"] == 0.12 and result["budget"]["train_images"] == 55000


def test_the_report_is_rebuilt_from_the_rows_present_with_not_run_yet_for_the_others(tmp_path):
    runner = FakeRunner()
    assert reproduce.main(["--rows", "mnist-csae-c-b0.04-full,mnist-csae-l-full", *dirs(tmp_path)], runner=runner) == 0
    expected = [f"mnist-csae-c-b0.04-full-s{s}" for s in range(3)] + [f"mnist-csae-l-full-s{s}" for s in range(3)]
    assert [c[0] for c in runner.calls] == expected
    report = (tmp_path / "report.md").read_text()
    line = next(x for x in report.splitlines() if x.startswith("| CSAE-C β 0.04 | 99.32"))
    assert "99.00 ± 0.00" in line and "0, 1, 2" in line and "30 ep × 55,000 img" in line
    line = next(x for x in report.splitlines() if x.startswith("| CSAE-C β 0.02 |"))
    assert "not run yet (budget 30 ep × 55,000 img)" in line
    assert "not run yet (budget 120 ep × 55,000 img)" in next(x for x in report.splitlines() if "paper protocol" in x)
    assert "lr /10 every 8 epochs" in next(x for x in report.splitlines() if "`mnist-csae-c-b0.02-full-s0` |" in x)
    assert "**β trend** (Table 3): not yet run at full budget" in report
    assert "**Fig. 9, equal distances** (paper" in report  # its rows (the three seeds) are there
    table = list(csv.DictReader(open(tmp_path / "results" / "results.csv")))
    assert len(table) == len(rowset.rows())
    status = {r["id"]: r["status"] for r in table}
    assert status["mnist-csae-l-full-s0"] == "full" and status["fashion-fsae-own-s0"].startswith("not run yet")


def test_every_row_of_tables_3_and_4_has_its_line_in_its_table_even_if_not_listed_by_hand(tmp_path):
    assert reproduce.main(["--report-only", *dirs(tmp_path)]) == 0
    report = (tmp_path / "report.md").read_text()
    for code, title, end in (("t3", "## Table 3", "## Table 4"), ("t4", "## Table 4", "## Table 5")):
        section = report[report.index(title):report.index(end)]
        for row in (r for r in rowset.rows() if r.table == code):
            assert f"`{row.id}`" in section, (row.id, title)


def test_claims_are_judged_only_from_rows_at_full_budget(tmp_path):
    where = reproduce.paths(reproduce.build_parser().parse_args(dirs(tmp_path)))
    betas = rowset.select(rowset.rows(), "mnist-csae-c-b0.0*-full,mnist-csae-c-b0.1-full")
    for i, row in enumerate(betas):
        reproduce.write_row(fake_result(row, 0.99 + 0.001 * (i % 3), "smoke"), reproduce.result_path(row, where))
    args = reproduce.build_parser().parse_args(dirs(tmp_path))
    assert "**β trend** (Table 3): not yet run at full budget" in reproduce.write_report(args, where)
    assert "(smoke budget)" in reproduce.write_report(args, where)
    for i, row in enumerate(betas):
        reproduce.write_row(fake_result(row, 0.99 + 0.001 * (i % 3)), reproduce.result_path(row, where))
    report = reproduce.write_report(args, where)
    assert "**β trend** (paper: 99.32 / 99.32 / 99.38 / 99.35, best at β 0.06): csae-tf" in report


def test_csae_c_against_the_basenet_is_judged_against_the_seed_noise(tmp_path):
    where = reproduce.paths(reproduce.build_parser().parse_args(dirs(tmp_path)))
    args = reproduce.build_parser().parse_args(dirs(tmp_path))
    csae, base = (rowset.select(rowset.rows(), f"mnist-{g}-full") for g in ("csae-c-b0.04", "basenet"))
    for gap, verdict in ((0.004, "CSAE-C ahead by more than twice"), (0.0002, "within seed noise")):
        for offset, rows in ((gap, csae), (0.0, base)):
            for i, row in enumerate(rows):
                reproduce.write_row(fake_result(row, 0.99 + offset + 0.0005 * i), reproduce.result_path(row, where))
        line = next(x for x in reproduce.write_report(args, where).splitlines() if "softmax basenet, MNIST" in x)
        assert verdict in line, line
    assert "**CSAE-C vs the softmax basenet, Fashion-MNIST**: not yet run at full budget" in \
        reproduce.write_report(args, where)


def test_list_prints_every_row_with_its_budget(tmp_path, capsys):
    assert reproduce.main(["--list", *dirs(tmp_path)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == len(rowset.rows())
    by_id = {line.split()[0]: line for line in out}
    assert "30 ep on all training images" in by_id["mnist-csae-c-b0.04-full-s1"]
    assert "120 ep" in by_id["mnist-csae-c-b0.04-paper-s0"] and "paper-c" in by_id["mnist-csae-c-b0.04-paper-s0"]
    assert "Adam 1e-4, batch 50" in by_id["mnist-conv-vae-deep-own-s0"]
    assert "first 6,500" in by_id["mnist-ddae-subset6k-s0"] and "1,000 test" in by_id["mnist-ddae-subset6k-s0"]
    assert all("not run yet" in line for line in out)


def test_max_hours_starts_no_row_after_the_limit(tmp_path, monkeypatch):
    clock = iter(range(0, 10**6, 3000))  # every look at the clock: 3,000 s later
    monkeypatch.setattr(reproduce.time, "time", lambda: next(clock))
    runner = FakeRunner()
    assert reproduce.main(["--rows", "mnist-csae-c-b0.04-full", "--max-hours", "1", *dirs(tmp_path)],
                          runner=runner) == 0
    assert [c[0] for c in runner.calls] == ["mnist-csae-c-b0.04-full-s0"]


def test_the_comparison_writes_one_row_per_system_and_skips_it_next_time(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    y = rng.integers(0, 10, 96).astype("int32")
    x = np.clip(rng.uniform(-1, 1, (10, 1, 1, 1))[y] + 0.1 * rng.standard_normal((96, 32, 32, 1)), -1, 1)
    x = x.astype("float32")
    info = DatasetInfo("synthetic", 10, (32, 32, 1), (32, 32, 1), 64, 32, tuple(map(str, range(10))))
    train = tf.data.Dataset.from_tensor_slices((x[:64], y[:64])).batch(32)
    cfg, opts = FitConfig(epochs=1, batch_size=32, verbose=0, seed=3), compare.BaselineOptions(images=2)
    rows_dir = tmp_path / "rows"
    rows_dir.mkdir()
    (rows_dir / "mnist-csae-l-full-s0.json").write_text(json.dumps({"id": "x"}))  # a reproduction row beside them
    compare.run_on(train, (x[64:], y[64:]), info, cfg, opts, ["fsae"], str(tmp_path / "a"), "cmd", str(rows_dir),
                   "syn-{model}-s{seed}")
    row = json.loads((rows_dir / "syn-fsae-s3.json").read_text())
    assert row["seed"] == 3 and row["budget"]["epochs"] == 1 and row["budget"]["train_images"] == 64
    assert row["command"] == "cmd" and row["config"]["batch_size"] == 32 and row["machine"] and row["date"]
    assert 0.0 <= row["generated_classified_as_their_class"] <= 1.0 and row["mse"] > 0
    monkeypatch.setattr(compare, "train", lambda *a: pytest.fail("a finished row was trained again"))
    results = compare.run_on(train, (x[64:], y[64:]), info, cfg, opts, ["fsae"], str(tmp_path / "b"), "cmd",
                             str(rows_dir), "syn-{model}-s{seed}")
    assert results[0]["accuracy"] == row["accuracy"]
    assert "syn-fsae-s3" in (tmp_path / "b" / "comparison.md").read_text()  # the table from the rows there


def test_the_report_shows_the_generated_samples_a_comparison_row_left(tmp_path):
    args = reproduce.build_parser().parse_args(dirs(tmp_path))
    where = reproduce.paths(args)
    row = rowset.select(rowset.rows(), "fashion-fsae-own-s0")[0]
    reproduce.write_row(fake_result(row, model="fsae", generated_classified_as_their_class=0.9),
                        reproduce.result_path(row, where))
    assert "fashion-fsae-own-s0 generated samples" not in reproduce.write_report(args, where)
    (reproduce.result_path(row, where).parent.parent / f"{row.id}_generated.png").write_bytes(b"png")
    assert "![fashion-fsae-own-s0 generated samples" in reproduce.write_report(args, where)


def test_the_best_fashion_recipe_is_chosen_on_its_validation_accuracy_not_on_test(tmp_path):
    args = reproduce.build_parser().parse_args(dirs(tmp_path))
    where = reproduce.paths(args)
    higher_test, higher_val = (rowset.select(rowset.rows(), r)[0] for r in ("fashion-csae-c-b0.04-aug60-s0",
                                                                             "fashion-csae-c-b0.04-aug120-s0"))
    reproduce.write_row(fake_result(higher_test, 0.945, val_accuracy=0.930), reproduce.result_path(higher_test, where))
    reproduce.write_row(fake_result(higher_val, 0.935, val_accuracy=0.940), reproduce.result_path(higher_val, where))
    goal = next(x for x in reproduce.write_report(args, where).splitlines() if "any recipe" in x)
    assert f"`{higher_val.group}`" in goal and "93.50% test accuracy" in goal and goal.endswith("not met.")
    second = rowset.select(rowset.rows(), "fashion-csae-c-b0.04-aug120-s1")[0]
    reproduce.write_row(fake_result(second, 0.945, val_accuracy=0.942), reproduce.result_path(second, where))
    goal = next(x for x in reproduce.write_report(args, where).splitlines() if "any recipe" in x)
    assert "(2 seeds, " in goal and goal.endswith("94.00 ± 0.71% test accuracy with one view: met.")  # the mean


def test_the_accuracy_goals_say_met_only_for_a_three_seed_mean_at_full_budget(tmp_path):
    where = reproduce.paths(reproduce.build_parser().parse_args(dirs(tmp_path)))
    args = reproduce.build_parser().parse_args(dirs(tmp_path))
    recipe = rowset.select(rowset.rows(), "mnist-csae-c-b0.04-cos15aug")

    def goal_line():
        return next(x for x in reproduce.write_report(args, where).splitlines() if "`mnist-csae-c-b0.04-cos15aug`" in x
                    and "three-seed mean" in x)

    for row in recipe[:2]:
        reproduce.write_row(fake_result(row, 0.997), reproduce.result_path(row, where))
    assert "2 of 3 seeds run" in goal_line()
    reproduce.write_row(fake_result(recipe[2], 0.997, "smoke"), reproduce.result_path(recipe[2], where))
    assert "2 of 3 seeds run" in goal_line()
    reproduce.write_row(fake_result(recipe[2], 0.997), reproduce.result_path(recipe[2], where))
    assert goal_line().endswith("99.70 ± 0.00: met.")
    reproduce.write_row(fake_result(recipe[2], 0.985), reproduce.result_path(recipe[2], where))
    assert goal_line().endswith(": not met.")


def test_the_encoder_alone_is_judged_against_csae_c_seed_noise(tmp_path):
    where = reproduce.paths(reproduce.build_parser().parse_args(dirs(tmp_path)))
    args = reproduce.build_parser().parse_args(dirs(tmp_path))
    for i, row in enumerate(rowset.select(rowset.rows(), "mnist-csae-c-b0.04-full")):
        reproduce.write_row(fake_result(row, 0.995 + 0.0002 * i), reproduce.result_path(row, where))
    encoder = rowset.select(rowset.rows(), "mnist-encoder-only-full")[0]
    for accuracy, verdict in ((0.9965, "the encoder alone ahead by more than twice"), (0.9951, "within seed noise"),
                              (0.9900, "CSAE-C ahead by more than twice")):
        reproduce.write_row(fake_result(encoder, accuracy), reproduce.result_path(encoder, where))
        report = reproduce.write_report(args, where)
        line = next(x for x in report.splitlines() if "encoder alone vs CSAE-C, MNIST" in x)
        assert verdict in line, line


def test_the_csae_l_goal_reads_its_best_recipe_run_at_full_budget(tmp_path):
    where = reproduce.paths(reproduce.build_parser().parse_args(dirs(tmp_path)))
    args = reproduce.build_parser().parse_args(dirs(tmp_path))
    paper = rowset.select(rowset.rows(), "mnist-csae-l-paper")[0]

    def goal_line():
        return next(x for x in reproduce.write_report(args, where).splitlines() if "CSAE-L above" in x and "MNIST" in x)

    for short, accuracy in zip(rowset.select(rowset.rows(), "mnist-csae-l-full"), (0.977, 0.978, 0.979)):
        reproduce.write_row(fake_result(short, accuracy), reproduce.result_path(short, where))
    assert "`mnist-csae-l-full` (" in goal_line() and goal_line().endswith("97.80 ± 0.10 test accuracy: not met.")
    reproduce.write_row(fake_result(paper, 0.981, "smoke"), reproduce.result_path(paper, where))
    assert "`mnist-csae-l-full` (" in goal_line()
    reproduce.write_row(fake_result(paper, 0.981), reproduce.result_path(paper, where))
    assert "`mnist-csae-l-paper` (" in goal_line() and goal_line().endswith("98.10 test accuracy: met (one seed).")


def test_the_csae_l_goal_judges_the_recipe_chosen_on_validation_retrained_on_all_60000_images(tmp_path):
    where = reproduce.paths(reproduce.build_parser().parse_args(dirs(tmp_path)))
    args = reproduce.build_parser().parse_args(dirs(tmp_path))

    def goal_line():
        return next(x for x in reproduce.write_report(args, where).splitlines() if "CSAE-L above" in x and "MNIST" in x)

    for row, accuracy in zip(rowset.select(rowset.rows(), "mnist-csae-l-full"), (0.977, 0.978, 0.979)):
        reproduce.write_row(fake_result(row, accuracy), reproduce.result_path(row, where))
    for row, accuracy in zip(rowset.select(rowset.rows(), "mnist-csae-l-all60k"), (0.980, 0.981, 0.982)):
        # no hold-out, so no validation accuracy: never the pick, only the pick's retrain
        reproduce.write_row(fake_result(row, accuracy, val_accuracy=None), reproduce.result_path(row, where))
    assert "`mnist-csae-l-full` (" in goal_line()
    assert goal_line().endswith("(`mnist-csae-l-all60k`, seeds 0, 1, 2), 98.10 ± 0.10: met, by 0.13 points (more "
                                "than twice the standard error of the mean, 0.06).")
    paper = rowset.select(rowset.rows(), "mnist-csae-l-paper")[0]  # another recipe, ahead on validation
    reproduce.write_row(fake_result(paper, 0.975, val_accuracy=0.99), reproduce.result_path(paper, where))
    assert "`mnist-csae-l-paper` (" in goal_line() and goal_line().endswith("97.50 test accuracy: not met.")


def test_the_csae_l_goal_calls_a_mean_within_its_noise_of_the_paper_level_not_above(tmp_path):
    where = reproduce.paths(reproduce.build_parser().parse_args(dirs(tmp_path)))
    args = reproduce.build_parser().parse_args(dirs(tmp_path))
    for row, accuracy in zip(rowset.select(rowset.rows(), "mnist-csae-l-full"), (0.977, 0.980, 0.983)):
        reproduce.write_row(fake_result(row, accuracy), reproduce.result_path(row, where))
    line = next(x for x in reproduce.write_report(args, where).splitlines() if "CSAE-L above" in x and "MNIST" in x)
    # 98.00 against 97.97: above by 0.03 points, with a standard error of the mean of 0.17
    assert line.endswith("98.00 ± 0.30 test accuracy: met by the mean, by 0.03 points, less than twice the standard "
                         "error of the mean (0.17): level with the paper, not clearly above it."), line


def test_the_fashion_goal_says_when_only_test_time_views_meet_it(tmp_path):
    where = reproduce.paths(reproduce.build_parser().parse_args(dirs(tmp_path)))
    args = reproduce.build_parser().parse_args(dirs(tmp_path))
    row = rowset.select(rowset.rows(), "fashion-csae-c-b0.04-aug60")[0]
    reproduce.write_row(fake_result(row, 0.938), reproduce.result_path(row, where))

    def goal_line():
        return next(x for x in reproduce.write_report(args, where).splitlines() if "Fashion-MNIST CSAE-C ≥" in x)

    assert goal_line().endswith("93.80% test accuracy with one view: not met.")
    views = where.results.parent / "test_time_views" / f"{row.id}.json"
    views.parent.mkdir(parents=True)
    views.write_text(json.dumps({"chosen": "flip", "accuracy": {"flip": {"validation": 0.943, "test": 0.941}}}))
    assert goal_line().endswith("94.10% with test-time views (`--views flip`, chosen on the validation hold-out: "
                                "94.30%): met with test-time views only.")


def test_the_beta_trend_is_judged_against_what_seed_noise_spans_over_four_runs(tmp_path):
    where = reproduce.paths(reproduce.build_parser().parse_args(dirs(tmp_path)))
    args = reproduce.build_parser().parse_args(dirs(tmp_path))
    for i, row in enumerate(rowset.select(rowset.rows(), "mnist-csae-c-b0.04-full")):
        reproduce.write_row(fake_result(row, 0.9958 + 0.0002 * i), reproduce.result_path(row, where))  # std 0.02 pts
    others = {beta: rowset.select(rowset.rows(), f"mnist-csae-c-b{beta}-full")[0] for beta in (0.02, 0.06, 0.1)}
    for accs, verdict in (((0.9961, 0.9957, 0.9963), "within seed noise, no trend can be claimed, and the paper's"),
                          ((0.9950, 0.9975, 0.9960), "larger than seed noise; best at β 0.06 as in the paper")):
        for row, acc in zip(others.values(), accs):
            reproduce.write_row(fake_result(row, acc), reproduce.result_path(row, where))
        line = next(x for x in reproduce.write_report(args, where).splitlines() if "**β trend**" in x)
        assert verdict in line, line


def test_recorded_commands_name_the_data_beside_the_checkout_relative_to_it(monkeypatch):
    root = reproduce.ROOT
    args = reproduce.build_parser().parse_args(["--data-dir", str(root / "runs" / "tfds"),
                                                "--shared-data", str(root.parent / "shared" / "data")])
    row = rowset.select(rowset.rows(), "fashion-cvae-own-s0")[0]
    monkeypatch.chdir(root)
    cmd = reproduce.shell(reproduce.commands(row, args, reproduce.paths(args))[0])
    assert "--data-dir runs/tfds --manual-dir ../shared/data/fashion_mnist" in cmd and str(root.parent) not in cmd


def _sweep_csv(path: Path, recipe_val: float, variant_vals: list[float]) -> Path:
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, ["variant", "flags", "val_accuracy", "test_accuracy"])
        w.writeheader()
        w.writerow({"variant": "recipe", "flags": "", "val_accuracy": recipe_val, "test_accuracy": 0.978})
        for i, v in enumerate(variant_vals):
            w.writerow({"variant": f"v{i}", "flags": f"--flag {i}", "val_accuracy": v, "test_accuracy": 0.99})
    return path


def test_the_csae_l_sweep_names_its_best_variant_on_validation_and_weighs_it_against_noise(tmp_path):
    close = reproduce.csae_l_sweep(_sweep_csv(tmp_path / "a.csv", 0.978, [0.970, 0.979]), tmp_path)
    assert "`--flag 1`, 97.90% against the recipe's 97.80%" in close and "within validation noise" in close
    ahead = reproduce.csae_l_sweep(_sweep_csv(tmp_path / "b.csv", 0.978, [0.990, 0.979]), tmp_path)
    assert "`--flag 0`" in ahead and "ahead by more than validation noise" in ahead


def test_the_csae_l_sweep_starts_from_the_recipes_row_and_skips_variants_already_in_its_csv(tmp_path, capsys):
    import csae_l_sweep

    (tmp_path / "rows").mkdir()
    (tmp_path / "rows" / "fashion-csae-l-full-s0.json").write_text(json.dumps(
        {"val_accuracy": 0.89221, "accuracy": 0.8894, "command": ["python -m csae_tf.fit ..."],
         "date": "2026-12-02T19:04:24+00:00", "machine": "test"}))
    out = tmp_path / "csae_l_sweep_fashion.csv"
    with out.open("w", newline="") as f:  # one variant already ran: nothing is trained again
        csv.DictWriter(f, csae_l_sweep.FIELDS).writeheader()
        csv.DictWriter(f, csae_l_sweep.FIELDS).writerow({"variant": "cos", "flags": "--schedule cosine"})
    assert csae_l_sweep.main(["--dataset", "fashion_mnist", "--variants", "cos", "--results", str(tmp_path)]) == 0
    assert "cos: in csae_l_sweep_fashion.csv already, skipped" in capsys.readouterr().out

    out.unlink()  # a new sweep writes the recipe's own row first
    assert csae_l_sweep.main(["--dataset", "fashion_mnist", "--variants", "--results", str(tmp_path)]) == 0
    with out.open() as f:
        (recipe,) = list(csv.DictReader(f))
    assert recipe["variant"] == "baseline (fashion-csae-l-full-s0)" and recipe["val_accuracy"] == "0.8922"
