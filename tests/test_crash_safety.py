"""Kills, stop signals, damaged journals, changed grids, concurrent runs: real mpiexec."""

from __future__ import annotations

import contextlib
import os
import random
import signal
import time
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
from mpi_helpers import is_open_mpi, run_mpibench, start_mpibench, wait_no_processes
from sklearn.model_selection import ShuffleSplit
from sklearn.tree import DecisionTreeRegressor
from spawning_learner import MarkedSleeper, wait_for_fits

import mpibench as mb

pytestmark = pytest.mark.mpi

VOLATILE = ["rank", "host", "pid", "start_time", "end_time", "fit_seconds",
            "predict_seconds", "score_seconds", "max_rss_bytes", "attempt", "cpu_seconds",
            "run"]


def stable(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.drop(columns=VOLATILE).sort_values("job_id", ignore_index=True)


def sleepy_grid(n_splits: int = 150, sleep: float = 0.01) -> mb.Grid:
    rng = np.random.default_rng(0)
    task = mb.Task("t", X=rng.normal(size=(200, 3)), y=rng.normal(size=200))
    learners = {"a": mb.DebugLearner(sleep_fit=sleep), "b": mb.DebugLearner(sleep_fit=sleep / 2)}
    return mb.Grid([task], learners, resamplings=[ShuffleSplit(n_splits, test_size=0.2)])


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """A clean serial run of the sleepy grid (300 splits)."""
    path = mb.create_project(tmp_path_factory.mktemp("ref") / "p", sleepy_grid())
    done = run_mpibench(None, "run", path, "--progress-every", "0")
    assert done.returncode == 0, done.stderr
    return mb.read_results(path)


def assert_no_orphans(path):
    left = wait_no_processes(str(path))
    assert not left, f"processes left behind: {left}"


def assert_results_open(path):
    results = path / "results.h5"
    if results.exists():
        with h5py.File(results, "r") as h5:
            assert h5["splits/job_id"].shape[0] == h5.attrs["n_done"]


def wait_for_records(path, kind: str, count: int, timeout: float = 60) -> None:
    """Wait until the journal holds ``count`` records of ``kind`` ("s", or "r" for
    results: rows or columns records)."""
    journal = path / "results.journal"
    deadline = time.monotonic() + timeout
    markers = [f'"t": "{k}"'.encode() for k in ("rc" if kind == "r" else kind)]

    def records() -> int:
        data = journal.read_bytes() if journal.exists() else b""
        return sum(data.count(marker) for marker in markers)

    while records() < count:
        assert time.monotonic() < deadline, f"journal never reached {count} {kind} records"
        time.sleep(0.05)


def kill_after(path, seconds: float, *args: str, whole_group: bool = True) -> None:
    """SIGKILL mpiexec alone, or its whole process group, after ``seconds``."""
    proc = start_mpibench(3, "run", path, "--checkpoint-every", "0.3", *args)
    try:
        proc.wait(timeout=seconds)
    except Exception:
        if whole_group:
            os.killpg(proc.pid, signal.SIGKILL)
        else:
            proc.kill()
        proc.communicate()


def test_sigkill_at_random_moments_then_resume(tmp_path, reference):
    path = mb.create_project(tmp_path / "p", sleepy_grid())
    moments = random.Random(11).sample([0.6, 0.9, 1.2, 1.5, 1.8, 2.1, 2.5], 4)
    for i, seconds in enumerate(moments):
        kill_after(path, seconds, "--crash-after", "10", whole_group=i % 2 == 0)
        assert_no_orphans(path)
        assert_results_open(path)
    done = run_mpibench(3, "run", path, "--crash-after", "10")
    assert done.returncode == 0, done.stderr
    pd.testing.assert_frame_equal(stable(mb.read_results(path)), stable(reference))
    assert_no_orphans(path)


def test_kill_during_consolidation_keeps_the_old_results(tmp_path):
    path = mb.create_demo(tmp_path / "demo")
    assert run_mpibench(3, "run", path).returncode == 0
    before = (path / "results.h5").read_bytes()
    done = run_mpibench(3, "run", path, env={"MPIBENCH_FAULT": "consolidate:0:kill"})
    assert done.returncode != 0
    assert_no_orphans(path)
    assert (path / "results.h5").read_bytes() == before
    assert [p.name for p in path.iterdir() if p.name.endswith(".tmp")]
    again = run_mpibench(3, "run", path)
    assert again.returncode == 0, again.stderr
    assert not [p.name for p in path.iterdir() if p.name.endswith(".tmp")]
    assert mb.read_attrs(path)["complete"]


def test_stop_signal_stops_with_exit_3_and_resumes(tmp_path, reference):
    # Hydra forwards SIGTERM to the ranks; Open MPI's mpirun forwards only SIGUSR1/2
    # (it ends the job itself on SIGTERM), so the clean stop there is SIGUSR1.
    stop = signal.SIGUSR1 if is_open_mpi() else signal.SIGTERM
    path = mb.create_project(tmp_path / "p", sleepy_grid())
    proc = start_mpibench(3, "run", path)
    wait_for_records(path, "r", 20)
    proc.send_signal(stop)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 3, err
    assert f"received {stop.name}" in err and "Rerun the same command" in err
    attrs = mb.read_attrs(path)
    assert not attrs["complete"] and 0 < attrs["n_done"] < 300
    assert not (path / "run.lock").exists()
    done = run_mpibench(3, "run", path)
    assert done.returncode == 0, done.stderr
    pd.testing.assert_frame_equal(stable(mb.read_results(path)), stable(reference))
    assert_no_orphans(path)


def test_read_results_during_a_run_before_its_first_results_h5(tmp_path):
    path = mb.create_project(tmp_path / "p", sleepy_grid(sleep=0.05))
    proc = start_mpibench(3, "run", path, "--checkpoint-every", "600")
    try:
        wait_for_records(path, "r", 5)
        assert not (path / "results.h5").exists()
        live = mb.read_results(path)
        assert 0 < len(live) < 300 and (live["status"] == "ok").all()
        assert live["job_id"].is_unique and live["rmse"].notna().all()
    finally:
        proc.send_signal(signal.SIGUSR1 if is_open_mpi() else signal.SIGTERM)
        proc.communicate(timeout=60)
    final = mb.read_results(path).set_index("job_id")
    assert np.allclose(final.loc[live["job_id"], "rmse"], live["rmse"])


def ranks_catching(launcher_pid: int, signum: int) -> int:
    """How many MPI ranks below ``launcher_pid`` catch ``signum`` (``SigCgt`` of
    ``/proc/PID/status``)."""
    count = 0
    for pid in descendants(launcher_pid):
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        caught = int(next(line.split()[1] for line in status.splitlines()
                          if line.startswith("SigCgt:")), 16)
        count += is_rank(pid) and bool(caught >> (signum - 1) & 1)
    return count


def descendants(pid: int) -> list[int]:
    """``pid`` and every process below it (through ``/proc/PID/task/*/children``)."""
    found, stack = [], [pid]
    while stack:
        current = stack.pop()
        found.append(current)
        for task in Path(f"/proc/{current}/task").glob("*"):
            try:
                stack.extend(int(c) for c in (task / "children").read_text().split())
            except OSError:
                continue
    return found


def is_rank(pid: int) -> bool:
    """Is ``pid`` an MPI rank (its launcher's rank variable in its environment)?"""
    try:
        environment = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return False
    return any(f"\0{name}=".encode() in b"\0" + environment
               for name in ("PMI_RANK", "OMPI_COMM_WORLD_RANK"))


def test_sigterm_to_every_process_lets_running_splits_finish(tmp_path):
    """SLURM's scancel, requeue and preemption send SIGTERM to every process of the
    step (each task and what it started), the executors running splits too: they go
    on, and rank 0's grace decides."""
    rng = np.random.default_rng(0)
    task = mb.Task("t", X=rng.normal(size=(50, 2)), y=rng.normal(size=50))
    grid = mb.Grid([task], {"slow": mb.DebugLearner(sleep_fit=3.0)},
                   resamplings=[ShuffleSplit(6, test_size=0.2)])
    path = mb.create_project(tmp_path / "p", grid)
    proc = start_mpibench(3, "run", path, "--chunk-size", "1")
    wait_for_records(path, "s", 2)
    time.sleep(0.5)
    tasks = [pid for pid in descendants(proc.pid) if is_rank(pid)]  # (with what they
    assert len(tasks) >= 5  # started: supervisors, executors; not the launcher)
    for pid in {p for task in tasks for p in descendants(task)}:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 3, err
    assert "from outside" not in err, err
    results = mb.read_results(path)
    assert len(results) == 2 and (results["status"] == "ok").all(), err
    assert (path / "results.journal").read_bytes().count(b'"t": "u"') == 0
    assert_no_orphans(path)


@pytest.mark.parametrize("delay", [0.0, 0.2])
def test_a_stop_during_the_start_exits_3(tmp_path, delay):
    """A stop signal that comes while the run starts (its imports, MPI's start), once
    ``mpibench run`` has run its first line, is kept and stops the run cleanly."""
    stops = [signal.SIGUSR1] if is_open_mpi() else [signal.SIGTERM, signal.SIGINT]
    path = mb.create_project(tmp_path / "p", sleepy_grid())
    for stop in stops:
        proc = start_mpibench(3, "run", path)
        deadline = time.monotonic() + 30
        while ranks_catching(proc.pid, signal.SIGTERM) < 3:  # (only ours catches it)
            assert time.monotonic() < deadline, "the ranks never started"
            time.sleep(0.005)
        time.sleep(delay)
        proc.send_signal(stop)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 3, err
        assert f"received {stop.name}" in err and "Traceback" not in err, err
        assert (path / "exit_code").read_text().strip() == "3"
        assert not (path / "run.lock").exists()
    assert_no_orphans(path)


def test_grace_expiry_ends_long_splits_with_exit_3(tmp_path):
    rng = np.random.default_rng(0)
    task = mb.Task("t", X=rng.normal(size=(100, 3)), y=rng.normal(size=100))
    learner = MarkedSleeper(str(tmp_path), sleep_per_row=60.0 / 80)
    grid = mb.Grid([task], {"a": learner}, resamplings=[ShuffleSplit(4, test_size=0.2)])
    path = mb.create_project(tmp_path / "p", grid)
    proc = start_mpibench(3, "run", path, "--grace", "1",
                          env={"PYTHONPATH": str(Path(__file__).parent)})
    wait_for_fits(tmp_path, 2)  # both run (a split handed out may still be given back)
    started = time.monotonic()
    proc.send_signal(signal.SIGUSR1)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 3, err
    assert time.monotonic() - started < 15
    assert "still running after the grace period" in err
    assert_no_orphans(path)
    assert mb.read_attrs(path)["n_done"] == 0
    assert (path / "exit_code").read_text() == "3\n"  # the batch script resubmits


def test_split_in_flight_in_too_many_dead_runs_is_recorded_as_crash(tmp_path):
    path = mb.create_project(tmp_path / "p", sleepy_grid(n_splits=3, sleep=60.0))
    for _ in range(2):
        journal = path / "results.journal"
        before = journal.read_bytes().count(b'"t": "s"') if journal.exists() else 0
        proc = start_mpibench(2, "run", path)
        wait_for_records(path, "s", before + 1)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        assert_no_orphans(path)
    proc = start_mpibench(2, "run", path, "--grace", "0.5", "--crash-after", "2")
    wait_for_records(path, "r", 1)
    proc.send_signal(signal.SIGUSR1)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 3, err
    results = mb.read_results(path)
    crashed = results[results["status"] == "crash"]
    assert len(crashed) >= 1
    assert crashed["error"].str.contains("in flight when 2 runs died").all()
    assert (crashed["attempt"] == 2).all()


def test_torn_journal_tail_is_truncated_and_resumed(tmp_path, reference):
    path = mb.create_project(tmp_path / "p", sleepy_grid())
    assert run_mpibench(3, "run", path).returncode == 0
    journal = path / "results.journal"
    data = journal.read_bytes()
    last = max(data.rfind(b'{"t": "r"'), data.rfind(b'{"t": "c"'))
    journal.write_bytes(data[:last + 25])  # the last result is torn (and what follows)
    done = run_mpibench(3, "run", path)
    assert done.returncode == 0, done.stderr
    assert "truncated a torn last record" in done.stderr
    assert "this run: 1 " in done.stderr
    pd.testing.assert_frame_equal(stable(mb.read_results(path)), stable(reference))


def test_corrupt_journal_is_refused_then_repaired(tmp_path, reference):
    path = mb.create_project(tmp_path / "p", sleepy_grid())
    assert run_mpibench(3, "run", path).returncode == 0
    journal = path / "results.journal"
    data = bytearray(journal.read_bytes())
    data[len(data) // 2] ^= 0xFF
    journal.write_bytes(bytes(data))
    results_before = (path / "results.h5").read_bytes()
    refused = run_mpibench(3, "run", path)
    assert refused.returncode == 2 and "--repair" in refused.stderr
    assert journal.read_bytes() == bytes(data)
    assert (path / "results.h5").read_bytes() == results_before
    repaired = run_mpibench(3, "run", path, "--repair")
    assert repaired.returncode == 0, repaired.stderr
    assert "dropped 1 damaged record" in repaired.stderr
    pd.testing.assert_frame_equal(stable(mb.read_results(path)), stable(reference))


def changed_grid(part: str) -> mb.Grid:
    grid = mb.demo_grid()
    if part == "data":
        task = grid.tasks[0]
        grid.tasks[0] = mb.Task(task.name, X=task.X, y=task.y + 1.0, subset=task.subset,
                                stratum=task.stratum)
    elif part == "learners":
        grid.learners["rpart"] = DecisionTreeRegressor(max_depth=2)
    elif part == "splits":
        grid.resamplings = {"SameOtherSizesCV": mb.SameOtherSizesCV(folds=4)}
    elif part == "scorers":
        grid = mb.Grid(grid.tasks, grid.learners, grid.resamplings, scoring=["rmse", "r2"],
                       seed=grid.seed)
    elif part == "seed":
        grid.seed = 99
    return grid


@pytest.mark.parametrize("part", ["data", "learners", "splits", "scorers", "seed"])
def test_changed_grid_is_refused_and_nothing_is_touched(tmp_path, part):
    path = mb.create_demo(tmp_path / "demo")
    assert run_mpibench(None, "run", path).returncode == 0
    other = mb.create_project(tmp_path / "other", changed_grid(part))
    (path / "grid.h5").write_bytes((other / "grid.h5").read_bytes())
    journal, results = (path / "results.journal").read_bytes(), (path / "results.h5").read_bytes()
    done = run_mpibench(3, "run", path)
    assert done.returncode == 2
    assert "different grid" in done.stderr and part in done.stderr.split("changed:")[1]
    assert (path / "results.journal").read_bytes() == journal
    assert (path / "results.h5").read_bytes() == results


def test_second_run_at_once_is_refused(tmp_path):
    path = mb.create_project(tmp_path / "p", sleepy_grid(n_splits=20, sleep=0.2))
    first = start_mpibench(2, "run", path)
    deadline = time.monotonic() + 30
    while not (path / "run.lock").exists():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    second = run_mpibench(2, "run", path)
    assert second.returncode == 2
    assert "Another run holds" in second.stderr and "run.lock" in second.stderr
    _, err = first.communicate(timeout=120)
    assert first.returncode == 0, err
    assert mb.read_attrs(path)["complete"]


def test_injected_worker_exception_aborts_fast_and_leaves_a_resumable_journal(tmp_path,
                                                                              reference):
    path = mb.create_project(tmp_path / "p", sleepy_grid())
    started = time.monotonic()
    done = run_mpibench(3, "run", path, env={"MPIBENCH_FAULT": "worker:2"}, timeout=60)
    assert done.returncode != 0
    assert time.monotonic() - started < 10
    assert "InjectedFault" in done.stderr
    assert_no_orphans(path)
    resumed = run_mpibench(3, "run", path)
    assert resumed.returncode == 0, resumed.stderr
    assert "stale lock" in resumed.stderr
    pd.testing.assert_frame_equal(stable(mb.read_results(path)), stable(reference))


def test_slurm_end_time_stops_in_time_then_resumes(tmp_path):
    path = mb.create_project(tmp_path / "p", sleepy_grid(n_splits=20, sleep=0.5))
    end = int(time.time()) + 10
    done = run_mpibench(3, "run", path, env={"SLURM_JOB_END_TIME": str(end),
                                             "MPIBENCH_END_MARGIN": "3"}, timeout=60)
    assert done.returncode == 3, done.stderr
    assert time.time() < end + 1
    assert "no pending split can finish before the time limit" in done.stderr
    assert "interrupted" not in done.stderr  # only splits that could finish were started
    assert 0 < mb.read_attrs(path)["n_done"] < 40
    finished = run_mpibench(3, "run", path)
    assert finished.returncode == 0 and mb.read_attrs(path)["n_done"] == 40


def test_a_split_that_kills_the_job_is_singled_out_not_its_chunk(tmp_path):
    # --no-isolate, automatic chunks: one split segfaults its worker, which ends the
    # job with hundreds of splits queued beside it. Only that split may end up `crash`.
    def grid(p_segfault: float) -> mb.Grid:
        rng = np.random.default_rng(0)
        task = mb.Task("t", X=rng.normal(size=(50, 2)), y=rng.normal(size=50))
        return mb.Grid([task], {"d": mb.DebugLearner(p_segfault=p_segfault)},
                       resamplings=[ShuffleSplit(1500, test_size=0.2, random_state=0)])

    jobs = mb.GridFile(mb.create_project(tmp_path / "draw", grid(0.0)) / "grid.h5").job_table()
    draws = np.array([np.random.default_rng(seed).random() for seed in jobs["random_state"]])
    lowest, second = np.sort(draws)[:2]
    killer = int(jobs["job_id"][np.argmin(draws)])  # the one split drawn to segfault
    path = mb.create_project(tmp_path / "p", grid((lowest + second) / 2))
    for _ in range(3):
        done = run_mpibench(3, "run", path, "--no-isolate", "--progress-every", "0")
        if done.returncode == 0:
            break
        assert_no_orphans(path)
    assert done.returncode == 0, done.stderr
    results = mb.read_results(path)
    assert len(results) == 1500
    crashed = results[results["status"] != "ok"]
    assert crashed["job_id"].tolist() == [killer] and crashed["status"].tolist() == ["crash"]
    assert "in flight when 2 runs died" in crashed["error"].iloc[0]
