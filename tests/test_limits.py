"""One definition of a per-split limit and of a parameter's rule, used by a run's
options, a grid's learner_options and the sbatch options alike."""

from __future__ import annotations

import argparse
import dataclasses

import numpy as np
import pytest
from sklearn.dummy import DummyRegressor

import mpibench as mb
from mpibench.constraints import check, integer, number, one_of
from mpibench.engine.options import RunOptions
from mpibench.limits import LIMITS, LearnerOptions, SplitLimits, learner_options_of
from mpibench.slurm import SbatchOptions, sbatch_arguments


def test_a_learners_own_limit_wins_over_the_runs():
    run = SplitLimits(timeout=60.0, memory_limit=2**30)
    assert run.under(SplitLimits(timeout=5.0)) == SplitLimits(5.0, 2**30)
    assert run.under(SplitLimits()) == run
    assert not SplitLimits() and SplitLimits(memory_limit=1)


def test_run_options_carry_the_same_limits():
    options = RunOptions(timeout=3.0, memory_limit=10)
    assert options.limits == SplitLimits(3.0, 10)
    assert set(LIMITS) <= {f.name for f in dataclasses.fields(RunOptions)}


@pytest.mark.parametrize("name", LIMITS)
def test_a_bad_limit_gets_the_same_words_for_a_run_and_for_a_learner(name):
    with pytest.raises(mb.MpibenchError) as run_error:
        RunOptions(**{name: -1})
    with pytest.raises(mb.MpibenchError) as learner_error:
        LearnerOptions.from_mapping("m", {name: -1})
    expected = str(run_error.value).split(" must be ")[1]
    assert str(learner_error.value).split(" must be ")[1] == expected
    assert "learner_options['m']" in str(learner_error.value)


def test_learner_options_are_parsed_once_per_learner():
    stored = {"b": {"timeout": 2, "fallback": None, "gpu": True}}
    first, second = learner_options_of(stored, ["a", "b"])
    assert first == LearnerOptions() and not first.has_fallback
    assert second.limits == SplitLimits(timeout=2) and second.gpu
    assert second.has_fallback and second.fallback is None  # "no fallback", said
    assert second.as_mapping() == stored["b"]


@pytest.mark.parametrize(("settings", "words"), [
    ({"speed": 1}, "a dict with keys among"),
    ({"memory_limit": 0.5}, "a number of bytes >= 1"),
    ({"fallback": "mean"}, "one of ('featureless',)"),
    ({"gpu": 1}, "True (its splits run only on ranks with a GPU) or False"),
])
def test_a_grid_refuses_bad_learner_options_in_one_line(settings, words):
    task = mb.Task("t", np.zeros((6, 1)), np.arange(6.0))
    with pytest.raises(mb.MpibenchError) as caught:
        mb.Grid([task], {"m": DummyRegressor()}, learner_options={"m": settings})
    assert words in str(caught.value) and "\n" not in str(caught.value)


def test_a_rule_says_what_passes_and_numpy_numbers_pass():
    check("X", {"folds": np.int64(3), "ratio": np.float32(0.5)},
          {"folds": integer(2), "ratio": number(0)})
    with pytest.raises(mb.MpibenchError, match=r"^--order must be one of \('a',\)\. "
                                               r"Got True instead\.$"):
        check("run", {"order": True}, {"order": one_of(("a",))}, spelling="cli")
    with pytest.raises(mb.MpibenchError, match="'folds' parameter of X must be an int"):
        check("X", {"folds": True}, {"folds": integer(2)})
    optional = {"timeout": number(0, above=True).or_none()}
    check("run", {"timeout": None}, optional)
    with pytest.raises(mb.MpibenchError, match=r"^--timeout must be a number of seconds > 0\. "
                                               r"Got 0 instead\.$"):  # (a flag left out is None)
        check("run", {"timeout": 0}, optional, spelling="cli")
    with pytest.raises(mb.MpibenchError, match=r"seconds > 0 or None\. Got 0 instead"):
        check("run", {"timeout": 0}, optional)


def test_sbatch_options_are_frozen_and_the_flags_come_from_them():
    options = SbatchOptions(ntasks=2, time="01:00:00", modules=["gcc"])
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.ntasks = 3  # type: ignore[misc]
    parser = argparse.ArgumentParser()
    for flag, settings in sbatch_arguments():
        parser.add_argument(flag, **settings)
    parsed = parser.parse_args(["--ntasks", "2", "--time", "01:00:00", "--modules", "gcc"])
    assert SbatchOptions.from_arguments(vars(parsed)) == options
    flags = {flag for flag, _ in sbatch_arguments()}
    assert flags == {"--" + f.name.replace("_", "-") for f in dataclasses.fields(SbatchOptions)}
