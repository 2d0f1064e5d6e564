"""Retries that escalate: a split that timed out runs again under a longer timeout
(``--escalate``), per learner too, and every result records the limits it ran under."""

from __future__ import annotations

import numpy as np
import pytest
from mpi_helpers import run_mpibench
from sklearn.model_selection import KFold

import mpibench as mb
from mpibench.limits import LearnerOptions, SplitLimits

pytestmark = pytest.mark.mpi


def test_escalated_limits_grow_per_failure_within_the_caps():
    limits = SplitLimits(timeout=10.0, memory_limit=1000)
    assert limits.escalated(3.0, 0) == limits and limits.escalated(1.0, 5) == limits
    assert limits.escalated(3.0, 2) == SplitLimits(90.0, 9000)
    assert limits.escalated(3.0, 2, max_seconds=50.0, max_bytes=5000) == SplitLimits(50.0, 5000)
    assert limits.escalated(3.0, 2, max_seconds=1.0).timeout == 10.0  # never below its own
    assert LearnerOptions.from_mapping("m", {"escalate": 2}).escalate == 2
    with pytest.raises(mb.MpibenchError, match="a factor >= 1"):
        mb.RunOptions(escalate=0.5)


def test_a_retried_timeout_runs_under_an_escalated_timeout(tmp_path):
    task = mb.Task("t", X=np.zeros((8, 1)), y=np.arange(8.0))
    grid = mb.Grid([task], {"grows": mb.DebugLearner(sleep_fit=1.0),
                            "stays": mb.DebugLearner(sleep_fit=1.0)}, [KFold(2)],
                   scoring=["rmse"], learner_options={"stays": {"escalate": 1}})
    project = mb.create_project(tmp_path / "p", grid)
    first = run_mpibench(3, "run", project, "--timeout", "0.4", "--kill-grace", "0.2")
    assert first.returncode == 0, first.stderr
    results = mb.read_results(project)
    assert (results["status"] == "timeout").all() and (results["limit_seconds"] == 0.4).all()
    again = run_mpibench(3, "run", project, "--retry", "timeout", "--timeout", "0.4",
                         "--kill-grace", "0.2", "--escalate", "4")
    assert again.returncode == 0, again.stderr
    latest = mb.read_results(project).set_index("learner")
    assert (latest.loc["grows", "status"] == "ok").all()
    assert (latest.loc["grows", "limit_seconds"] == 1.6).all()
    assert (latest.loc["stays", "status"] == "timeout").all()  # its own factor: 1
    assert (latest.loc["stays", "limit_seconds"] == 0.4).all()
    assert "exceeded the timeout of 0.4s" in latest.loc["stays", "error"].iloc[0]
    every = mb.read_results(project, attempts="all")
    assert sorted(every.loc[every["learner"] == "grows", "limit_seconds"]) == [0.4, 0.4,
                                                                                1.6, 1.6]
