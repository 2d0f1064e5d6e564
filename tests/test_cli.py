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


# -- issue 24, item 13: one line where a traceback was --------------------------------


def test_bad_paths_and_a_missing_target_are_one_line(tmp_path, capsys):
    import numpy as np

    with pytest.raises(mb.MpibenchError, match=r"y is None\. Pass the target"):
        mb.Task("t", X=np.zeros((3, 1)), y=None)
    a_file = tmp_path / "afile"
    a_file.write_text("")
    with pytest.raises(mb.MpibenchError, match="is a file, not a project folder"):
        mb.create_project(a_file, mb.demo_grid())
    project = mb.create_demo(tmp_path / "demo")
    assert mb.run(project, progress_every=0, isolate=False) == 0
    capsys.readouterr()
    assert main(["report", str(project), "-o", str(tmp_path / "missing" / "r.html")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "No such file or directory" in err and "missing" in err


def test_pipes_stop_requests_and_stale_locks_are_one_line(tmp_path):
    import json
    import socket
    import subprocess

    from mpi_helpers import mpibench_command, run_process

    project = mb.create_demo(tmp_path / "demo")
    (project / "stop.request").mkdir()
    (project / "run.lock").write_text(json.dumps(
        {"host": socket.gethostname(), "pid": 2**22 + 7, "start_time": 0}))
    done = run_process([*mpibench_command(), "run", str(project), "--no-isolate"])
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    warning = [line for line in done.stderr.splitlines() if "stale lock" in line]
    assert warning == [warning[0]] and warning[0].startswith("mpibench: warning: Taking over")
    assert "warnings.warn" not in done.stderr and not (project / "stop.request").exists()
    (project / "stop.request").write_bytes(b"me \x1b[31mred\x07\n")
    done = run_process([*mpibench_command(), "run", str(project), "--no-isolate"])
    assert "(me [31mred)" in done.stderr and "\x1b" not in done.stderr, done.stderr
    import numpy as np
    from sklearn.model_selection import ShuffleSplit

    task = mb.Task("t", X=np.zeros((20, 1)), y=np.arange(20.0))
    big = mb.create_project(tmp_path / "big", mb.Grid(  # results larger than a pipe holds
        [task], [mb.DebugLearner()], [ShuffleSplit(1500, random_state=0)]))
    assert mb.run(big, progress_every=0, isolate=False) == 0
    command = " ".join(mpibench_command())
    for verb in ("results", "status"):
        piped = subprocess.run(f"{command} {verb} {big} | head -c 10", shell=True,
                               capture_output=True, text=True, timeout=60)
        assert "Traceback" not in piped.stderr and "Error" not in piped.stderr, piped.stderr
