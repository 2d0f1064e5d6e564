"""Per-split isolation: crashes, hangs, memory, exits, errors, fallback, threads."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from mpi_helpers import (
    ISOLATION_PROCESSES,
    launcher,
    processes_mentioning,
    processes_named,
    run_mpibench,
    run_process,
)
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import ShuffleSplit
from spawning_learner import EnvironmentRecorder, ForkingCrasher, NoisyExit, SpawningLearner

import mpibench as mb
from mpibench.engine.isolation import child_environment
from mpibench.engine.protocol import Assignment
from mpibench.engine.worker import SplitRunner
from mpibench.store.gridfile import GridFile
from mpibench.store.layout import ROLES


def project(tmp_path, learners, n_splits=20, **grid_options):
    rng = np.random.default_rng(0)
    task = mb.Task("t", X=rng.normal(size=(120, 2)), y=rng.normal(size=120))
    grid = mb.Grid([task], learners, resamplings=[ShuffleSplit(n_splits, test_size=0.25)],
                   **grid_options)
    return mb.create_project(tmp_path / "p", grid)


def run_ok(path, *args, n_ranks=3, timeout=180, env=None):
    done = run_mpibench(n_ranks, "run", path, "--progress-every", "0", *args, timeout=timeout,
                        env=env)
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}"
    assert not processes_mentioning(f"{sys.executable} -m mpibench.engine._forkserver"), \
        "supervisors left behind"
    assert not wait_no_processes_named(), "executors left behind"
    return mb.read_results(path), done


def wait_no_processes_named(timeout=5.0):
    deadline = time.monotonic() + timeout
    while processes_named(*ISOLATION_PROCESSES) and time.monotonic() < deadline:
        time.sleep(0.05)
    return processes_named(*ISOLATION_PROCESSES)


def planned(path, learner, probability):
    """Job ids whose DebugLearner draw falls under ``probability`` (as the learner does)."""
    jobs = GridFile(path / "grid.h5").job_table()
    jobs = jobs[jobs["learner"] == learner]
    return {int(j) for j, seed in zip(jobs["job_id"], jobs["random_state"], strict=True)
            if np.random.default_rng(int(seed)).random() < probability}


@pytest.mark.mpi
def test_segfaults_are_exactly_the_planned_splits_and_no_rank_dies(tmp_path):
    path = project(tmp_path, {"seg": mb.DebugLearner(p_segfault=0.1)}, n_splits=60)
    results, done = run_ok(path)
    expected = planned(path, "seg", 0.1)
    assert expected, "the seed should plan some segfaults"
    crashed = set(results.loc[results["status"] == "crash", "job_id"])
    assert crashed == expected
    assert results.loc[results["status"] == "crash", "error"].str.contains("SIGSEGV").all()
    assert (results.loc[~results["job_id"].isin(expected), "status"] == "ok").all()
    assert set(results["rank"]) == {1, 2}
    assert f"{len(expected)} x crash: killed by SIGSEGV" in done.stderr


@pytest.mark.mpi
def test_hang_times_out_within_timeout_plus_grace_and_leaves_nothing(tmp_path):
    path = project(tmp_path, {"hang": mb.DebugLearner(p_hang=0.5)}, n_splits=4)
    started = time.monotonic()
    results, _ = run_ok(path, "--timeout", "1.5", "--kill-grace", "1")
    timed_out = results[results["status"] == "timeout"]
    assert set(timed_out["job_id"]) == planned(path, "hang", 0.5)
    assert len(timed_out) >= 1
    durations = timed_out["end_time"] - timed_out["start_time"]
    assert (durations <= 1.5 + 1 + 1).all() and (durations >= 1.5).all()
    assert timed_out["error"].str.contains("exceeded the timeout of 1.5s").all()
    assert time.monotonic() - started < 60


@pytest.mark.mpi
def test_errors_in_fit_predict_and_scorer_keep_their_type(tmp_path):
    learners = {"fit": mb.DebugLearner(p_error=1.0),
                "predict": mb.DebugLearner(p_error=1.0, fail_in="predict"),
                "fine": mb.DebugLearner()}
    path = project(tmp_path, learners, n_splits=3, scoring={"rmse": "rmse"})
    results, _ = run_ok(path)
    by_learner = results.set_index("learner")["error"]
    assert by_learner["fit"].str.contains("in fit: RuntimeError: DebugLearner").all()
    assert by_learner["predict"].str.contains("in predict: RuntimeError").all()
    assert by_learner["fit"].str.startswith("in fit: ").all()  # where: the rank column
    assert set(results["rank"]) <= {1, 2}
    assert (results.loc[results["learner"] == "fine", "status"] == "ok").all()
    scorer = project(tmp_path / "s", {"fine": mb.DebugLearner()}, n_splits=2,
                     scoring={"rmse": "rmse", "auc": roc_auc_score})
    scored, _ = run_ok(scorer)
    assert (scored["status"] == "error").all()
    assert scored["error"].str.contains("in score: ValueError").all()


@pytest.mark.mpi
def test_exit_in_fit_is_an_error_never_ok(tmp_path):
    path = project(tmp_path, {"exit": mb.DebugLearner(p_exit=1.0)}, n_splits=3)
    results, _ = run_ok(path)
    assert (results["status"] == "error").all()
    assert results["error"].str.contains("exited without result").all()


@pytest.mark.mpi
def test_memory_blow_up_is_oom(tmp_path):
    path = project(tmp_path, {"mem": mb.DebugLearner(p_memory=1.0)}, n_splits=2)
    results, _ = run_ok(path, "--memory-limit", "300M")
    assert (results["status"] == "oom").all(), results["error"].tolist()


@pytest.mark.mpi
def test_fallback_scores_where_the_learner_failed(tmp_path):
    learners = {"flaky": mb.DebugLearner(p_error=0.5), "crashy": mb.DebugLearner(p_segfault=0.3)}
    path = project(tmp_path, learners, fallback="featureless")
    results, _ = run_ok(path)
    failed = results[results["status"] != "ok"]
    assert len(failed) > 0
    assert failed["fallback"].all() and failed["rmse"].notna().all()
    assert not results.loc[results["status"] == "ok", "fallback"].any()
    # the featureless fallback predicts the training mean, as a working DebugLearner does
    reference = project(tmp_path / "ref", {"flaky": mb.DebugLearner(),
                                           "crashy": mb.DebugLearner()})
    expected, _ = run_ok(reference, "--no-isolate")
    np.testing.assert_allclose(failed["rmse"].to_numpy(),
                               expected.set_index("job_id").loc[failed["job_id"], "rmse"])


@pytest.mark.mpi
def test_cli_fallback_without_isolation_and_threads_recorded(tmp_path):
    path = project(tmp_path, {"flaky": mb.DebugLearner(p_error=0.5)})
    results, _ = run_ok(path, "--no-isolate", "--fallback", "featureless", "--threads", "2")
    assert (results["threads"] == 2).all()
    failed = results[results["status"] == "error"]
    assert len(failed) and failed["fallback"].all() and failed["rmse"].notna().all()
    workers = mb.read_ranks(path).query("rank > 0")["pid"]
    assert set(results["pid"]) <= set(workers)  # splits ran inside the worker ranks


@pytest.mark.mpi
def test_isolated_and_in_process_runs_agree(tmp_path):
    path_a = mb.create_demo(tmp_path / "a")
    path_b = mb.create_demo(tmp_path / "b")
    isolated, _ = run_ok(path_a)
    in_process, _ = run_ok(path_b, "--no-isolate")
    np.testing.assert_array_equal(isolated["rmse"], in_process["rmse"])
    # one long-lived executor per worker ran every split, not the rank itself
    rank_pids = set(mb.read_ranks(path_a)["pid"])
    assert isolated["pid"].nunique() == 2 and not rank_pids & set(isolated["pid"])
    assert set(in_process["pid"]) == set(mb.read_ranks(path_b)["pid"]) - {
        int(mb.read_ranks(path_b).set_index("rank").loc[0, "pid"])}


@pytest.mark.mpi
def test_executors_are_recycled_after_n_splits(tmp_path):
    path = project(tmp_path, {"m": mb.DebugLearner()}, n_splits=24)
    results, _ = run_ok(path, "--recycle-after", "5", "--chunk-size", "1")
    assert (results["status"] == "ok").all()
    per_executor = results.groupby("pid").size()
    assert per_executor.max() <= 5
    assert len(per_executor) >= 24 // 5


@pytest.mark.mpi
def test_a_script_that_started_mpi_first_gets_a_spawned_supervisor(tmp_path):
    path = project(tmp_path, {"seg": mb.DebugLearner(p_segfault=0.2)}, n_splits=20)
    script = ("from mpi4py import MPI; import sys, mpibench as mb; "
              f"sys.exit(mb.run({str(path)!r}, progress_every=0))")
    done = run_process([*launcher(3), sys.executable, "-c", script], timeout=180)
    assert done.returncode == 0, done.stderr
    results = mb.read_results(path)
    assert set(results.loc[results["status"] == "crash", "job_id"]) == planned(path, "seg", 0.2)
    assert not set(mb.read_ranks(path)["pid"]) & set(results["pid"])
    assert not wait_no_processes_named()


@pytest.mark.mpi
def test_a_timed_out_split_takes_its_child_processes_with_it(tmp_path):
    pid_file = tmp_path / "child.pid"
    path = project(tmp_path, {"spawn": SpawningLearner(pid_file=str(pid_file))}, n_splits=1)
    results, _ = run_ok(path, "--timeout", "2", "--kill-grace", "0.5",
                        env={"PYTHONPATH": str(Path(__file__).parent)})
    assert results["status"].tolist() == ["timeout"]
    child = int(pid_file.read_text())
    deadline = time.monotonic() + 5
    while Path(f"/proc/{child}").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not Path(f"/proc/{child}").exists(), "the split's own child outlived it"


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


@pytest.mark.mpi
@pytest.mark.parametrize("hang", [0.0, 300.0], ids=["finished", "timed_out"])
def test_children_in_sessions_of_their_own_end_with_their_split(tmp_path, hang):
    """A process a learner starts with ``start_new_session`` escapes the kill of the
    executor's process group: the supervisor, their subreaper, ends it."""
    pid_file = tmp_path / "children.pid"
    path = project(tmp_path, {"spawn": SpawningLearner(
        pid_file=str(pid_file), hang=hang, new_session=True)}, n_splits=3)
    results, _ = run_ok(path, "--timeout", "2", "--kill-grace", "0.5",
                        env={"PYTHONPATH": str(Path(__file__).parent)})
    assert set(results["status"]) == {"ok" if hang == 0 else "timeout"}
    children = [int(line) for line in pid_file.read_text().split()]
    assert len(children) == 3
    deadline = time.monotonic() + 5
    while any(alive(c) for c in children) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not [c for c in children if alive(c)], "a child in its own session outlived it"


def test_timeout_without_isolation_is_refused(tmp_path):
    path = project(tmp_path, {"m": mb.DebugLearner()}, n_splits=2)
    done = run_mpibench(None, "run", path, "--no-isolate", "--timeout", "5")
    assert done.returncode == 2 and "isolation: drop --no-isolate" in done.stderr


def test_child_environment_cannot_attach_to_mpi(monkeypatch):
    for name in ("PMI_RANK", "PMI_FD", "PMIX_RANK", "OMPI_COMM_WORLD_SIZE", "HYDRA_LAUNCHER"):
        monkeypatch.setenv(name, "1")
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "4")
    env = child_environment(3)
    assert not [k for k in env if k.startswith(("PMI_", "PMIX_", "OMPI_", "HYDRA_"))]
    assert env["MPI4PY_RC_INITIALIZE"] == "false"
    assert env["OMP_NUM_THREADS"] == env["OPENBLAS_NUM_THREADS"] == "3"
    assert env["SLURM_CPUS_PER_TASK"] == "4"


def test_empty_train_set_at_run_time_is_invalid(tmp_path):
    path = project(tmp_path, {"m": mb.DebugLearner()}, n_splits=2)
    layout = GridFile(path / "grid.h5").mapped()
    offset = layout._where[(0, 0, ROLES.index("train_ptr"))][0]
    with open(path / "grid.h5", "r+b") as file:  # split 0 now has no train rows
        file.seek(offset + 8)
        file.write(np.int64(0).tobytes())
    runner = SplitRunner(GridFile(path / "grid.h5"), rank=0, threads=1)
    result = runner.run(Assignment(0, 0, 0, 0, 0, 1))
    assert result.status == "invalid" and "empty train set" in result.error
    assert np.isnan(result.scores).all()


@pytest.mark.mpi
def test_a_crash_is_seen_even_when_a_forked_child_holds_the_executors_pipe(tmp_path):
    pid_file = tmp_path / "child.pid"
    path = project(tmp_path, {"forks": ForkingCrasher(pid_file=str(pid_file))}, n_splits=2)
    results, _ = run_ok(path, "--chunk-size", "1", timeout=60,
                        env={"PYTHONPATH": str(Path(__file__).parent)})
    assert results["status"].tolist() == ["crash", "crash"]
    assert results["error"].str.contains("SIGSEGV").all()
    child = int(pid_file.read_text())
    deadline = time.monotonic() + 5
    while Path(f"/proc/{child}").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not Path(f"/proc/{child}").exists(), "the learner's child outlived its executor"


@pytest.mark.mpi
def test_the_executor_keeps_the_users_environment_but_not_the_mpi_job(tmp_path):
    import json

    seen = tmp_path / "environment.json"
    path = project(tmp_path, {"env": EnvironmentRecorder(path=str(seen))}, n_splits=1)
    run_ok(path, "--threads", "2", env={"PYTHONPATH": str(Path(__file__).parent),
                                        "MPIBENCH_TEST_MARK": "kept"})
    environment = json.loads(seen.read_text())
    assert environment["MPIBENCH_TEST_MARK"] == "kept"
    assert environment["PATH"] and environment["OMP_NUM_THREADS"] == "2"
    assert not [k for k in environment if k.startswith(("PMI_", "HYDRA_", "OMPI_", "PMIX_"))]
    assert environment["MPI4PY_RC_INITIALIZE"] == "false"


@pytest.mark.mpi
def test_a_dead_executor_is_recorded_with_its_exit_code_and_last_output(tmp_path):
    path = project(tmp_path, {"noisy": NoisyExit(message="cuda says no")}, n_splits=2)
    results, done = run_ok(path, "--chunk-size", "1", timeout=60,
                           env={"PYTHONPATH": str(Path(__file__).parent)})
    assert results["status"].tolist() == ["error", "error"]
    for error in results["error"]:
        assert "exit code 7" in error
        assert error.endswith("last output: cuda says no line 2 | cuda says no line 3 | "
                              "cuda says no line 4"), error
    assert done.stderr.count("cuda says no line 0") == 2  # the output still reaches stderr


@pytest.mark.mpi
def test_a_killed_supervisor_is_recorded_with_its_signal_and_replaced(tmp_path):
    from mpi_helpers import processes_named, start_mpibench

    path = project(tmp_path, {"slow": mb.DebugLearner(sleep_fit=1.0)}, n_splits=4)
    proc = start_mpibench(2, "run", path, "--progress-every", "0")
    deadline = time.monotonic() + 60
    while not (path / "results.journal").exists() or \
            b'"t": "s"' not in (path / "results.journal").read_bytes():
        assert time.monotonic() < deadline, "no split was handed out"
        time.sleep(0.05)
    (supervisor,) = [int(p.split(":")[0]) for p in processes_named("mpibench-super")]
    os.kill(supervisor, signal.SIGKILL)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    results = mb.read_results(path)
    crashed = results[results["status"] == "crash"]
    assert len(crashed) == 1 and (results["status"] == "ok").sum() == 3
    (error,) = crashed["error"]
    assert f"isolation supervisor (pid {supervisor}) died (signal SIGKILL)" in error
    assert "stderr" not in error


@pytest.mark.parametrize("timeout", [None, 30.0])
def test_a_batch_of_short_splits_gives_what_one_by_one_gives(tmp_path, timeout):
    """Short splits go to the executor as one batch (one frame each way); a segfault
    inside the batch is that split's crash, the splits after it still run; with a
    timeout the supervisor runs them one by one (limits act per split)."""
    from mpibench.engine.isolation import IsolatedExecutor, IsolationLimits
    from mpibench.limits import SplitLimits

    path = project(tmp_path, {"seg": mb.DebugLearner(p_segfault=0.25), "ok": mb.DebugLearner()},
                   n_splits=12, fallback="featureless")
    jobs = GridFile(path / "grid.h5").job_table()
    assignments = [Assignment(*row) for row in jobs[[
        "job_id", "task_i", "learner_i", "resampling_i", "split_i",
        "random_state"]].itertuples(index=False)]
    limits = IsolationLimits(SplitLimits(timeout=timeout))
    executor = IsolatedExecutor(path / "grid.h5", 1, 1, limits, fallback="featureless")
    try:
        batched = executor.run_many(assignments)
        one_by_one = [executor.run(job) for job in assignments]
    finally:
        executor.close()
    expected = planned(path, "seg", 0.25)
    assert expected and len(expected) < 12
    for results in (batched, one_by_one):
        assert [r.job_id for r in results] == [a.job_id for a in assignments]
        assert {r.job_id for r in results if r.status == "crash"} == expected
        assert all(r.status == "ok" for r in results if r.job_id not in expected)
        assert all(r.fallback and np.isfinite(r.scores).all()
                   for r in results if r.job_id in expected)
    assert [r.scores for r in batched] == [r.scores for r in one_by_one]
    assert "SIGSEGV" in next(r.error for r in batched if r.status == "crash")
