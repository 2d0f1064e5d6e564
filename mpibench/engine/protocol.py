"""The wire protocol between rank 0 and the workers, on one screen.

::

    when   from -> to          tag            message (and what answers it)
    start  rank 0 -> all       TAG_SETUP      None (go) or (exit code, one-line message):
                                              every rank then ends with that code
    place  worker -> rank 0    TAG_PLACE      LocalFacts: node, launcher's GPUs, whether
                                              grid.h5 can be memory-mapped there
           rank 0 -> worker    TAG_PLACE      its Placement (node, GPU, grid copy); then
                                              TAG_SETUP again: None, or a refusal
    ready  rank 0 -> all       TAG_SETUP      whether there is anything to run
           worker -> rank 0    TAG_SETUP      None (every learner loaded, or nothing to
                                              run) or (exit code, one-line message);
                                              then TAG_SETUP again: None, or a refusal
    run    worker -> rank 0    TAG_REQUEST    WorkRequest.to_wire(): rank, results so far
                                              (or None), running totals, busy (asking
                                              ahead), ids handed back after a stop signal
           rank 0 -> worker    TAG_REPLY      exactly one per request: a block of
                                              Assignment rows, [] (ask again when idle),
                                              or STOP (None: send what you hold, finish)
    stop   rank 0 -> worker    TAG_INTERRUPT  None: stop the running split now (the grace
                                              is over); it comes back `interrupted` in
                                              the next request
    end    rank 0 -> workers   TAG_DONE       the run's exit code, once results.h5 is
                                              written and the lock released

Requests and replies strictly alternate per worker; a worker asks ahead
(``busy=True``) so the next block is there when it needs it. Job ids travel in message
bodies, never in tags. A block is one int64 array (one buffer to pickle); fewer than
``tuning.SMALL_BLOCK`` rows go as a list of lists and fewer than
``tuning.SMALL_RESULTS`` results as rows, not columns: sending every message in the
array or column form costs 400 us per split at chunk size 1 instead of 94
(``benchmarks/cpu_per_split.py --one-shape``). Results are
:class:`~mpibench.store.records.SplitResult` records (a failure is a record too).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from ..store.records import RankStats

if TYPE_CHECKING:
    from ..store.batch import EncodedResults

TAG_REQUEST = 1
"""Worker -> rank 0: :class:`WorkRequest`."""
TAG_REPLY = 2
"""Rank 0 -> worker: a block of assignments, ``[]``, or ``STOP``."""
TAG_SETUP = 3
"""Rank 0 -> every rank, before the run: ``None``, or ``(exit code, message)`` when it
could not start (every rank then ends with that code); worker -> rank 0 once, whether
it loaded every learner."""
TAG_INTERRUPT = 4
"""Rank 0 -> a worker, when the stop grace period ends: stop the running split now
(it is ``interrupted``, runs again on resume) and hand back the rest."""
TAG_DONE = 5
"""Rank 0 -> every worker, after ``results.h5`` is written and the lock released: the
run's exit code. Workers wait for it with their stop handlers still installed, so a
stop signal at the end of a run cannot kill a rank that has finished."""
TAG_PLACE = 6
"""Worker -> rank 0 after the start: its :class:`~mpibench.engine.placement.LocalFacts`;
rank 0 -> worker: its :class:`~mpibench.engine.placement.Placement`."""
STOP = None
"""Reply that tells a worker to finish."""


class Assignment(NamedTuple):
    """One split to run: what to load, how to seed it, and how far its limits grow
    (``escalation``: its earlier ``timeout`` and ``oom`` results, see ``--escalate``)."""

    job_id: int
    task_i: int
    learner_i: int
    resampling_i: int
    split_i: int
    random_state: int
    attempt: int = 1
    escalation: int = 0


ATTEMPT_FIELD = Assignment._fields.index("attempt")
"""Where a row of assignment fields holds the attempt (set as a split is handed out)."""


def unpack_assignments(block: np.ndarray | list) -> list[Assignment]:
    """The assignments of a block (rows of ``Assignment`` fields), as objects.

    Examples
    --------
    >>> unpack_assignments(np.array([[7, 0, 1, 0, 3, 42, 1, 0]]))[0].learner_i
    1
    """
    rows = block.tolist() if isinstance(block, np.ndarray) else block
    return list(map(Assignment._make, rows))


@dataclass(frozen=True)
class WorkRequest:
    """Worker -> rank 0: finished results and a request for more.

    ``results``: an :class:`~mpibench.store.batch.EncodedResults` (``None``: none yet).
    ``busy``: the worker is starting the last split it holds (the reply is its next
    chunk, or ``[]``: ask again when done). ``returned``: job ids it was given and
    did not start (it received a stop signal).
    """

    rank: int
    results: EncodedResults | None = None
    stats: RankStats | None = None
    busy: bool = False
    returned: list[int] = field(default_factory=list)

    def to_wire(self) -> tuple:
        """The request as plain tuples (a pickle round trip takes 1.6 us, against 8.7 for the
        objects; timeit on the 2-core VM).

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
    def from_wire(cls, message: tuple,
                  decode_results: Callable[[tuple], Any] | None) -> WorkRequest:
        """The request :meth:`to_wire` made; ``decode_results`` rebuilds its results."""
        rank, results, stats, busy, returned = message
        decoded = None if results is None or decode_results is None else decode_results(results)
        return cls(rank, decoded,
                   None if stats is None else RankStats(*stats), busy, returned)
