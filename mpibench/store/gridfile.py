"""The ``grid.h5`` schema: task data, split index arrays, job table, pickled objects.

Layout::

    /tasks/<i>          attrs name, kind, x_format ("array" | "frame" | "columns" |
                        "pickle"), x_columns (for "frame")
    /tasks/<i>/X        2-D array (an ndarray, or a DataFrame whose columns share one
                        numeric dtype), a group of one dataset per column, or a pickle
    /tasks/<i>/y        1-D numeric or UTF-8 strings
    /learners/<i>       pickled estimator (attrs name, params)
    /resamplings/<i>    pickled resampling (attrs name, repr)
    /scorers            pickled list of Scorer
    /splits/<t>_<r>/    train_idx, train_ptr, test_idx, test_ptr (CSR-style, int64)
    /jobs/<column>      the job table, one row per job
    attrs               fingerprint (+ one per component), n_jobs, seed, versions
"""

from __future__ import annotations

import json
import os
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pandas as pd

from .checksums import CRC_ATTR, damaged, stamp_checksums, values_crc
from .layout import MappedGrid, Packer, packable

STRING = h5py.string_dtype()
SCHEMA_VERSION = 1


CHECKED_CHUNK = 2**18
"""Elements per chunk of a column written with ``checked`` (Fletcher-32 needs chunks)."""


def write_column(group: h5py.Group, name: str, values: Any, *, checked: bool = False) -> None:
    """Write a 1-D column: numbers as they are, anything else as UTF-8 strings.

    ``checked``: numbers with HDF5's Fletcher-32 filter, text with a ``crc32``
    attribute (see :mod:`~mpibench.store.checksums`), both checked on reading.
    """
    array = np.asarray(values)
    if array.dtype.kind in "fiub":
        chunks = {"fletcher32": True, "chunks": (max(1, min(len(array), CHECKED_CHUNK)),)
                  } if checked and array.ndim == 1 and len(array) else {}
        group.create_dataset(name, data=array, **chunks)
    else:
        text = np.asarray([str(v) for v in array], dtype=object)
        dataset = group.create_dataset(name, data=text, dtype=STRING)
        if checked:
            dataset.attrs[CRC_ATTR] = np.uint32(values_crc(text))


def write_job_column(group: h5py.Group, name: str, values: Any) -> None:
    """Write a job-table column compactly: a categorical as int32 codes with its
    ``categories`` attribute, fixed-width bytes as they are, else :func:`write_column`."""
    if isinstance(values, np.ndarray) and values.dtype == object and len(values) and \
            isinstance(values[0], bytes):
        values = values.astype(bytes)  # (pandas holds fixed-width bytes as objects)
    if isinstance(values, pd.Categorical):
        dataset = group.create_dataset(name, data=values.codes.astype(np.int32))
        # one JSON text: an array attribute of 10,000 names would pass HDF5's 64 KiB limit
        dataset.attrs["categories"] = json.dumps([str(c) for c in values.categories])
    elif isinstance(values, np.ndarray) and values.dtype.kind == "S":
        group.create_dataset(name, data=values)
    else:
        write_column(group, name, values)


def read_column(dataset: h5py.Dataset) -> Any:
    """Read a column written by :func:`write_column` or :func:`write_job_column` (a
    categorical for the latter's codes), checked against its checksum if it has one
    (:class:`~mpibench.store.checksums.DamagedFile` if it fails)."""
    try:
        values = dataset.asstr()[()] if h5py.check_string_dtype(dataset.dtype) \
            else dataset[()]
    except OSError as exc:
        if not dataset.fletcher32:
            raise
        raise damaged(Path(dataset.file.filename), dataset.name, REBUILD_FIX) from exc
    if CRC_ATTR in dataset.attrs and int(dataset.attrs[CRC_ATTR]) != values_crc(values):
        raise damaged(Path(dataset.file.filename), dataset.name, REBUILD_FIX)
    if "categories" in dataset.attrs:
        return pd.Categorical.from_codes(values, json.loads(dataset.attrs["categories"]))
    return values


REBUILD_FIX = ("Restore it from a copy; a results.h5 beside results.journal is rebuilt "
               "by `mpibench run PROJECT`.")
GRID_FIX = ("Restore it from a copy, or create the project again from its script in a new "
            "folder; results.journal and results.h5 are kept.")


def share_data() -> bool:
    """False when ``MPIBENCH_SHARE_DATA=0``: every process reads its own copy."""
    return os.environ.get("MPIBENCH_SHARE_DATA", "1") != "0"


def read_shared(dataset: h5py.Dataset) -> np.ndarray:
    """A numeric dataset as a read-only memory map of the file, else read into memory.

    Every process on a node that maps the same contiguous, uncompressed dataset shares
    one copy of it in the page cache (ranks, isolation supervisors and executors):
    a task's data is held once per node, not once per rank.
    """
    offset = dataset.id.get_offset()
    if (offset is None or dataset.chunks is not None or dataset.dtype.kind not in "fiub"
            or dataset.size == 0 or not share_data()):
        return dataset[()]
    mapped = np.memmap(dataset.file.filename, dtype=dataset.dtype, mode="r", offset=offset,
                       shape=dataset.shape)
    return mapped.view(np.ndarray)


def write_pickle(group: h5py.Group, name: str, obj: Any) -> h5py.Dataset:
    """Store ``obj`` pickled, as an opaque byte string."""
    return group.create_dataset(name, data=np.void(pickle.dumps(obj, protocol=5)))


def read_pickle(dataset: h5py.Dataset) -> Any:
    """Load an object stored by :func:`write_pickle`."""
    return pickle.loads(dataset[()].tobytes())  # noqa: S301 - our own project file


def _write_x(group: h5py.Group, X: Any) -> None:
    if isinstance(X, pd.DataFrame):
        if len(X.columns) and len(set(X.dtypes)) == 1 and X.dtypes.iloc[0].kind in "fiub":
            group.attrs["x_format"] = "frame"  # one 2-D array: mapped once per node
            group.create_dataset("X", data=np.ascontiguousarray(X.to_numpy()))
            group.attrs["x_columns"] = [str(c) for c in X.columns]
            return
        if all(dtype.kind in "fiub" for dtype in X.dtypes):
            group.attrs["x_format"] = "columns"
            columns = group.create_group("X")
            columns.attrs["names"] = [str(c) for c in X.columns]
            for j, column in enumerate(X.columns):
                columns.create_dataset(str(j), data=X[column].to_numpy())
            return
    elif np.asarray(X).dtype.kind in "fiub":
        group.attrs["x_format"] = "array"
        group.create_dataset("X", data=np.asarray(X))
        return
    group.attrs["x_format"] = "pickle"
    write_pickle(group, "X", X)


def _read_x(group: h5py.Group) -> Any:
    fmt = group.attrs["x_format"]
    if fmt == "array":
        return read_shared(group["X"])
    if fmt == "frame":  # a view of the mapped array: no copy per process
        return pd.DataFrame(read_shared(group["X"]), copy=False,
                            columns=[str(c) for c in group.attrs["x_columns"]])
    if fmt == "columns":  # one mapped array per column, kept as views (no consolidation)
        columns = group["X"]
        names = list(columns.attrs["names"])
        return pd.DataFrame({name: read_shared(columns[str(j)]) for j, name in enumerate(names)},
                            copy=False)
    return read_pickle(group["X"])


def _stored_shape(group: h5py.Group) -> tuple[int, int]:
    """Rows and feature columns of a task group (1 column for a pickled X)."""
    rows = len(group["y"])
    fmt = group.attrs["x_format"]
    if fmt in ("array", "frame"):
        shape = group["X"].shape
        return rows, int(shape[1]) if len(shape) > 1 else 1
    if fmt == "columns":
        return rows, len(group["X"].attrs["names"])
    return rows, 1


def task_shape(X: Any) -> tuple[int, int]:
    """Rows and feature columns of a task's X."""
    shape = getattr(X, "shape", None) or np.shape(X)
    return int(shape[0]), int(shape[1]) if len(shape) > 1 else 1


def data_bytes(grid: Any) -> int:
    """Bytes of the grid's task data (X and y), a lower bound on ``grid.h5``'s size."""
    total = 0
    for task in grid.tasks:
        for values in (task.X, task.y):
            if isinstance(values, pd.DataFrame):
                total += int(values.memory_usage(index=False).sum())
            else:
                total += int(getattr(values, "nbytes", 0))
    return total


def write_grid_file(path: Path, grid: Any, jobs: pd.DataFrame, attrs: dict,
                    extra: Any = None) -> None:
    """Write the whole grid to ``path`` atomically (a full disk: one
    :class:`~mpibench.errors.WriteFailed`, nothing left behind); ``extra(h5)`` adds
    more (the part keys)."""
    from .paths import write_hdf5_atomically

    def fill(h5: h5py.File) -> None:
        _fill_grid_file(h5, grid, jobs, attrs)
        if extra is not None:
            extra(h5)
        stamp_checksums(h5)

    write_hdf5_atomically(
        path, fill,
        fix="Free space (or choose a folder with more) and create the project again.",
        expected_bytes=data_bytes(grid))


def _packed_x(X: Any) -> tuple[str, np.ndarray | None, list[str] | None]:
    """How X is stored: ``("array" | "frame", packable array, frame columns)``, or its
    format with None when it stays in the task's group."""
    if isinstance(X, pd.DataFrame):
        if len(X.columns) and len(set(X.dtypes)) == 1 and X.dtypes.iloc[0].kind in "fiub":
            return "frame", packable(X.to_numpy()), [str(c) for c in X.columns]
        return ("columns" if all(d.kind in "fiub" for d in X.dtypes) else "pickle"), None, None
    array = packable(np.asarray(X)) if np.asarray(X).dtype.kind in "fiub" else None
    return ("array" if array is not None else "pickle"), array, None


def _packed_y(y: np.ndarray) -> tuple[np.ndarray | None, list[str] | None]:
    """A numeric y as it is; text labels as int32 codes and their labels (read back as
    the same strings that a text column gives); None for anything else."""
    array = packable(y)
    if array is not None:
        return array, None
    if y.ndim == 1 and y.dtype.kind in "OUS":
        classes, codes = np.unique(np.asarray([str(v) for v in y]), return_inverse=True)
        return codes.astype(np.int32).reshape(-1), [str(c) for c in classes]
    return None, None


def _fill_grid_file(h5: h5py.File, grid: Any, jobs: pd.DataFrame, attrs: dict) -> None:
    h5.attrs.update(attrs)
    h5.attrs["schema_version"] = SCHEMA_VERSION
    packer = Packer()
    formats, columns, labels = [], [], []
    tasks = h5.create_group("tasks")  # only the tasks with something unpacked
    for i, task in enumerate(grid.tasks):
        fmt, X, names = _packed_x(task.X)
        y, classes = _packed_y(task.y)
        labels.append(json.dumps(classes) if classes is not None else "")
        formats.append(fmt if X is not None and y is not None else "group")
        columns.append(json.dumps(names) if names is not None and y is not None else "")
        roles = {role: getattr(task, role) for role in ("subset", "groups", "stratum", "fold")
                 if getattr(task, role) is not None}
        group = tasks.create_group(str(i)) if formats[-1] == "group" or roles else None
        if X is not None and y is not None:
            packer.add(X, i, -1, "X")
            packer.add(y, i, -1, "y")
        elif group is not None:
            group.attrs.update({"name": task.name, "kind": task.kind})
            _write_x(group, task.X)
            write_column(group, "y", task.y)
        for role, values in roles.items():
            if isinstance(values, pd.DataFrame):  # one stratum per combination
                values = values.astype(str).agg("\x1f".join, axis=1)
            write_column(group, role, np.asarray(values))
    _write_pickles(h5, grid)
    for (task_i, res_i), split_set in sorted(grid._split_sets.items()):
        for side in ("train", "test"):
            arrays = getattr(split_set, side)
            lengths = np.fromiter((len(a) for a in arrays), dtype=np.int64, count=len(arrays))
            packer.add(np.concatenate([[0], np.cumsum(lengths)]), task_i, res_i, f"{side}_ptr")
            flat = np.concatenate(arrays) if arrays else np.zeros(0, dtype=np.int64)
            packer.add(flat.astype(np.int64), task_i, res_i, f"{side}_idx")
    packer.write(h5, names=[t.name for t in grid.tasks], kinds=[t.kind for t in grid.tasks],
                 formats=formats, columns=columns,
                 shapes=[task_shape(task.X) for task in grid.tasks], labels=labels)
    table = h5.create_group("jobs")
    table.attrs["order"] = [str(c) for c in jobs.columns]
    for column in jobs.columns:
        values = jobs[column]
        write_job_column(table, column, values.array if isinstance(
            values.dtype, pd.CategoricalDtype) else values.to_numpy())


def _write_pickles(h5: h5py.File, grid: Any) -> None:
    """Learners, resamplings, scorers, the fallback, record and learner options."""
    learners = h5.create_group("learners")
    for i, (name, estimator) in enumerate(grid.learners.items()):
        dataset = write_pickle(learners, str(i), estimator)
        dataset.attrs.update({"name": name, "repr": repr(estimator)})
    resamplings = h5.create_group("resamplings")
    for i, (name, cv) in enumerate(grid.resamplings.items()):
        dataset = write_pickle(resamplings, str(i), cv)
        dataset.attrs.update({"name": name, "repr": repr(cv)[:1000]})
    if grid.fallback is not None:
        write_pickle(h5, "fallback", grid.fallback).attrs["repr"] = repr(grid.fallback)
    if getattr(grid, "record", None) is not None:
        write_pickle(h5, "record", grid.record).attrs["repr"] = repr(grid.record)
    if getattr(grid, "learner_options", None):
        write_pickle(h5, "learner_options", grid.learner_options)
    write_pickle(h5, "scorers", grid.scorers).attrs["names"] = [
        s.name for s in grid.scorers
    ]


@dataclass
class SplitIndex:
    """CSR-style index arrays of all splits of one (task, resampling)."""

    train_idx: np.ndarray
    train_ptr: np.ndarray
    test_idx: np.ndarray
    test_ptr: np.ndarray

    def train(self, split_i: int) -> np.ndarray:
        """Train rows of split ``split_i``."""
        return self.train_idx[self.train_ptr[split_i]:self.train_ptr[split_i + 1]]

    def test(self, split_i: int) -> np.ndarray:
        """Test rows of split ``split_i``."""
        return self.test_idx[self.test_ptr[split_i]:self.test_ptr[split_i + 1]]


class GridFile:
    """Read access to ``grid.h5`` (opened per call, so no handle stays open)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._mapped: MappedGrid | bool | None = False  # False: not looked for yet

    def mapped(self) -> MappedGrid | None:
        """The file's packed task arrays (the tables read once per process): views of
        one memory map, or private copies with ``MPIBENCH_SHARE_DATA=0``; None for a
        file written before the layout table."""
        if self._mapped is False:
            self._mapped = MappedGrid.open(self.path)
        return self._mapped  # type: ignore[return-value]

    def _open(self) -> h5py.File:
        return h5py.File(self.path, "r")

    def attrs(self) -> dict:
        """Root attributes."""
        with self._open() as h5:
            return dict(h5.attrs)

    def job_table(self, columns: list[str] | None = None,
                  exclude: tuple[str, ...] = (), compact: bool = False) -> pd.DataFrame:
        """The job table (all columns but ``exclude``, or the ones named); ``compact``:
        text columns as categoricals (those of files written before they were stored
        so), a million rows in about 100 MB."""
        with self._open() as h5:
            table = h5["jobs"]
            names = columns if columns is not None else [
                str(c) for c in table.attrs["order"] if str(c) not in exclude]
            frame = pd.DataFrame({name: read_column(table[name]) for name in names})
        if compact:
            for column in frame.columns:
                values = frame[column]
                if pd.api.types.is_string_dtype(values) and values.map(type).eq(str).all():
                    frame[column] = values.astype("category")
        return frame

    def names(self, kind: str) -> list[str]:
        """Names of the ``tasks``, ``learners`` or ``resamplings``, in index order."""
        with self._open() as h5:
            if kind == "tasks" and "task_names" in h5:
                return [str(n) for n in h5["task_names"].asstr()[()]]
            group = h5[kind]
            return [str(group[str(i)].attrs["name"]) for i in range(len(group))]

    def job_columns(self) -> list[str]:
        """Names of the job table's columns, in order."""
        with self._open() as h5:
            return [str(c) for c in h5["jobs"].attrs["order"]]

    def part_keys(self) -> Any:
        """The :class:`~mpibench.store.growing.PartKeys` of the grid, or None for a
        file written before they were stored."""
        from .growing import PartKeys

        with self._open() as h5:
            return PartKeys.stored(h5["keys"]) if "keys" in h5 else None

    def scorer_names(self) -> list[str]:
        """Names of the scorers, in order."""
        with self._open() as h5:
            return [str(n) for n in h5["scorers"].attrs["names"]]

    def task_data(self, task_i: int) -> tuple[Any, np.ndarray]:
        """``(X, y)`` of one task (numeric arrays memory-mapped, see :func:`read_shared`)."""
        mapped = self.mapped()
        data = mapped.task_data(task_i) if mapped is not None else None
        if data is not None:
            return data
        with self._open() as h5:
            group = h5["tasks"][str(task_i)]
            y = group["y"]
            return _read_x(group), (read_column(y) if h5py.check_string_dtype(y.dtype)
                                    else read_shared(y))

    def task_shapes(self) -> np.ndarray:
        """``(rows, feature columns)`` of every task, one row per task (int64)."""
        with self._open() as h5:
            if "task_shapes" in h5:
                return h5["task_shapes"][()].astype(np.int64)
            tasks = h5["tasks"]  # (a grid.h5 written before the table existed)
            return np.array([_stored_shape(tasks[str(i)]) for i in range(len(tasks))],
                            dtype=np.int64).reshape(-1, 2)

    def task_columns(self, task_i: int) -> dict[str, np.ndarray]:
        """The task's ``subset``, ``groups``, ``stratum`` and ``fold`` columns that exist."""
        with self._open() as h5:
            if str(task_i) not in h5["tasks"]:
                return {}
            group = h5["tasks"][str(task_i)]
            return {role: read_column(group[role]) for role in
                    ("subset", "groups", "stratum", "fold") if role in group}

    def task_kind(self, task_i: int) -> str:
        """``"regression"`` or ``"classification"``."""
        mapped = self.mapped()
        if mapped is not None:
            return mapped.task_kind(task_i)
        with self._open() as h5:
            return str(h5["tasks"][str(task_i)].attrs["kind"])

    def pickled(self, kind: str) -> dict[str, object]:
        """``learners`` or ``resamplings`` by name, in index order."""
        with self._open() as h5:
            group = h5[kind]
            return {str(group[str(i)].attrs["name"]): read_pickle(group[str(i)])
                    for i in range(len(group))}

    def learner(self, learner_i: int) -> Any:
        """The (unfitted) estimator."""
        with self._open() as h5:
            return read_pickle(h5["learners"][str(learner_i)])

    def scorers(self) -> list:
        """The list of :class:`mpibench.scorers.Scorer`."""
        with self._open() as h5:
            return read_pickle(h5["scorers"])

    def fallback(self) -> Any:
        """The grid's fallback learner (``None``, ``"featureless"`` or an estimator)."""
        with self._open() as h5:
            return read_pickle(h5["fallback"]) if "fallback" in h5 else None

    def learner_options(self) -> dict:
        """``{learner name: {option: value}}`` of the grid (empty when none)."""
        with self._open() as h5:
            return read_pickle(h5["learner_options"]) if "learner_options" in h5 else {}

    def record(self) -> Any:
        """The grid's ``record`` function (None when it has none)."""
        with self._open() as h5:
            return read_pickle(h5["record"]) if "record" in h5 else None

    def split_index(self, task_i: int, resampling_i: int) -> SplitIndex:
        """Index arrays of every split of one (task, resampling)."""
        mapped = self.mapped()
        arrays = mapped.split_arrays(task_i, resampling_i) if mapped is not None else None
        if arrays is not None:
            return SplitIndex(*arrays)
        with self._open() as h5:
            group = h5["splits"][f"{task_i}_{resampling_i}"]
            return SplitIndex(*(read_shared(group[n]) for n in
                                ("train_idx", "train_ptr", "test_idx", "test_ptr")))
