"""The message loop's behaviour, one suite on two transports: ranks as threads of this
process (the fast suite) and a real ``mpiexec -n 3`` (marked ``mpi``). Both run the
same engine code from the roles on (``runner._start``: setup, dispatcher, workers,
the final word), through ``loop_behaviours.py``."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from loop_behaviours import exit_code, run_in_threads
from mpi_helpers import launcher, run_process
from sklearn.model_selection import ShuffleSplit

import mpibench as mb
from mpibench.engine.options import RunOptions

SCRIPT = Path(__file__).parent / "loop_behaviours.py"


def grid(n_splits: int, sleep: float = 0.0) -> mb.Grid:
    rng = np.random.default_rng(0)
    task = mb.Task("t", X=rng.normal(size=(60, 2)), y=rng.normal(size=60))
    learners = {"a": mb.DebugLearner(sleep_fit=sleep), "b": mb.DebugLearner(sleep_fit=sleep)}
    return mb.Grid([task], learners, resamplings=[ShuffleSplit(n_splits, test_size=0.25)])


def launch_threads(project: Path, n_ranks: int = 3, chunk_size: int | str = "auto",
                   stop_after: dict[int, int] | None = None) -> int:
    options = RunOptions(isolate=False, progress_every=0, chunk_size=chunk_size)
    codes = {exit_code(o) for o in run_in_threads(n_ranks, project, options, stop_after)}
    assert len(codes) == 1, f"the ranks ended with different codes: {codes}"
    return codes.pop()


def launch_mpi(project: Path, n_ranks: int = 3, chunk_size: int | str = "auto",
               stop_after: dict[int, int] | None = None) -> int:
    stops = [f"--stop-after={r}:{s}" for r, s in (stop_after or {}).items()]
    done = run_process([*launcher(n_ranks), sys.executable, str(SCRIPT), str(project),
                        f"--chunk-size={chunk_size}", *stops], timeout=120,
                       env={"PYTHONPATH": str(Path(__file__).parent)})
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if lines:
        assert json.loads(lines[-1])["code"] == done.returncode, done.stderr
    return done.returncode


@pytest.fixture(params=["threads", pytest.param("mpi", marks=pytest.mark.mpi)])
def launch(request):
    """Run a project with N ranks on one transport; returns the job's exit code."""
    return launch_threads if request.param == "threads" else launch_mpi


def scores(project: Path) -> pd.DataFrame:
    frame = mb.read_results(project)
    assert frame["job_id"].is_unique
    return frame.set_index("job_id").sort_index()[["status", "rmse"]]


@pytest.fixture(scope="module")
def serial_reference(tmp_path_factory):
    """The scores of a one-rank run (the serial path), for 2 x 60 no-op splits."""
    project = mb.create_project(tmp_path_factory.mktemp("serial") / "p", grid(60))
    assert launch_threads(project, n_ranks=1) == 0
    return scores(project)


@pytest.mark.parametrize("chunk_size", ["auto", 1])
def test_every_split_runs_once_with_the_serial_scores(tmp_path, launch, chunk_size,
                                                      serial_reference):
    project = mb.create_project(tmp_path / "p", grid(60))
    assert launch(project, chunk_size=chunk_size) == 0
    pd.testing.assert_frame_equal(scores(project), serial_reference)
    assert mb.read_attrs(project)["complete"]
    assert not (project / "run.lock").exists()


@pytest.mark.parametrize("stopped_rank", [0, 1])
def test_a_stop_on_any_rank_ends_the_run_resumable(tmp_path, launch, stopped_rank):
    project = mb.create_project(tmp_path / "p", grid(60, sleep=0.01))
    assert launch(project, stop_after={stopped_rank: 10}) == 3  # after 10 results
    attrs = mb.read_attrs(project)
    assert not attrs["complete"] and 0 < attrs["n_done"] < 120
    assert not (project / "run.lock").exists()
    assert launch(project) == 0  # resumes: each split once, none lost
    assert len(scores(project)) == 120


def test_a_failing_worker_ends_every_rank(tmp_path, launch, monkeypatch):
    project = mb.create_project(tmp_path / "p", grid(20))
    monkeypatch.setenv("MPIBENCH_FAULT", "worker:1")  # (the mpiexec child inherits it)
    assert launch(project) == 1
    monkeypatch.delenv("MPIBENCH_FAULT")
    assert launch(project) == 0  # a lock left by the aborted job is stale, not a refusal
    assert len(scores(project)) == 40


def test_a_refused_setup_ends_every_rank(tmp_path, launch):
    (tmp_path / "empty").mkdir()
    assert launch(tmp_path / "empty") == 2
