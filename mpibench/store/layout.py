"""Task data and split indices packed into a few datasets of ``grid.h5``, with a table
of where each array lies, so that a process reaches any task without HDF5.

``create_project`` packs every numeric task array (a task's ``X`` when it is an array
or a frame of one numeric dtype, its numeric ``y``, and the four split index arrays of
every ``(task, resampling)``) into one flat dataset per dtype, ``/packed/<dtype>``,
and writes ``/layout``: one row per array with its byte offset in the file, shape and
dtype, plus per task its name, kind, shape, X format and frame columns. A thousand
tasks thus cost a handful of HDF5 datasets, not six thousand: creating the project is
linear in the data, not in the tasks.

A process reads the tables once, memory-maps ``grid.h5`` once, and each array is then a
view of that map (microseconds, no file opened, one mapping whatever the number of
tasks); with ``MPIBENCH_SHARE_DATA=0`` it reads a private copy at the same offset.
Arrays that cannot be packed (a pickled X, a frame of mixed dtypes, text labels) stay
in the task's group ``/tasks/<i>`` and are read through HDF5, as are projects written
before the table existed.
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
FLUSH_BYTES = 1 << 26
"""Packed arrays are written to their dataset in slices of about this many bytes."""


def packable(values: Any) -> np.ndarray | None:
    """``values`` as a C-ordered numeric array that can be packed (1-D or 2-D), or None."""
    if not isinstance(values, np.ndarray) or values.dtype.kind not in "fiub" \
            or values.ndim not in (1, 2):
        return None
    return np.ascontiguousarray(values)


class Packer:
    """Collects arrays while ``grid.h5`` is written, then packs them (:meth:`write`).

    Examples
    --------
    >>> import io
    >>> packer = Packer()
    >>> packer.add(np.arange(6.0).reshape(3, 2), task_i=0, resampling_i=-1, role="X")
    >>> with h5py.File(io.BytesIO(), "w") as h5:
    ...     packer.write(h5, names=["t"], kinds=["regression"], formats=["array"],
    ...                  columns=[""], shapes=[(3, 2)])
    ...     h5["layout"].shape
    (1, 7)
    """

    def __init__(self) -> None:
        self.pieces: dict[str, list[tuple[np.ndarray, tuple[int, int, int]]]] = {}

    def add(self, array: np.ndarray, task_i: int, resampling_i: int, role: str) -> None:
        """Pack ``array`` (from :func:`packable`) as ``role`` of ``(task, resampling)``."""
        self.pieces.setdefault(array.dtype.str, []).append(
            (array, (task_i, resampling_i, ROLES.index(role))))

    def write(self, h5: h5py.File, names: list[str], kinds: list[str], formats: list[str],
              columns: list[str], shapes: list[tuple[int, int]],
              labels: list[str] | None = None) -> None:
        """``/packed/<dtype>``, ``/layout`` and the per-task tables (``labels``: per task
        the JSON list of its text labels when ``y`` holds their codes, else "")."""
        rows: list[list[int]] = []
        dtypes = sorted(self.pieces)
        packed = h5.create_group("packed")
        for code, dtype in enumerate(dtypes):
            pieces = self.pieces[dtype]
            sizes = np.array([p.size for p, _ in pieces], dtype=np.int64)
            starts = np.cumsum(sizes) - sizes
            dataset = packed.create_dataset(str(code), shape=(int(sizes.sum()),),
                                            dtype=np.dtype(dtype))
            _fill(dataset, [p for p, _ in pieces], starts)
            base = dataset.id.get_offset()
            itemsize = np.dtype(dtype).itemsize
            for (array, (task_i, resampling_i, role)), start in zip(pieces, starts.tolist(),
                                                                   strict=True):
                offset = -1 if base is None else base + start * itemsize
                shape = (*array.shape, 0)[:2]
                rows.append([task_i, resampling_i, role, offset, shape[0], shape[1], code])
        layout = h5.create_dataset("layout",
                                   data=np.asarray(rows, dtype=np.int64).reshape(-1, 7))
        layout.attrs["columns"] = ["task", "resampling", "role", "offset", "rows",
                                   "columns", "dtype"]
        layout.attrs["dtypes"] = dtypes
        layout.attrs["roles"] = list(ROLES)
        text = h5py.string_dtype()
        h5.create_dataset("task_names", data=np.asarray(names, dtype=object), dtype=text)
        h5.create_dataset("task_formats", data=np.asarray(formats, dtype=object), dtype=text)
        h5.create_dataset("layout_columns", data=np.asarray(columns, dtype=object),
                          dtype=text)
        h5.create_dataset("task_labels", data=np.asarray(labels or [""] * len(names),
                                                         dtype=object), dtype=text)
        h5.create_dataset("task_kinds", data=np.asarray([KINDS.index(k) for k in kinds],
                                                        dtype=np.int8))
        h5.create_dataset("task_shapes", data=np.asarray(shapes, dtype=np.int64).reshape(-1, 2))


def _fill(dataset: h5py.Dataset, arrays: list[np.ndarray], starts: np.ndarray) -> None:
    """Write ``arrays`` flat at ``starts``, in slices of about ``FLUSH_BYTES``."""
    batch: list[np.ndarray] = []
    first, size = 0, 0
    for index, array in enumerate(arrays):
        if not batch:
            first = int(starts[index])
        batch.append(array.reshape(-1))
        size += array.nbytes
        if size >= FLUSH_BYTES or index == len(arrays) - 1:
            flat = np.concatenate(batch)
            dataset[first:first + len(flat)] = flat
            batch, size = [], 0


class MappedGrid:
    """The packed arrays of a grid file: views of one memory map of the whole file, or
    private copies read at their offsets (``MPIBENCH_SHARE_DATA=0``).

    Parameters
    ----------
    path : pathlib.Path
        ``grid.h5`` (with a ``/layout`` table: see :func:`MappedGrid.open`).
    tables : dict
        ``layout`` (rows), ``dtypes``, ``columns`` (per task, its frame's column names
        as JSON or ""), ``kinds`` (0 regression, 1 classification), ``names``.
    """

    def __init__(self, path: Path, tables: dict) -> None:
        self.path = path
        self.dtypes = [np.dtype(d) for d in tables["dtypes"]]
        self.columns, self.kinds = tables["columns"], tables["kinds"]
        self.names: list[str] = tables["names"]
        self.labels: list[str] = tables["labels"]
        self.share = os.environ.get("MPIBENCH_SHARE_DATA", "1") != "0"
        self._where = {(int(t), int(r), int(role)): (int(off), int(n), int(m), int(d))
                       for t, r, role, off, n, m, d in tables["layout"].tolist()}
        self._map: mmap.mmap | None = None

    @classmethod
    def open(cls, path: Path) -> MappedGrid | None:
        """The packed arrays of ``path``, or None when it has no layout table (a project
        written before it)."""
        with h5py.File(path, "r") as h5:
            if "layout" not in h5:
                return None
            layout = h5["layout"]
            names = (list(h5["task_names"].asstr()[()]) if "task_names" in h5
                     else [])
            return cls(Path(path), {
                "layout": layout[()], "dtypes": [str(d) for d in layout.attrs["dtypes"]],
                "columns": list(h5["layout_columns"].asstr()[()]),
                "kinds": h5["task_kinds"][()], "names": names,
                "labels": list(h5["task_labels"].asstr()[()]) if "task_labels" in h5
                else [""] * len(h5["task_kinds"])})

    def _array(self, task_i: int, resampling_i: int, role: str) -> np.ndarray | None:
        where = self._where.get((task_i, resampling_i, ROLES.index(role)))
        if where is None:
            return None
        offset, rows, columns, code = where
        shape, dtype = ((rows, columns) if columns else (rows,)), self.dtypes[code]
        if rows == 0 or (len(shape) == 2 and columns == 0):
            return np.zeros(shape, dtype=dtype)
        if offset < 0:
            return None
        if not self.share:
            count = rows * (columns or 1)
            return np.fromfile(self.path, dtype=dtype, count=count, offset=offset
                               ).reshape(shape)
        if self._map is None:
            with open(self.path, "rb") as file:
                self._map = mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ)
        return np.ndarray(shape, dtype=dtype, buffer=self._map, offset=offset)

    def task_data(self, task_i: int) -> tuple[Any, np.ndarray] | None:
        """``(X, y)`` (a DataFrame viewing X for a frame), or None when the task's
        arrays are not packed."""
        X, y = self._array(task_i, -1, "X"), self._array(task_i, -1, "y")
        if X is None or y is None:
            return None
        if self.labels[task_i]:  # text labels, stored as codes
            y = np.asarray(json.loads(self.labels[task_i]), dtype=object)[y]
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
