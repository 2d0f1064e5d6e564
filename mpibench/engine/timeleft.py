"""One estimate of the time a run has left, for the progress line and ``mpibench status``.

Work left is the cost model's expected seconds of the pending splits plus what the
splits in flight are expected to need beyond what they have run. It is divided by the
run's observed parallelism: split-seconds done (finished splits, and the time the
running ones have run so far) per wall-clock second since the first wave ended (no
split of an unknown learner pending; before, since the run began handing out splits),
which takes in idle workers, dispatch gaps and per-split overheads that the split
times themselves do not show. The estimate is made every two seconds (more often in a
run's first seconds); its readers take off its age. The longest remainder of a running
split is a lower bound. A split that has run ``OVERDUE_FACTOR`` times longer than
expected (and at least ``OVERDUE_SECONDS``) is *overdue*: it is named, and the
estimate is then a lower bound.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..formatting import format_seconds
from ..tuning import OVERDUE_FACTOR, OVERDUE_SECONDS

if TYPE_CHECKING:
    from .costs import CostModel
    from .interfaces import SplitScheduler


@dataclass(frozen=True)
class Running:
    """What one worker runs now, as rank 0 sees it.

    Attributes
    ----------
    rank : int
        The worker.
    job_id : int
        The split it runs (the first it was given among those it holds).
    running_seconds : float
        Seconds since that split can have started (handed out, or the worker's last
        message, whichever is later).
    expected_seconds : float
        Expected seconds of every split the worker holds.
    """

    rank: int
    job_id: int
    running_seconds: float
    expected_seconds: float

    @property
    def overdue(self) -> bool:
        """Running ``OVERDUE_FACTOR`` x longer than expected, and long enough to tell."""
        return self.running_seconds > max(OVERDUE_FACTOR * self.expected_seconds,
                                          OVERDUE_SECONDS)


@dataclass(frozen=True)
class TimeLeft:
    """The estimate: seconds left (None while nothing is known) and overdue splits."""

    seconds: float | None
    overdue: list[Running] = field(default_factory=list)
    at: float = field(default_factory=time.monotonic)
    """When it was made (``time.monotonic()``)."""

    def now(self) -> float | None:
        """Seconds left now: the estimate less the time since it was made."""
        return None if self.seconds is None else max(
            self.seconds - (time.monotonic() - self.at), 0.0)

    def text(self) -> str:
        """``~4.2min`` (``>=`` when splits are overdue), or ``?``."""
        seconds = self.now()
        if seconds is None:
            return "?"
        return f"{'>=' if self.overdue else '~'}{format_seconds(seconds)}"


def estimate(pending_seconds: float, running: list[Running], work_seconds: float,
             wall_seconds: float, n_workers: int) -> TimeLeft:
    """Seconds a run has left.

    Parameters
    ----------
    pending_seconds : float
        Expected seconds of the splits not yet handed out.
    running : list of Running
        One entry per worker holding splits.
    work_seconds : float
        Seconds of the splits finished in the window the parallelism is measured over
        (less what the running ones had run when it began).
    wall_seconds : float
        Seconds of that window: since the first wave ended, or since the run handed
        out its first split.
    n_workers : int
        Ranks that run splits.

    Examples
    --------
    >>> left = estimate(100.0, [Running(1, 7, 5.0, 10.0)], work_seconds=15.0,
    ...                 wall_seconds=10.0, n_workers=2)
    >>> round(left.seconds, 1), left.overdue  # (100 + 5) / ((15 + 5) / 10)
    (52.5, [])
    """
    workers = max(n_workers, 1)
    in_flight = [max(r.expected_seconds - r.running_seconds, 0.0) for r in running]
    done = max(work_seconds + sum(r.running_seconds for r in running), 0.0)
    parallel = done / wall_seconds if wall_seconds > 0 and done > 0 else float(workers)
    parallel = min(max(parallel, 1e-3 * workers), float(workers))
    seconds = max((pending_seconds + sum(in_flight)) / parallel, max(in_flight, default=0.0))
    overdue = sorted((r for r in running if r.overdue),
                     key=lambda r: -r.running_seconds / max(r.expected_seconds, 1e-9))
    return TimeLeft(seconds, overdue)


def running_splits(scheduler: SplitScheduler, costs: CostModel, heard: dict[int, float],
                   n_ranks: int, now: float) -> list[Running]:
    """What each worker runs, from the scheduler's hand-outs: its oldest split held,
    running since it was handed out or since the worker's last message (the later;
    ``now`` and ``heard`` in ``time.monotonic()`` seconds), and the expected seconds of
    all it holds."""
    running = []
    rates = costs.pair_rates()
    for rank in range(n_ranks):
        oldest = scheduler.oldest_held(rank)
        if oldest is None:
            continue
        job, handed_out = oldest
        since = max(handed_out, heard.get(rank, handed_out))
        expected = float(costs.expected_many(scheduler.in_flight(rank), rates).sum())
        running.append(Running(rank, job, now - since, expected))
    return running


class RunClock:
    """What rank 0 tracks for :func:`estimate`: when splits were first handed out, the
    split-seconds finished, when each worker was last heard, when the first wave ended.

    Examples
    --------
    >>> clock = RunClock()
    >>> clock.handed_out(); clock.finished(2.5); clock.work_seconds
    2.5
    """

    def __init__(self) -> None:
        self.heard: dict[int, float] = {}
        """``time.monotonic()`` of each worker's latest request."""
        self.work_seconds = 0.0
        """Seconds of the splits this run finished."""
        self.first_handout: float | None = None
        self.steady: tuple[float, float] | None = None
        """When the first wave ended (no pending split of an unknown learner), and the
        split-seconds done by then."""

    def heard_from(self, rank: int) -> None:
        """``rank`` sent a request now."""
        self.heard[rank] = time.monotonic()

    def handed_out(self) -> None:
        """Splits went out (the first time starts the clock)."""
        if self.first_handout is None:
            self.first_handout = time.monotonic()

    def finished(self, seconds: float) -> None:
        """Splits of ``seconds`` in all finished."""
        self.work_seconds += seconds

    def time_left(self, scheduler: SplitScheduler, costs: CostModel, n_ranks: int,
                  min_window: float) -> TimeLeft:
        """The time the run has left (see the module's text); ``min_window``: seconds
        of steady state below which the whole run is the window."""
        if not costs.known:
            return TimeLeft(None)
        now = time.monotonic()
        running = running_splits(scheduler, costs, self.heard, n_ranks, now)
        if self.steady is None and not scheduler.unknown_pending():
            # the first wave is over (no pending split of an unknown learner): its idle
            # workers, waiting on unknown splits handed out one at a time, say nothing of
            # the rest of the run (a learner whose splits all failed stays unknown)
            self.steady = (now, self.work_seconds + sum(r.running_seconds for r in running))
        since, before = self.steady or (self.first_handout or now, 0.0)
        if now - since < min_window:  # (too short to tell)
            since, before = self.first_handout or now, 0.0
        return estimate(scheduler.pending_seconds(), running, self.work_seconds - before,
                        now - since, max(n_ranks - 1, 1))
