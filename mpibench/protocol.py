"""The wire protocol between rank 0 and workers, in one place.

A worker sends one :class:`WorkRequest` (the results of its last assignments, its
running totals; on the wire as plain tuples, :meth:`WorkRequest.to_wire`) and gets
exactly one reply: a block of assignments (one
:class:`Assignment` per row: an int64 array, one buffer to pickle instead of an
object per split, or for a few a list of lists), ``[]`` (ask again later), or
``STOP`` (``None``: finish, after sending any result still held). Job ids travel
in message bodies, never in MPI tags.

Around the run: rank 0's word on the project before it (``TAG_SETUP``), and the exit
code after it (``TAG_DONE``); during a stop, ``TAG_INTERRUPT`` ends a split that
outlived the grace period.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np


def peak_rss_bytes() -> int:
    """Peak resident memory of this process so far, bytes (Linux reports KiB)."""
    import resource

    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024

TAG_REQUEST = 1
"""Worker -> rank 0: :class:`WorkRequest`."""
TAG_REPLY = 2
"""Rank 0 -> worker: a block of assignments, ``[]``, or ``STOP``."""
TAG_SETUP = 3
"""Rank 0 -> every rank, before the run: ``None``, or ``(exit code, message)`` when it
could not start (every rank then ends with that code)."""
TAG_INTERRUPT = 4
"""Rank 0 -> a worker, when the stop grace period ends: stop the running split now
(it is ``interrupted``, runs again on resume) and hand back the rest."""
TAG_DONE = 5
"""Rank 0 -> every worker, after ``results.h5`` is written and the lock released: the
run's exit code. Workers wait for it with their stop handlers still installed, so a
stop signal at the end of a run cannot kill a rank that has finished."""
STOP = None
"""Reply that tells a worker to finish."""
INTERRUPTED = "interrupted"
"""Status of a split stopped from outside (the job ends): not a result, run again later."""


class Assignment(NamedTuple):
    """One split to run: what to load and how to seed it."""

    job_id: int
    task_i: int
    learner_i: int
    resampling_i: int
    split_i: int
    random_state: int
    attempt: int = 1


def unpack_assignments(block: np.ndarray | list) -> list[Assignment]:
    """The assignments of a block (rows of ``Assignment`` fields), as objects.

    Examples
    --------
    >>> unpack_assignments(np.array([[7, 0, 1, 0, 3, 42, 1]]))[0].learner_i
    1
    """
    rows = block.tolist() if isinstance(block, np.ndarray) else block
    return list(map(Assignment._make, rows))


class SplitResult(NamedTuple):
    """Outcome of one split, as recorded in ``/splits`` of ``results.h5``.

    A named tuple: cheap to pickle, and a list of them is a list of journal rows.
    Times are Unix seconds (``start_time``, ``end_time``) or wall-clock seconds
    (``*_seconds``); ``max_rss_bytes`` is the worker's peak resident memory in bytes.
    ``n_warnings`` counts the Python warnings fit, predict and the scorers raised, and
    ``warning`` is the first of them (``Category: message``); ``record`` is the JSON of
    what the grid's ``record`` function returned for the fitted learner.
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

    @property
    def idle_seconds(self) -> float:
        """Seconds alive and not running a split."""
        return max(0.0, (self.end_time - self.start_time) - self.busy_seconds)


def failed_result(job: Assignment, status: str, error: str, n_scores: int, rank: int,
                  host: str, pid: int, start: float, threads: int,
                  max_rss_bytes: int = 0) -> SplitResult:
    """The result of a split that produced no scores (NaN for each of ``n_scores``),
    ended now; ``start`` in Unix seconds."""
    return SplitResult(job.job_id, status, error, (float("nan"),) * n_scores, rank, host,
                       pid, start, time.time(), 0.0, 0.0, 0.0, max_rss_bytes, threads,
                       job.attempt)


@dataclass(frozen=True)
class WorkRequest:
    """Worker -> rank 0: finished results and a request for more.

    ``results``: an :class:`~mpibench.batch.EncodedResults` (``None``: none yet).
    ``busy``: the worker is starting the last split it holds (the reply is its next
    chunk, or ``[]``: ask again when done). ``returned``: job ids it was given and
    did not start (it received a stop signal).
    """

    rank: int
    results: object = None
    stats: RankStats | None = None
    busy: bool = False
    returned: list[int] = field(default_factory=list)

    def to_wire(self) -> tuple:
        """The request as plain tuples (pickled in a tenth of the time of the objects).

        Examples
        --------
        >>> wire = WorkRequest(2, None, RankStats(2, "n1", 7, 0.0), True).to_wire()
        >>> WorkRequest.from_wire(wire, decode_results=None).stats.host
        'n1'
        """
        stats = None if self.stats is None else tuple(vars(self.stats).values())
        results = None if self.results is None else self.results.to_wire()
        return self.rank, results, stats, self.busy, self.returned

    @classmethod
    def from_wire(cls, message: tuple, decode_results: Callable | None) -> WorkRequest:
        """The request :meth:`to_wire` made; ``decode_results`` rebuilds its results."""
        rank, results, stats, busy, returned = message
        return cls(rank, None if results is None else decode_results(results),
                   None if stats is None else RankStats(*stats), busy, returned)
