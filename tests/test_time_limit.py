"""Near a time limit rank 0 starts only splits that can finish, the longest that fit
first, and stops a worker for which none fits: the run ends early, resumable, with
nothing interrupted."""

from __future__ import annotations

import numpy as np
import pytest
from mpi_helpers import run_mpibench
from sklearn.model_selection import ShuffleSplit

import mpibench as mb

pytestmark = pytest.mark.mpi


def test_the_tail_of_a_job_is_filled_with_splits_that_fit(tmp_path):
    task = mb.Task("t", X=np.zeros((40, 1)), y=np.arange(40.0))
    grid = mb.Grid([task], {"long": mb.DebugLearner(sleep_fit=2.0),
                            "short": mb.DebugLearner(sleep_fit=0.05)},
                   [ShuffleSplit(10, random_state=0)], scoring=["rmse"])
    project = mb.create_project(tmp_path / "p", grid)
    done = run_mpibench(3, "run", project, "--time-left", "7", "--progress-every", "0",
                        env={"MPIBENCH_END_MARGIN": "1"})
    assert done.returncode == 3, done.stderr
    results = mb.read_results(project)
    assert (results["status"] == "ok").all()
    by_learner = results["learner"].value_counts()
    assert by_learner["short"] == 10  # every short split fitted in the tail
    assert 1 <= by_learner.get("long", 0) < 10
    assert "interrupted" not in done.stderr
    assert "no pending split can finish" in done.stderr and "core-hours" in done.stderr
    assert not mb.read_attrs(project)["complete"]
    again = run_mpibench(3, "run", project, "--progress-every", "0")  # no limit: the rest
    assert again.returncode == 0, again.stderr
    assert len(mb.read_results(project)) == 20


def test_a_learner_that_checkpoints_starts_near_the_limit_anyway():
    task = mb.Task("t", X=np.zeros((8, 1)), y=np.arange(8.0))
    from sklearn.linear_model import SGDRegressor

    grid = mb.Grid([task], {"epochs": mb.Epochs(SGDRegressor(), epochs=2),
                            "plain": mb.DebugLearner()}, [ShuffleSplit(2)],
                   learner_options={"plain": {"checkpoints": True}})
    assert grid.learner_options == {"epochs": {"checkpoints": True},
                                    "plain": {"checkpoints": True}}
    with pytest.raises(mb.MpibenchError, match=r"\['epochs'\]\['checkpoints'\]"):
        mb.Grid([task], {"epochs": mb.Epochs(SGDRegressor())}, [ShuffleSplit(2)],
                learner_options={"epochs": {"checkpoints": "yes"}})
