"""MPI message passing without busy-waiting.

Blocking receives spin at 100% CPU in MPICH and Open MPI, which steals a core from
the workers on an oversubscribed node. Both sides probe instead, sleeping between
probes with an exponential back-off: workers cap it at ``MAX_SLEEP`` (they wait for
a reply rank 0 sends at once); rank 0 at a third of the average gap between
requests (``GAP_FRACTION``), within ``DISPATCHER_MAX_SLEEP`` .. ``DISPATCHER_SLOW_SLEEP``,
so a run of long splits wakes rank 0 rarely; the wait this adds to a request is
hidden because workers ask for their next chunk ahead of time. Linux adds a "timer
slack" of 50 us to every sleep; it is cut to 1 us.
"""

from __future__ import annotations

import ctypes
import os
import time
from collections.abc import Callable

MIN_SLEEP = 1e-6
"""First back-off sleep, seconds."""
MAX_SLEEP = 2e-3
"""Longest back-off sleep of a worker, seconds."""
DISPATCHER_MAX_SLEEP = 2.5e-4
"""Longest back-off sleep of rank 0 while requests come often, seconds."""
DISPATCHER_SLOW_SLEEP = 1e-2
"""Longest back-off sleep of rank 0 while requests come seconds apart, seconds."""
SPIN = 1e-3
"""Rank 0 waits for requests that arrive more often than this (seconds apart, on
average) by yielding instead of sleeping, for up to twice the average gap."""
WORKER_SPIN = 2 * DISPATCHER_MAX_SLEEP
"""A worker yields this long (seconds) before sleeping: its reply is due at once."""
GAP_FRACTION = 3.0
"""Rank 0's back-off cap is the average gap between requests, or the time waited so
far, over this; its first sleep a quarter of the cap. Workers ask ahead by two
measured round trips, so a later wake-up is hidden, and each sleep costs CPU (40 us
on a VM)."""
_PR_SET_TIMERSLACK = 29


def reduce_timer_slack(nanoseconds: int = 1000) -> bool:
    """Make this process's sleeps end within ``nanoseconds`` of the asked time (Linux).

    Returns
    -------
    bool
        True if the kernel accepted it.
    """
    try:
        return ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_TIMERSLACK, nanoseconds,
                                                       0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


class Backoff:
    """Between unsuccessful polls: yield the CPU for ``spin`` seconds, then sleep with
    an exponential back-off from ``minimum`` to ``maximum`` seconds.

    Yielding (``sched_yield``) keeps the wake-up latency at a few microseconds while a
    message is due any moment, and lets other processes on the core run. With
    ``stretch``, the cap grows to that fraction of the time waited so far (at most
    ``ceiling`` seconds): a long quiet spell is polled rarely.

    Examples
    --------
    >>> b = Backoff(); b.sleep(); b.delay
    2e-06
    """

    def __init__(self, minimum: float = MIN_SLEEP, maximum: float = MAX_SLEEP,
                 spin: float = 0.0, stretch: float = 0.0, ceiling: float = 0.0) -> None:
        self.minimum, self.maximum, self.spin = minimum, maximum, spin
        self.stretch, self.ceiling = stretch, ceiling
        self.delay = minimum
        self._start = time.perf_counter()
        self._spin_until = self._start + spin

    def sleep(self) -> None:
        """Yield or sleep once, lengthening the next sleep."""
        if self.spin and time.perf_counter() < self._spin_until:
            os.sched_yield()
            return
        time.sleep(self.delay)
        cap = self.maximum
        if self.stretch:
            waited = time.perf_counter() - self._start
            cap = max(cap, min(waited * self.stretch, self.ceiling))
        self.delay = min(self.delay * 2.0, cap)


class MPITransport:
    """Point-to-point messages over an mpi4py communicator, polled with back-off.

    Parameters
    ----------
    comm : mpi4py.MPI.Comm
        Usually ``MPI.COMM_WORLD``.
    max_sleep : float, optional
        Longest back-off sleep, seconds (default: ``DISPATCHER_MAX_SLEEP`` on rank 0,
        ``MAX_SLEEP`` elsewhere).
    """

    def __init__(self, comm: object, max_sleep: float | None = None) -> None:
        from mpi4py import MPI

        reduce_timer_slack()
        self.comm = comm
        self.rank = comm.Get_rank()
        self.size = comm.Get_size()
        self._any_source = MPI.ANY_SOURCE
        self._status = MPI.Status()
        default = DISPATCHER_MAX_SLEEP if self.rank == 0 else MAX_SLEEP
        self.max_sleep = default if max_sleep is None else max_sleep
        self._last_arrival = time.perf_counter()
        self.mean_gap = 0.0
        """Moving average of the seconds between received messages."""
        self._sending: list = []
        self._wait_all = MPI.Request.Waitall

    def send(self, message: object, dest: int, tag: int) -> None:
        """Send a picklable message without waiting for the receiver to take it.

        A large message (a chunk of assignments, a batch of results) goes out by
        rendezvous: a blocking send would hold rank 0 until a busy worker receives it,
        and every other worker would wait meanwhile. The receiver takes it without the
        sender's help (MPICH and Open MPI over shared memory: a 4 MB message arrives
        while its sender sleeps), so the sender does not spin. :meth:`flush` before MPI
        ends.
        """
        self._sending = [request for request in self._sending if not request.Test()]
        self._sending.append(self.comm.isend(message, dest=dest, tag=tag))

    def flush(self) -> None:
        """Wait until every message sent so far has been received."""
        self._wait_all(self._sending)
        self._sending = []

    def share(self, value: object, tag: int) -> object:
        """Rank 0's ``value``, on every rank: a broadcast whose receivers wait with the
        back-off (a blocking ``bcast`` spins in MPICH and Open MPI, taking the cores
        that the other processes' start-up needs while rank 0 opens the project)."""
        if self.size == 1:
            return value
        if self.rank == 0:
            for dest in range(1, self.size):
                self.send(value, dest, tag)
            return value
        message, _ = self.receive(0, tag, spin=0.0)
        return message

    def has_message(self, source: int, tag: int) -> bool:
        """True if a message from ``source`` with ``tag`` is waiting (no wait)."""
        return self.comm.Iprobe(source=source, tag=tag)

    def receive(
        self, source: int | None, tag: int, on_idle: Callable[[], None] | None = None,
        urgent_at: float = float("inf"), spin: float | None = None,
    ) -> tuple[object, int]:
        """Wait for a message with back-off; ``source=None`` means any rank.

        ``on_idle`` runs between polls (progress lines, checkpoints). From
        ``time.perf_counter()`` = ``urgent_at`` on, rank 0 polls at its fastest
        (back-off capped at ``DISPATCHER_MAX_SLEEP``): a worker is expected. ``spin``:
        seconds to yield before sleeping (default: ``WORKER_SPIN`` on workers, on rank 0
        twice the average gap while requests come faster than ``SPIN``).

        Returns
        -------
        tuple
            ``(message, source_rank)``.
        """
        src = self._any_source if source is None else source
        if spin is None and self.rank != 0:
            spin = WORKER_SPIN
        elif spin is None:
            spin = 2 * self.mean_gap if self.mean_gap < SPIN else 0.0
        if self.rank == 0:
            cap = min(max(self.max_sleep, self.mean_gap / GAP_FRACTION),
                      DISPATCHER_SLOW_SLEEP)
            backoff = Backoff(cap / 4, cap, spin, 1 / GAP_FRACTION, DISPATCHER_SLOW_SLEEP)
        else:
            backoff = Backoff(maximum=self.max_sleep, spin=spin)
        while not self.comm.Iprobe(source=src, tag=tag, status=self._status):
            if on_idle is not None:
                on_idle()
            if urgent_at <= time.perf_counter():
                backoff, urgent_at = Backoff(MIN_SLEEP, self.max_sleep), float("inf")
            backoff.sleep()
        now = time.perf_counter()
        self.mean_gap = 0.8 * self.mean_gap + 0.2 * (now - self._last_arrival)
        self._last_arrival = now
        actual = self._status.Get_source()
        return self.comm.recv(source=actual, tag=tag), actual

    def abort(self, code: int) -> None:
        """End every rank of the job now."""
        self.comm.Abort(code)
