"""Splits that need a GPU go to ranks that have one; the others go anywhere.

A grid whose ``learner_options`` mark a learner ``{"gpu": True}`` gets two
:class:`~mpibench.engine.scheduler.Scheduler` pools: its GPU learners' splits, handed
only to ranks whose splits see a GPU, and every other split. A rank with a GPU takes
from the GPU pool first (nothing else can run those), then from the other; a rank
without one only from the other, and is told to finish when that is empty. Grids with
no GPU learner use one plain scheduler (this module costs them nothing).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .scheduler import Scheduler


class PooledScheduler:
    """Two schedulers behind the interface the dispatcher uses.

    Parameters
    ----------
    gpu : Scheduler
        Splits of GPU learners.
    cpu : Scheduler
        Every other split.
    gpu_ranks : set of int, optional
        Ranks whose splits see a GPU (set once every rank has reported).

    Examples
    --------
    >>> pools = PooledScheduler(Scheduler([0, 1]), Scheduler([2]), gpu_ranks={1})
    >>> pools.next_chunk(rank=2), pools.next_chunk(rank=1), pools.next_chunk(rank=2)
    ([2], [0], [])
    >>> pools.n_pending, pools.in_flight(1)
    (1, [0])
    """

    def __init__(self, gpu: Scheduler, cpu: Scheduler, gpu_ranks: set[int] | None = None) -> None:
        self.gpu, self.cpu = gpu, cpu
        self.gpu_ranks: set[int] = set(gpu_ranks or ())

    def _pools(self, rank: int | None = None) -> tuple[Scheduler, ...]:
        """The pools ``rank`` may take from, in order (every pool when None)."""
        if rank is None or rank in self.gpu_ranks:
            return (self.gpu, self.cpu)
        return (self.cpu,)

    @property
    def n_pending(self) -> int:
        """Splits not yet handed out."""
        return self.gpu.n_pending + self.cpu.n_pending

    @property
    def n_solo_pending(self) -> int:
        """Suspects not yet handed out."""
        return self.gpu.n_solo_pending + self.cpu.n_solo_pending

    @property
    def n_in_flight(self) -> int:
        """Splits handed out and not finished."""
        return self.gpu.n_in_flight + self.cpu.n_in_flight

    @property
    def n_done(self) -> int:
        """Splits finished."""
        return self.gpu.n_done + self.cpu.n_done

    def in_flight(self, rank: int) -> list[int]:
        """Job ids ``rank`` holds."""
        return [*self.gpu.in_flight(rank), *self.cpu.in_flight(rank)]

    def holds(self, rank: int) -> bool:
        """True while ``rank`` holds splits it has not finished."""
        return self.gpu.holds(rank) or self.cpu.holds(rank)

    def oldest_held(self, rank: int) -> tuple[int, float] | None:
        """The split ``rank`` was given first among those it holds, and when."""
        held = [h for h in (self.gpu.oldest_held(rank), self.cpu.oldest_held(rank)) if h]
        return min(held, key=lambda h: h[1]) if held else None

    def unknown_pending(self) -> bool:
        """True while a pending split's learner has no finished split."""
        return self.gpu.unknown_pending() or self.cpu.unknown_pending()

    def pending_seconds(self) -> float:
        """Expected seconds of every pending split."""
        return self.gpu.pending_seconds() + self.cpu.pending_seconds()

    def _fuller(self) -> Scheduler:
        """The pool with more splits pending (GPU on ties)."""
        return self.gpu if self.gpu.n_pending >= self.cpu.n_pending else self.cpu

    def peek(self) -> int | None:
        """The next split of the pool with more pending (GPU first on ties)."""
        return self._fuller().peek()

    def head_cost(self) -> float:
        """Expected cost of the split :meth:`peek` names."""
        return self._fuller().head_cost()

    def pending_cost(self) -> float:
        """Expected cost of every pending split."""
        return self.gpu.pending_cost() + self.cpu.pending_cost()

    def next_chunk(self, rank: int) -> list[int]:
        """Splits for ``rank`` from the first of its pools that has any (empty: none)."""
        for pool in self._pools(rank):
            chunk = pool.next_chunk(rank)
            if chunk:
                return chunk
        return []

    def next_fitting(self, rank: int, seconds: float) -> list[int]:
        """The longest split of ``rank``'s pools expected to take at most ``seconds``."""
        for pool in self._pools(rank):
            chunk = pool.next_fitting(rank, seconds)
            if chunk:
                return chunk
        return []

    def release(self, rank: int, job_ids: list[int]) -> None:
        """Take back splits ``rank`` did not start (each pool takes its own)."""
        for pool in self._pools():
            pool.release(rank, job_ids)

    def complete(self, rank: int, job_ids: list[int]) -> None:
        """Record finished splits (each pool ignores ids it does not hold)."""
        for pool in self._pools():
            pool.complete(rank, job_ids)


def make_scheduler(todo: np.ndarray, needs_gpu: np.ndarray, **settings: Any
                   ) -> Scheduler | PooledScheduler:
    """One scheduler for ``todo`` (job ids), or two pools when ``needs_gpu`` (a mask by
    job id) marks any; ``settings`` are :class:`Scheduler`'s (``solo``, ``priority``...)."""
    if not needs_gpu.any():
        return Scheduler(todo, **settings)
    gpu_ids = todo[needs_gpu[todo]]
    solo = settings.pop("solo", None)
    solo = np.asarray([] if solo is None else solo, dtype=np.int64)
    cpu_ids = todo[~needs_gpu[todo]]
    return PooledScheduler(
        Scheduler(gpu_ids, solo=solo[np.isin(solo, gpu_ids)], **settings),
        Scheduler(cpu_ids, solo=solo[np.isin(solo, cpu_ids)], **settings))
