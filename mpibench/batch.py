"""Finished splits held column by column: what rank 0 keeps, journals and writes.

A run of a million splits cannot keep a million result objects on rank 0 (about a
kilobyte each). Results arrive in batches (one per worker request), are journaled as
one record per batch and kept as numpy columns (about 130 bytes per split).
"""

from __future__ import annotations

import json
import sys
from typing import NamedTuple

import numpy as np

from .protocol import SplitResult

RESULT_FIELDS = SplitResult._fields
"""Fields of a result, in :class:`~mpibench.protocol.SplitResult` order."""
_DTYPES = {
    "job_id": np.int64, "status": object, "error": object, "rank": np.int32,
    "host": object, "pid": np.int64, "start_time": np.float64, "end_time": np.float64,
    "fit_seconds": np.float64, "predict_seconds": np.float64, "score_seconds": np.float64,
    "max_rss_bytes": np.int64, "threads": np.int32, "attempt": np.int32, "fallback": bool,
}
_INTERNED = ("status", "host")


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
    def from_columns(cls, columns: dict[str, list]) -> ResultBatch:
        """From lists (a journal record): one list per field, ``scores`` a list of rows."""
        out = {name: _column(columns[name], name) for name in RESULT_FIELDS
               if name != "scores"}
        scores = np.array(columns["scores"], dtype=np.float64)
        out["scores"] = scores if scores.ndim == 2 else scores.reshape(len(scores), 0)
        return cls(out)

    @classmethod
    def from_rows(cls, rows: list) -> ResultBatch:
        """From result objects or journal rows (sequences in ``RESULT_FIELDS`` order)."""
        if not rows:
            return cls.from_columns({name: [] for name in RESULT_FIELDS})
        columns = map(list, zip(*rows, strict=True))
        return cls.from_columns(dict(zip(RESULT_FIELDS, columns, strict=True)))

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


_ROWS_ENCODER = json.JSONEncoder(separators=(", ", ": "))


def rows_json(rows: list) -> bytes:
    """Result objects (or rows in ``RESULT_FIELDS`` order) as a JSON list of lists."""
    return _ROWS_ENCODER.encode(rows).encode()


class EncodedResults(NamedTuple):
    """Finished splits as a worker sends them: columns for rank 0 to keep, and the
    journal's JSON text of the rows, so that rank 0 neither converts nor encodes them
    (done by each worker, in parallel, instead of by rank 0 for all).

    Examples
    --------
    >>> packet = EncodedResults.from_batch(ResultBatch.from_columns({"job_id": [4],
    ...     "status": ["ok"], "error": [""], "scores": [[0.5]], "rank": [1], "host": ["n1"],
    ...     "pid": [7], "start_time": [0.0], "end_time": [1.0], "fit_seconds": [1.0],
    ...     "predict_seconds": [0.0], "score_seconds": [0.0], "max_rss_bytes": [0],
    ...     "threads": [1], "attempt": [1], "fallback": [False]}))
    >>> packet.rows_json
    b'[[4, "ok", "", [0.5], 1, "n1", 7, 0.0, 1.0, 1.0, 0.0, 0.0, 0, 1, 1, false]]'
    """

    batch: ResultBatch
    rows_json: bytes

    @classmethod
    def from_results(cls, results: list) -> EncodedResults:
        """From result objects."""
        return cls(ResultBatch.from_rows(results), rows_json(results))

    @classmethod
    def from_batch(cls, batch: ResultBatch) -> EncodedResults:
        """From columns."""
        return cls(batch, rows_json(batch.results()))


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

    def __init__(self, n_scores: int) -> None:
        self.n_scores = n_scores
        self._batches: list[ResultBatch] = []
        self._recent: list[ResultBatch] = []
        self._length = 0

    def __len__(self) -> int:
        return self._length

    def append(self, batch: ResultBatch) -> None:
        """Add the rows of a batch (after any rows added before)."""
        if len(batch):
            self._recent.append(batch)
            self._length += len(batch)
            if len(self._recent) >= self.MERGE:
                self._merge()

    def _merge(self) -> None:
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
