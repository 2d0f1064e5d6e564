"""grid.h5 read back: shared memory maps of the task data and split indices."""

from __future__ import annotations

import numpy as np
from sklearn.model_selection import ShuffleSplit

import mpibench as mb
from mpibench.store.gridfile import GridFile


def test_task_data_and_split_indices_are_shared_memory_maps(tmp_path, monkeypatch):
    rng = np.random.default_rng(1)
    X, y = rng.normal(size=(30, 4)), rng.normal(size=30)
    grid = mb.Grid([mb.Task("t", X=X, y=y)], {"d": mb.DebugLearner()},
                   resamplings=[ShuffleSplit(3, test_size=0.2, random_state=0)])
    grid_file = GridFile(mb.create_project(tmp_path / "p", grid) / "grid.h5")
    X_read, y_read = grid_file.task_data(0)
    assert isinstance(X_read.base, np.memmap) and isinstance(y_read.base, np.memmap)
    assert not X_read.flags.writeable
    np.testing.assert_array_equal(X_read, X)
    np.testing.assert_array_equal(y_read, y)
    index = grid_file.split_index(0, 0)
    assert isinstance(index.train_idx.base, np.memmap)
    assert len(index.train(0)) == 24 and len(index.test(0)) == 6
    assert not set(index.train(0).tolist()) & set(index.test(0).tolist())
    monkeypatch.setenv("MPIBENCH_SHARE_DATA", "0")
    X_copy, _ = grid_file.task_data(0)
    assert X_copy.base is None or not isinstance(X_copy.base, np.memmap)
    np.testing.assert_array_equal(X_copy, X)
