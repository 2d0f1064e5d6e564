"""Same vs other vs all: paired t-tests over folds, as mlr3resampling's ``pvalue``.

Semantics: ``shared/soak.md`` section 4.1, checked against mlr3resampling. Only
full-size rows (``n_train_groups == groups``) enter :func:`pvalue`; for every task, test
subset and learner, the scores of ``other`` (and ``all``) are paired with those of
``same`` over test folds and seeds (one row per fold and seed: the "wide table"), and
tested two-sided (paired, and Welch for the unpaired p-value). R's NA rules hold:

- where ``t.test`` fails (fewer than 2 complete pairs, or essentially constant
  differences) the estimate *and* the p-value are NaN;
- ``n`` counts the rows of the wide table, incomplete pairs included, and the means
  are plain means: a missing or NaN score (a failed split without a fallback) makes
  them NaN, so the table says that something is missing instead of hiding it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats as scipy_stats

from ..errors import MpibenchError

KEYS = ["task", "test_subset", "learner"]
COMPARISONS = ("other", "all")
EPS = np.finfo(np.float64).eps


@dataclass
class PValue:
    """Result of :func:`pvalue`.

    Attributes
    ----------
    score : str
        The score column compared.
    stats : pandas.DataFrame
        One row per task, test subset, learner, train subsets and size: ``mean``,
        ``sd`` (n-1 denominator), ``n``, ``lo``/``hi`` (mean -/+ sd) and ``label``.
    pvalues : pandas.DataFrame
        One row per task, test subset, learner and comparison (``other-same``,
        ``all-same``): ``mean_diff`` (compare - same), ``p_paired``, ``p_unpaired``
        (Welch), ``same_mean``, ``compare_mean``, ``n`` (pairs) and ``label``.
    """

    score: str
    stats: pd.DataFrame
    pvalues: pd.DataFrame


def paired_test(compare: np.ndarray, same: np.ndarray) -> tuple[float, float]:
    """Two-sided paired t-test of ``compare - same`` with R's NA rules.

    Returns ``(mean_diff, p_value)`` over the complete pairs. Both are NaN together
    where R's ``t.test`` fails: fewer than 2 complete pairs, or differences that are
    essentially constant (standard error below 10 x machine epsilon x ``|mean|``).

    Examples
    --------
    >>> paired_test(np.array([2.0, 3.0, 5.0]), np.array([1.0, 1.0, 1.0]))[0]
    2.3333333333333335
    >>> paired_test(np.array([2.0, 3.0]), np.array([1.0, 2.0]))
    (nan, nan)
    """
    diff = compare - same
    diff = diff[~np.isnan(diff)]
    if len(diff) < 2:
        return float("nan"), float("nan")
    mean = float(diff.mean())
    stderr = float(diff.std(ddof=1)) / np.sqrt(len(diff))
    if stderr < 10 * EPS * abs(mean):
        return float("nan"), float("nan")
    return mean, float(scipy_stats.ttest_rel(diff, np.zeros_like(diff)).pvalue)


def welch_test(compare: np.ndarray, same: np.ndarray) -> float:
    """Two-sided Welch p-value with R's NA rules (each side needs 2 values)."""
    x, y = compare[~np.isnan(compare)], same[~np.isnan(same)]
    if len(x) < 2 or len(y) < 2:
        return float("nan")
    stderr = np.sqrt(x.var(ddof=1) / len(x) + y.var(ddof=1) / len(y))
    if stderr < 10 * EPS * max(abs(x.mean()), abs(y.mean())):
        return float("nan")
    return float(scipy_stats.ttest_ind(x, y, equal_var=False).pvalue)


def p_label(p: float) -> str:
    """``"P < 0.0001"`` or ``"P = 0.0123"`` (``"P = NA"`` when undefined, as R labels it).

    Examples
    --------
    >>> p_label(0.01234), p_label(1e-6), p_label(float("nan"))
    ('P = 0.0123', 'P < 0.0001', 'P = NA')
    """
    if np.isnan(p):
        return "P = NA"
    return "P < 0.0001" if p < 1e-4 else f"P = {p:.4f}"


def mean_sd_label(mean: float, sd: float, digits: int) -> str:
    """``"1.234 ± 0.056"``; a NaN part is ``NA`` (one value has no sd), as R prints it.

    Examples
    --------
    >>> mean_sd_label(1.2345, float("nan"), 3)
    '1.234 ± NA'
    """
    def text(value: float) -> str:
        return "NA" if np.isnan(value) else f"{value:.{digits}f}"
    return f"{text(mean)} ± {text(sd)}"


def _check(results: pd.DataFrame, score: str) -> pd.DataFrame:
    missing = [c for c in [*KEYS, "train_subsets", "test_fold", "n_train_groups", score]
               if c not in results]
    if missing:
        raise MpibenchError(
            f"pvalue needs the column(s) {missing} in the results. Pass "
            "mb.read_results(PROJECT), or name your table's columns so."
        )
    frame = results.copy()
    for column in (*KEYS, "train_subsets"):
        frame[column] = frame[column].astype(str)
    if not set(frame["train_subsets"]) & set(COMPARISONS) or "same" not in set(
            frame["train_subsets"]):
        raise MpibenchError(
            "pvalue compares train subsets 'same' with 'other'/'all': these results have "
            f"{sorted(set(frame['train_subsets']))}. Use SameOtherSizesCV with subsets."
        )
    if "seed" not in frame:
        frame["seed"] = 1
    return frame


def _refuse_duplicates(frame: pd.DataFrame) -> None:
    """Two scores for one cell of the wide table would be paired arbitrarily: refuse."""
    cell = [*KEYS, "test_fold", "seed", "train_subsets", "n_train_groups"]
    repeated = frame[frame.duplicated(cell, keep=False)]
    if len(repeated):
        first = repeated.iloc[0]
        where = ", ".join(f"{c}={first[c]}" for c in cell)
        raise MpibenchError(
            f"{len(repeated)} rows share a task, test subset, learner, test fold, seed, "
            f"train subsets and size (e.g. {where}): pvalue pairs one score per cell. "
            "Add a 'seed' column that tells them apart, or drop the repeated rows."
        )


def _stats(frame: pd.DataFrame, score: str, digits: int) -> pd.DataFrame:
    grouped = frame.groupby([*KEYS, "train_subsets", "n_train_groups"], sort=True)[score]
    table = grouped.agg(mean=lambda v: v.mean(skipna=False),
                        sd=lambda v: v.std(ddof=1, skipna=False), n="size").reset_index()
    table["lo"], table["hi"] = table["mean"] - table["sd"], table["mean"] + table["sd"]
    table["label"] = [mean_sd_label(m, s, digits)
                      for m, s in zip(table["mean"], table["sd"], strict=True)]
    return table


def _pvalues(frame: pd.DataFrame, score: str) -> pd.DataFrame:
    wide = frame.pivot(index=[*KEYS, "test_fold", "seed"], columns="train_subsets",
                       values=score)
    rows = []
    for key, block in wide.groupby(level=[0, 1, 2], sort=True):
        for compare in COMPARISONS:
            if compare not in block or "same" not in block:
                continue  # (a comparison no task has: R has no row for it either)
            c, s = block[compare].to_numpy(float), block["same"].to_numpy(float)
            mean_diff, p_paired = paired_test(c, s)
            rows.append({
                **dict(zip(KEYS, key, strict=True)), "comparison": f"{compare}-same",
                "mean_diff": mean_diff, "p_paired": p_paired, "p_unpaired": welch_test(c, s),
                "same_mean": float(s.mean()), "compare_mean": float(c.mean()),
                "n": len(block), "label": p_label(p_paired),
            })
    return pd.DataFrame(rows)


def pvalue(results: pd.DataFrame, score: str, *, digits: int = 3) -> PValue:
    """Compare ``other`` and ``all`` with ``same``, per task, test subset and learner
    (the splits of ``SameOtherSizesCV``; those of plain splitters in the same grid are
    left out).

    Parameters
    ----------
    results : pandas.DataFrame
        From :func:`mpibench.read_results`.
    score : str
        Score column, e.g. ``"rmse"``.
    digits : int, default=3
        Decimals in the ``mean ± sd`` labels.

    Returns
    -------
    PValue
        ``stats`` (mean, sd, n per train subset) and ``pvalues`` (per comparison).

    Examples
    --------
    >>> import mpibench as mb
    >>> project = finished_demo()  # mb.create_demo(folder), then mb.run(folder)
    >>> result = mb.pvalue(mb.read_results(project), "rmse")
    >>> len(result.stats), len(result.pvalues), set(result.pvalues["n"])
    (24, 16, {3})
    """
    frame = _check(results, score)
    frame = frame[frame["train_subsets"].astype(str) != ""]  # SOAK's splits only
    if "groups" in frame:
        frame = frame[frame["n_train_groups"] == frame["groups"]]
    _refuse_duplicates(frame)
    return PValue(score, _stats(frame, score, digits), _pvalues(frame, score))


def pvalue_downsample(results: pd.DataFrame, score: str, *, digits: int = 3) -> PValue:
    """The full-size comparison beside the same comparison at the smallest common size.

    With ``SameOtherSizesCV(sizes=0)`` (or more sizes), ``other`` and ``all`` are also
    trained at the smallest nominal size of the test subset (usually ``same``'s), so
    "is more data from other subsets better?" separates from "is other data as good as
    same data, at equal size?". Rows carry a ``panel`` column: ``"full size"`` or
    ``"same size"``.
    """
    frame = _check(results, score)
    if "groups" not in frame:
        raise MpibenchError("pvalue_downsample needs the 'groups' column (nominal full "
                            "size) beside 'n_train_groups'. Pass mb.read_results(PROJECT).")
    if not (frame["n_train_groups"] < frame["groups"]).any():
        raise MpibenchError(
            "pvalue_downsample: these results have no down-sampled splits "
            "(n_train_groups < groups). Create the project with SameOtherSizesCV(sizes=0) "
            "or more sizes, or use pvalue for the full-size comparison."
        )
    smallest = frame.groupby(["task", "test_subset"])["groups"].transform("min")
    small = frame[frame["n_train_groups"] == smallest].copy()
    small["groups"] = small["n_train_groups"]  # treat them as the full rows of their panel
    full, same_size = pvalue(frame, score, digits=digits), pvalue(small, score, digits=digits)
    full.stats["label"] = [f"{label}, N = {round(n)}" for label, n in
                           zip(full.stats["label"], full.stats["n_train_groups"], strict=True)]
    for part, name in ((full, "full size"), (same_size, "same size")):
        part.stats.insert(0, "panel", name)
        part.pvalues.insert(0, "panel", name)
    return PValue(score, pd.concat([full.stats, same_size.stats], ignore_index=True),
                  pd.concat([full.pvalues, same_size.pvalues], ignore_index=True))
