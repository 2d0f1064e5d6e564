"""Learners compared across many data sets: mean ranks, the Friedman test, Nemenyi's
critical difference and paired tests of learner pairs (Demsar, JMLR 7, 2006).

Each task contributes one number per learner: the mean score of its splits (plain
cross-validation splits; for SOAK resamplings the full-size ``all`` splits, the usual
K-fold estimate). Learners are ranked within each task (1 = best, ties share the mean
rank); tasks where a learner has no score are left out of the ranks (a complete block
design), and the result says how many.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..errors import MpibenchError

LOWER_IS_BETTER = frozenset({"rmse", "mse", "mae", "medae", "error_rate", "logloss"})
"""Short scorer names whose smaller values are better (every other score: larger)."""


def greater_is_better(score: str) -> bool:
    """Whether larger values of ``score`` are better (False for errors and losses).

    Examples
    --------
    >>> greater_is_better("rmse"), greater_is_better("accuracy")
    (False, True)
    """
    return score not in LOWER_IS_BETTER


def score_table(results: pd.DataFrame, score: str) -> pd.DataFrame:
    """Tasks x learners: the mean ``score`` of each learner's splits on each task.

    Plain cross-validation splits count, and of SOAK resamplings the full-size splits
    that train on ``all`` subsets; a failed split counts if a fallback scored it. A
    learner with no score on a task leaves NaN.

    Examples
    --------
    >>> frame = pd.DataFrame({"task": ["a", "a", "b", "b"], "learner": ["x", "y"] * 2,
    ...                       "train_subsets": [""] * 4, "rmse": [1.0, 2.0, 3.0, 1.0]})
    >>> score_table(frame, "rmse").to_dict()
    {'x': {'a': 1.0, 'b': 3.0}, 'y': {'a': 2.0, 'b': 1.0}}
    """
    if score not in results:
        raise MpibenchError(f"No score column {score!r} in the results. Pick one of the "
                            "grid's scorers.")
    subsets = results["train_subsets"].astype(str)
    keep = (subsets == "") | (subsets == "all")
    if "groups" in results and "n_train_groups" in results:
        keep &= (subsets == "") | (results["n_train_groups"] == results["groups"])
    frame = results.loc[keep, ["task", "learner", score]]
    table = frame.groupby(["task", "learner"], observed=True)[score].mean().unstack("learner")
    table.index, table.columns = table.index.astype(str), table.columns.astype(str)
    return table.rename_axis(index=None, columns=None)


def rank_rows(table: pd.DataFrame, greater: bool) -> pd.DataFrame:
    """Ranks of the learners within each task (row): 1 is the best, ties share their
    mean rank."""
    return (table if not greater else -table).rank(axis=1, method="average")


@dataclass(frozen=True)
class Friedman:
    """The Friedman test over tasks, with the ranks it is built on.

    Attributes
    ----------
    mean_ranks : pandas.Series
        Mean rank of each learner over the tasks, best (lowest) first.
    statistic : float
        Friedman's chi-square (corrected for ties, as ``scipy.stats.friedmanchisquare``).
    pvalue : float
        From the chi-square distribution with ``k - 1`` degrees of freedom.
    iman_davenport : float
        Iman and Davenport's F statistic, and ``pvalue_f`` its p-value with ``(k - 1,
        (k - 1)(N - 1))`` degrees of freedom (Demsar recommends it over the chi-square).
    n_tasks, n_learners : int
        N tasks (complete rows) and k learners; ``n_left_out`` tasks lacked a score.
    score, greater_is_better
        What was ranked, and in which direction.
    """

    mean_ranks: pd.Series
    statistic: float
    pvalue: float
    iman_davenport: float
    pvalue_f: float
    n_tasks: int
    n_learners: int
    n_left_out: int
    score: str
    greater_is_better: bool


def friedman(results: pd.DataFrame, score: str, *,
             greater: bool | None = None) -> Friedman:
    """Mean rank of each learner across tasks, and the Friedman test that they differ.

    Parameters
    ----------
    results : pandas.DataFrame
        :func:`~mpibench.read_results` of a project.
    score : str
        A score column.
    greater : bool, optional
        Whether larger scores are better (default: :func:`greater_is_better`).

    Examples
    --------
    >>> import mpibench as mb
    >>> test = mb.friedman(mb.read_results(finished_demo()), "rmse")
    >>> test.n_tasks, test.n_learners
    (2, 2)
    """
    greater = greater_is_better(score) if greater is None else greater
    table = score_table(results, score)
    complete = table.dropna()
    n, k = complete.shape
    if k < 2 or n < 1:
        raise MpibenchError(
            f"Ranking learners needs two learners with a {score!r} score on a task; the "
            f"results have {k} learner(s) on {n} complete task(s). Run more splits first.")
    ranks = rank_rows(complete, greater)
    statistic, pvalue = _chi_square(ranks.to_numpy())
    f_stat, f_p = _iman_davenport(statistic, n, k)
    return Friedman(ranks.mean().sort_values(), statistic, pvalue, f_stat, f_p, n, k,
                    len(table) - n, score, greater)


def _chi_square(ranks: np.ndarray) -> tuple[float, float]:
    """Friedman's statistic from within-row ranks (tie-corrected as scipy does)."""
    from scipy.stats import chi2

    n, k = ranks.shape
    sums = ranks.sum(axis=0)
    ties = 0.0
    for row in ranks:
        _, counts = np.unique(row, return_counts=True)
        ties += float((counts ** 3 - counts).sum())
    correction = 1.0 - ties / (n * k * (k * k - 1))
    if n * (k - 1) == 0 or correction <= 0:
        return float("nan"), float("nan")
    statistic = (12.0 / (n * k * (k + 1)) * float((sums ** 2).sum())
                 - 3.0 * n * (k + 1)) / correction
    return float(statistic), float(chi2.sf(statistic, k - 1))


def _iman_davenport(chi_square: float, n: int, k: int) -> tuple[float, float]:
    from scipy.stats import f as f_distribution

    denominator = n * (k - 1) - chi_square
    if n < 2 or denominator <= 0 or not np.isfinite(chi_square):
        return float("nan"), float("nan")
    statistic = (n - 1) * chi_square / denominator
    return statistic, float(f_distribution.sf(statistic, k - 1, (k - 1) * (n - 1)))


def nemenyi_cd(n_learners: int, n_tasks: int, alpha: float = 0.05) -> float:
    """Nemenyi's critical difference of mean ranks: ``q_alpha sqrt(k (k + 1) / (6 N))``,
    ``q_alpha`` the studentized range quantile over sqrt(2).

    Examples
    --------
    >>> round(nemenyi_cd(4, 14), 2)  # Demsar (2006), section 3.2.4: 2.569 x 0.488
    1.25
    """
    from scipy.stats import studentized_range

    k = n_learners
    q = float(studentized_range.ppf(1 - alpha, k, np.inf)) / math.sqrt(2)
    return q * math.sqrt(k * (k + 1) / (6.0 * n_tasks))


@dataclass(frozen=True)
class CriticalDifference:
    """Mean ranks with Nemenyi's critical difference and the groups it cannot tell
    apart (each a maximal run of learners, in rank order, within ``cd`` of each other).
    """

    friedman: Friedman
    cd: float
    alpha: float
    groups: list[list[str]]


def critical_difference(results: pd.DataFrame | Friedman, score: str | None = None, *,
                        alpha: float = 0.05) -> CriticalDifference:
    """Nemenyi's post-hoc test on the mean ranks of :func:`friedman`.

    Examples
    --------
    >>> import mpibench as mb
    >>> cd = mb.critical_difference(mb.read_results(finished_demo()), "rmse")
    >>> cd.cd > 0 and len(cd.groups) >= 1
    True
    """
    if not isinstance(results, Friedman):
        if score is None:
            raise MpibenchError("critical_difference(results, score): name the score column "
                                "to rank, e.g. 'rmse'.")
        results = friedman(results, score)
    ranks = results.mean_ranks
    cd = nemenyi_cd(results.n_learners, results.n_tasks, alpha)
    names, values = list(ranks.index), ranks.to_numpy()
    groups: list[list[str]] = []
    for i in range(len(names)):
        j = i
        while j + 1 < len(names) and values[j + 1] - values[i] <= cd:
            j += 1
        if j > i and not (groups and names.index(groups[-1][-1]) >= j):
            groups.append(names[i:j + 1])
    return CriticalDifference(results, cd, alpha, groups)


def holm(pvalues: np.ndarray) -> np.ndarray:
    """Holm's step-down adjustment of p-values (NaN stays NaN).

    Examples
    --------
    >>> holm(np.array([0.01, 0.04, 0.03])).round(3).tolist()
    [0.03, 0.06, 0.06]
    """
    p = np.asarray(pvalues, dtype=float)
    out = np.full(len(p), np.nan)
    valid = np.flatnonzero(np.isfinite(p))
    order = valid[np.argsort(p[valid], kind="stable")]
    m = len(order)
    running = 0.0
    for i, index in enumerate(order):
        running = max(running, min(1.0, (m - i) * p[index]))
        out[index] = running
    return out


def pairwise(results: pd.DataFrame, score: str, *, greater: bool | None = None
             ) -> pd.DataFrame:
    """Every pair of learners over the tasks where both have a score: wins, ties and
    losses of the first, the Wilcoxon signed-rank test of their per-task differences and
    its Holm-adjusted p-value over all pairs.

    Examples
    --------
    >>> import mpibench as mb
    >>> table = mb.pairwise(mb.read_results(finished_demo()), "rmse")
    >>> list(table.columns)[:5]
    ['learner', 'versus', 'wins', 'ties', 'losses']
    """
    from scipy.stats import wilcoxon

    greater = greater_is_better(score) if greater is None else greater
    table = score_table(results, score)
    names = list(table.columns)
    rows = []
    for i, first in enumerate(names):
        for second in names[i + 1:]:
            both = table[[first, second]].dropna()
            diff = both[first] - both[second]
            better = diff > 0 if greater else diff < 0
            worse = diff < 0 if greater else diff > 0
            p = float("nan")
            if (diff != 0).any():
                p = float(wilcoxon(both[first], both[second]).pvalue)
            rows.append({"learner": first, "versus": second, "wins": int(better.sum()),
                         "ties": int((diff == 0).sum()), "losses": int(worse.sum()),
                         "n_tasks": len(both), "p_wilcoxon": p})
    frame = pd.DataFrame(rows, columns=["learner", "versus", "wins", "ties", "losses",
                                        "n_tasks", "p_wilcoxon"])
    frame["p_holm"] = holm(frame["p_wilcoxon"].to_numpy())
    return frame
