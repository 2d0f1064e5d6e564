"""The experiment's life (issue 15): retrying failed splits, under a real mpiexec."""

from __future__ import annotations

import json
import os
import signal
import time

import numpy as np
import pandas as pd
import pytest
from mpi_helpers import run_mpibench, start_mpibench
from sklearn.model_selection import ShuffleSplit

import mpibench as mb

pytestmark = pytest.mark.mpi


def slow_grid(n_splits: int = 4, learners: tuple = ("slow", "fast")) -> mb.Grid:
    """A 0.6 s learner ("slow") and a no-op one ("fast")."""
    rng = np.random.default_rng(0)
    task = mb.Task("t", X=rng.normal(size=(60, 2)), y=rng.normal(size=60))
    known = {"slow": mb.DebugLearner(sleep_fit=0.6), "fast": mb.DebugLearner()}
    return mb.Grid([task], {name: known[name] for name in learners},
                   resamplings=[ShuffleSplit(n_splits, test_size=0.25)])


def run(path, *args):
    done = run_mpibench(3, "run", path, "--progress-every", "0", *args, timeout=120)
    assert done.returncode == 0, done.stderr
    return done


def test_retry_runs_failed_splits_again_and_keeps_the_earlier_attempts(tmp_path):
    path = mb.create_project(tmp_path / "p", slow_grid())
    run(path, "--timeout", "0.2")
    first = mb.read_results(path)
    assert sorted(first.groupby("learner", observed=True)["status"].first()) == \
        ["ok", "timeout"]
    assert "this run: 0 (" in run(path, "--timeout", "5").stderr  # a plain rerun: none
    done = run(path, "--retry", "timeout", "--timeout", "5")
    assert "retry timeout: 4 split(s) run again" in done.stderr
    latest = mb.read_results(path)
    assert len(latest) == 8 and (latest["status"] == "ok").all()
    slow = latest[latest["learner"] == "slow"]
    assert (slow["attempt"] == 2).all()
    every = mb.read_results(path, attempts="all")
    assert len(every) == 12
    earlier = every[(every["learner"] == "slow") & (every["attempt"] == 1)]
    assert (earlier["status"] == "timeout").all() and len(earlier) == 4
    again = run(path, "--retry", "error")  # nothing has that status: nothing runs
    assert "retry error: 0 split(s) run again" in again.stderr
    assert len(mb.read_results(path, attempts="all")) == 12


def test_retry_names_only_statuses_it_knows(tmp_path):
    path = mb.create_project(tmp_path / "p", slow_grid())
    done = run_mpibench(3, "run", path, "--retry", "done", timeout=60)
    assert done.returncode == 2 and "--retry must be statuses among" in done.stderr
    assert not (path / "results.journal").exists()


def test_ranks_keep_one_table_per_run_and_a_run_with_nothing_to_do_adds_none(tmp_path):
    path = mb.create_project(tmp_path / "p", slow_grid())
    run(path, "--timeout", "0.2")
    first = mb.read_ranks(path)
    assert set(first["run"]) == {1} and first["n_splits"].sum() == 8
    run(path)  # nothing to do: /ranks is not overwritten with zeros
    pd.testing.assert_frame_equal(mb.read_ranks(path), first)
    run(path, "--retry", "timeout", "--timeout", "5")
    ranks = mb.read_ranks(path)
    assert ranks.groupby("run")["n_splits"].sum().to_dict() == {1: 8, 3: 4}
    assert (ranks["busy_seconds"] >= 0).all()
    results = mb.read_results(path)
    figure = mb.plot_timeline(results, ranks=ranks)  # the two runs side by side
    ax = figure.axes[0]
    assert [t.get_text() for t in ax.texts] == ["run 1", "run 3"]
    busy = (results["end_time"] - results["start_time"]).sum()
    wall = results["end_time"].max() - results["start_time"].min()
    assert ax.get_xlim()[1] < wall and ax.get_xlim()[1] >= busy / 2  # no gap between runs
    assert "in 2 runs" in ax.get_title()


@pytest.mark.parametrize("mode", [[], ["--no-isolate"]], ids=["isolated", "no-isolate"])
def test_warnings_are_counted_per_split_and_kept_off_stderr(tmp_path, mode):
    from pathlib import Path

    from spawning_learner import Warner

    rng = np.random.default_rng(0)
    task = mb.Task("t", X=rng.normal(size=(40, 2)), y=rng.normal(size=40))
    grid = mb.Grid([task], {"warns": Warner(n=3, text="watch out"),
                            "quiet": mb.DebugLearner()},
                   resamplings=[ShuffleSplit(3, test_size=0.25)])
    path = mb.create_project(tmp_path / "p", grid)
    done = run_mpibench(3, "run", path, "--progress-every", "0", *mode, timeout=120,
                        env={"PYTHONPATH": str(Path(__file__).parent)})
    assert done.returncode == 0, done.stderr
    results = mb.read_results(path).set_index("learner")
    assert (results.loc["warns", "n_warnings"] == 3).all()
    assert (results.loc["warns", "warning"] == "UserWarning: watch out").all()
    assert (results.loc["quiet", "n_warnings"] == 0).all()
    assert "3 split(s) raised warnings (9 in all" in done.stderr
    assert "watch out 1" not in done.stderr  # the warnings themselves stay off stderr


def status(path, *args):
    done = run_mpibench(None, "status", path, *args, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_status_is_live_during_a_run_and_after_a_kill(tmp_path):
    path = mb.create_project(tmp_path / "p", slow_grid(n_splits=40, learners=["slow"]))
    proc = start_mpibench(3, "run", path, "--progress-every", "0")
    try:
        deadline = time.monotonic() + 60
        while True:  # results.h5 is written only every 300 s: the journal says more
            live = json.loads(status(path, "--json"))
            if live["n_done"] >= 4 and live["run"] and live["run"].get("n_in_flight"):
                break
            assert time.monotonic() < deadline, live
            time.sleep(0.3)
        assert not (path / "results.h5").exists()
        assert live["run"]["alive"] is True and live["run"]["heartbeat_age_seconds"] < 10
        assert live["n_in_flight"] >= 1 and live["eta_seconds"] > 0
        assert live["n_pending"] == 40 - live["n_done"] - live["n_in_flight"]
        text = status(path)
        assert "run: active" in text and "in flight" in text
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
    after = json.loads(status(path, "--json"))
    assert after["n_done"] >= live["n_done"] and after["n_in_flight"] == 0
    assert after["run"]["alive"] is False
    assert "left by a dead run" in status(path)


def test_status_refuses_a_grid_that_no_longer_matches_its_results(tmp_path):
    path = mb.create_project(tmp_path / "p", slow_grid())
    run(path, "--timeout", "0.2")
    rng = np.random.default_rng(5)
    other = mb.Grid([mb.Task("t", X=rng.normal(size=(60, 2)), y=rng.normal(size=60))],
                    {"fast": mb.DebugLearner()}, resamplings=[ShuffleSplit(2)])
    elsewhere = mb.create_project(tmp_path / "q", other)
    (path / "grid.h5").write_bytes((elsewhere / "grid.h5").read_bytes())
    done = run_mpibench(None, "status", path, timeout=60)
    assert done.returncode == 2 and "different grid" in done.stderr, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def growing_grid(learners: dict, n_splits: int = 4, tasks: int = 1) -> mb.Grid:
    rng = np.random.default_rng(0)
    data = [mb.Task(f"t{i}", X=rng.normal(size=(60, 2)), y=rng.normal(size=60))
            for i in range(tasks)]
    return mb.Grid(data, learners, resamplings=[ShuffleSplit(n_splits, test_size=0.25,
                                                             random_state=0)])


def test_a_grid_grows_and_keeps_every_result_whose_job_is_unchanged(tmp_path):
    path = mb.create_project(tmp_path / "p", growing_grid({"a": mb.DebugLearner()}))
    run(path)
    before = mb.read_results(path)
    grown = growing_grid({"z": mb.DebugLearner(sleep_fit=1e-3), "a": mb.DebugLearner()},
                         n_splits=6, tasks=2)  # a learner first, more splits, a task
    assert mb.create_project(path, grown) == path
    assert json.loads(status(path, "--json"))["n_done"] == 4  # before any run
    done = run(path)
    assert "this run: 20 (" in done.stderr  # 24 jobs, 4 kept
    after = mb.read_results(path)
    assert len(after) == 24
    kept = after[after["job_id"].isin(before["job_id"])]
    for column in ("task", "learner", "rmse", "start_time", "random_state"):
        assert kept[column].tolist() == before[column].tolist(), column
    assert mb.create_project(path, grown) == path  # the same grid again: nothing to do
    assert "this run: 0 (" in run(path).stderr
    reference = mb.create_project(tmp_path / "ref", grown)
    run(reference)
    expected = mb.read_results(reference)
    by_key = ["task", "learner", "n_train", "test_fold", "rmse"]
    assert sorted(map(tuple, after[by_key].astype(str).to_numpy())) == \
        sorted(map(tuple, expected[by_key].astype(str).to_numpy()))


@pytest.mark.parametrize(("change", "named"), [
    ({"a": mb.DebugLearner(sleep_fit=0.5)}, "changed: learner a"),
    ({"b": mb.DebugLearner()}, "no longer in the grid: learner a"),
])
def test_a_grid_that_changes_jobs_is_refused_naming_what(tmp_path, change, named):
    path = mb.create_project(tmp_path / "p", growing_grid({"a": mb.DebugLearner()}))
    run(path)
    journal = (path / "results.journal").read_bytes()
    grid_file = (path / "grid.h5").read_bytes()
    with pytest.raises(mb.MpibenchError, match=named):
        mb.create_project(path, growing_grid(change))
    assert (path / "results.journal").read_bytes() == journal
    assert (path / "grid.h5").read_bytes() == grid_file


@pytest.mark.parametrize(("kind", "mode"), [("regression", []), ("classification", []),
                                           ("classification", ["--no-isolate"])])
def test_saved_predictions_are_the_learners_and_follow_retries(tmp_path, kind, mode):
    from sklearn.dummy import DummyClassifier

    from mpibench.store.gridfile import GridFile

    rng = np.random.default_rng(3)
    if kind == "regression":
        task, learner = mb.Task("t", X=rng.normal(size=(60, 2)), y=rng.normal(size=60)), \
            mb.DebugLearner()
    else:
        task, learner = mb.Task("t", X=rng.normal(size=(60, 2)),
                                y=np.array(["no", "yes", "yes"] * 20)), DummyClassifier()
    grid = mb.Grid([task], {"base": learner},
                   resamplings=[ShuffleSplit(3, test_size=0.25, random_state=0)])
    path = mb.create_project(tmp_path / "p", grid)
    run(path, "--save-predictions", *mode)
    predictions = mb.read_predictions(path)
    index, table = GridFile(path / "grid.h5").split_index(0, 0), grid.job_table()
    assert sorted(set(predictions["job_id"])) == [0, 1, 2]
    for job in table.itertuples():
        mine = predictions[predictions["job_id"] == job.job_id]
        train, test = index.train(job.split_i), index.test(job.split_i)
        assert mine["row"].tolist() == test.tolist()
        if kind == "regression":
            assert np.allclose(mine["prediction"].astype(float), task.y[train].mean())
        else:
            assert np.allclose(mine["proba_yes"], np.mean(task.y[train] == "yes"))
            assert set(mine["prediction"]) == {"yes"}
    run(path, "--retry", "ok", "--save-predictions", *mode)  # every split again
    again = mb.read_predictions(path)
    assert len(again) == len(predictions) and (again["attempt"] == 2).all()


def test_read_predictions_without_them_says_how(tmp_path):
    path = mb.create_project(tmp_path / "p", slow_grid(learners=("fast",)))
    run(path)
    with pytest.raises(mb.MpibenchError, match="--save-predictions"):
        mb.read_predictions(path)


def test_record_keeps_extra_values_of_each_fitted_learner_as_columns(tmp_path):
    from pathlib import Path

    from sklearn.tree import DecisionTreeRegressor
    from spawning_learner import tree_shape

    rng = np.random.default_rng(0)
    task = mb.Task("t", X=rng.normal(size=(80, 2)), y=rng.normal(size=80))
    grid = mb.Grid([task], {"tree": DecisionTreeRegressor(max_depth=3, random_state=0)},
                   resamplings=[ShuffleSplit(3, test_size=0.25, random_state=0)],
                   record=tree_shape)
    path = mb.create_project(tmp_path / "p", grid)
    done = run_mpibench(3, "run", path, "--progress-every", "0", timeout=120,
                        env={"PYTHONPATH": str(Path(__file__).parent)})
    assert done.returncode == 0, done.stderr
    results = mb.read_results(path)
    assert (results["depth"] == 3).all() and (results["n_leaves"] > 1).all()
    assert (results["params"] == '{"max_depth": 3}').all()
    assert "record" not in results


def test_per_learner_timeout_and_fallback_override_the_run(tmp_path):
    rng = np.random.default_rng(0)
    task = mb.Task("t", X=rng.normal(size=(60, 2)), y=rng.normal(size=60))
    grid = mb.Grid([task], {"slow": mb.DebugLearner(sleep_fit=2.0),
                            "also_slow": mb.DebugLearner(sleep_fit=0.5)},
                   resamplings=[ShuffleSplit(2, test_size=0.25, random_state=0)],
                   learner_options={"slow": {"timeout": 0.3, "fallback": "featureless"}})
    path = mb.create_project(tmp_path / "p", grid)
    run(path, "--timeout", "30")  # the run's limit: only "slow" has its own
    results = mb.read_results(path).set_index("learner")
    slow = results.loc["slow"]
    assert (slow["status"] == "timeout").all() and slow["fallback"].all()
    assert slow["error"].str.contains("exceeded the timeout of 0.3s").all()
    assert slow["rmse"].notna().all()  # scored by its featureless fallback
    assert (results.loc["also_slow", "status"] == "ok").all()
    refused = run_mpibench(3, "run", path, "--no-isolate", "--retry", "timeout", timeout=60)
    assert refused.returncode == 2 and "isolation: drop --no-isolate" in refused.stderr
    with pytest.raises(mb.MpibenchError, match="does not have"):
        mb.Grid([task], {"a": mb.DebugLearner()}, learner_options={"b": {"timeout": 1}})


def test_log_splits_keeps_each_splits_output_in_the_project(tmp_path):
    from pathlib import Path

    from spawning_learner import Chatty

    rng = np.random.default_rng(0)
    task = mb.Task("t", X=rng.normal(size=(40, 2)), y=rng.normal(size=40))
    grid = mb.Grid([task], {"chatty": Chatty(), "quiet": mb.DebugLearner()},
                   resamplings=[ShuffleSplit(3, test_size=0.25, random_state=0)])
    path = mb.create_project(tmp_path / "p", grid)
    done = run_mpibench(3, "run", path, "--progress-every", "0", "--log-splits",
                        timeout=120, env={"PYTHONPATH": str(Path(__file__).parent)})
    assert done.returncode == 0, done.stderr
    assert "chatty" not in done.stderr
    results = mb.read_results(path)
    chatty = results[results["learner"] == "chatty"]
    logs = sorted(p.name for p in (path / "logs").iterdir())
    assert logs == sorted(f"{j}-1.log" for j in chatty["job_id"])  # quiet splits: none
    text = (path / "logs" / logs[0]).read_text()
    assert "chatty fit on 30 rows" in text and "chatty says on stderr" in text
    refused = run_mpibench(None, "run", path, "--log-splits", "--no-isolate", timeout=60)
    assert refused.returncode == 2 and "drop --no-isolate" in refused.stderr
