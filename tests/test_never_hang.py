"""Never hang, always stop cleanly (issue 14): every case under a real ``mpiexec -n 3``
with a timeout, so a hang fails the test."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from mpi_helpers import (
    is_open_mpi,
    run_mpibench,
    run_process,
    start_mpibench,
    wait_no_processes,
)
from sklearn.model_selection import KFold, ShuffleSplit
from spawning_learner import MarkedSleeper, wait_for_fits

import mpibench as mb

pytestmark = pytest.mark.mpi
TESTS_ON_PATH = {"PYTHONPATH": str(Path(__file__).parent)}
"""Environment under which executors import the test learners."""
SETUP_TIMEOUT = 60
"""Seconds a refused multi-rank run may take in all (it hung forever before)."""


def assert_one_line_error(done, *needles: str) -> None:
    lines = [line for line in done.stderr.splitlines() if "error" in line.lower()]
    assert lines, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    for needle in needles:
        assert needle in done.stderr, done.stderr


def assert_no_orphans(path) -> None:
    left = wait_no_processes(str(path))
    assert not left, f"processes left behind: {left}"


# -- rank 0 cannot open the project -------------------------------------------------


def truncate_grid(path: Path) -> tuple[str, str]:
    grid = path / "grid.h5"
    grid.write_bytes(grid.read_bytes()[:5000])
    return "grid.h5 is damaged", "create the project again"


def truncate_results_without_journal(path: Path) -> tuple[str, str]:
    assert run_mpibench(None, "run", path, "--progress-every", "0").returncode == 0
    (path / "results.journal").unlink()
    results = path / "results.h5"
    results.write_bytes(results.read_bytes()[:3000])
    return "results.h5 is damaged", "move it aside"


@pytest.mark.parametrize("damage", [truncate_grid, truncate_results_without_journal],
                         ids=lambda f: f.__name__)
def test_damaged_project_ends_every_rank_with_exit_2(tmp_path, damage):
    path = mb.create_demo(tmp_path / "demo")
    problem, fix = damage(path)
    done = run_mpibench(3, "run", path, timeout=SETUP_TIMEOUT)
    assert done.returncode == 2, done.stderr
    assert_one_line_error(done, problem, fix)
    assert not (path / "run.lock").exists()
    assert_no_orphans(path)


@contextlib.contextmanager
def read_only(folder: Path):
    """``folder`` remounted read-only (a bind mount; root ignores file modes)."""
    mounted = subprocess.run(["mount", "--bind", str(folder), str(folder)],
                             capture_output=True, timeout=30)
    if mounted.returncode != 0:
        pytest.skip(f"cannot bind-mount here: {mounted.stderr.decode().strip()}")
    try:
        done = subprocess.run(["mount", "-o", "remount,ro,bind", str(folder)],
                              capture_output=True, timeout=30)
        if done.returncode != 0:
            pytest.skip(f"cannot remount read-only: {done.stderr.decode().strip()}")
        yield
    finally:
        subprocess.run(["umount", str(folder)], capture_output=True, timeout=30)


@pytest.mark.skipif(os.geteuid() != 0 and shutil.which("mount") is None,
                    reason="needs mount")
def test_read_only_project_ends_every_rank_with_exit_2(tmp_path):
    path = mb.create_demo(tmp_path / "demo")
    with read_only(path):
        done = run_mpibench(3, "run", path, timeout=SETUP_TIMEOUT)
    assert done.returncode == 2, done.stderr
    assert_one_line_error(done, "run.lock", "Read-only file system", "writable")
    assert_no_orphans(path)


def test_internal_error_on_rank_0_at_setup_ends_every_rank_with_exit_1(tmp_path):
    path = mb.create_demo(tmp_path / "demo")
    done = run_mpibench(3, "run", path, timeout=SETUP_TIMEOUT,
                        env={"MPIBENCH_FAULT": "setup:0"})
    assert done.returncode == 1, done.stderr
    assert "internal error while opening the project" in done.stderr
    assert not (path / "run.lock").exists()
    assert_no_orphans(path)


@pytest.mark.parametrize("rank", [0, 2])
def test_a_rank_failing_as_it_reports_its_node_ends_every_rank(tmp_path, rank):
    path = mb.create_demo(tmp_path / "demo")
    started = time.monotonic()
    done = run_mpibench(3, "run", path, timeout=SETUP_TIMEOUT,
                        env={"MPIBENCH_FAULT": f"place:{rank}"})
    assert done.returncode == 1, done.stderr
    assert f"rank {rank} of 3" in done.stderr and "MPIBENCH_FAULT=place" in done.stderr
    assert time.monotonic() - started < SETUP_TIMEOUT / 2
    assert_no_orphans(path)
    again = run_mpibench(3, "run", path, timeout=SETUP_TIMEOUT)  # a stale lock is taken over
    assert again.returncode == 0, again.stderr


@pytest.mark.parametrize("option", [["--timeout", "-1"], ["--memory-limit", "0"],
                                    ["--grace", "-5"]])
def test_impossible_limits_are_refused(tmp_path, option):
    path = mb.create_demo(tmp_path / "demo")
    done = run_mpibench(3, "run", path, *option, timeout=SETUP_TIMEOUT)
    assert done.returncode == 2, done.stderr
    assert_one_line_error(done, option[0])  # the command line names its flag
    assert not (path / "results.journal").exists()


# -- stop signals at the tail of a run ---------------------------------------------


def tail_grid(long_seconds: float, marker_dir: Path | None = None) -> mb.Grid:
    """Two splits: one of ``long_seconds`` (task "big"), one of 20 ms ("small"); with
    two workers one finishes at once and idles while the other runs. With
    ``marker_dir`` each fit marks its start there (run with :data:`TESTS_ON_PATH`)."""
    rng = np.random.default_rng(0)
    rows = 1000
    per_row = long_seconds / (rows * 0.5)
    tasks = [mb.Task("big", X=rng.normal(size=(rows, 2)), y=rng.normal(size=rows)),
             mb.Task("small", X=rng.normal(size=(40, 2)), y=rng.normal(size=40))]
    learner = (mb.DebugLearner(sleep_per_row=per_row) if marker_dir is None
               else MarkedSleeper(str(marker_dir), sleep_per_row=per_row))
    return mb.Grid(tasks, {"sleepy": learner},
                   resamplings=[ShuffleSplit(1, test_size=0.5, random_state=0)])


def wait_for_results(path: Path, count: int, timeout: float = 60) -> None:
    """Until the journal holds ``count`` result records (row or column form)."""
    journal = path / "results.journal"
    deadline = time.monotonic() + timeout

    def records() -> int:
        data = journal.read_bytes() if journal.exists() else b""
        return data.count(b'"t": "r"') + data.count(b'"t": "c"')

    while records() < count:
        assert time.monotonic() < deadline, f"journal never had {count} results"
        time.sleep(0.05)


def stop_signals() -> list[signal.Signals]:
    # Open MPI's mpirun ends the job itself on SIGTERM; it forwards SIGUSR1.
    return [signal.SIGUSR1] if is_open_mpi() else [signal.SIGTERM, signal.SIGUSR1]


@pytest.mark.parametrize("stop", stop_signals(), ids=lambda s: s.name)
def test_stop_signal_with_a_finished_worker_lets_the_split_finish(tmp_path, stop):
    path = mb.create_project(tmp_path / "p", tail_grid(4.0, tmp_path))
    proc = start_mpibench(3, "run", path, "--grace", "60", "--progress-every", "0",
                          env=TESTS_ON_PATH)
    wait_for_results(path, 1)  # the small split is done: its worker idles
    wait_for_fits(tmp_path, 2)  # and the big one runs (not only handed out)
    proc.send_signal(stop)
    _, err = proc.communicate(timeout=90)
    assert proc.returncode == 0, err  # the long split finished within the grace
    assert f"received {stop.name}" in err
    assert not (path / "run.lock").exists()
    results = mb.read_results(path)
    assert sorted(results["task"]) == ["big", "small"]
    assert (results["status"] == "ok").all()
    assert mb.read_attrs(path)["complete"]
    assert_no_orphans(path)


def test_split_past_the_grace_is_interrupted_not_counted_and_runs_on_resume(tmp_path):
    path = mb.create_project(tmp_path / "p", tail_grid(60.0, tmp_path))
    journal = path / "results.journal"
    for attempt, extra in enumerate(([], [], ["--crash-after", "1"])):  # (else retired)
        proc = start_mpibench(3, "run", path, "--grace", "1", "--progress-every", "0",
                              *extra, env=TESTS_ON_PATH)
        wait_for_results(path, 1)  # the small split (first run) is done: a worker idles
        wait_for_fits(tmp_path, attempt + 2)  # the big one runs (not only handed out)
        started = time.monotonic()
        proc.send_signal(signal.SIGUSR1)
        _, err = proc.communicate(timeout=90)
        assert proc.returncode == 3, err
        assert time.monotonic() - started < 20, err
        assert "interrupting them" in err and "Rerun the same command" in err
        assert not (path / "run.lock").exists()
        assert_no_orphans(path)
    results = mb.read_results(path)
    assert list(results["task"]) == ["small"]  # the big one left no record ...
    assert mb.read_attrs(path)["n_done"] == 1  # ... and results.h5 was rewritten
    assert journal.read_bytes().count(b'"t": "u"') == 3  # each interrupted one came back


def test_stop_file_stops_at_the_tail_and_a_stale_one_is_cleared(tmp_path):
    path = mb.create_project(tmp_path / "p", tail_grid(60.0))
    proc = start_mpibench(3, "run", path, "--grace", "1", "--progress-every", "0")
    wait_for_results(path, 1)
    (path / "stop.request").write_text("test\n")
    _, err = proc.communicate(timeout=90)
    assert proc.returncode == 3, err
    assert "found stop.request" in err
    assert not (path / "stop.request").exists()
    (path / "stop.request").write_text("a run that was killed\n")  # left behind
    fast = mb.create_project(tmp_path / "fast", tail_grid(0.2))
    (fast / "stop.request").write_text("a run that was killed\n")
    done = run_mpibench(3, "run", fast, "--progress-every", "0")
    assert done.returncode == 0, done.stderr
    assert "removed" in done.stderr and not (fast / "stop.request").exists()


def test_a_stop_request_of_this_slurm_job_written_before_the_start_is_honoured(tmp_path):
    path = mb.create_project(tmp_path / "p", tail_grid(0.2))
    (path / "stop.request").write_text("job 4242 time limit\n")  # SLURM warned early
    done = run_mpibench(3, "run", path, "--progress-every", "0",
                        env={"SLURM_JOB_ID": "4242"})
    assert done.returncode == 3, done.stderr
    assert "came before the start: stopping" in done.stderr
    assert not (path / "stop.request").exists()  # honoured, so removed
    assert len(mb.read_results(path)) < 2  # (the grid has two splits)
    assert (path / "exit_code").read_text() == "3\n"  # what the batch script reads
    (path / "stop.request").write_text("job 4242 time limit\n")  # another job's
    done = run_mpibench(3, "run", path, "--progress-every", "0",
                        env={"SLURM_JOB_ID": "4243"})
    assert done.returncode == 0, done.stderr
    assert "removed" in done.stderr
    assert (path / "exit_code").read_text() == "0\n"


# -- a full disk ---------------------------------------------------------------------


@contextlib.contextmanager
def small_disk(tmp_path: Path, size: str):
    """A tmpfs of ``size`` (skips where mounting is not allowed)."""
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs",
                           str(mount_point)], capture_output=True, timeout=30)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], capture_output=True, timeout=30)


def fill(folder: Path, leave: int) -> Path:
    """Fill ``folder``'s file system up to ``leave`` bytes; returns the filler file."""
    filler = folder / "filler"
    free = shutil.disk_usage(folder).free
    with open(filler, "wb") as handle:
        handle.write(b"\0" * max(free - leave, 0))
    return filler


def many_splits_grid() -> mb.Grid:
    rng = np.random.default_rng(1)
    task = mb.Task("t", X=rng.normal(size=(60, 2)), y=rng.normal(size=60))
    return mb.Grid([task], {"a": mb.DebugLearner(), "b": mb.DebugLearner(sleep_fit=1e-3)},
                   resamplings=[ShuffleSplit(150, test_size=0.2, random_state=0)])


def temp_files(folder: Path) -> list[str]:
    return [p.name for p in folder.rglob("*.tmp")]


@pytest.mark.parametrize("leave", [8 << 10, 96 << 10], ids=["journal", "results_h5"])
def test_full_disk_is_one_line_exit_1_and_loses_nothing(tmp_path, leave):
    with small_disk(tmp_path, "4m") as disk:
        path = mb.create_project(disk / "p", many_splits_grid())
        filler = fill(disk, leave)
        done = run_mpibench(3, "run", path, "--progress-every", "0", timeout=120)
        assert done.returncode == 1, done.stderr
        assert_one_line_error(done, "No space left on device", "free there")
        assert len(done.stderr.splitlines()) < 15, done.stderr
        assert not temp_files(path) and not (path / "run.lock").exists()
        assert_no_orphans(path)
        filler.unlink()
        again = run_mpibench(3, "run", path, "--progress-every", "0", timeout=120)
        assert again.returncode == 0, again.stderr
        assert mb.read_attrs(path)["complete"] and len(mb.read_results(path)) == 300


def test_a_full_disk_at_the_start_leaves_no_lock_behind(tmp_path):
    with small_disk(tmp_path, "2m") as disk:
        path = mb.create_project(disk / "p", many_splits_grid())
        filler = fill(disk, 0)
        done = run_mpibench(3, "run", path, "--progress-every", "0", timeout=120)
        assert done.returncode == 1, done.stderr
        assert_one_line_error(done, "No space left on device", "Free space")
        assert not (path / "run.lock").exists() and not temp_files(path)
        filler.unlink()
        again = run_mpibench(3, "run", path, "--progress-every", "0", timeout=120)
        assert again.returncode == 0, again.stderr
        assert len(mb.read_results(path)) == 300


def test_creating_a_project_on_a_full_disk_is_one_line_and_leaves_nothing(tmp_path):
    with small_disk(tmp_path, "1m") as disk:
        fill(disk, 16 << 10)
        done = run_process([*mb_command(), "demo", str(disk / "demo")], timeout=60)
        assert done.returncode == 1, done.stderr
        assert_one_line_error(done, "grid.h5", "No space left on device")
        assert not temp_files(disk)


def mb_command() -> list[str]:
    from mpi_helpers import mpibench_command

    return mpibench_command()


# -- damaged files and the readers -------------------------------------------------


@pytest.mark.parametrize("verb", [["status"], ["results"], ["report", "-o", "r.html"],
                                  ["plot", "timeline", "-o", "t.png"]])
def test_readers_of_a_damaged_results_file_say_how_to_rebuild_it(tmp_path, verb):
    path = mb.create_demo(tmp_path / "demo")
    assert run_mpibench(None, "run", path, "--progress-every", "0").returncode == 0
    results = path / "results.h5"
    results.write_bytes(results.read_bytes()[:4000])
    args = [a if not a.endswith((".html", ".png")) else str(tmp_path / a) for a in verb]
    done = run_mpibench(None, args[0], path, *args[1:], timeout=60)
    assert done.returncode == 2, done.stderr
    assert_one_line_error(done, "results.h5 is damaged", f"mpibench run {path}` rebuilds")
    with pytest.raises(mb.MpibenchError, match=r"rebuilds it from results\.journal"):
        mb.read_results(path)
    rebuilt = run_mpibench(3, "run", path, "--progress-every", "0")
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert len(mb.read_results(path)) == 72


def test_an_empty_journal_is_treated_as_absent(tmp_path):
    path = mb.create_demo(tmp_path / "demo")
    (path / "results.journal").write_bytes(b"")
    done = run_mpibench(3, "run", path, "--progress-every", "0")
    assert done.returncode == 0, done.stderr
    assert len(mb.read_results(path)) == 72


# -- learners the workers cannot import ----------------------------------------------

SCRIPT = """
import sys
import numpy as np
import mpibench as mb
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.model_selection import KFold

class ScriptMean(RegressorMixin, BaseEstimator):
    def fit(self, X, y):
        self.mean_ = float(np.mean(y))
        return self

    def predict(self, X):
        return np.full(len(X), self.mean_)

rng = np.random.default_rng(0)
task = mb.Task("t", X=rng.normal(size=(30, 2)), y=rng.normal(size=30))
grid = mb.Grid([task], {"mine": ScriptMean()}, resamplings=[KFold(3)])
mb.create_project(sys.argv[1], grid)
"""


def test_a_learner_defined_in_the_creating_script_is_refused(tmp_path):
    script = tmp_path / "experiment.py"
    script.write_text(SCRIPT)
    done = run_process([mb_command()[0], str(script), str(tmp_path / "p")], timeout=60)
    assert done.returncode != 0
    assert "ScriptMean" in done.stderr and "importable module" in done.stderr
    assert not (tmp_path / "p" / "grid.h5").exists()


def test_script_references_of_importable_learners_are_empty():
    from mpibench.grid import script_references

    assert script_references(mb.DebugLearner()) == []
    assert script_references(KFold(3)) == []
