"""Real runs: mpiexec subprocesses with a timeout, checked through results.h5."""

from __future__ import annotations

import sys
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
from mpi_helpers import launcher, run_mpibench, run_process
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold

import mpibench as mb
from mpibench.engine.runner import library_name

pytestmark = pytest.mark.mpi

VOLATILE = ["rank", "host", "pid", "start_time", "end_time", "fit_seconds",
            "predict_seconds", "score_seconds", "max_rss_bytes", "cpu_seconds", "run"]


def stable(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.drop(columns=VOLATILE).sort_values("job_id", ignore_index=True)


def check_ok(done, *, code=0):
    assert done.returncode == code, f"exit {done.returncode}\n{done.stdout}\n{done.stderr}"


@pytest.fixture(scope="module")
def serial_demo(tmp_path_factory):
    """The demo run in one plain process: the reference results."""
    path = mb.create_demo(tmp_path_factory.mktemp("serial") / "demo")
    check_ok(run_mpibench(None, "run", path))
    return mb.read_results(path)


@pytest.mark.parametrize("n_ranks", [1, 3, 5])
def test_demo_results_equal_across_rank_counts(n_ranks, tmp_path, serial_demo):
    path = mb.create_demo(tmp_path / "demo")
    done = run_mpibench(n_ranks, "run", path)
    check_ok(done)
    results = mb.read_results(path)
    assert len(results) == 72
    assert (results["status"] == "ok").all()
    expected_ranks = {0} if n_ranks == 1 else set(range(1, n_ranks))
    assert set(results["rank"]) == expected_ranks
    pd.testing.assert_frame_equal(stable(results), stable(serial_demo))
    attrs = mb.read_attrs(path)
    assert attrs["complete"] and attrs["n_done"] == attrs["n_total"] == 72
    from mpi4py import MPI

    assert attrs["n_ranks"] == n_ranks
    assert attrs["mpi_library"] == library_name(MPI)
    ranks = mb.read_ranks(path)
    assert ranks["rank"].tolist() == list(range(n_ranks))
    assert ranks["n_splits"].sum() == 72
    assert "72/72 splits done" in done.stderr


def test_results_h5_readable_with_plain_h5py(tmp_path):
    path = mb.create_demo(tmp_path / "demo")
    check_ok(run_mpibench(3, "run", path))
    with h5py.File(path / "results.h5", "r") as h5:
        assert set(h5) == {"splits", "ranks", "runs"}
        splits = h5["splits"]
        for column in ("job_id", "task", "learner", "resampling", "iteration", "test_fold",
                       "test_subset", "train_subsets", "n_train_groups", "n_train", "n_test",
                       "seed", "status", "error", "attempt", "fallback", "rmse", "mae",
                       "rank", "host", "pid", "start_time", "end_time", "fit_seconds",
                       "predict_seconds", "score_seconds", "max_rss_bytes", "threads",
                       "run", "cpu_seconds", "gpu_max_memory_bytes", "gpu_seconds"):
            assert splits[column].shape == (72,), column
        assert splits["task"].asstr()[0] in ("easy", "impossible")
        assert (splits["end_time"][()] >= splits["start_time"][()]).all()
        assert h5.attrs["schema_version"] == 1


def test_failed_splits_are_results_and_run_goes_on(tmp_path):
    grid = mb.demo_grid()
    grid.learners = {"flaky": mb.DebugLearner(p_error=0.3), "rpart": grid.learners["rpart"]}
    path = mb.create_project(tmp_path / "p", grid)
    done = run_mpibench(3, "run", path)
    check_ok(done)
    results = mb.read_results(path)
    failed = results[results["status"] == "error"]
    assert 0 < len(failed) < 36
    assert (failed["learner"] == "flaky").all()
    assert failed["error"].str.contains("RuntimeError: DebugLearner: planned error in fit").all()
    assert failed["rmse"].isna().all()
    assert results.loc[results["status"] == "ok", "rmse"].notna().all()
    assert f"{len(failed)} x error: in fit: RuntimeError" in done.stderr
    # the same failures whatever the number of ranks: drawn from each split's seed
    path1 = mb.create_project(tmp_path / "p1", grid)
    check_ok(run_mpibench(None, "run", path1))
    assert mb.read_results(path1)["status"].tolist() == results["status"].tolist()


@pytest.mark.parametrize("fault", ["worker:2", "worker:1", "dispatcher:0"])
def test_unhandled_exception_on_any_rank_ends_the_job(tmp_path, fault):
    path = mb.create_demo(tmp_path / "demo")
    done = run_mpibench(3, "run", path, env={"MPIBENCH_FAULT": fault}, timeout=60)
    assert done.returncode != 0
    rank = fault.split(":")[1]
    assert f"rank {rank} of 3" in done.stderr and "InjectedFault" in done.stderr


def test_singleton_launch_is_refused(tmp_path):
    path = mb.create_demo(tmp_path / "demo")
    done = run_mpibench(None, "run", path, env={"SLURM_NTASKS": "3"})
    assert done.returncode == 2
    assert "srun --mpi=pmi2" in done.stderr and "SLURM_NTASKS=3" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert not (path / "results.h5").exists()


def test_missing_project_exit_2_one_line(tmp_path):
    done = run_mpibench(3, "run", tmp_path / "nothing")
    assert done.returncode == 2
    ours = [line for line in done.stderr.splitlines() if line.startswith("mpibench")]
    assert len(ours) == 1 and "No project at" in ours[0], done.stderr


def test_resume_from_results_h5_without_journal(tmp_path, serial_demo):
    path = mb.create_demo(tmp_path / "demo")
    check_ok(run_mpibench(3, "run", path))
    # keep 30 of 72 rows and no journal: the results file is adopted as the record
    (path / "results.journal").unlink()
    with h5py.File(path / "results.h5", "r+") as h5:
        for name in list(h5["splits"]):
            data = h5["splits"][name][:30]
            del h5["splits"][name]
            h5["splits"].create_dataset(name, data=data)
    done = run_mpibench(3, "run", path)
    check_ok(done)
    assert "this run: 42 " in done.stderr
    pd.testing.assert_frame_equal(stable(mb.read_results(path)), stable(serial_demo))
    again = run_mpibench(3, "run", path)
    check_ok(again)
    assert "this run: 0 " in again.stderr


def test_results_of_another_grid_are_refused(tmp_path):
    path = mb.create_demo(tmp_path / "demo")
    other = mb.create_project(tmp_path / "other", mb.demo_grid(seed=3))
    check_ok(run_mpibench(None, "run", other))
    (path / "results.h5").write_bytes((other / "results.h5").read_bytes())
    before = (path / "results.h5").read_bytes()
    done = run_mpibench(3, "run", path)
    assert done.returncode == 2 and "different grid" in done.stderr
    assert (path / "results.h5").read_bytes() == before


def test_classification_with_probability_scorers(tmp_path):
    X, y = load_iris(return_X_y=True, as_frame=True)
    names = np.array(["setosa", "versicolor", "virginica"])[y.to_numpy()]
    task = mb.Task("iris", X=X, y=names)
    grid = mb.Grid([task], {"logreg": LogisticRegression(max_iter=500),
                            "majority": mb.DebugLearner()},
                   resamplings=[StratifiedKFold(5, shuffle=True)],
                   scoring=["accuracy", "auc", "logloss", "f1"])
    path = mb.create_project(tmp_path / "iris", grid)
    check_ok(run_mpibench(3, "run", path))
    results = mb.read_results(path).set_index("learner", append=True)
    assert (results["status"] == "ok").all()
    means = results.groupby(level="learner")[["accuracy", "auc"]].mean()
    assert means.loc["logreg", "accuracy"] > 0.9 and means.loc["logreg", "auc"] > 0.95
    assert means.loc["majority", "auc"] == pytest.approx(0.5)


def test_status_and_results_commands(tmp_path):
    path = mb.create_demo(tmp_path / "demo")
    todo = run_mpibench(None, "status", path)
    check_ok(todo)
    assert "0/72 done" in todo.stdout and "72 todo" in todo.stdout
    check_ok(run_mpibench(3, "run", path))
    status = run_mpibench(None, "status", path)
    assert "72/72 done (ok 72) | 0 failed | 0 todo" in status.stdout
    out = tmp_path / "results.csv"
    check_ok(run_mpibench(None, "results", path, "-o", out))
    table = pd.read_csv(out)
    assert len(table) == 72 and {"rmse", "mae", "test_subset"} <= set(table.columns)


ONE_LAUNCH = Path(__file__).resolve().parent.parent / "examples" / "one_launch.py"


@pytest.mark.mpi
def test_one_script_one_launch_creates_runs_and_resumes(tmp_path):
    folder = tmp_path / "linear"
    done = run_process([*launcher(3), sys.executable, str(ONE_LAUNCH), str(folder)],
                       timeout=180)
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("ridge") == 1  # rank 0 printed, once
    results = mb.read_results(folder)
    assert len(results) == 10 and set(results["rank"]) <= {1, 2}
    assert "this run: 10 (10 ok" in done.stderr
    again = run_process([*launcher(3), sys.executable, str(ONE_LAUNCH), str(folder)],
                        timeout=180)
    assert again.returncode == 0 and "this run: 0 (0 ok" in again.stderr


@pytest.mark.mpi
def test_one_launch_with_a_changed_grid_ends_every_rank_and_keeps_the_results(tmp_path):
    folder = tmp_path / "linear"
    assert run_process([sys.executable, str(ONE_LAUNCH), str(folder)]).returncode == 0
    before = (folder / "results.h5").read_bytes()
    changed = tmp_path / "changed.py"
    changed.write_text(ONE_LAUNCH.read_text().replace("max_depth=4", "max_depth=5"))
    done = run_process([*launcher(3), sys.executable, str(changed), str(folder)],
                       timeout=120)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert "changes" in done.stderr and "(changed: learner tree)" in done.stderr
    assert done.stderr.count("mpibench: error:") == 1
    assert (folder / "results.h5").read_bytes() == before


@pytest.mark.mpi
def test_one_launch_with_a_learner_defined_in_the_script_is_one_line(tmp_path):
    script = tmp_path / "local.py"
    script.write_text(ONE_LAUNCH.read_text().replace(
        "import mpibench as mb\n",
        "import mpibench as mb\n\n\nclass Mine(Ridge):\n    pass\n\n\n").replace(
        '"ridge": Ridge()', '"ridge": Mine()'))
    done = run_process([*launcher(3), sys.executable, str(script), str(tmp_path / "p")],
                       timeout=120)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert done.stderr.count("mpibench: error:") == 1 and "Mine" in done.stderr
