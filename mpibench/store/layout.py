"""Where each task's arrays lie in ``grid.h5``, so a process maps them without HDF5.

``create_project`` writes ``/layout``: one row per contiguous numeric dataset a split
needs (a task's ``X`` and ``y``, every ``(task, resampling)``'s four split index
arrays) with its byte offset, shape and dtype, plus ``/layout_columns`` (the column
names of each task stored as one 2-D frame) and ``/task_kinds``. A process reads the
three tables once and memory-maps ``grid.h5`` once; each task's arrays are then views
of that one map (microseconds each, no file opened, no HDF5 call, one mapping per
process whatever the number of tasks). A grid of a thousand data sets thus costs its
executors what a grid of ten does. Projects written before the table existed, and
arrays that cannot be mapped (pickled frames, text targets, a frame of mixed dtypes),
take the HDF5 path of :class:`~mpibench.store.gridfile.GridFile`.
"""

from __future__ import annotations

import json
import mmap
import os
from pathlib import Path
from typing import Any

import h5py
import numpy as np

ROLES = ("X", "y", "train_idx", "train_ptr", "test_idx", "test_ptr")
"""What a ``/layout`` row holds (its ``role`` column indexes this)."""
KINDS = ("regression", "classification")


def _row(dataset: h5py.Dataset, task_i: int, resampling_i: int, role: str,
         dtypes: list[str]) -> list[int] | None:
    """One ``/layout`` row for a dataset a process may map, else None."""
    offset = dataset.id.get_offset()
    if (offset is None or dataset.chunks is not None or dataset.dtype.kind not in "fiub"
            or dataset.ndim not in (1, 2)):
        return None
    dtype = dataset.dtype.str
    if dtype not in dtypes:
        dtypes.append(dtype)
    shape = (*dataset.shape, 0)[:2]
    return [task_i, resampling_i, ROLES.index(role), int(offset), int(shape[0]),
            int(shape[1]), dtypes.index(dtype)]


class LayoutWriter:
    """Collects the datasets a process may map while ``grid.h5`` is written, then
    :meth:`write` adds ``/layout``, ``/layout_columns`` and ``/task_kinds``."""

    def __init__(self) -> None:
        self.entries: list[tuple[h5py.Dataset, int, int, str]] = []
        self.columns: list[str] = []
        self.kinds: list[int] = []

    def task(self, group: h5py.Group, kind: str, frame_columns: list[str] | None) -> None:
        """Note a task (in index order) whose ``X`` and ``y`` are written."""
        task_i = len(self.kinds)
        self.kinds.append(KINDS.index(kind))
        self.columns.append(json.dumps(frame_columns) if frame_columns is not None else "")
        if str(group.attrs["x_format"]) in ("array", "frame"):
            self.entries += [(group["X"], task_i, -1, "X"), (group["y"], task_i, -1, "y")]

    def split(self, dataset: h5py.Dataset, task_i: int, resampling_i: int, role: str
              ) -> None:
        """Note one of the split index arrays of ``(task, resampling)``."""
        self.entries.append((dataset, task_i, resampling_i, role))

    def write(self, h5: h5py.File) -> None:
        """The three tables, once every noted dataset holds its data."""
        dtypes: list[str] = []
        rows = [r for r in (_row(d, t, res, role, dtypes) for d, t, res, role in
                            self.entries) if r is not None]
        layout = h5.create_dataset(
            "layout", data=np.asarray(rows, dtype=np.int64).reshape(-1, 7))
        layout.attrs["columns"] = ["task", "resampling", "role", "offset", "rows",
                                   "columns", "dtype"]
        layout.attrs["dtypes"] = dtypes
        layout.attrs["roles"] = list(ROLES)
        h5.create_dataset("layout_columns", data=np.asarray(self.columns, dtype=object),
                          dtype=h5py.string_dtype())
        h5.create_dataset("task_kinds", data=np.asarray(self.kinds, dtype=np.int8))


class MappedGrid:
    """Views of a grid file's task arrays through one memory map of the whole file.

    Parameters
    ----------
    path : pathlib.Path
        ``grid.h5`` (with a ``/layout`` table: see :func:`MappedGrid.open`).
    layout : numpy.ndarray
        The ``/layout`` rows.
    dtypes : list of str
        Dtypes named by the rows' ``dtype`` column.
    columns : list of str
        Per task, its frame's column names as JSON ("" if it is not a frame).
    kinds : numpy.ndarray
        Per task, 0 for regression and 1 for classification.
    """

    def __init__(self, path: Path, layout: np.ndarray, dtypes: list[str],
                 columns: list[str], kinds: np.ndarray) -> None:
        self.path = path
        self.dtypes = [np.dtype(d) for d in dtypes]
        self.columns, self.kinds = columns, kinds
        self._where = {(int(t), int(r), int(role)): (int(off), int(n), int(m), int(d))
                       for t, r, role, off, n, m, d in layout.tolist()}
        self._map: mmap.mmap | None = None

    @classmethod
    def open(cls, path: Path) -> MappedGrid | None:
        """The mapped view of ``path``, or None when it has no layout table (a project
        written before it) or ``MPIBENCH_SHARE_DATA=0`` asks for private copies."""
        if os.environ.get("MPIBENCH_SHARE_DATA", "1") == "0":
            return None
        with h5py.File(path, "r") as h5:
            if "layout" not in h5:
                return None
            layout = h5["layout"]
            return cls(Path(path), layout[()], [str(d) for d in layout.attrs["dtypes"]],
                       list(h5["layout_columns"].asstr()[()]), h5["task_kinds"][()])

    def _array(self, task_i: int, resampling_i: int, role: str) -> np.ndarray | None:
        where = self._where.get((task_i, resampling_i, ROLES.index(role)))
        if where is None:
            return None
        offset, rows, columns, dtype = where
        shape = (rows, columns) if columns else (rows,)
        if not rows:
            return np.zeros(shape, dtype=self.dtypes[dtype])
        if self._map is None:
            with open(self.path, "rb") as file:
                self._map = mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ)
        return np.ndarray(shape, dtype=self.dtypes[dtype], buffer=self._map, offset=offset)

    def task_data(self, task_i: int) -> tuple[Any, np.ndarray] | None:
        """``(X, y)`` as views (a DataFrame viewing X for a frame), or None when the
        task's arrays are not in the layout."""
        X, y = self._array(task_i, -1, "X"), self._array(task_i, -1, "y")
        if X is None or y is None:
            return None
        names = self.columns[task_i]
        if names:
            import pandas as pd

            return pd.DataFrame(X, copy=False, columns=json.loads(names)), y
        return X, y

    def split_arrays(self, task_i: int, resampling_i: int) -> list[np.ndarray] | None:
        """The four CSR index arrays of ``(task, resampling)``, or None."""
        arrays = [self._array(task_i, resampling_i, role) for role in ROLES[2:]]
        present = [a for a in arrays if a is not None]
        return present if len(present) == len(arrays) else None

    def task_kind(self, task_i: int) -> str:
        """``"regression"`` or ``"classification"``."""
        return KINDS[int(self.kinds[task_i])]
