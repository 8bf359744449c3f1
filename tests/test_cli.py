"""The `csae` command (`csae_tf.cli`) and the one error handler every command's main() goes through
(`csae_tf.errors`). No trained model is needed here: path errors of the commands that read a run are
tested beside those commands (test_evaluate.py, test_classify.py)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest
from conftest import ROOT

from csae_tf import cli, compare, errors, pedcc
from tuning import search


def csae(*args: str, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    """`python -m csae_tf.cli ARGS` in a fresh process, with TF_CPP_MIN_LOG_LEVEL left unset unless given."""
    base = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                          env={**base, **(env or {})})


def assert_no_tensorflow_imported(stderr: str) -> None:
    """A `python -X importtime` process, by its stderr, imported neither TensorFlow nor Keras."""
    imported = [line.rsplit("|", 1)[-1].strip() for line in stderr.splitlines() if line.startswith("import time")]
    # the list is complete: the command's own imports are in it (importlib.import_module's are not timed)
    assert "csae_tf.errors" in imported
    assert not [m for m in imported if m.split(".")[0] in ("tensorflow", "keras")]


# --- the front door ---

def test_help_lists_every_subcommand_without_importing_tensorflow():
    """`csae --help` must answer at once: -X importtime lists every module the process imported."""
    result = csae("-X", "importtime", "-m", "csae_tf.cli", "--help")
    assert result.returncode == 0, result.stderr[-2000:]
    for name, (_, description) in cli.SUBCOMMANDS.items():
        assert re.search(rf"^  {name} +{re.escape(description)}$", result.stdout, re.M), name
    assert_no_tensorflow_imported(result.stderr)


@pytest.mark.parametrize("name", ["fit", "tune", "pedcc", "classify", "generate", "extrapolate", "evaluate"])
def test_subcommands_that_read_their_flags_first_answer_help_without_importing_tensorflow(name):
    # TF_CPP_MIN_LOG_LEVEL set: TensorFlow would load with stderr open (not pointed at /dev/null), so seen here
    result = csae("-X", "importtime", "-m", "csae_tf.cli", name, "--help", env={"TF_CPP_MIN_LOG_LEVEL": "2"})
    assert result.returncode == 0 and "usage:" in result.stdout, result.stderr[-2000:]
    assert_no_tensorflow_imported(result.stderr)


def test_the_subcommands_are_fit_evaluate_generate_extrapolate_classify_export_tune_compare_pedcc_ood():
    assert list(cli.SUBCOMMANDS) == ["fit", "evaluate", "generate", "extrapolate", "classify", "export", "tune",
                                     "compare", "pedcc", "ood"]


@pytest.mark.parametrize("name", list(cli.SUBCOMMANDS))
def test_every_subcommand_answers_help(name, capsys):
    """`csae NAME --help` is that module's own --help (argparse exits with status 0)."""
    with pytest.raises(SystemExit) as done:
        cli.main([name, "--help"])
    assert done.value.code == 0
    assert "usage:" in capsys.readouterr().out


def test_a_subcommand_delegates_to_its_modules_main(capsys):
    assert cli.main(["pedcc", "--classes", "4", "--latent-dim", "3", "--method", "simplex"]) == 0
    assert json.loads(capsys.readouterr().out)["num_classes"] == 4


def test_an_unknown_subcommand_is_a_usage_error(capsys):
    assert cli.main(["fitt"]) == 2
    assert "unknown subcommand 'fitt'" in capsys.readouterr().err


def test_a_subcommand_whose_module_is_missing_says_so_in_one_line(monkeypatch, capsys):
    monkeypatch.setitem(cli.SUBCOMMANDS, "ood", ("csae_tf.not_written_yet", "open-set scores"))
    assert cli.main(["ood", "--help"]) == 2
    err = capsys.readouterr().err
    assert err.strip() == "error: csae ood is not available in this installation (csae_tf.not_written_yet is missing)"


def test_tensorflows_log_lines_are_hidden_unless_asked_for():
    """Without TF_CPP_MIN_LOG_LEVEL, a subcommand that loads TensorFlow prints none of its C++/absl lines."""
    result = csae("-m", "csae_tf.cli", "pedcc", "--classes", "3", "--latent-dim", "2")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "I0000" not in result.stderr and "oneDNN" not in result.stderr, result.stderr
    assert result.stderr == ""


def test_the_python_m_entry_points_keep_working():
    """`python -m export.saved_model` and `python -m tuning.search`, run as __main__ (one process, one TF import)."""
    program = ("import runpy, sys\n"
               "for module in ('export.saved_model', 'tuning.search'):\n"
               "    sys.argv = [module, '--help']\n"
               "    try:\n"
               "        runpy.run_module(module, run_name='__main__', alter_sys=True)\n"
               "    except SystemExit as done:\n"
               "        print(module, 'exit', done.code)\n")
    result = csae("-c", program, env={"TF_CPP_MIN_LOG_LEVEL": "2"})
    assert "export.saved_model exit 0" in result.stdout and "tuning.search exit 0" in result.stdout, result.stderr
    assert "usage: python -m export.saved_model" in result.stdout and "usage: python -m tuning.search" in result.stdout


def test_setup_declares_the_csae_console_script_beside_csae_fit():
    text = (ROOT / "setup.py").read_text()
    assert '"csae=csae_tf.cli:main"' in text and '"csae-fit=csae_tf.fit:main"' in text


# --- one error handler ---

def fail(err: BaseException):
    def fn():
        raise err
    return fn


def test_a_project_error_becomes_one_error_line_and_status_2(capsys):
    assert errors.run_main(fail(errors.CsaeError("the run has no model.keras"))) == 2
    assert capsys.readouterr().err == "error: the run has no model.keras\n"


def test_older_error_classes_count_once_their_module_is_loaded(capsys):
    """ConfigError, DataError, SearchError ... predate CsaeError; they are user errors all the same."""
    from csae_tf.config import ConfigError
    from csae_tf.data import DataError

    for err in (ConfigError("--beta must lie in [0, 1]"), DataError("no MNIST files")):
        assert errors.run_main(fail(err)) == 2
    assert capsys.readouterr().err.splitlines() == ["error: --beta must lie in [0, 1]", "error: no MNIST files"]


def test_a_file_system_error_names_its_file_in_one_line(capsys):
    assert errors.run_main(fail(IsADirectoryError(21, "Is a directory", "out/grid.png"))) == 2
    assert capsys.readouterr().err == "error: out/grid.png: Is a directory\n"


def test_ctrl_c_is_one_line_and_status_130(capsys):
    assert errors.run_main(fail(KeyboardInterrupt()), interrupted="interrupted: rerun to resume") == 130
    assert capsys.readouterr().err.strip() == "interrupted: rerun to resume"


def test_a_bug_keeps_its_traceback():
    """Only errors the user can fix are turned into a message; anything else is raised as it is."""
    with pytest.raises(ZeroDivisionError):
        errors.run_main(fail(ZeroDivisionError("division by zero")))


def test_the_command_decorator_returns_mains_status():
    @errors.command()
    def main(argv=None):
        return 7 if argv == ["x"] else None

    assert main(["x"]) == 7 and main([]) == 0


# --- path arguments of the wrong kind (commands that need no trained run) ---

def test_output_dir_refuses_a_file_in_the_way(tmp_path):
    (tmp_path / "taken").write_text("")
    with pytest.raises(errors.CsaeError, match="--output .*taken is a file, not a folder"):
        errors.output_dir(tmp_path / "taken" / "sub", "--output")


def test_output_file_refuses_a_folder(tmp_path):
    with pytest.raises(errors.CsaeError, match="is a folder; name a file"):
        errors.output_file(tmp_path, "--output")


def test_output_dir_refuses_a_folder_it_cannot_write(tmp_path, monkeypatch):
    """The permission check itself (as root, chmod does not stop writes: the access check is simulated)."""
    monkeypatch.setattr(errors.os, "access", lambda path, mode: False)
    with pytest.raises(errors.CsaeError, match="not writable"):
        errors.output_dir(tmp_path / "out", "--output")


def test_compare_output_that_is_a_file_is_a_one_line_error(tmp_path, capsys):
    (tmp_path / "table").write_text("")
    assert compare.main(["--models", "basenet", "--output", str(tmp_path / "table")]) == 2
    assert capsys.readouterr().err.strip() == f"error: --output {tmp_path / 'table'} is a file, not a folder"


def test_tune_directory_that_is_a_file_is_a_one_line_error(tmp_path, capsys):
    (tmp_path / "searches").write_text("")
    assert search.main(["--directory", str(tmp_path / "searches"), "--epochs", "1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "searches" in err and len(err.strip().splitlines()) == 1


def test_pedcc_output_that_is_a_folder_is_a_one_line_error(tmp_path, capsys):
    (tmp_path / "c.npy").mkdir()
    assert pedcc.main(["--classes", "3", "--latent-dim", "2", "--output", str(tmp_path / "c.npy")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "c.npy" in err and len(err.strip().splitlines()) == 1


# --- compare's options, derived from its dataclass like FitConfig's ---

def test_compare_baseline_flags_come_from_the_baseline_options_dataclass():
    args = compare.build_parser().parse_args(["--fsae-rounding", "--kelm-c", "3", "--kelm-method", "subset"])
    opts = compare.BaselineOptions.from_args(args)
    assert (opts.fsae_rounding, opts.kelm_c, opts.kelm_method, opts.images) == (True, 3.0, "subset", 10)
    assert compare.BaselineOptions.from_args(compare.build_parser().parse_args([])) == compare.BaselineOptions()


def test_compare_keeps_fitconfigs_config_flag_and_parses_booleans_like_fitconfig():
    args = compare.build_parser().parse_args(["--config", "run.json", "--fsae-rounding", "no", "--augment", "yes"])
    assert args.config == "run.json" and args.fsae_rounding is False and args.augment is True
    assert not hasattr(compare, "_bool")
    with pytest.raises(SystemExit):
        compare.build_parser().parse_args(["--fsae-rounding", "maybe"])
