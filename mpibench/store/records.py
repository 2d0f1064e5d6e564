"""What is recorded for each split and each rank, and the statuses a split can end with.

The engine makes these records, the journal and ``results.h5`` keep them
(:mod:`~mpibench.store.batch`, :mod:`~mpibench.store.storage`), the analysis reads
them back as pandas columns.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from enum import Enum
from typing import NamedTuple


class Status(str, Enum):
    """How a split ended: the ``status`` column (plain strings in records and files).

    Examples
    --------
    >>> Status.OK == "ok", Status("timeout") is Status.TIMEOUT
    (True, True)
    """

    OK = "ok"
    ERROR = "error"
    """The learner or a scorer raised."""
    TIMEOUT = "timeout"
    """It ran past its ``timeout`` (seconds) and was killed."""
    CRASH = "crash"
    """Its process died (a signal, or the rank's job ended during it too often)."""
    OOM = "oom"
    """It raised ``MemoryError`` or passed its ``memory_limit``."""
    INVALID = "invalid"
    """The split itself cannot be fitted (e.g. one class in the training set)."""
    INTERRUPTED = "interrupted"
    """Stopped from outside when a run ended: never recorded, runs again on resume."""

    def __str__(self) -> str:
        return self.value


OK, INTERRUPTED = Status.OK.value, Status.INTERRUPTED.value
"""The two statuses the per-split path compares against, as plain strings (an enum
member lookup costs about 1 us per no-op split there; cpu_per_split.py)."""
RECORDED = tuple(s.value for s in Status if s is not Status.INTERRUPTED)
"""Statuses a result row can hold (``interrupted`` splits leave no row)."""


class SplitResult(NamedTuple):
    """Outcome of one split, as recorded in ``/splits`` of ``results.h5``.

    A named tuple: cheap to pickle, and a list of them is a list of journal rows.
    Times are Unix seconds (``start_time``, ``end_time``) or wall-clock seconds
    (``*_seconds``); ``max_rss_bytes`` is the split's peak resident memory in bytes.
    ``n_warnings`` counts the Python warnings fit, predict and the scorers raised, and
    ``warning`` is the first of them (``Category: message``); ``record`` is the JSON of
    what the grid's ``record`` function returned for the fitted learner.
    ``resumed_from`` is the checkpoint save the split resumed from (0: it started from
    scratch; see :mod:`mpibench.checkpoint`); its ``fit_seconds`` then include what the
    earlier attempts had spent up to that save. ``limit_seconds`` and ``limit_bytes``
    are the timeout and memory limit this attempt ran under (0: none), which
    ``--escalate`` grows from one attempt to the next. ``cpu_seconds``,
    ``max_rss_bytes``, ``gpu_max_memory_bytes`` and ``gpu_seconds`` are what the split
    used (see :mod:`mpibench.engine.usage`); ``run`` numbers the run that recorded it
    (1, 2, ... in start order; the ``/runs`` table).
    """

    job_id: int
    status: str
    error: str
    scores: tuple[float, ...]
    rank: int
    host: str
    pid: int
    start_time: float
    end_time: float
    fit_seconds: float
    predict_seconds: float
    score_seconds: float
    max_rss_bytes: int
    threads: int
    attempt: int = 1
    fallback: bool = False
    n_warnings: int = 0
    warning: str = ""
    record: str = ""
    gpu: str = ""
    resumed_from: int = 0
    limit_seconds: float = 0.0
    limit_bytes: int = 0
    cpu_seconds: float = 0.0
    gpu_max_memory_bytes: int = 0
    gpu_seconds: float = 0.0
    run: int = 0


@dataclass
class RankStats:
    """Running totals of one rank, as recorded in ``/ranks`` of ``results.h5``.

    ``cpu_seconds`` is the rank's own CPU time (user + system) from ``start_time`` on
    (start-up imports excluded) and ``max_rss_bytes`` its peak resident memory;
    isolated splits run in child processes, not in them.
    """

    rank: int
    host: str
    pid: int
    start_time: float
    end_time: float = 0.0
    n_splits: int = 0
    busy_seconds: float = 0.0
    cpu_seconds: float = 0.0
    max_rss_bytes: int = 0
    gpu: str = ""

    @property
    def idle_seconds(self) -> float:
        """Seconds alive and not running a split."""
        return max(0.0, (self.end_time - self.start_time) - self.busy_seconds)


def failed_result(job_id: int, attempt: int, status: Status | str, error: str, *,
                  n_scores: int, rank: int, host: str, pid: int, start: float,
                  threads: int, max_rss_bytes: int = 0,
                  end: float | None = None, gpu: str = "", run: int = 0) -> SplitResult:
    """The record of a split that produced no scores (NaN for each of ``n_scores``):
    every failure the engine records is built here.

    ``start`` and ``end`` are Unix seconds (``end`` None: now); ``max_rss_bytes`` the
    peak resident memory of the process that ran it, bytes. ``fit_seconds`` is the time
    from the start to the failure (which stage failed is not known here), 0 for an
    ``invalid`` split (nothing was fitted).

    Examples
    --------
    >>> failed = failed_result(3, 1, Status.TIMEOUT, "too slow", n_scores=2, rank=1,
    ...                        host="n1", pid=7, start=0.0, threads=1, end=5.0)
    >>> failed.scores, failed.fit_seconds
    ((nan, nan), 5.0)
    """
    end = time.time() if end is None else end
    status = Status(status)
    seconds = 0.0 if status is Status.INVALID else max(0.0, end - start)
    return SplitResult(job_id, status.value, error, (float("nan"),) * n_scores,
                       rank, host, pid, start, end, seconds, 0.0, 0.0, max_rss_bytes,
                       threads, attempt, gpu=gpu, run=run)
