"""grid.h5 read back: shared memory maps of the task data and split indices."""

from __future__ import annotations

import numpy as np
from sklearn.model_selection import ShuffleSplit

import mpibench as mb
from mpibench.store.gridfile import GridFile


def mapped(array):
    """True when ``array`` views a memory map of the file (not a private copy)."""
    import mmap

    while array is not None:
        if isinstance(array, np.memmap | mmap.mmap):
            return True
        array = getattr(array, "base", None)
    return False


def test_task_data_and_split_indices_are_shared_memory_maps(tmp_path, monkeypatch):
    rng = np.random.default_rng(1)
    X, y = rng.normal(size=(30, 4)), rng.normal(size=30)
    grid = mb.Grid([mb.Task("t", X=X, y=y)], {"d": mb.DebugLearner()},
                   resamplings=[ShuffleSplit(3, test_size=0.2, random_state=0)])
    grid_file = GridFile(mb.create_project(tmp_path / "p", grid) / "grid.h5")
    X_read, y_read = grid_file.task_data(0)
    assert mapped(X_read) and mapped(y_read)
    assert not X_read.flags.writeable
    np.testing.assert_array_equal(X_read, X)
    np.testing.assert_array_equal(y_read, y)
    index = grid_file.split_index(0, 0)
    assert mapped(index.train_idx)
    assert len(index.train(0)) == 24 and len(index.test(0)) == 6
    assert not set(index.train(0).tolist()) & set(index.test(0).tolist())
    monkeypatch.setenv("MPIBENCH_SHARE_DATA", "0")
    X_copy, _ = GridFile(grid_file.path).task_data(0)  # (read once per process)
    assert not mapped(X_copy)
    np.testing.assert_array_equal(X_copy, X)


def test_a_thousand_tasks_are_views_of_one_map_and_a_bounded_cache(tmp_path):
    from mpibench.engine.protocol import Assignment
    from mpibench.engine.worker import SplitRunner

    rng = np.random.default_rng(2)
    frames = [rng.normal(size=(12, 1 + i % 3)) for i in range(1000)]
    tasks = [mb.Task(f"t{i}", X=X, y=X[:, 0] * 2) for i, X in enumerate(frames)]
    grid = mb.Grid(tasks, {"d": mb.DebugLearner()},
                   resamplings=[ShuffleSplit(2, test_size=0.25, random_state=0)])
    grid_file = GridFile(mb.create_project(tmp_path / "p", grid) / "grid.h5")
    layout = grid_file.mapped()
    assert layout is not None
    for i in (0, 1, 2, 999):
        X, y = grid_file.task_data(i)
        assert mapped(X) and mapped(y) and X.base is grid_file.task_data(0)[0].base
        np.testing.assert_array_equal(X, frames[i])
        np.testing.assert_array_equal(y, frames[i][:, 0] * 2)
        assert mapped(grid_file.split_index(i, 0).test_idx)
    runner = SplitRunner(grid_file, rank=1, threads=1)
    runner._data.limit = 30 * (12 * 3 * 8 + 12 * 8)  # room for about 30 tasks
    jobs = [Assignment(j, t, 0, 0, s, 7) for j, (t, s) in enumerate(
        (t, s) for t in range(1000) for s in range(2))]
    assert all(runner.run(job).status == "ok" for job in jobs)
    assert runner._data.bytes <= runner._data.limit
    assert runner._data.loads == 2000  # each task and split index loaded once, in order


def test_text_labels_and_frames_come_back_as_they_went_in(tmp_path):
    import pandas as pd
    from sklearn.model_selection import KFold

    frame = pd.DataFrame({"a": np.arange(12.0), "b": np.arange(12.0) ** 2})
    labels = np.array(["cat", "dog", "émeu"] * 4, dtype=object)
    mixed = pd.DataFrame({"i": np.arange(12), "f": np.linspace(0, 1, 12)})
    tasks = [mb.Task("text", X=frame, y=labels), mb.Task("mixed", X=mixed, y=np.arange(12.0))]
    grid = mb.Grid(tasks, {"d": mb.DebugLearner()}, resamplings=[KFold(3)],
                   scoring={"zero": mb.zero_score})
    grid_file = GridFile(mb.create_project(tmp_path / "p", grid) / "grid.h5")
    X, y = grid_file.task_data(0)
    assert mapped(X.to_numpy()) and list(X.columns) == ["a", "b"]
    pd.testing.assert_frame_equal(X, frame)
    assert y.tolist() == labels.tolist() and grid_file.task_kind(0) == "classification"
    X_mixed, y_mixed = grid_file.task_data(1)  # mixed dtypes: through HDF5, as before
    pd.testing.assert_frame_equal(X_mixed, mixed, check_dtype=False)
    assert y_mixed.tolist() == list(np.arange(12.0))
