"""Which split goes next: a pure-Python state machine (no mpi4py here).

The dispatcher reports events ("rank r wants work", "these jobs finished") and the
scheduler answers with job ids. Ordering: ``lpt`` (longest expected first, from a
cost estimate), ``grid`` (job id order) or ``random``.
"""

from __future__ import annotations

from collections import deque

import numpy as np

from .errors import invalid_parameter

ORDERS = ("lpt", "grid", "random")


class Scheduler:
    """Hands out pending job ids, tracks what each rank holds.

    Parameters
    ----------
    job_ids : array-like of int
        Jobs still to run.
    costs : array-like of float, optional
        Expected relative cost per job (same length), used by ``order="lpt"``.
    order : {"lpt", "grid", "random"}, default="lpt"
        Dispatch order.
    chunk_size : int, default=1
        Jobs per assignment.
    seed : int, default=0
        Seed of ``order="random"``.

    Examples
    --------
    >>> s = Scheduler([0, 1, 2], costs=[1.0, 5.0, 3.0])
    >>> s.next_chunk(rank=1), s.next_chunk(rank=2)
    ([1], [2])
    >>> s.complete(1, [1]); s.n_done, s.n_pending, s.in_flight(2)
    (1, 1, [2])
    """

    def __init__(
        self, job_ids: object, costs: object = None, *, order: str = "lpt",
        chunk_size: int = 1, seed: int = 0,
    ) -> None:
        if order not in ORDERS:
            raise invalid_parameter("run", "order", f"one of {ORDERS}", order)
        if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
            raise invalid_parameter("run", "chunk_size", "an int >= 1", chunk_size)
        ids = np.asarray(job_ids, dtype=np.int64)
        if order == "lpt" and costs is not None:
            ids = ids[np.argsort(-np.asarray(costs, dtype=np.float64), kind="stable")]
        elif order == "random":
            ids = np.random.default_rng(seed).permutation(ids)
        else:
            ids = np.sort(ids)
        self._pending: deque[int] = deque(ids.tolist())
        self._held: dict[int, set[int]] = {}
        self.chunk_size = chunk_size
        self.n_total = len(ids)
        self.n_done = 0

    @property
    def n_pending(self) -> int:
        """Jobs not yet handed out."""
        return len(self._pending)

    @property
    def finished(self) -> bool:
        """True when nothing is pending and nothing is in flight."""
        return not self._pending and self.n_in_flight == 0

    def in_flight(self, rank: int) -> list[int]:
        """Jobs handed to ``rank`` and not yet completed, sorted."""
        return sorted(self._held.get(rank, ()))

    def peek(self) -> int | None:
        """The job id that would go out next, or None."""
        return self._pending[0] if self._pending else None

    @property
    def n_in_flight(self) -> int:
        """Jobs handed out and not completed, over all ranks."""
        return sum(len(held) for held in self._held.values())

    def next_chunk(self, rank: int) -> list[int]:
        """Up to ``chunk_size`` job ids for ``rank``; empty when none is pending."""
        chunk = [self._pending.popleft() for _ in range(min(self.chunk_size, len(self._pending)))]
        self._held.setdefault(rank, set()).update(chunk)
        return chunk

    def complete(self, rank: int, job_ids: list[int]) -> None:
        """Record that ``rank`` finished ``job_ids`` (unknown ids are ignored)."""
        held = self._held.get(rank, set())
        for job_id in job_ids:
            if job_id in held:
                held.discard(job_id)
                self.n_done += 1
