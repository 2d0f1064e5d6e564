"""MPI message passing without busy-waiting.

Blocking receives spin at 100% CPU in MPICH and Open MPI, which steals a core from
the workers on an oversubscribed node. Both sides probe instead, sleeping between
probes with an exponential back-off: workers cap it at ``MAX_SLEEP`` (they wait for
a reply rank 0 sends at once), rank 0 at ``DISPATCHER_MAX_SLEEP`` (a request waits
at most that long, ~1% of a 20 ms split, for ~2% of a core when idle). Linux adds a
"timer slack" of 50 us to every sleep; it is cut to 1 us.
"""

from __future__ import annotations

import ctypes
import time
from collections.abc import Callable

MIN_SLEEP = 1e-6
"""First back-off sleep, seconds."""
MAX_SLEEP = 1e-3
"""Longest back-off sleep of a worker, seconds."""
DISPATCHER_MAX_SLEEP = 2.5e-4
"""Longest back-off sleep of rank 0, seconds."""
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
    """Exponential sleep between unsuccessful polls, reset on success.

    Examples
    --------
    >>> b = Backoff(); b.sleep(); b.delay
    2e-06
    """

    def __init__(self, minimum: float = MIN_SLEEP, maximum: float = MAX_SLEEP) -> None:
        self.minimum, self.maximum = minimum, maximum
        self.delay = minimum

    def reset(self) -> None:
        """Back to the shortest sleep (a message arrived)."""
        self.delay = self.minimum

    def sleep(self) -> None:
        """Sleep once and lengthen the next sleep."""
        time.sleep(self.delay)
        self.delay = min(self.delay * 2.0, self.maximum)


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

    def send(self, message: object, dest: int, tag: int) -> None:
        """Send a picklable message."""
        self.comm.send(message, dest=dest, tag=tag)

    def receive(
        self, source: int | None, tag: int, on_idle: Callable[[], None] | None = None
    ) -> tuple[object, int]:
        """Wait for a message with back-off; ``source=None`` means any rank.

        ``on_idle`` runs between polls (progress lines, checkpoints).

        Returns
        -------
        tuple
            ``(message, source_rank)``.
        """
        src = self._any_source if source is None else source
        backoff = Backoff(maximum=self.max_sleep)
        while not self.comm.Iprobe(source=src, tag=tag, status=self._status):
            if on_idle is not None:
                on_idle()
            backoff.sleep()
        actual = self._status.Get_source()
        return self.comm.recv(source=actual, tag=tag), actual

    def abort(self, code: int) -> None:
        """End every rank of the job now."""
        self.comm.Abort(code)
