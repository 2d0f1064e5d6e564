"""A worker rank's message loop: ask rank 0 for splits, run them, send the results.

Kept apart from the runner (which sets a run up and tears it down) and from the
executors (which run one split): this module only speaks the protocol.
"""

from __future__ import annotations

import gc
import math
import os
import time
from functools import partial
from typing import Any

from ..errors import inject_fault
from ..store.batch import EncodedResults
from ..store.records import INTERRUPTED, RankStats
from ..tuning import (
    ASK_LEAD,
    BATCH_SECONDS,
    BATCH_SPLITS,
    BATCH_WORK,
    MAX_WORKER_SPIN,
    MIN_LEAD,
    PREFETCH_SECONDS,
    WORKER_SPIN,
)
from .interfaces import SplitExecutor
from .placement import Placement, node_name
from .polling import worker_backoff
from .procs import peak_rss_bytes
from .protocol import (
    STOP,
    TAG_INTERRUPT,
    TAG_REPLY,
    TAG_REQUEST,
    WorkRequest,
    unpack_assignments,
)
from .stopping import StopSignals
from .transport import Transport


def should_ask_ahead(left: int, n_done: int, last_seconds: float, split_seconds: float,
                     round_trip: float) -> bool:
    """Should a worker with ``left`` splits to run (the next included) ask for more now?

    Parameters
    ----------
    left : int
        Splits it holds and has not started.
    n_done : int
        Splits it finished so far (nothing is known before the first).
    last_seconds, split_seconds : float
        Seconds of its last split, and its moving average.
    round_trip : float
        Moving average of the seconds from a request to its reply.

    Examples
    --------
    >>> should_ask_ahead(1, 5, 2.0, 2.0, 1e-4)  # a long split: ask when starting the last
    True
    >>> should_ask_ahead(1, 0, 0.0, 0.0, 0.0)  # the first split: its length is unknown
    True
    >>> should_ask_ahead(200, 5000, 1e-5, 1e-5, 5e-4), should_ask_ahead(50, 5000, 1e-5,
    ...     1e-5, 5e-4)  # no-op splits: when less than 2 round trips (or 1 ms) are left
    (False, True)
    """
    if left == 1 and (last_seconds >= PREFETCH_SECONDS or n_done == 0):
        return True
    return n_done > 0 and left * split_seconds < max(ASK_LEAD * round_trip, MIN_LEAD)


class Worker:
    """A worker rank: asks for splits, runs them, sends results with the next request.

    Requests and replies strictly alternate. A worker asks for its next chunk before
    it runs out (``busy=True``): when the splits it has left are expected to last
    less than ``ASK_LEAD`` round trips (request to reply, a moving average), or, for
    splits of ``PREFETCH_SECONDS`` or more and for its first, when it starts the last
    one. The reply is there when the chunk ends and it never waits for rank 0; rank 0
    answers ``[]`` near the end of the run, so no split waits behind a busy worker
    while another is idle. Waiting for a reply, a worker yields for up to two round
    trips before it sleeps. After a stop signal a worker starts nothing more and hands
    unstarted splits back.
    """

    def __init__(self, transport: Transport, executor: SplitExecutor | None,
                 signals: StopSignals | None = None,
                 placement: Placement | None = None) -> None:
        self.transport, self.executor, self.signals = transport, executor, signals
        place = placement or Placement(transport.rank, node_name())
        self.stats = RankStats(transport.rank, place.node, os.getpid(), time.time(),
                               gpu=place.gpu)
        self._cpu_at_start = time.process_time()
        self.results: list = []
        self._last_seconds = 0.0
        self._split_seconds = 0.0
        """Moving average of the splits' seconds."""
        self._round_trip = 0.0
        """Moving average of the seconds from a request to its reply."""
        self._asked_at = 0.0
        self._reply_seen = True
        self.interrupted = False
        """Rank 0 said to stop the running split (``TAG_INTERRUPT``): run no more."""
        if executor is not None:  # (None: this run has nothing to run)
            executor.interrupt_check = self.interrupt_arrived

    def interrupt_arrived(self) -> bool:
        """True once rank 0 has said to interrupt (the message is taken on the way)."""
        if not self.interrupted and self.transport.has_message(0, TAG_INTERRUPT):
            self.transport.receive(0, TAG_INTERRUPT)  # (waiting: taken at once)
            self.interrupted = True
        return self.interrupted

    def request(self, busy: bool = False, returned: list[int] | None = None) -> None:
        """Send the results so far (and a request for more) to rank 0."""
        stats = self.stats
        stats.end_time = time.time()
        stats.cpu_seconds = time.process_time() - self._cpu_at_start
        stats.max_rss_bytes = peak_rss_bytes()
        results = EncodedResults(self.results) if self.results else None
        request = WorkRequest(self.transport.rank, results, stats, busy, returned or [])
        self.transport.send(request.to_wire(), 0, TAG_REQUEST)
        self.results = []
        self._asked_at, self._reply_seen = time.perf_counter(), False

    def _ask_ahead(self, left: int) -> bool:
        """Ask for the next chunk now, with ``left`` splits (this one included) to run?"""
        return should_ask_ahead(left, self.stats.n_splits, self._last_seconds,
                                self._split_seconds, self._round_trip)

    def _note_reply(self) -> None:
        """The reply to the last request is here: learn how long it took."""
        self._reply_seen = True
        self._round_trip += 0.2 * (time.perf_counter() - self._asked_at - self._round_trip)

    def run_chunk(self, jobs: list) -> bool:
        """Run ``jobs``; True if a request was sent on the way. Short splits go to an
        isolated executor in batches (:meth:`_batch`)."""
        executor = self.executor
        assert executor is not None  # (splits come only when there are some to run)
        ahead = False
        i = 0
        while i < len(jobs):
            if (self.signals is not None and self.signals.received) or self.interrupted:
                self.request(returned=[j.job_id for j in jobs[i:]])
                return True
            if not ahead and self._ask_ahead(len(jobs) - i):
                self.request(busy=True)
                ahead = True
            size = self._batch(len(jobs) - i, executor)
            results = (executor.run_many(jobs[i:i + size]) if size > 1
                       else [executor.run(jobs[i])])
            i += size
            for result in results:
                self._count(result)
            if ahead and not self._reply_seen and self.transport.has_message(0, TAG_REPLY):
                self._note_reply()
        inject_fault("worker", self.transport.rank)
        return ahead

    def _batch(self, left: int, executor: SplitExecutor) -> int:
        """Splits to run as one batch: 1, or for an executor that takes batches and
        splits that took under ``BATCH_SECONDS`` on average, up to ``BATCH_SPLITS`` and
        about ``BATCH_WORK`` seconds of them."""
        if (not executor.batches or not self.stats.n_splits
                or self._split_seconds >= BATCH_SECONDS):
            return 1
        seconds = max(self._split_seconds, 1e-9)
        size = min(left, BATCH_SPLITS, int(BATCH_WORK / seconds))
        # the splits run while the next chunk is asked for form a batch of their own
        lead = math.ceil(max(ASK_LEAD * self._round_trip, MIN_LEAD) / seconds)
        return max(1, min(size, left - lead) if left > lead else size)

    def _count(self, result: Any) -> None:
        """Keep a result and learn how long splits take."""
        if result.status == INTERRUPTED:
            self.interrupt_arrived()  # (an executor stopped from outside: the same)
            self.interrupted = True
        seconds = self._last_seconds = result.end_time - result.start_time
        self._split_seconds += (0.1 if self.stats.n_splits else 1.0) * (
            seconds - self._split_seconds)
        self.results.append(result)
        self.stats.n_splits += 1
        self.stats.busy_seconds += seconds

    def loop(self) -> None:
        """Until rank 0 says STOP with no result left to send."""
        self.request()
        while True:
            spin = min(max(ASK_LEAD * self._round_trip, WORKER_SPIN), MAX_WORKER_SPIN)
            reply, _ = self.transport.receive(0, TAG_REPLY,
                                              partial(worker_backoff, spin))
            if not self._reply_seen:
                self._note_reply()
            if reply is STOP and not self.results:
                return
            if reply is STOP or not self.run_chunk(unpack_assignments(reply)):
                self.request()


def work(transport: Transport, executor: SplitExecutor | None, signals: StopSignals | None = None,
         placement: Placement | None = None) -> None:
    """Worker loop (see :class:`Worker`) on the node and GPU of ``placement``."""
    gc.freeze()  # what is loaded stays: full collections then skip it (no stall of tens of ms)
    worker = Worker(transport, executor, signals, placement)
    worker.loop()
    worker.interrupt_arrived()  # one sent as the last split ended is not left unread
