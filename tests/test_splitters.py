"""SameOtherSizesCV: the acceptance list of shared/soak.md, tested by invariants."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from mpibench import MpibenchError, SameOtherSizesCV
from mpibench.splitters import TRAIN_SUBSET_ORDER, assign_folds_rss

PERSON = np.repeat(["Alice", "Bob"], 40)


@pytest.fixture(params=[0, 1, 42])
def seed(request):
    return request.param


def demo_splits(seed=1, **params):
    return SameOtherSizesCV(**params).iterations(80, subset=PERSON, stratum=PERSON,
                                                 random_state=seed)


@pytest.mark.parametrize(("sizes", "expected"), [(-1, 18), (0, 24), (2, 60)])
def test_demo_split_counts(sizes, expected, seed):
    assert len(demo_splits(seed, sizes=sizes)) == expected
    assert SameOtherSizesCV(sizes=sizes).get_n_splits(
        np.zeros((80, 1)), subset=PERSON, stratum=PERSON) == expected


def test_demo_matches_worked_example():
    splits = demo_splits()
    table = [(s.test_subset, s.train_subsets, s.groups, s.test_fold) for s in splits]
    expected = [
        (subset, kind, {"all": 52, "other": 26, "same": 26}[kind], fold)
        for kind in ("all", "other", "same") for fold in (1, 2, 3) for subset in ("Alice", "Bob")
    ]
    assert table == expected
    assert [s.iteration for s in splits] == list(range(1, 19))
    # test sets: 14/13/13 per person in some fold order; fold 3 is 13+13 (soak.md 1.5)
    per_fold = {f: sum(len(s.test) for s in splits[:6] if s.test_fold == f) for f in (1, 2, 3)}
    assert sorted(per_fold.values()) == [26, 27, 27]


def check_valid_split(split, subset, folds):
    train, test = set(split.train.tolist()), set(split.test.tolist())
    assert not train & test, "train and test overlap"
    assert np.all(np.diff(split.train) > 0) and np.all(np.diff(split.test) > 0)
    test_rows = np.flatnonzero((subset == split.test_subset) & (folds == split.test_fold))
    assert test == set(test_rows.tolist())
    assert not np.isin(split.train, np.flatnonzero(folds == split.test_fold)).any()
    train_subsets = set(subset[split.train].tolist())
    if split.train_subsets == "same":
        assert train_subsets == {split.test_subset}
    elif split.train_subsets == "other":
        assert split.test_subset not in train_subsets


def folds_from(splits, n_rows):
    folds = np.zeros(n_rows, dtype=int)
    for s in splits:
        folds[s.test] = s.test_fold
    return folds


@pytest.mark.parametrize("sizes", [-1, 0, 2])
def test_every_split_is_valid_and_tests_each_row_once(sizes, seed):
    splits = demo_splits(seed, sizes=sizes)
    folds = folds_from(splits, 80)
    assert (folds > 0).all()
    for split in splits:
        check_valid_split(split, PERSON, folds)
    for kind in ("all", "other", "same"):
        full = [s for s in splits if s.train_subsets == kind and s.n_train_groups == s.groups]
        tested = np.concatenate([s.test for s in full])
        assert sorted(tested.tolist()) == list(range(80)), kind


def test_per_stratum_fold_balance_within_one(seed):
    rng = np.random.default_rng(seed)
    stratum = rng.choice(["a", "b", "c"], size=101, p=[0.5, 0.3, 0.2])
    splits = SameOtherSizesCV(folds=4).iterations(101, stratum=stratum, random_state=seed)
    folds = folds_from(splits, 101)
    for value in np.unique(stratum):
        counts = np.bincount(folds[stratum == value], minlength=5)[1:]
        assert counts.max() - counts.min() <= 1, (value, counts)
    totals = np.bincount(folds, minlength=5)[1:]
    assert totals.max() - totals.min() <= 1


def test_groups_stay_whole(seed):
    rng = np.random.default_rng(seed)
    groups = rng.integers(0, 30, size=150)
    subset = np.where(groups % 2 == 0, "even", "odd")
    splits = SameOtherSizesCV(folds=3, sizes=1).iterations(
        150, groups=groups, subset=subset, stratum=subset, random_state=seed)
    for split in splits:
        train_groups = set(groups[split.train].tolist())
        test_groups = set(groups[split.test].tolist())
        assert not train_groups & test_groups
        pool = np.flatnonzero(np.isin(groups, list(train_groups)))
        pool = pool[np.isin(subset[pool], np.unique(subset[split.train]))]
        assert set(pool.tolist()) == set(split.train.tolist()), "a group was cut"


def test_downsampling_is_nested_and_proportional(seed):
    splits = demo_splits(seed, sizes=2)
    by_row = {}
    for s in splits:
        by_row.setdefault((s.train_subsets, s.test_fold, s.test_subset, s.seed), []).append(s)
    for row in by_row.values():
        sizes = [s.n_train_groups for s in row]
        assert sizes == sorted(sizes), "sizes ascending"
        for small, large in itertools.pairwise(row):
            assert set(small.train.tolist()) <= set(large.train.tolist()), "nested"
        full = row[-1]
        for s in row:
            # per stratum: floor(n * L_s / M) groups (each row is its own group here)
            for person in ("Alice", "Bob"):
                pool_count = int((PERSON[full.train] == person).sum())
                kept = int((PERSON[s.train] == person).sum())
                assert kept == int(np.floor(s.n_train_groups * pool_count / full.n_train_groups
                                            + 1e-9))


def test_sizes_zero_full_size_first():
    splits = demo_splits(sizes=0)
    all_sizes = [(s.test_fold, s.test_subset, s.n_train_groups) for s in splits
                 if s.train_subsets == "all"]
    assert all_sizes[:2] == [(1, "Alice", 52), (1, "Alice", 26)]
    row = [s for s in splits if s.train_subsets == "all" and s.test_fold == 1
           and s.test_subset == "Alice"]
    assert len(row[1].train) == 26  # 13 + 13
    assert (PERSON[row[1].train] == "Alice").sum() == 13


def test_iteration_order(seed):
    splits = SameOtherSizesCV(folds=3, sizes=1, seeds=2).iterations(
        80, subset=PERSON, stratum=PERSON, random_state=seed)
    keys = [(TRAIN_SUBSET_ORDER.index(s.train_subsets), s.test_fold, s.test_subset, s.seed,
             s.n_train_groups) for s in splits]
    assert keys == sorted(keys)
    assert [s.iteration for s in splits] == list(range(1, len(splits) + 1))


def test_unequal_subsets_from_soak_md():
    # N=2100 in groups of 2, subsets A:B:C = 150:300:600 groups
    groups = np.repeat(np.arange(1050), 2)
    subset = np.where(groups < 150, "A", np.where(groups < 450, "B", "C"))
    kwargs = {"groups": groups, "subset": subset, "stratum": subset, "random_state": 0}
    zero = SameOtherSizesCV(sizes=0).iterations(2100, **kwargs)
    rows = [(s.train_subsets, s.n_train_groups) for s in zero
            if s.test_subset == "A" and s.test_fold == 1]
    assert rows == [("all", 700), ("all", 100), ("other", 600), ("other", 100), ("same", 100)]
    for sizes, per_row in ((1, 9), (2, 12)):
        splits = SameOtherSizesCV(sizes=sizes).iterations(2100, **kwargs)
        assert sum(s.test_subset == "A" and s.test_fold == 1 for s in splits) == per_row


def test_single_subset_collapses_to_same():
    splits = SameOtherSizesCV(folds=3).iterations(30, random_state=0)
    assert {s.train_subsets for s in splits} == {"same"}
    assert {s.test_subset for s in splits} == {"full"}
    assert len(splits) == 3
    ignored = SameOtherSizesCV(ignore_subset=True).iterations(80, subset=PERSON)
    assert {s.test_subset for s in ignored} == {"full"}


def test_subsets_parameter():
    splits = SameOtherSizesCV(folds=2, subsets="SA").iterations(80, subset=PERSON,
                                                                stratum=PERSON)
    assert {(s.train_subsets, s.n_train_groups) for s in splits} == {("all", 40), ("same", 20)}


def test_seeds_replicate_downsampling():
    splits = demo_splits(sizes=0, seeds=2)
    assert len(splits) == 48
    half = [s for s in splits if s.n_train_groups == 26 and s.train_subsets == "all"]
    assert {s.seed for s in half} == {1, 2}


def test_user_fold_column_is_used_verbatim():
    fold = np.tile([1, 2, 3, 4], 20)
    splits = SameOtherSizesCV(folds=4).iterations(80, subset=PERSON, fold=fold)
    for s in splits:
        assert set(fold[s.test].tolist()) == {s.test_fold}
    assert {s.test_fold for s in splits} == {1, 2, 3, 4}


def test_fold_must_be_constant_within_group():
    with pytest.raises(MpibenchError, match="constant within each group"):
        SameOtherSizesCV().iterations(4, groups=[1, 1, 2, 2], fold=[1, 2, 1, 2])


def test_same_seed_same_splits_other_seed_differs():
    a, b, c = demo_splits(5), demo_splits(5), demo_splits(6)
    assert all(np.array_equal(x.test, y.test) for x, y in zip(a, b, strict=True))
    assert not all(np.array_equal(x.test, y.test) for x, y in zip(a, c, strict=True))


def test_split_api_and_multicolumn_stratum():
    X = np.zeros((80, 2))
    stratum = pd.DataFrame({"p": PERSON, "half": np.tile([0, 1], 40)})
    pairs = list(SameOtherSizesCV().split(X, subset=PERSON, stratum=stratum, random_state=0))
    assert len(pairs) == 18
    assert all(isinstance(tr, np.ndarray) and isinstance(te, np.ndarray) for tr, te in pairs)


@pytest.mark.parametrize(("param", "value", "message"), [
    ("folds", 1, "'folds' parameter of SameOtherSizesCV must be an int >= 2. Got 1"),
    ("seeds", 0, "'seeds' parameter"),
    ("ratio", 1.5, "'ratio' parameter"),
    ("sizes", -2, "'sizes' parameter"),
    ("subsets", "X", "'subsets' parameter"),
])
def test_bad_parameters(param, value, message):
    with pytest.raises(MpibenchError, match=message):
        SameOtherSizesCV(**{param: value})


def test_rss_fold_assignment_reduces_to_balanced_kfold():
    folds = assign_folds_rss(np.arange(10), np.zeros(10, dtype=np.int64), 3,
                             np.random.default_rng(0))
    assert sorted(np.bincount(folds)[1:].tolist()) == [3, 3, 4]


# -- issue 16, M1: down-sampling keeps whole groups (as mlr3resampling) ------------


def test_down_sampling_with_groups_across_strata_keeps_whole_groups():
    # 8 rows, 4 groups of 2 rows, one 'lo' and one 'hi' row each; g1, g2 in fold 1,
    # g3, g4 in fold 2. R's train sets at n_train_groups=1 are 2 rows of 1 group or 4
    # rows of 2 groups, never halves of two groups.
    groups = np.repeat([1, 2, 3, 4], 2)
    stratum = np.tile(["lo", "hi"], 4)
    fold = np.repeat([1, 1, 2, 2], 2)
    cv = SameOtherSizesCV(folds=2, sizes=1, seeds=20)
    splits = cv.iterations(np.zeros((8, 1)), groups=groups, stratum=stratum, fold=fold,
                           random_state=0)
    small = [s for s in splits if s.n_train_groups == 1]
    assert len(small) == 40
    sizes = set()
    for split in small:
        train_groups = set(groups[split.train].tolist())
        assert len(split.train) == 2 * len(train_groups), split
        sizes.add(len(split.train))
    assert sizes == {2, 4}


def pools(split, folds, subset_codes):
    """Rows a split's train set is drawn from."""
    outside = folds != split.test_fold
    if split.train_subsets == "same":
        return outside & (subset_codes == split.test_subset)
    if split.train_subsets == "other":
        return outside & (subset_codes != split.test_subset)
    return outside


@pytest.mark.parametrize("seed", range(12))
def test_down_sampled_train_sets_hold_whole_groups_and_nest_in_the_full_set(seed):
    rng = np.random.default_rng(seed)
    n_rows = int(rng.integers(60, 140))
    n_groups = int(rng.integers(10, 35))
    groups = rng.integers(0, n_groups, n_rows)
    subset = np.array(["a", "b", "c"])[rng.integers(0, 2 + seed % 2, n_groups)][groups]
    stratum = rng.integers(0, 3, n_rows)  # varies inside groups
    cv = SameOtherSizesCV(folds=3, sizes=2, seeds=2)
    splits = cv.iterations(np.zeros((n_rows, 1)), groups=groups, subset=subset,
                           stratum=stratum, random_state=seed)
    folds = np.empty(n_rows, dtype=np.int64)
    for split in splits:
        folds[split.test] = split.test_fold
    full = {(s.test_fold, s.test_subset, s.train_subsets, s.seed): set(s.train.tolist())
            for s in splits if s.n_train_groups == s.groups}
    assert any(s.n_train_groups < s.groups for s in splits)
    for split in splits:
        train = set(split.train.tolist())
        assert not train & set(split.test.tolist())
        assert train <= full[(split.test_fold, split.test_subset, split.train_subsets,
                              split.seed)]
        pool = np.flatnonzero(pools(split, folds, subset))
        for group in set(groups[split.train].tolist()):
            assert set(pool[groups[pool] == group].tolist()) <= train, (split, group)
