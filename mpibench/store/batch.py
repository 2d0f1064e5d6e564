"""Finished splits held column by column: what rank 0 keeps, journals and writes.

A run of a million splits cannot keep a million result objects on rank 0 (about a
kilobyte each). Results arrive in batches (one per worker request), are journaled as
one record per batch and kept as numpy columns (about 130 bytes per split).
"""

from __future__ import annotations

import json
import sys
from typing import Any

import numpy as np

from ..tuning import SMALL_RESULTS
from .records import SplitResult

RESULT_FIELDS = SplitResult._fields
"""Fields of a result, in :class:`~mpibench.store.records.SplitResult` order."""
_DTYPES = {
    "job_id": np.int64, "status": object, "error": object, "rank": np.int32,
    "host": object, "pid": np.int64, "start_time": np.float64, "end_time": np.float64,
    "fit_seconds": np.float64, "predict_seconds": np.float64, "score_seconds": np.float64,
    "max_rss_bytes": np.int64, "threads": np.int32, "attempt": np.int32, "fallback": bool,
    "n_warnings": np.int32, "warning": object, "record": object, "gpu": object,
    "resumed_from": np.int32, "limit_seconds": np.float64, "limit_bytes": np.int64,
    "cpu_seconds": np.float64, "gpu_max_memory_bytes": np.int64, "gpu_seconds": np.float64,
    "run": np.int32,
}
DEFAULTS = {"attempt": 1, "fallback": False, "n_warnings": 0, "warning": "", "record": "",
            "gpu": "", "resumed_from": 0, "limit_seconds": 0.0, "limit_bytes": 0,
            "cpu_seconds": float("nan"), "gpu_max_memory_bytes": 0,
            "gpu_seconds": float("nan"), "run": 0}
"""Values of the fields that journals of older versions do not hold (NaN: not
measured then)."""
_INTERNED = ("status", "host", "gpu")


def _column(values: list, name: str) -> np.ndarray:
    if name in _INTERNED:  # a few distinct strings repeated on every row
        values = [sys.intern(str(v)) for v in values]
    return np.array(values, dtype=_DTYPES[name])


class ResultBatch:
    """Results of several splits as columns (``scores``: rows x scorers).

    Examples
    --------
    >>> batch = ResultBatch.from_columns({"job_id": [4], "status": ["ok"], "error": [""],
    ...     "scores": [[0.5]], "rank": [1], "host": ["n1"], "pid": [7], "start_time": [0.0],
    ...     "end_time": [1.0], "fit_seconds": [1.0], "predict_seconds": [0.0],
    ...     "score_seconds": [0.0], "max_rss_bytes": [0], "threads": [1], "attempt": [1],
    ...     "fallback": [False]})
    >>> len(batch), batch.results()[0].scores
    (1, (0.5,))
    """

    def __init__(self, columns: dict[str, np.ndarray]) -> None:
        self.columns = columns

    @classmethod
    def from_columns(cls, columns: dict[str, Any]) -> ResultBatch:
        """From lists (a journal record): one list per field, ``scores`` a list of rows."""
        n = len(columns["job_id"])
        out = {name: _column(columns[name] if name in columns else [DEFAULTS[name]] * n,
                             name)
               for name in RESULT_FIELDS if name != "scores"}
        scores = np.array(columns["scores"], dtype=np.float64)
        out["scores"] = scores if scores.ndim == 2 else scores.reshape(len(scores), 0)
        return cls(out)

    @classmethod
    def from_rows(cls, rows: list) -> ResultBatch:
        """From result objects or journal rows (sequences in ``RESULT_FIELDS`` order)."""
        if not rows:
            return cls.from_columns({name: [] for name in RESULT_FIELDS})
        columns = map(list, zip(*rows, strict=True))
        return cls.from_columns(dict(zip(RESULT_FIELDS, columns, strict=False)))  # older: fewer

    @classmethod
    def concatenate(cls, batches: list[ResultBatch], n_scores: int) -> ResultBatch:
        """One batch holding the rows of ``batches`` in order."""
        if not batches:
            return cls.from_columns({**{n: [] for n in RESULT_FIELDS},
                                     "scores": np.zeros((0, n_scores))})
        if len(batches) == 1:
            return batches[0]
        return cls({name: np.concatenate([b.columns[name] for b in batches])
                    for name in RESULT_FIELDS})

    def __len__(self) -> int:
        return len(self.columns["job_id"])

    @property
    def job_ids(self) -> np.ndarray:
        """Job ids, in row order."""
        return self.columns["job_id"]

    @property
    def status(self) -> np.ndarray:
        """Statuses, in row order."""
        return self.columns["status"]

    def select(self, keep: np.ndarray) -> ResultBatch:
        """The rows where the boolean mask ``keep`` is True."""
        return ResultBatch({name: column[keep] for name, column in self.columns.items()})

    def results(self) -> list[SplitResult]:
        """The rows as result objects (for tests and small batches)."""
        lists = [self.columns[name].tolist() for name in RESULT_FIELDS]
        scores = RESULT_FIELDS.index("scores")
        lists[scores] = [tuple(row) for row in lists[scores]]
        return [SplitResult(*row) for row in zip(*lists, strict=True)]


_ENCODER = json.JSONEncoder(separators=(", ", ": "))
TIME_FIELDS = ("start_time", "end_time")
"""Unix seconds; a ``"c"`` record holds them as integer nanoseconds after ``"t0"``."""
SECOND_FIELDS = ("fit_seconds", "predict_seconds", "score_seconds")
"""Durations; a ``"c"`` record holds them as integer nanoseconds."""


def json_bytes(value: Any) -> bytes:
    """``value`` as the journal's JSON text (``", "`` and ``": "`` separators), UTF-8."""
    return _ENCODER.encode(value).encode()


def rows_record(rows: list) -> bytes:
    """The journal's ``"t": "r"`` record body: one JSON list per result."""
    return b'{"t": "r", "rows": ' + json_bytes(rows) + b"}"


def _column_value(column: np.ndarray) -> Any:
    """A column as a JSON list, or its one value when every row holds it."""
    if len(column) and (column == column[0]).all():
        return column[:1].tolist()[0]
    return column.tolist()


def columns_record(batch: ResultBatch) -> bytes:
    """The journal's ``"t": "c"`` record body of a batch: one JSON value per field.

    A field whose rows all hold one value is written once; ``scores`` is a list with
    one such value per scorer. Times are integer nanoseconds (after ``"t0"``, the
    earliest start, for ``TIME_FIELDS``), which costs a fifth of writing floats and
    reads back to the same floats: a duration measured in whole nanoseconds, and a
    Unix time within 0.5 ns of the original (Unix times are 240 ns apart as floats).
    """
    columns = batch.columns
    t0 = float(columns["start_time"].min())
    values = {}
    for name in RESULT_FIELDS:
        column = columns[name]
        if name in TIME_FIELDS:
            column = np.rint((column - t0) * 1e9).astype(np.int64)
        elif name in SECOND_FIELDS:
            column = np.rint(column * 1e9).astype(np.int64)
        if name == "scores":
            values[name] = [_column_value(c) for c in column.T]
        else:
            values[name] = _column_value(column)
    return json_bytes({"t": "c", "n": len(batch), "t0": t0, "cols": values})


def batch_from_columns_record(record: dict) -> ResultBatch:
    """The results of a ``"t": "c"`` record (see :func:`columns_record`)."""
    n, t0, values = record["n"], record["t0"], record["cols"]

    def full(value: Any) -> list:
        return value if isinstance(value, list) else [value] * n

    columns = {}
    for name in RESULT_FIELDS:
        if name == "scores":
            scores = [np.array(full(v), dtype=np.float64) for v in values[name]]
            columns[name] = (np.column_stack(scores) if scores
                             else np.zeros((n, 0), dtype=np.float64))
        elif name in TIME_FIELDS:
            columns[name] = t0 + np.array(full(values[name]), dtype=np.int64) / 1e9
        elif name in SECOND_FIELDS:
            columns[name] = np.array(full(values[name]), dtype=np.int64) / 1e9
        else:
            columns[name] = _column(full(values.get(name, DEFAULTS.get(name))), name)
    return ResultBatch(columns)


class EncodedResults:
    """Finished splits as a worker sends them, with the journal record of them encoded
    by the worker, so that rank 0 does not encode them (each worker does its own, in
    parallel, instead of rank 0 doing every worker's).

    Many rows travel as columns (a :class:`ResultBatch`: cheap to pickle, and kept by
    rank 0 as they are) and are journaled as a ``"c"`` record; a few (``SMALL``) as
    result objects (they cost less than sixteen small arrays) and a ``"r"`` record.

    Examples
    --------
    >>> from mpibench.store.records import SplitResult
    >>> done = SplitResult(4, "ok", "", (0.5,), 1, "n1", 7, 0.0, 1.0, 1.0, 0.0, 0.0, 0,
    ...                    1, 1)
    >>> packet = EncodedResults([done])
    >>> len(packet), packet.record[:40]
    (1, b'{"t": "r", "rows": [[4, "ok", "", [0.5],')
    """

    SMALL = SMALL_RESULTS
    """Fewer results than this travel as objects, more as columns."""

    def __init__(self, results: list) -> None:
        self.rows: list[SplitResult] | None = results if len(results) < self.SMALL else None
        batch = None if self.rows is not None else ResultBatch.from_rows(results)
        self.batch: ResultBatch | None = batch
        self.record = rows_record(results) if batch is None else columns_record(batch)
        self._summary: tuple | None = None

    def __len__(self) -> int:
        return len(self.batch) if self.batch is not None else len(self.rows or ())

    def to_wire(self) -> tuple:
        """Record, rows as plain tuples (or None) and columns (or None), for sending."""
        rows = None if self.rows is None else [tuple(row) for row in self.rows]
        return self.record, rows, None if self.batch is None else self.batch.columns

    @classmethod
    def from_wire(cls, message: tuple) -> EncodedResults:
        """The results :meth:`to_wire` made (nothing is encoded again)."""
        packet = cls.__new__(cls)
        packet.record, rows, columns = message
        packet.rows = None if rows is None else list(map(SplitResult._make, rows))
        packet.batch = None if columns is None else ResultBatch(columns)
        packet._summary = None
        return packet

    def results(self) -> list:
        """The results as objects."""
        return self.batch.results() if self.batch is not None else self.rows or []

    def summary(self) -> tuple:
        """Job ids, statuses and seconds (end - start) of the results (worked out once):
        numpy arrays for columns, lists for a few results (cheaper to make and use)."""
        if self._summary is None:
            if self.batch is not None:
                columns = self.batch.columns
                self._summary = (columns["job_id"], columns["status"],
                                 columns["end_time"] - columns["start_time"])
            else:
                rows = self.rows or []
                self._summary = ([r.job_id for r in rows], [r.status for r in rows],
                                 [r.end_time - r.start_time for r in rows])
        return self._summary

    def job_ids(self) -> list[int]:
        """Job ids of the results, as a list."""
        ids = self.summary()[0]
        return ids if isinstance(ids, list) else ids.tolist()


class ResultColumns:
    """Batches of results appended one after another, kept as columns.

    Small batches (a worker's message may hold one split) are joined every ``MERGE``
    appends, so a million one-split messages do not leave a million small arrays.

    Parameters
    ----------
    n_scores : int
        Number of score columns.
    """

    MERGE = 512
    """Batches appended before they are joined into one."""
    BUFFER = 4096
    """Result objects held before they are turned into columns."""

    def __init__(self, n_scores: int) -> None:
        self.n_scores = n_scores
        self._batches: list[ResultBatch] = []
        self._recent: list[ResultBatch] = []
        self._rows: list = []
        self._length = 0

    def __len__(self) -> int:
        return self._length

    def append(self, batch: ResultBatch) -> None:
        """Add the rows of a batch (after any rows added before)."""
        if len(batch):
            self._take_rows()
            self._recent.append(batch)
            self._length += len(batch)
            if len(self._recent) >= self.MERGE:
                self._merge()

    def extend(self, rows: list) -> None:
        """Add result objects; they become columns ``BUFFER`` at a time."""
        self._rows.extend(rows)
        self._length += len(rows)
        if len(self._rows) >= self.BUFFER:
            self._take_rows()

    def add(self, results: EncodedResults) -> None:
        """Add what a worker sent."""
        if results.batch is not None:
            self.append(results.batch)
        else:
            self.extend(results.rows or [])

    def _take_rows(self) -> None:
        if self._rows:
            self._recent.append(ResultBatch.from_rows(self._rows))
            self._rows = []

    def _merge(self) -> None:
        self._take_rows()
        if self._recent:
            self._batches.append(ResultBatch.concatenate(self._recent, self.n_scores))
            self._recent = []

    def joined(self, start: int = 0) -> ResultBatch:
        """Every row from row ``start`` on, as one batch (joined once, then kept so)."""
        self._merge()
        if len(self._batches) > 1:
            self._batches = [ResultBatch.concatenate(self._batches, self.n_scores)]
        whole = ResultBatch.concatenate(self._batches, self.n_scores)
        if start:
            return ResultBatch({k: v[start:] for k, v in whole.columns.items()})
        return whole
