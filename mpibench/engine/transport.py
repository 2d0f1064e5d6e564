"""Point-to-point messages between the ranks of a run: over MPI, or between threads.

A transport moves picklable messages and knows nothing of roles: how long to wait is
the caller's :class:`~mpibench.engine.polling.Backoff`. :class:`MPITransport` is the
real one; :class:`InProcessTransport` runs the same message loops on threads of one
process (tests, benchmarks), with the same semantics: a message is copied (pickled)
on send, taken in order per sender and tag, and ``abort`` ends every rank.
"""

from __future__ import annotations

import pickle
import threading
from collections import deque
from collections.abc import Callable
from typing import Any

from .polling import Backoff, reduce_timer_slack, worker_backoff


class TransportAborted(RuntimeError):
    """Raised on every rank of an in-process group after one of them called ``abort``."""

    def __init__(self, code: int) -> None:
        super().__init__(f"the job was aborted with exit code {code}")
        self.code = code


class Transport:
    """Messages between ``size`` ranks; this one is ``rank``.

    Subclasses provide :meth:`send`, :meth:`flush`, :meth:`abort`, :meth:`has_message`
    and :meth:`_poll` (take a waiting message, if there is one); waiting (poll,
    ``on_idle``, back-off) is shared.
    """

    rank: int
    size: int

    def send(self, message: Any, dest: int, tag: int) -> None:
        """Send ``message`` to ``dest`` without waiting for it to be received."""
        raise NotImplementedError

    def flush(self) -> None:
        """Wait until every message sent so far has been received."""

    def abort(self, code: int) -> None:
        """End every rank of the job now with exit code ``code``."""
        raise NotImplementedError

    def has_message(self, source: int, tag: int) -> bool:
        """True if a message from ``source`` with ``tag`` is waiting (no wait)."""
        raise NotImplementedError

    def _poll(self, source: int | None, tag: int) -> tuple[Any, int] | None:
        """``(message, source_rank)`` if one is waiting (taken), else None."""
        raise NotImplementedError

    def receive(self, source: int | None, tag: int,
                backoff: Backoff | Callable[[], Backoff] | None = None,
                on_idle: Callable[[], None] | None = None) -> tuple[Any, int]:
        """Wait for a message (``source=None``: from any rank), polling with
        ``backoff`` (or the one a callable makes when the first poll finds nothing;
        default: a worker's) and running ``on_idle`` between polls.

        Returns
        -------
        tuple
            ``(message, source_rank)``.
        """
        got = self._poll(source, tag)
        if got is None:
            if not isinstance(backoff, Backoff):
                backoff = (backoff or worker_backoff)()
            while (got := self._poll(source, tag)) is None:
                if on_idle is not None:
                    on_idle()
                backoff.sleep()
        return got

    def node_key(self) -> tuple[int, str | None]:
        """``(lowest rank on this rank's node, the node's name or None)``; one node here."""
        return 0, None

    def gather(self, value: Any, tag: int) -> list | None:
        """Every rank's ``value`` on rank 0, by rank (None on the other ranks); rank 0
        waits with the back-off."""
        if self.size == 1:
            return [value]
        if self.rank != 0:
            self.send(value, 0, tag)
            return None
        values = [value] + [None] * (self.size - 1)
        for _ in range(self.size - 1):
            theirs, source = self.receive(None, tag, worker_backoff(spin=0.0))
            values[source] = theirs
        return values

    def share(self, value: Any, tag: int) -> Any:
        """Rank 0's ``value``, on every rank: a broadcast whose receivers wait with the
        back-off (a blocking ``bcast`` spins in MPICH and Open MPI, taking the cores
        that the other processes' start-up needs while rank 0 opens the project)."""
        if self.size == 1:
            return value
        if self.rank == 0:
            for dest in range(1, self.size):
                self.send(value, dest, tag)
            return value
        message, _ = self.receive(0, tag, worker_backoff(spin=0.0))
        return message


class MPITransport(Transport):
    """Messages over an mpi4py communicator (usually ``MPI.COMM_WORLD``)."""

    def __init__(self, comm: Any) -> None:
        from mpi4py import MPI

        reduce_timer_slack()
        self.comm = comm
        self.rank = comm.Get_rank()
        self.size = comm.Get_size()
        self._any_source = MPI.ANY_SOURCE
        self._status = MPI.Status()
        self._sending: list = []
        self._wait_all = MPI.Request.Waitall

    def send(self, message: Any, dest: int, tag: int) -> None:
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
        self._wait_all(self._sending)
        self._sending = []

    def has_message(self, source: int, tag: int) -> bool:
        return self.comm.Iprobe(source=source, tag=tag)

    def node_key(self) -> tuple[int, str | None]:
        """The lowest world rank among the ranks MPI puts on this node (those that can
        share memory: ``Split_type(COMM_TYPE_SHARED)``) and MPI's processor name.
        Collective: every rank calls it."""
        from mpi4py import MPI

        node = self.comm.Split_type(MPI.COMM_TYPE_SHARED)
        try:
            return node.allreduce(self.rank, op=MPI.MIN), MPI.Get_processor_name()
        finally:
            node.Free()

    def _poll(self, source: int | None, tag: int) -> tuple[object, int] | None:
        src = self._any_source if source is None else source
        if not self.comm.Iprobe(source=src, tag=tag, status=self._status):
            return None
        actual = self._status.Get_source()
        return self.comm.recv(source=actual, tag=tag), actual

    def abort(self, code: int) -> None:
        self.comm.Abort(code)


class _Mailboxes:
    """The messages of an in-process group: per receiver, in arrival order."""

    def __init__(self, size: int) -> None:
        self.lock = threading.Lock()
        self.boxes: list[deque[tuple[int, int, bytes]]] = [deque() for _ in range(size)]
        self.aborted: int | None = None


class InProcessTransport(Transport):
    """One rank of a group whose ranks are threads of this process (see :meth:`group`).

    Examples
    --------
    >>> zero, one = InProcessTransport.group(2)
    >>> zero.send({"hello": 1}, 1, tag=7)
    >>> one.receive(0, 7)
    ({'hello': 1}, 0)
    """

    def __init__(self, rank: int, size: int, mailboxes: _Mailboxes) -> None:
        self.rank, self.size, self._mail = rank, size, mailboxes

    @classmethod
    def group(cls, size: int) -> list[InProcessTransport]:
        """``size`` connected transports, rank 0 first."""
        mailboxes = _Mailboxes(size)
        return [cls(rank, size, mailboxes) for rank in range(size)]

    def send(self, message: Any, dest: int, tag: int) -> None:
        payload = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
        with self._mail.lock:
            self._mail.boxes[dest].append((self.rank, tag, payload))

    def abort(self, code: int) -> None:
        with self._mail.lock:
            if self._mail.aborted is None:
                self._mail.aborted = code
        raise TransportAborted(code)

    def _find(self, source: int | None, tag: int) -> int | None:
        """Index of the first matching message in this rank's box (lock held)."""
        if self._mail.aborted is not None:
            raise TransportAborted(self._mail.aborted)
        for i, (sender, sent_tag, _) in enumerate(self._mail.boxes[self.rank]):
            if sent_tag == tag and source in (None, sender):
                return i
        return None

    def has_message(self, source: int, tag: int) -> bool:
        with self._mail.lock:
            return self._find(source, tag) is not None

    def _poll(self, source: int | None, tag: int) -> tuple[object, int] | None:
        with self._mail.lock:
            i = self._find(source, tag)
            if i is None:
                return None
            box = self._mail.boxes[self.rank]
            sender, _, payload = box[i]
            del box[i]
        return pickle.loads(payload), sender  # noqa: S301 - pickled by this process
