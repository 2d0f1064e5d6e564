"""The splits of one task under one resampling: index arrays and metadata.

:func:`expand_splits` turns ``SameOtherSizesCV``, any scikit-learn splitter or a list of
``(train, test)`` pairs into a :class:`SplitSet`, and refuses a split that would put
one group on both sides.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from sklearn.base import clone

from .errors import MpibenchError
from .splitters import SameOtherSizesCV

if TYPE_CHECKING:
    from .grid import Task

META_COLUMNS = ("iteration", "test_fold", "test_subset", "train_subsets", "groups",
                "n_train_groups", "seed", "n_train", "n_test")
"""The metadata of a split, in order (columns of the job table after the indices)."""


@dataclass
class SplitSet:
    """All splits of one (task, resampling): index arrays plus one metadata row each
    (``columns``: one list or array per name of ``META_COLUMNS``; ``meta`` is the same
    as a DataFrame)."""

    columns: dict[str, Any]
    train: list[np.ndarray] = field(repr=False)
    test: list[np.ndarray] = field(repr=False)

    def __len__(self) -> int:
        return len(self.train)

    @property
    def meta(self) -> pd.DataFrame:
        """The metadata as a DataFrame, one row per split."""
        return pd.DataFrame({name: self.columns[name] for name in META_COLUMNS})



def expand_splits(task: Task, cv: Any, seed: int) -> SplitSet:
    """All splits of one task under one resampling, with their metadata.

    Parameters
    ----------
    task : Task
        The data.
    cv : SameOtherSizesCV, scikit-learn splitter or iterable of (train, test)
        The resampling.
    seed : int
        Seed for SOAK fold assignment, or for a splitter whose ``random_state`` is unset.
    """
    if isinstance(cv, SameOtherSizesCV):
        try:
            splits = cv.iterations(
                task.n_rows, groups=task.groups, subset=task.subset, stratum=task.stratum,
                fold=task.fold, random_state=seed,
            )
        except MpibenchError as exc:
            raise MpibenchError(f"Task {task.name!r}: {exc}") from None
        train = [s.train for s in splits]
        test = [s.test for s in splits]
        columns: dict[str, Any] = {
            name: [getattr(s, name) for s in splits] for name in META_COLUMNS[:7]}
    else:
        train, test = _sklearn_splits(task, cv, seed)
        if task.groups is None:
            n_groups = [len(t) for t in train]
        else:
            group_codes = pd.factorize(np.asarray(task.groups))[0]
            _check_groups_whole(task, cv, train, test, group_codes)
            n_groups = [len(np.unique(group_codes[t])) for t in train]
        n = len(train)
        columns = {"iteration": np.arange(1, n + 1), "test_fold": np.arange(1, n + 1),
                   "test_subset": [""] * n, "train_subsets": [""] * n, "groups": n_groups,
                   "n_train_groups": n_groups, "seed": [1] * n}
    columns["n_train"] = [len(t) for t in train]
    columns["n_test"] = [len(t) for t in test]
    return SplitSet(columns=columns, train=train, test=test)


GROUP_AWARE = {"KFold": "GroupKFold", "StratifiedKFold": "StratifiedGroupKFold",
               "RepeatedKFold": "GroupKFold", "RepeatedStratifiedKFold": "StratifiedGroupKFold",
               "ShuffleSplit": "GroupShuffleSplit", "StratifiedShuffleSplit": "GroupShuffleSplit",
               "LeaveOneOut": "LeaveOneGroupOut", "LeavePOut": "LeavePGroupsOut"}
"""The scikit-learn splitter that keeps groups whole, for each one that ignores them."""


def _check_groups_whole(task: Task, cv: Any, train: list, test: list,
                        group_codes: np.ndarray) -> None:
    """Refuse a split that puts rows of one group in both its train and test rows."""
    in_test = np.zeros(int(group_codes.max()) + 1 if len(group_codes) else 0, dtype=bool)
    for i, (tr, te) in enumerate(zip(train, test, strict=True)):
        in_test[:] = False
        in_test[group_codes[te]] = True
        shared = in_test[group_codes[tr]]
        if not shared.any():
            continue
        group = np.asarray(task.groups)[tr[np.flatnonzero(shared)[0]]]
        group = group.item() if isinstance(group, np.generic) else group
        name = type(cv).__name__
        fix = GROUP_AWARE.get(name, "GroupKFold, StratifiedGroupKFold or GroupShuffleSplit")
        raise MpibenchError(
            f"Task {task.name!r} has groups, but split {i + 1} of {name} puts group "
            f"{group!r} in both train and test rows. Use a group-aware splitter ({fix}), "
            "or drop groups= from the task.")


def _sklearn_splits(task: Task, cv: Any, seed: int) -> tuple[list, list]:
    if hasattr(cv, "split"):
        if getattr(cv, "random_state", 0) is None and getattr(cv, "shuffle", True):
            cv = clone(cv) if hasattr(cv, "get_params") else cv
            cv.random_state = seed
        groups = None if task.groups is None else np.asarray(task.groups)
        try:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="The groups parameter is ignored")
                pairs = list(cv.split(task.X, task.y, groups))
        except Exception as exc:
            raise MpibenchError(
                f"Resampling {cv!r} failed on task {task.name!r}: {exc}. Check that the "
                "task has the columns this splitter needs (groups=..., a class target)."
            ) from exc
    else:
        try:
            pairs = list(cv)
        except TypeError as exc:
            raise MpibenchError(
                f"A resampling must be SameOtherSizesCV, a scikit-learn splitter or an "
                f"iterable of (train, test) index arrays. Got {cv!r} instead."
            ) from exc
    train = [np.sort(np.asarray(tr, dtype=np.int64)) for tr, _ in pairs]
    test = [np.sort(np.asarray(te, dtype=np.int64)) for _, te in pairs]
    return train, test
