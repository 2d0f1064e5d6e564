"""MPI message passing without busy-waiting.

Blocking receives spin at 100% CPU in MPICH and Open MPI, which steals a core from
the workers on an oversubscribed node. Both sides probe instead, sleeping between
probes with an exponential back-off capped at ``MAX_SLEEP`` seconds.
"""

from __future__ import annotations

import time
from collections.abc import Callable

MIN_SLEEP = 1e-6
"""First back-off sleep, seconds."""
MAX_SLEEP = 1e-3
"""Longest back-off sleep, seconds."""


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
    """

    def __init__(self, comm: object) -> None:
        from mpi4py import MPI

        self.comm = comm
        self.rank = comm.Get_rank()
        self.size = comm.Get_size()
        self._any_source = MPI.ANY_SOURCE
        self._status = MPI.Status()

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
        backoff = Backoff()
        while not self.comm.Iprobe(source=src, tag=tag, status=self._status):
            if on_idle is not None:
                on_idle()
            backoff.sleep()
        actual = self._status.Get_source()
        return self.comm.recv(source=actual, tag=tag), actual

    def abort(self, code: int) -> None:
        """End every rank of the job now."""
        self.comm.Abort(code)
