"""The command line: verbs call the library; bad input gets one line and exit 2."""

from __future__ import annotations

import pytest

import mpibench as mb
from mpibench.cli import main


def test_demo_creates_the_project_and_is_idempotent(tmp_path, capsys):
    assert main(["demo", str(tmp_path / "d")]) == 0
    first = capsys.readouterr().out
    assert "mpiexec -n 4 mpibench run" in first and first.startswith("Created")
    assert main(["demo", str(tmp_path / "d")]) == 0
    assert capsys.readouterr().out.startswith("The demo project is already at")
    assert mb.GridFile(tmp_path / "d" / "grid.h5").attrs()["n_jobs"] == 72


@pytest.mark.parametrize("argv", [
    ["results", "{tmp}/nothing"],
    ["status", "{tmp}/nothing"],
])
def test_missing_project_is_one_line_exit_2(argv, tmp_path, capsys):
    code = main([a.format(tmp=tmp_path) for a in argv])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("mpibench: error: ") and err.count("\n") == 1


def test_results_before_any_run_names_the_fix(demo_project, capsys):
    assert main(["results", str(demo_project)]) == 2
    assert "Run `mpibench run" in capsys.readouterr().err


def test_demo_refuses_a_folder_with_other_files(tmp_path, capsys):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "data.csv").write_text("1\n")
    assert main(["demo", str(tmp_path / "x")]) == 2
    assert "not empty" in capsys.readouterr().err
    assert (tmp_path / "x" / "data.csv").read_text() == "1\n"


def test_unknown_verb_and_bad_option_exit_2(capsys):
    with pytest.raises(SystemExit) as info:
        main(["frobnicate"])
    assert info.value.code == 2
    with pytest.raises(SystemExit) as info:
        main(["run", "p", "--order", "fastest"])
    assert info.value.code == 2
    assert "invalid choice: 'fastest'" in capsys.readouterr().err


def test_version(capsys):
    with pytest.raises(SystemExit):
        main(["--version"])
    assert mb.__version__ in capsys.readouterr().out


def imported_by(code: str) -> set[str]:
    """Top-level modules a fresh interpreter holds after running ``code``."""
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-c", f"{code}\nimport sys; print(' '.join(sys.modules))"],
        capture_output=True, text=True, timeout=120, check=True)
    return {name.split(".")[0] for name in done.stdout.split()}


def test_help_imports_no_numpy_and_the_run_path_no_analysis():
    assert "numpy" not in imported_by(
        "import contextlib, io, mpibench.cli as c\n"
        "with contextlib.suppress(SystemExit), contextlib.redirect_stdout(io.StringIO()):\n"
        "    c.main(['--help'])")
    # what rank 0 and an isolated worker rank import: no scikit-learn, scipy or plots
    modules = imported_by("import mpibench.engine.runner, mpibench.engine.dispatcher, "
                          "mpibench.engine.isolation")
    assert not modules & {"sklearn", "scipy", "matplotlib"}, modules
    assert "mpi4py" not in imported_by("import mpibench as mb; mb.Grid, mb.Task")
