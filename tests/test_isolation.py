"""Per-split isolation: crashes, hangs, memory, exits, errors, fallback, threads."""

from __future__ import annotations

import sys
import time

import h5py
import numpy as np
import pytest
from mpi_helpers import processes_mentioning, run_mpibench
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import ShuffleSplit

import mpibench as mb
from mpibench.gridfile import GridFile
from mpibench.isolation import child_environment
from mpibench.protocol import Assignment
from mpibench.worker import SplitRunner


def project(tmp_path, learners, n_splits=20, **grid_options):
    rng = np.random.default_rng(0)
    task = mb.Task("t", X=rng.normal(size=(120, 2)), y=rng.normal(size=120))
    grid = mb.Grid([task], learners, resamplings=[ShuffleSplit(n_splits, test_size=0.25)],
                   **grid_options)
    return mb.create_project(tmp_path / "p", grid)


def run_ok(path, *args, n_ranks=3, timeout=180):
    done = run_mpibench(n_ranks, "run", path, "--progress-every", "0", *args, timeout=timeout)
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}"
    assert not processes_mentioning(f"{sys.executable} -m mpibench._forkserver"), \
        "helpers left behind"
    return mb.read_results(path), done


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
    assert timed_out["error"].str.contains("exceeded --timeout 1.5s").all()
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
    assert by_learner["fit"].str.match(r"rank \d on \S+: ").all()
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
    assert results["pid"].nunique() == 2  # splits ran inside the two worker ranks


@pytest.mark.mpi
def test_isolated_and_in_process_runs_agree(tmp_path):
    path_a = mb.create_demo(tmp_path / "a")
    path_b = mb.create_demo(tmp_path / "b")
    isolated, _ = run_ok(path_a)
    in_process, _ = run_ok(path_b, "--no-isolate")
    assert isolated["pid"].nunique() == 72
    np.testing.assert_array_equal(isolated["rmse"], in_process["rmse"])


def test_timeout_without_isolation_is_refused(tmp_path):
    path = project(tmp_path, {"m": mb.DebugLearner()}, n_splits=2)
    done = run_mpibench(None, "run", path, "--no-isolate", "--timeout", "5")
    assert done.returncode == 2 and "need isolation" in done.stderr


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
    with h5py.File(path / "grid.h5", "r+") as h5:
        h5["splits/0_0/train_ptr"][1] = 0  # split 0 now has no train rows
    runner = SplitRunner(GridFile(path / "grid.h5"), rank=0, threads=1)
    result = runner.run(Assignment(0, 0, 0, 0, 0, 1))
    assert result.status == "invalid" and "empty train set" in result.error
    assert np.isnan(result.scores).all()
