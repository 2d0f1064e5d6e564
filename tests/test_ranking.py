"""Learners across many tasks: mean ranks, Friedman, Nemenyi, pairwise tests."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

import mpibench as mb
from mpibench.analysis.ranking import (
    Friedman,
    _chi_square,
    _iman_davenport,
    holm,
    nemenyi_cd,
    rank_rows,
    score_table,
)


def results_frame(scores: np.ndarray, name: str = "rmse") -> pd.DataFrame:
    """A results table: ``scores[t, l]`` as two splits of task t and learner l (their
    mean is the score), plus a SOAK 'same' split that must not count."""
    rows = []
    for t in range(scores.shape[0]):
        for learner in range(scores.shape[1]):
            value = scores[t, learner]
            for delta in (-0.5, 0.5):
                rows.append({"task": f"t{t}", "learner": f"l{learner}", "train_subsets": "",
                             name: value + delta})
            rows.append({"task": f"t{t}", "learner": f"l{learner}",
                         "train_subsets": "same", name: 1e9})
    return pd.DataFrame(rows)


def test_friedman_equals_scipy_with_ties():
    rng = np.random.default_rng(3)
    scores = rng.integers(0, 4, size=(25, 5)).astype(float)  # many ties
    result = mb.friedman(results_frame(scores), "rmse")
    expected = stats.friedmanchisquare(*scores.T)
    assert result.statistic == pytest.approx(expected.statistic, rel=1e-12)
    assert result.pvalue == pytest.approx(expected.pvalue, rel=1e-9)
    assert (result.n_tasks, result.n_learners) == (25, 5)
    ranks = np.mean([stats.rankdata(row) for row in scores], axis=0)  # lower is better
    assert result.mean_ranks.sort_index().to_numpy() == pytest.approx(ranks)
    assert list(result.mean_ranks) == sorted(result.mean_ranks)  # best first


def test_accuracy_ranks_larger_first_and_incomplete_tasks_are_left_out():
    scores = np.array([[0.9, 0.5], [0.8, 0.6], [0.7, np.nan]])
    frame = results_frame(scores, "accuracy").dropna()
    result = mb.friedman(frame, "accuracy")
    assert result.mean_ranks.to_dict() == {"l0": 1.0, "l1": 2.0}
    assert result.n_tasks == 2 and result.n_left_out == 1


def test_demsar_worked_example():
    # Demsar (2006), section 3.2.4: four C4.5 variants on 14 data sets
    mean_ranks = {"C4.5": 3.143, "C4.5+m": 2.000, "C4.5+cf": 2.893, "C4.5+m+cf": 1.964}
    n, k = 14, 4
    r = np.array(list(mean_ranks.values()))
    chi = 12 * n / (k * (k + 1)) * (np.sum(r ** 2) - k * (k + 1) ** 2 / 4)
    assert chi == pytest.approx(9.28, abs=0.01)
    assert _iman_davenport(chi, n, k)[0] == pytest.approx(3.69, abs=0.01)
    assert nemenyi_cd(4, 14, alpha=0.05) == pytest.approx(1.25, abs=0.005)  # q = 2.569
    assert nemenyi_cd(4, 14, alpha=0.10) == pytest.approx(1.12, abs=0.005)  # q = 2.291
    ranks = pd.Series(mean_ranks).sort_values()
    test = Friedman(ranks, chi, 0.0, 0.0, 0.0, n, k, 0, "error", False)
    assert mb.critical_difference(test, alpha=0.05).groups == [list(ranks.index)]
    # at 0.10: C4.5 is worse than C4.5+m+cf (1.179) and C4.5+m (1.143), not C4.5+cf
    assert mb.critical_difference(test, alpha=0.10).groups == [
        ["C4.5+m+cf", "C4.5+m", "C4.5+cf"], ["C4.5+cf", "C4.5"]]


def test_chi_square_of_ranks_without_ties_is_the_textbook_formula():
    rng = np.random.default_rng(0)
    ranks = np.array([rng.permutation(4) + 1.0 for _ in range(10)])
    mean = ranks.mean(axis=0)
    textbook = 12 * 10 / (4 * 5) * (np.sum(mean ** 2) - 4 * 25 / 4)
    assert _chi_square(ranks)[0] == pytest.approx(textbook)


def test_pairwise_counts_wins_and_holm_adjusts_wilcoxon():
    rng = np.random.default_rng(1)
    scores = np.column_stack([rng.normal(0, 1, 30), rng.normal(0.8, 1, 30),
                              rng.normal(0, 1, 30)])
    scores[0, 2] = scores[0, 0]  # one tie
    table = mb.pairwise(results_frame(scores), "rmse")
    first = table.iloc[0]
    assert (first["learner"], first["versus"]) == ("l0", "l1")
    assert first["wins"] == int((scores[:, 0] < scores[:, 1]).sum())  # lower rmse wins
    assert first["losses"] == int((scores[:, 0] > scores[:, 1]).sum())
    assert table.iloc[1]["ties"] == 1
    assert first["p_wilcoxon"] == pytest.approx(stats.wilcoxon(scores[:, 0],
                                                               scores[:, 1]).pvalue)
    assert table["p_holm"].tolist() == pytest.approx(holm(table["p_wilcoxon"].to_numpy()))
    assert (table["p_holm"] >= table["p_wilcoxon"]).all()


def test_holm_against_its_definition():
    p = np.array([0.01, 0.04, 0.03, 0.5, np.nan])
    adjusted = holm(p)
    assert adjusted[:4].tolist() == pytest.approx([0.04, 0.09, 0.09, 0.5])
    assert np.isnan(adjusted[4])


def test_score_table_takes_full_size_all_splits_of_soak():
    frame = pd.DataFrame({
        "task": ["a"] * 4, "learner": ["x"] * 4,
        "train_subsets": ["all", "all", "same", "all"], "groups": [10, 10, 10, 10],
        "n_train_groups": [10, 10, 10, 5], "rmse": [1.0, 3.0, 100.0, 50.0]})
    assert score_table(frame, "rmse").loc["a", "x"] == 2.0
    assert rank_rows(pd.DataFrame({"x": [1.0], "y": [1.0]}), True).iloc[0].tolist() == [1.5, 1.5]


def test_too_few_learners_is_one_line():
    frame = results_frame(np.ones((3, 1)))
    with pytest.raises(mb.MpibenchError, match="two learners"):
        mb.friedman(frame, "rmse")
