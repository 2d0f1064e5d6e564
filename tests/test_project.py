"""Grid definition, grid.h5 round trip, and every bad input refused at create_project."""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest
from sklearn.dummy import DummyClassifier, DummyRegressor
from sklearn.model_selection import (
    GroupKFold,
    GroupShuffleSplit,
    KFold,
    ShuffleSplit,
    StratifiedKFold,
)
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer
from sklearn.tree import DecisionTreeRegressor

import mpibench as mb
from mpibench.store.gridfile import GridFile
from mpibench.store.growing import job_keys


def regression_task(name="t", n=30, **columns):
    rng = np.random.default_rng(0)
    return mb.Task(name, X=rng.normal(size=(n, 2)), y=rng.normal(size=n), **columns)


def one_line(exc_info) -> str:
    message = str(exc_info.value)
    assert "\n" not in message
    return message


def test_grid_expands_tasks_learners_resamplings():
    tasks = [regression_task("a"), regression_task("b", n=40)]
    learners = {"mean": DummyRegressor(), "tree": DecisionTreeRegressor()}
    grid = mb.Grid(tasks, learners, resamplings=[KFold(3), mb.SameOtherSizesCV(folds=2)])
    jobs = grid.job_table()
    assert len(jobs) == grid.n_splits == 2 * 2 * (3 + 2)
    with pytest.warns(FutureWarning, match="n_splits"):
        assert grid.n_jobs == grid.n_splits
    assert jobs["job_id"].tolist() == list(range(len(jobs)))
    assert set(jobs["resampling"]) == {"KFold", "SameOtherSizesCV"}
    assert jobs.groupby(["task", "learner"]).size().tolist() == [5, 5, 5, 5]
    # the same split for every learner, a different learner seed for every job
    a = jobs[(jobs.task == "a") & (jobs.learner == "mean")]["n_train"].tolist()
    b = jobs[(jobs.task == "a") & (jobs.learner == "tree")]["n_train"].tolist()
    assert a == b
    assert jobs["random_state"].nunique() == len(jobs)


def test_project_round_trip(tmp_path):
    frame = pd.DataFrame({"x1": np.arange(30.0), "x2": np.arange(30) % 4})
    task = mb.Task("df", X=frame, y=np.arange(30.0), groups=np.arange(30) // 2)
    grid = mb.Grid([task], [DummyRegressor()], resamplings=[GroupKFold(3)], seed=7)
    path = mb.create_project(tmp_path / "p", grid)
    stored = GridFile(path / "grid.h5")
    pd.testing.assert_frame_equal(stored.job_table(), grid.job_table(),
                                  check_dtype=False)
    X, y = stored.task_data(0)
    pd.testing.assert_frame_equal(X, frame)
    assert np.array_equal(y, np.arange(30.0))
    index = stored.split_index(0, 0)
    split_set = grid.split_set(0, 0)
    for k in range(3):
        assert np.array_equal(index.train(k), split_set.train[k])
        assert np.array_equal(index.test(k), split_set.test[k])
    assert stored.scorer_names() == ["rmse", "mae"]
    assert stored.names("learners") == ["DummyRegressor"]
    assert stored.attrs()["seed"] == 7


def test_string_target_and_object_features_round_trip(tmp_path):
    X = pd.DataFrame({"color": list("rgb") * 10, "v": np.arange(30.0)})
    y = np.array(["yes", "no"] * 15)
    task = mb.Task("c", X=X, y=y)
    assert task.kind == "classification"
    path = mb.create_project(tmp_path / "p", mb.Grid([task], [DummyClassifier()],
                                                     resamplings=[StratifiedKFold(3)]))
    X2, y2 = GridFile(path / "grid.h5").task_data(0)
    pd.testing.assert_frame_equal(X2, X)
    assert y2.tolist() == y.tolist()


def test_create_project_twice_is_a_no_op_and_a_different_grid_is_refused(tmp_path):
    path = mb.create_demo(tmp_path / "p")
    before = (path / "grid.h5").read_bytes()
    assert mb.create_project(path, mb.demo_grid()) == path
    with pytest.raises(mb.MpibenchError, match="other seed") as info:
        mb.create_project(path, mb.demo_grid(seed=2))  # new data and a new seed
    assert "existing results are kept" in one_line(info)
    with pytest.raises(mb.MpibenchError, match="changed: task easy, task impossible") as info:
        mb.create_project(path, mb.Grid(mb.demo_grid(seed=2).tasks,
                                        mb.demo_grid().learners, seed=1,
                                        scoring=["rmse", "mae"]))
    assert "Nothing was modified" in one_line(info)
    assert (path / "grid.h5").read_bytes() == before


def test_changed_learner_parameters_are_named(tmp_path):
    tasks = [regression_task()]
    mb.create_project(tmp_path / "p", mb.Grid(tasks, {"m": DummyRegressor()}))
    with pytest.raises(mb.MpibenchError, match=r"changed: learner m\)"):
        mb.create_project(tmp_path / "p", mb.Grid(
            tasks, {"m": DummyRegressor(strategy="median")}))


def test_non_empty_folder_without_project_is_refused(tmp_path):
    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "notes.txt").write_text("mine")
    with pytest.raises(mb.MpibenchError, match="not empty"):
        mb.create_project(tmp_path / "p", mb.demo_grid())


def test_weird_path(weird_tmp_path):
    path = mb.create_demo(weird_tmp_path / "demo project")
    assert (path / "grid.h5").exists()


class LocalDummy(DummyRegressor):
    pass


@pytest.mark.parametrize(("make", "message"), [
    (lambda: mb.Task("t", X=np.zeros((5, 1)), y=np.zeros(4)), "len(X) = 5 but len(y) = 4"),
    (lambda: mb.Task("t", X=np.zeros((3, 1)), y=[1.0, np.nan, 2.0]), "NaN/inf"),
    (lambda: mb.Task("t", X=np.zeros((3, 1)), y=[1.0, np.inf, 2.0]), "NaN/inf"),
    (lambda: mb.Task("t", X=np.zeros(3), y=np.zeros(3)), "X must be 2-D"),
    (lambda: mb.Task("t", X=np.zeros((3, 1)), y=np.zeros(3), subset=[1, 2]), "'subset' column"),
    (lambda: mb.Grid([regression_task()], [DummyRegressor()], scoring=["rsme"]),
     "Unknown scorer 'rsme'"),
    (lambda: mb.Grid([regression_task()], [DummyRegressor()], scoring=["accuracy"]),
     "does not apply to regression"),
    (lambda: mb.Grid([regression_task(), regression_task()], [DummyRegressor()]),
     "Task names must be unique"),
    (lambda: mb.Grid([regression_task()], [DummyRegressor(), DummyRegressor()]),
     "Learner names must be unique"),
    (lambda: mb.Grid([regression_task()], {"x": object()}), "cannot be cloned"),
    (lambda: mb.Grid([regression_task()], {"x": make_pipeline(
        FunctionTransformer(lambda v: v), DummyRegressor())}), "cannot be pickled"),
    (lambda: mb.Grid([regression_task()], [DummyRegressor()], seed=-1), "'seed' parameter"),
    (lambda: mb.Grid([regression_task(), mb.Task("c", X=np.zeros((4, 1)), y=[0, 1, 0, 1])],
                     [DummyRegressor()]), "mixes regression and classification"),
])
def test_bad_grid_definitions(make, message):
    with pytest.raises(mb.MpibenchError) as info:
        make()
    assert message in one_line(info)


def test_empty_train_set_refused(tmp_path):
    grid = mb.demo_grid()
    grid.resamplings = {"tiny": mb.SameOtherSizesCV(sizes=3, ratio=0.1)}
    with pytest.raises(mb.MpibenchError, match="empty train set") as info:
        mb.create_project(tmp_path / "p", grid)
    assert "more)" in one_line(info)
    assert not (tmp_path / "p").exists()


def test_classification_train_set_missing_a_class_refused(tmp_path):
    person = np.repeat(["Alice", "Bob"], 20)
    y = np.where(person == "Alice", "a", np.tile(["a", "b"], 20))
    task = mb.Task("c", X=np.zeros((40, 1)), y=y, subset=person, stratum=person)
    grid = mb.Grid([task], [DummyClassifier()])
    with pytest.raises(mb.MpibenchError, match=r"lacks class\(es\) \['b'\]") as info:
        mb.create_project(tmp_path / "p", grid)
    assert "(test_subset=Bob, train=other)" in one_line(info)


def test_splitter_that_needs_groups_gets_a_clear_error():
    grid = mb.Grid([regression_task()], [DummyRegressor()], resamplings=[GroupKFold(3)])
    with pytest.raises(mb.MpibenchError, match="failed on task 't'"):
        grid.job_table()


def test_sklearn_splitters_and_explicit_pairs():
    task = regression_task(n=20, groups=np.arange(20) // 4)
    pairs = [(np.arange(8), np.arange(8, 20)), (np.arange(8, 20), np.arange(8))]
    grid = mb.Grid([task], [DummyRegressor()], resamplings={
        "shuffle": GroupShuffleSplit(4, test_size=0.25), "groups": GroupKFold(5),
        "halves": pairs})
    jobs = grid.job_table()
    assert jobs.groupby("resampling").size().to_dict() == {"groups": 5, "halves": 2,
                                                           "shuffle": 4}
    # a splitter without random_state is seeded from the grid seed: reproducible
    plain = regression_task(n=20)
    again = mb.Grid([plain], [DummyRegressor()], resamplings=[ShuffleSplit(4, test_size=0.25)])
    first = mb.Grid([plain], [DummyRegressor()], resamplings=[ShuffleSplit(4, test_size=0.25)])
    assert all(np.array_equal(a, b) for a, b in zip(
        again.split_set(0, 0).test, first.split_set(0, 0).test, strict=True))


@pytest.mark.parametrize(("splitter", "fix"), [
    (KFold(3), "GroupKFold"), (ShuffleSplit(3, test_size=0.3), "GroupShuffleSplit"),
    ([(np.arange(10), np.arange(10, 20))], "GroupKFold, StratifiedGroupKFold")])
def test_groups_stay_whole_or_the_grid_is_refused(splitter, fix):
    """A splitter that ignores groups would put one group on both sides of a split."""
    task = regression_task(n=20, groups=np.arange(20) // 4)
    with pytest.raises(mb.MpibenchError, match=f"has groups, but split 1 .* \\({fix}"):
        mb.Grid([task], [DummyRegressor()], resamplings=[splitter]).job_table()
    kept = mb.Grid([task], [DummyRegressor()], resamplings=[GroupKFold(5)]).split_set(0, 0)
    groups = np.arange(20) // 4
    assert all(not set(groups[tr]) & set(groups[te]) for tr, te in zip(
        kept.train, kept.test, strict=True))


def test_impossible_soak_settings_are_refused_or_warned():
    few = regression_task(n=30)
    with pytest.raises(mb.MpibenchError, match=r"Task 't': .*folds=50\) needs at least "
                       r"50 rows .* have 30\. Use folds <= 30"):
        mb.Grid([few], [DummyRegressor()], [mb.SameOtherSizesCV(folds=50)]).job_table()
    grouped = regression_task(n=30, groups=np.arange(30) // 10)
    with pytest.raises(mb.MpibenchError, match="needs at least 4 groups"):
        mb.Grid([grouped], [DummyRegressor()], [mb.SameOtherSizesCV(folds=4)]).job_table()
    one = regression_task(n=30, subset=np.repeat(["A"], 30))
    with pytest.warns(mb.MpibenchWarning, match="one value \\('A'\\), so only 'same'"):
        mb.Grid([one], [DummyRegressor()], [mb.SameOtherSizesCV()]).job_table()
    uneven = regression_task(n=30, subset=np.r_[["A"] * 28, ["B"] * 2])
    with pytest.warns(mb.MpibenchWarning, match="subset 'B' has 2 rows, so it is a test "
                      "subset in only 2 folds"):
        mb.Grid([uneven], [DummyRegressor()], [mb.SameOtherSizesCV(folds=3)]).job_table()


def test_scorers_resolve_and_pickle():
    from mpibench.scorers import resolve_scoring

    def squared_error(y_true, y_pred):
        return float(((y_true - y_pred) ** 2).mean())

    scorers = resolve_scoring({"rmse": "rmse", "se": squared_error,
                               "neg_mae": "neg_mean_absolute_error"})
    assert [s.kind for s in scorers] == ["predict", "predict", "estimator"]
    assert pickle.loads(pickle.dumps(scorers[0])).function()([1.0, 3.0], [1.0, 1.0]) == \
        pytest.approx(np.sqrt(2))
    with pytest.raises(mb.MpibenchError, match="needs a name"):
        resolve_scoring([lambda a, b: 0.0])


@pytest.mark.parametrize("second", [np.arange(40.0) ** 2, np.arange(40) % 3],
                         ids=["one dtype", "mixed dtypes"])
def test_a_numeric_dataframe_is_mapped_once_per_node_not_copied(tmp_path, second):
    from mpibench.store.gridfile import GridFile

    frame = pd.DataFrame({"a": np.arange(40.0), "b": second})
    task = mb.Task("df", X=frame, y=np.arange(40.0))
    path = mb.create_project(tmp_path / "p", mb.Grid([task], [DummyRegressor()],
                                                     resamplings=[KFold(2)]))
    X, _ = GridFile(path / "grid.h5").task_data(0)
    pd.testing.assert_frame_equal(X, frame)
    for column in X.columns:
        values = X[column].to_numpy()
        assert not values.flags.owndata and not values.flags.writeable  # a view of the map
        base = values
        while getattr(base, "base", None) is not None:
            base = base.base
        assert type(base).__name__ == "mmap", column


def test_job_keys_and_seeds_are_those_earlier_versions_stored():
    """Golden values written by mpibench at 75d1631 for this grid: a project created
    then grows, and keeps its seeds, under the faster job table and keys."""
    rng = np.random.default_rng(1)
    frame = pd.DataFrame({"x": rng.uniform(-2, 2, 80), "person": np.repeat(["Alice", "Bob"], 40)})
    frame["y"] = frame["x"] ** 2 + rng.normal(0, 0.5, 80)
    soak = mb.Task("easy", X=frame[["x"]], y=frame["y"], subset=frame["person"],
                   stratum=frame["person"], groups=np.arange(80) // 2)
    plain = mb.Task("plain", X=rng.normal(size=(30, 2)), y=rng.normal(size=30),
                    groups=np.arange(30) // 3)
    grid = mb.Grid([soak, plain], {"mean": DummyRegressor()}, scoring=["rmse"],
                   resamplings=[mb.SameOtherSizesCV(folds=3, sizes=0), GroupKFold(3)])
    jobs = grid.job_table()
    keys = job_keys(grid, jobs)
    assert [keys[j].decode() for j in (0, 5, 20, 32)] == [
        "bd6dc52047a41653f6712a0515555e98", "073f9e9d5d0e595a2521c244fe352ca3",
        "21397e81951c6ffa9481900f373120b7", "0a1353838ef70ecc53c0abf5423e8bf5"]
    assert jobs["random_state"].iloc[[0, 5, 20, 32]].tolist() == [
        1484405855, 80664346, 506738380, 798020453]


def test_vectorized_seeds_equal_seed_sequence():
    from mpibench.grid import derive_seed, derive_seeds

    rng = np.random.default_rng(0)
    for seed in (0, 7, 2**31 - 1, 2**32, 2**70 + 9):
        ids = np.concatenate([np.arange(40), rng.integers(0, 2**32, 100)])
        assert derive_seeds(seed, ids).tolist() == [derive_seed(seed, int(j)) for j in ids]
