"""What runs one split: estimators made from the grid's (clone and seed, fast), and
how a failed split explains itself."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.ensemble import BaggingRegressor, RandomForestRegressor
from sklearn.linear_model import Ridge
from sklearn.model_selection import KFold, ShuffleSplit
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import mpibench as mb
from mpibench.engine.protocol import Assignment
from mpibench.engine.worker import EstimatorFactory, SplitRunner, seed_estimator
from mpibench.formatting import error_groups, without_rank
from mpibench.store.gridfile import GridFile


@pytest.mark.parametrize("estimator, fast", [
    (mb.DebugLearner(), True),
    (mb.NoOpLearner(), True),
    (RandomForestRegressor(n_estimators=3, random_state=4), True),
    (make_pipeline(StandardScaler(), Ridge()), False),
    (StandardScaler().set_output(transform="pandas"), False),
    (BaggingRegressor(Ridge()), False),
])
def test_estimator_factory_equals_clone_and_seed(estimator, fast):
    factory = EstimatorFactory(estimator)
    assert (factory._params is not None) == fast
    made, again = factory(7), factory(7)
    expected = seed_estimator(clone(estimator), 7)
    assert type(made) is type(expected) and made is not again and made is not estimator
    assert repr(made.get_params(deep=True)) == repr(expected.get_params(deep=True))
    assert getattr(made, "_sklearn_output_config", None) == getattr(
        expected, "_sklearn_output_config", None)


def test_the_first_error_of_each_kind_keeps_its_full_traceback(tmp_path):
    rng = np.random.default_rng(0)
    task = mb.Task("t", X=rng.normal(size=(40, 2)), y=rng.normal(size=40))
    learners = {"fit": mb.DebugLearner(p_error=1.0),
                "predict": mb.DebugLearner(p_error=1.0, fail_in="predict")}
    grid = mb.Grid([task], learners, resamplings=[ShuffleSplit(3, test_size=0.25)])
    runner = SplitRunner(GridFile(mb.create_project(tmp_path / "p", grid) / "grid.h5"), 1, 1)
    errors = [runner.run(Assignment(job, 0, learner, 0, split, 7)).error
              for learner in (0, 1) for job, split in ((learner * 3 + s, s) for s in range(3))]
    full = [e for e in errors if "\nTraceback (most recent call last):" in e]
    assert full == [errors[0], errors[3]]  # the first of each kind (fit, predict)
    assert all("\n" not in e for e in errors if e not in full)
    assert errors[0].count('  File "') >= 2  # every frame, not the last three
    assert len({without_rank(e) for e in errors}) == 2  # grouped by their first line
    assert {e.split(":")[0] for e in errors} == {"in fit", "in predict"}  # (rank: a column)
    assert without_rank("rank 3 on n7: in fit: E\nmore") == "in fit: E"  # older projects
    lines = error_groups(np.array(["error"] * 6), np.array(errors, dtype=object))
    assert len(lines) == 2 and all(line.startswith("  3 x error: in ") for line in lines)



def test_a_failed_split_records_its_time_to_the_failure(tmp_path):
    import mpibench as mb

    rng = np.random.default_rng(0)
    task = mb.Task("t", X=rng.normal(size=(30, 2)), y=rng.normal(size=30))
    project = mb.create_project(tmp_path / "p", mb.Grid(
        [task], {"bad": mb.DebugLearner(sleep_fit=0.05, p_error=1.0)}, [KFold(3)]))
    assert mb.run(project, progress_every=0, isolate=False) == 0
    results = mb.read_results(project)
    assert (results["status"] == "error").all()
    assert (results["fit_seconds"] >= 0.05).all(), results["fit_seconds"]


class ExitingLearner(Ridge):
    """Calls ``sys.exit(3)`` in fit."""

    def fit(self, X, y):
        import sys

        sys.exit(3)


def test_sys_exit_in_a_learner_is_an_error_of_its_split(tmp_path):
    import mpibench as mb

    rng = np.random.default_rng(0)
    task = mb.Task("t", X=rng.normal(size=(30, 2)), y=rng.normal(size=30))
    project = mb.create_project(tmp_path / "p", mb.Grid(
        [task], {"exits": ExitingLearner(), "ok": Ridge()}, [KFold(3)]))
    assert mb.run(project, progress_every=0, isolate=False) == 0
    results = mb.read_results(project)
    failed = results[results["learner"] == "exits"]
    assert (failed["status"] == "error").all()
    assert failed["error"].str.contains("SystemExit: 3").all()
    assert (results.loc[results["learner"] == "ok", "status"] == "ok").all()
