"""The engine's seams besides :class:`~mpibench.engine.transport.Transport`: what runs a
split (an executor) and what decides which split goes where (a scheduler).

Each has more than one implementation (an isolated executor and one in the worker
process; one scheduler, or a GPU and a CPU pool of them), and the code on the other
side of a seam uses only what is written here, so mypy checks both sides.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from ..store.records import SplitResult
from .protocol import Assignment


class SplitExecutor(Protocol):
    """Runs splits on a worker rank and turns every failure into a result.

    Implemented by :class:`~mpibench.engine.isolation.IsolatedExecutor` (a supervisor
    and its executor processes) and :class:`~mpibench.engine.inprocess.InProcessExecutor`
    (``--no-isolate``).
    """

    batches: bool
    """Whether :meth:`run_many` costs less than one :meth:`run` per split."""
    interrupt_check: Callable[[], bool] | None
    """Asked while a split runs: True stops it (status ``interrupted``). Set by the
    worker loop; an executor that cannot stop a running split never asks it."""

    def ready(self) -> None:
        """Load every learner (raises a one-line ``MpibenchError`` if one cannot be)."""

    def run(self, job: Assignment) -> SplitResult:
        """Run one split (its fallback too, if it failed)."""

    def run_many(self, jobs: list[Assignment]) -> list[SplitResult]:
        """Run short splits, in order."""

    def close(self) -> None:
        """Release what the executor holds (processes, files)."""


class SplitScheduler(Protocol):
    """Which pending split goes to which worker, and which splits each worker holds.

    Implemented by :class:`~mpibench.engine.scheduler.Scheduler` and
    :class:`~mpibench.engine.pools.PooledScheduler`. Costs are in the cost model's
    units (expected seconds once a learner is known).
    """

    @property
    def n_pending(self) -> int:
        """Splits not yet handed out."""

    @property
    def n_solo_pending(self) -> int:
        """Suspect splits (in flight when a run died) not yet handed out."""

    @property
    def n_in_flight(self) -> int:
        """Splits handed out and not yet finished."""

    def in_flight(self, rank: int) -> list[int]:
        """The job ids ``rank`` holds, oldest first."""

    def holds(self, rank: int) -> bool:
        """Does ``rank`` hold any split?"""

    def oldest_held(self, rank: int) -> tuple[int, float] | None:
        """The oldest split ``rank`` holds and when (``time.monotonic()``) it went out."""

    def unknown_pending(self) -> bool:
        """Is a split of a learner with no finished split still pending?"""

    def pending_cost(self) -> float:
        """The cost of every pending split."""

    def pending_seconds(self) -> float:
        """The expected seconds of every pending split."""

    def head_cost(self) -> float:
        """The cost of the split :meth:`peek` names (0 when none)."""

    def peek(self) -> int | None:
        """The split :meth:`next_chunk` would hand out first."""

    def next_chunk(self, rank: int) -> list[int]:
        """Hand out the next splits to ``rank`` (``[]``: none left)."""

    def next_fitting(self, rank: int, seconds: float) -> list[int]:
        """Hand out to ``rank`` the longest pending split expected to take at most
        ``seconds`` (``[]``: none)."""

    def release(self, rank: int, job_ids: list[int]) -> None:
        """``rank`` gives back splits it did not start: pending again."""

    def complete(self, rank: int, job_ids: list[int]) -> None:
        """``rank`` finished these splits."""
