"""Every learner is loaded once per rank before the first split (issue 24, items 5 and
16): one that cannot be ends the run in one line, and a run with nothing to do loads
no pickled code."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from mpi_helpers import launcher, run_mpibench, run_process
from sklearn.model_selection import KFold

import mpibench as mb

pytestmark = pytest.mark.mpi

MODULE = '''
from sklearn.dummy import DummyRegressor


class Mine(DummyRegressor):
    """A learner that lives in a module of the experiment's folder."""
'''


def local_project(tmp_path, monkeypatch) -> tuple[Path, Path]:
    """A project whose learner comes from ``mylearners.py`` in a folder of its own."""
    folder = tmp_path / "experiment"
    folder.mkdir()
    (folder / "mylearners.py").write_text(MODULE)
    monkeypatch.syspath_prepend(str(folder))
    from mylearners import Mine

    rng = np.random.default_rng(0)
    task = mb.Task("t", X=rng.normal(size=(40, 2)), y=rng.normal(size=40))
    grid = mb.Grid([task], {"plain": mb.DebugLearner(), "mine": Mine()}, [KFold(4)])
    return mb.create_project(tmp_path / "p", grid), folder


@pytest.mark.parametrize("mode", [[], ["--no-isolate"]], ids=["isolated", "no_isolate"])
def test_a_learner_no_rank_can_load_ends_the_run_in_one_line(tmp_path, monkeypatch, mode):
    project, folder = local_project(tmp_path, monkeypatch)
    command = [*launcher(3), sys.executable, "-c",
               "import sys; from mpibench.cli import main; sys.exit(main())", "run",
               str(project), *mode]
    done = run_process(command, timeout=120, cwd=tmp_path)  # the module is not here
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    errors = [line for line in done.stderr.splitlines() if "error" in line]
    assert len(errors) == 1, done.stderr
    assert "Learner 'mine' cannot be loaded on rank" in errors[0]
    assert "No module named 'mylearners'" in errors[0] and "PYTHONPATH" in errors[0]
    assert not (project / "results.h5").exists() and not (project / "run.lock").exists()
    journal = project / "results.journal"
    assert not journal.exists() or b'"t": "r"' not in journal.read_bytes()
    here = run_process(command, timeout=120, cwd=folder)  # `mpibench run` finds it here
    assert here.returncode == 0, here.stderr
    assert set(mb.read_results(project)["status"]) == {"ok"}


def test_a_run_with_nothing_to_do_loads_no_pickled_code(tmp_path):
    from spawning_learner import LoudLearner

    marker = tmp_path / "unpickled"
    rng = np.random.default_rng(0)
    task = mb.Task("t", X=rng.normal(size=(40, 2)), y=rng.normal(size=40))
    project = mb.create_project(tmp_path / "p", mb.Grid(
        [task], {"loud": LoudLearner(marker=str(marker))}, [KFold(4)]))
    env = {"PYTHONPATH": str(Path(__file__).parent)}
    assert run_mpibench(3, "run", project, env=env).returncode == 0
    assert marker.exists()  # loaded (once per rank or executor) to run the splits
    marker.unlink()
    again = run_mpibench(3, "run", project, env=env)
    assert again.returncode == 0 and "this run: 0" in again.stderr, again.stderr
    assert not marker.exists(), "a run with nothing to do unpickled a learner"


def test_a_learner_ending_its_process_under_no_isolate_fails_only_its_split(tmp_path):
    """``os._exit`` or ``sys.exit`` in a learner run in the rank's own process would end
    the rank, and with it the job, without a word: it is an error of that split."""
    from sklearn.model_selection import ShuffleSplit

    rng = np.random.default_rng(0)
    task = mb.Task("t", X=rng.normal(size=(40, 2)), y=rng.normal(size=40))
    project = mb.create_project(tmp_path / "p", mb.Grid(
        [task], {"ok": mb.DebugLearner(), "exits": mb.DebugLearner(p_exit=0.3)},
        [ShuffleSplit(30, random_state=0)]))
    done = run_mpibench(3, "run", project, "--no-isolate", timeout=120)
    assert done.returncode == 0, done.stderr
    results = mb.read_results(project)
    assert len(results) == 60 and not (project / "run.lock").exists()
    failed = results[results["status"] == "error"]
    assert len(failed) > 0 and set(failed["learner"]) == {"exits"}
    assert failed["error"].str.contains(r"called os\._exit\(0\)").all()
