"""SOAK cross-validation (Same/Other/All subsets, with down-sampled sizes).

``SameOtherSizesCV`` follows the semantics of ``ResamplingSameOtherSizesCV`` in the R
package mlr3resampling (see ``shared/soak.md``), with the scikit-learn splitter API:
``split(X, y, groups, subset=..., stratum=..., fold=...)`` yields ``(train, test)``
index arrays, and :meth:`SameOtherSizesCV.iterations` gives the same splits with their
metadata (test subset, train subsets, nominal sizes, fold, seed).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from .constraints import Rule, between, check, integer, one_of
from .errors import MpibenchError, MpibenchWarning

TRAIN_SUBSET_ORDER = ("all", "other", "same")
"""Iteration order of train subsets (alphabetical, as data.table sorts them)."""

SUBSET_CHOICES = {
    "S": ("same",),
    "O": ("other",),
    "A": ("all",),
    "SO": ("same", "other"),
    "SA": ("same", "all"),
    "OA": ("other", "all"),
    "SOA": ("same", "other", "all"),
}
_TIE = 1e-3


@dataclass(frozen=True)
class SoakSplit:
    """One train/test split of a SOAK resampling, with its metadata.

    Attributes
    ----------
    iteration : int
        1-based position in the iteration table.
    test_subset : str
        Subset whose rows in the test fold form the test set.
    train_subsets : str
        ``"same"``, ``"other"`` or ``"all"``.
    groups : int
        Nominal full train size, in groups, for this test subset and train subsets.
    test_fold : int
        Fold id of the test set.
    seed : int
        1-based down-sampling replicate.
    n_train_groups : int
        Nominal train size, in groups, of this split (``groups`` unless down-sampled).
    train, test : numpy.ndarray
        Sorted row indices (int64).
    """

    iteration: int
    test_subset: str
    train_subsets: str
    groups: int
    test_fold: int
    seed: int
    n_train_groups: int
    train: np.ndarray
    test: np.ndarray


def _encode(values: Any, n_rows: int, role: str, *, sort: bool) -> tuple[np.ndarray, list]:
    """Integer codes and labels of a column (DataFrame: one code per combination)."""
    if isinstance(values, pd.DataFrame):
        if values.shape[1] == 1:
            values = values.iloc[:, 0]
        else:
            codes = values.groupby(list(values.columns), sort=sort).ngroup().to_numpy()
            labels = [str(i) for i in range(int(codes.max()) + 1)] if len(codes) else []
            return _check_length(codes, n_rows, role), labels
    series = pd.Series(np.asarray(values) if not isinstance(values, pd.Series) else values)
    if series.isna().any():
        raise MpibenchError(
            f"The {role!r} column has missing values. Fill or drop those rows first."
        )
    if isinstance(series.dtype, pd.CategoricalDtype):
        codes, uniques = pd.factorize(series, sort=True)
    else:
        codes, uniques = pd.factorize(series.to_numpy(), sort=sort)
    return _check_length(np.asarray(codes, dtype=np.int64), n_rows, role), list(uniques)


def _check_length(codes: np.ndarray, n_rows: int, role: str) -> np.ndarray:
    if len(codes) != n_rows:
        raise MpibenchError(
            f"The {role!r} column has {len(codes)} rows but X has {n_rows}. "
            "Pass one value per row."
        )
    return codes


def assign_folds_rss(
    group: np.ndarray, stratum: np.ndarray, n_folds: int, rng: np.random.Generator
) -> np.ndarray:
    """Assign whole groups to folds, balancing rows of every stratum (RSS greedy).

    Parameters
    ----------
    group, stratum : numpy.ndarray
        Integer codes per row (0-based, dense).
    n_folds : int
        Number of folds K.
    rng : numpy.random.Generator
        Source of the random tie-break order.

    Returns
    -------
    numpy.ndarray
        Fold id per row, 1..K.
    """
    n_rows = len(group)
    n_groups = int(group.max()) + 1
    n_strata = int(stratum.max()) + 1
    random_order = rng.permutation(n_rows)
    group_rank = np.full(n_groups, n_rows, dtype=np.int64)
    np.minimum.at(group_rank, group, random_order)
    pairs, counts = np.unique(group * n_strata + stratum, return_counts=True)
    pair_group, pair_stratum = pairs // n_strata, pairs % n_strata
    ideal = np.bincount(stratum, minlength=n_strata) / n_folds
    rss = (ideal**2).sum() + np.bincount(
        pair_group, weights=counts**2 - 2.0 * counts * ideal[pair_stratum], minlength=n_groups
    )
    size = np.bincount(pair_group, weights=counts, minlength=n_groups)
    mean_ideal = np.bincount(pair_group, weights=ideal[pair_stratum] * counts, minlength=n_groups)
    order = np.lexsort((group_rank, mean_ideal / n_strata, -size, rss))
    starts = np.searchsorted(pair_group, np.arange(n_groups + 1))
    group_fold = np.empty(n_groups, dtype=np.int64)
    filled = [[0.0] * n_folds for _ in range(n_strata)]
    excess = [0.0] * n_folds  # per fold: sum over strata of max(0, filled - ideal)
    ideal_list = ideal.tolist()
    stratum_list, count_list = pair_stratum.tolist(), counts.tolist()
    for g in order.tolist():
        entries = [(stratum_list[i], count_list[i]) for i in range(starts[g], starts[g + 1])]
        best, best_delta, best_over = 0, 0.0, 0.0
        for f in range(n_folds):
            delta = sum(filled[s][f] * c for s, c in entries)
            over = excess[f] + sum(
                max(0.0, c + filled[s][f] - ideal_list[s]) - max(0.0, filled[s][f] - ideal_list[s])
                for s, c in entries
            )
            if f == 0 or delta < best_delta - _TIE or (
                abs(delta - best_delta) < _TIE and over < best_over
            ):
                best, best_delta, best_over = f, delta, over
        group_fold[g] = best + 1
        excess[best] = best_over
        for s, c in entries:
            filled[s][best] += c
    return group_fold[group]


CV_RULES: dict[str, Rule] = {
    "folds": integer(2), "seeds": integer(1), "ratio": between(0, 1), "sizes": integer(-1),
    "subsets": one_of(sorted(SUBSET_CHOICES)),
}
"""What each parameter of :class:`SameOtherSizesCV` may be."""


class SameOtherSizesCV:
    """SOAK: train on the same, other or all subsets, test on one subset.

    Parameters
    ----------
    folds : int, default=3
        Number of folds K (>= 2).
    seeds : int, default=1
        Number of down-sampling replicates.
    ratio : float, default=0.5
        Geometric factor between down-sampled sizes, in [0, 1].
    sizes : int, default=-1
        -1: no down-sampling; 0: full sizes plus the smallest; >= 1: full sizes plus
        ``sizes`` geometric sizes below the smallest.
    subsets : {"S", "O", "A", "SO", "SA", "OA", "SOA"}, default="SOA"
        Which train subsets to produce (same, other, all).
    ignore_subset : bool, default=False
        Treat every row as subset ``"full"``.

    Examples
    --------
    >>> import numpy as np
    >>> cv = SameOtherSizesCV(folds=3)
    >>> subset = np.repeat(["Alice", "Bob"], 40)
    >>> cv.get_n_splits(np.zeros((80, 1)), subset=subset, stratum=subset)
    18
    """

    def __init__(
        self,
        *,
        folds: int = 3,
        seeds: int = 1,
        ratio: float = 0.5,
        sizes: int = -1,
        subsets: str = "SOA",
        ignore_subset: bool = False,
    ) -> None:
        check(type(self).__name__, {"folds": folds, "seeds": seeds, "ratio": ratio,
                                    "sizes": sizes, "subsets": subsets}, CV_RULES)
        self.folds = int(folds)
        self.seeds = int(seeds)
        self.ratio = float(ratio)
        self.sizes = int(sizes)
        self.subsets = subsets
        self.ignore_subset = bool(ignore_subset)

    def get_params(self, deep: bool = True) -> dict:
        """Parameters as a dict (scikit-learn convention)."""
        return {
            "folds": self.folds,
            "seeds": self.seeds,
            "ratio": self.ratio,
            "sizes": self.sizes,
            "subsets": self.subsets,
            "ignore_subset": self.ignore_subset,
        }

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"

    def split(
        self,
        X: Any,
        y: Any = None,
        groups: Any = None,
        *,
        subset: Any = None,
        stratum: Any = None,
        fold: Any = None,
        random_state: int | None = None,
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield ``(train, test)`` row indices, in iteration order."""
        for split in self.iterations(
            X, groups=groups, subset=subset, stratum=stratum, fold=fold,
            random_state=random_state,
        ):
            yield split.train, split.test

    def get_n_splits(
        self, X: Any = None, y: Any = None, groups: Any = None, **columns: Any
    ) -> int:
        """Number of splits for these data (it depends on which subsets exist)."""
        if X is None:
            raise MpibenchError(
                "SameOtherSizesCV.get_n_splits needs the data: pass X (and subset=...)."
            )
        return len(self.iterations(X, groups=groups, **columns))

    def iterations(
        self,
        X: Any,
        *,
        groups: Any = None,
        subset: Any = None,
        stratum: Any = None,
        fold: Any = None,
        random_state: int | None = None,
    ) -> list[SoakSplit]:
        """The full iteration table: one :class:`SoakSplit` per split, in order.

        Parameters
        ----------
        X : array-like or int
            The data (only its number of rows is used) or the number of rows.
        groups, subset, stratum, fold : array-like, optional
            One value per row: group (kept whole), subset, stratum (a DataFrame gives
            one stratum per combination of its columns) and a fixed fold id.
        random_state : int, optional
            Seed of fold assignment and down-sampling.
        """
        n_rows = int(X) if isinstance(X, int | np.integer) else len(X)
        if n_rows == 0:
            raise MpibenchError("SameOtherSizesCV got a task with 0 rows. Pass some data.")
        rng = np.random.default_rng(random_state)
        group_codes = (
            np.arange(n_rows) if groups is None
            else _encode(groups, n_rows, "groups", sort=False)[0]
        )
        if subset is None or self.ignore_subset:
            subset_codes, subset_labels = np.zeros(n_rows, dtype=np.int64), ["full"]
        else:
            subset_codes, subset_labels = _encode(subset, n_rows, "subset", sort=True)
        stratum_codes = (
            np.zeros(n_rows, dtype=np.int64) if stratum is None
            else _encode(stratum, n_rows, "stratum", sort=False)[0]
        )
        if subset is not None and not self.ignore_subset and len(subset_labels) == 1:
            self._warn_one_subset(subset_labels)
        if fold is None:
            self._check_enough_groups(group_codes, subset_codes, subset_labels, groups is None)
        folds = self._folds(fold, group_codes, stratum_codes, n_rows, rng)
        return self._table(folds, group_codes, subset_codes, subset_labels, stratum_codes, rng)

    def _check_enough_groups(self, group_codes, subset_codes, subset_labels, rows) -> None:
        """Refuse fewer groups than folds; warn where a subset cannot be tested in every
        fold or where one subset leaves only 'same' splits."""
        unit = "rows" if rows else "groups"
        n_groups = len(np.unique(group_codes))
        if n_groups < self.folds:
            raise MpibenchError(
                f"SameOtherSizesCV(folds={self.folds}) needs at least {self.folds} {unit} "
                f"to give every fold one; the data have {n_groups}. Use folds <= {n_groups}.")
        if len(subset_labels) == 1:
            return
        per_subset = [len(np.unique(group_codes[subset_codes == s]))
                      for s in range(len(subset_labels))]
        short = [(subset_labels[s], n) for s, n in enumerate(per_subset) if n < self.folds]
        if short:
            label, n = short[0]
            warnings.warn(
                f"SameOtherSizesCV(folds={self.folds}): subset {label!r} has {n} {unit}, so "
                f"it is a test subset in only {n} folds ({len(short)} subset(s) like this). "
                f"Use folds <= {n}, or merge small subsets.", MpibenchWarning, stacklevel=4)

    def _warn_one_subset(self, subset_labels: list) -> None:
        if self.subsets == "S":
            return
        warnings.warn(
            f"SameOtherSizesCV: the subset column has one value ({subset_labels[0]!r}), so "
            "only 'same' splits are made ('other' has no rows, 'all' equals 'same'). Give "
            "rows of several subsets, or pass ignore_subset=True to mean plain K-fold.",
            MpibenchWarning, stacklevel=4)

    def _folds(self, fold, group_codes, stratum_codes, n_rows, rng) -> np.ndarray:
        if fold is None:
            return assign_folds_rss(group_codes, stratum_codes, self.folds, rng)
        values = np.asarray(fold)
        if not np.issubdtype(values.dtype, np.integer):
            values = _encode(fold, n_rows, "fold", sort=True)[0] + 1
        values = _check_length(values.astype(np.int64), n_rows, "fold")
        per_group = pd.Series(values).groupby(group_codes).nunique()
        if (per_group > 1).any():
            raise MpibenchError(
                "The 'fold' column must be constant within each group. "
                "Give every row of a group the same fold id."
            )
        return values

    def _nominal(self, group_codes, subset_codes, n_subsets) -> tuple[tuple, dict]:
        train_subsets = ("same",) if n_subsets == 1 else SUBSET_CHOICES[self.subsets]
        k = self.folds
        full = [len(np.unique(group_codes[subset_codes == s])) for s in range(n_subsets)]
        same = [int(f * (k - 1) / k) for f in full]
        total = sum(same)
        nominal = {
            s: {"same": same[s], "other": total - same[s], "all": total}
            for s in range(n_subsets)
        }
        return train_subsets, {s: {t: nominal[s][t] for t in train_subsets} for s in nominal}

    def _train_sizes(self, nominal_s: dict, full_size: int) -> list[int]:
        smallest = min(nominal_s.values())
        if self.sizes == -1:
            return [full_size]
        if self.sizes == 0:
            return list(dict.fromkeys([full_size, smallest]))
        candidates = list(nominal_s.values()) + [
            smallest * self.ratio**k for k in range(1, self.sizes + 1)
        ]
        return [n for n in sorted({int(c) for c in candidates}) if n <= full_size]

    def _table(self, folds, group_codes, subset_codes, subset_labels, stratum_codes, rng):
        train_subsets, nominal = self._nominal(group_codes, subset_codes, len(subset_labels))
        fold_subset = sorted(set(zip(folds.tolist(), subset_codes.tolist(), strict=True)))
        skeleton = [
            (t, f, s) for t in TRAIN_SUBSET_ORDER if t in train_subsets for f, s in fold_subset
        ]
        row_ids = np.arange(len(folds))
        splits: list[SoakSplit] = []
        for row_index, (kind, test_fold, s) in enumerate(skeleton):
            full_size = nominal[s][kind]
            sizes = self._train_sizes(nominal[s], full_size)
            in_fold = folds == test_fold
            test = row_ids[in_fold & (subset_codes == s)]
            pool_mask = ~in_fold
            if kind == "same":
                pool_mask &= subset_codes == s
            elif kind == "other":
                pool_mask &= subset_codes != s
            pool = row_ids[pool_mask]
            for seed in range(1, self.seeds + 1):
                seed_rng = np.random.default_rng([int(rng.integers(2**32)), row_index, seed])
                scores = _downsample_scores(pool, group_codes, stratum_codes, max(sizes), seed_rng)
                for n in sizes:
                    train = pool if n >= max(sizes) else pool[scores <= n]
                    splits.append(SoakSplit(
                        iteration=len(splits) + 1,
                        test_subset=str(subset_labels[s]),
                        train_subsets=kind,
                        groups=full_size,
                        test_fold=int(test_fold),
                        seed=seed,
                        n_train_groups=int(n),
                        train=train,
                        test=test,
                    ))
        return splits


def _downsample_scores(
    pool: np.ndarray, group_codes: np.ndarray, stratum_codes: np.ndarray,
    full_size: int, rng: np.random.Generator,
) -> np.ndarray:
    """Score per pool row: the train set of size n is the rows with a score <= n.

    The (group, stratum) pairs of the pool are taken in a random order; within each
    stratum the k-th of L_s pairs scores ``full_size * k / L_s``, so sizes are
    proportional across strata and train sets nested across sizes. A group enters
    whole with its best-scoring pair (every row of the group gets that score, whatever
    its stratum): no train set holds part of a group.
    """
    if len(pool) == 0:
        return np.zeros(0)
    n_strata = int(stratum_codes.max()) + 1
    pair_of_row = group_codes[pool] * n_strata + stratum_codes[pool]
    pairs, inverse = np.unique(pair_of_row, return_inverse=True)
    shuffled = rng.permutation(len(pairs))
    pair_stratum = pairs[shuffled] % n_strata
    position = np.empty(len(pairs), dtype=np.float64)
    for s in np.unique(pair_stratum):
        members = shuffled[pair_stratum == s]
        position[members] = full_size * (np.arange(1, len(members) + 1) / len(members))
    groups, group_of_pair = np.unique(pairs // n_strata, return_inverse=True)
    best = np.full(len(groups), np.inf)
    np.minimum.at(best, group_of_pair, position)
    return best[group_of_pair][inverse]
