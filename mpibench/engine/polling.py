"""How a rank waits for a message without burning a core: poll, and between polls
yield or sleep with an exponential back-off.

Blocking receives spin at 100% CPU in MPICH and Open MPI, which steals a core from
the workers on an oversubscribed node. Workers wait with :func:`worker_backoff` (their
reply is due at once); rank 0 with :class:`DispatcherPolling`, whose back-off follows
the gaps between requests, so a run of long splits wakes it rarely. Linux adds a
"timer slack" of 50 us to every sleep; :func:`reduce_timer_slack` cuts it to 1 us.
The constants are in :mod:`mpibench.tuning`.
"""

from __future__ import annotations

import ctypes
import os
import time

from ..tuning import (
    DISPATCHER_MAX_SLEEP,
    DISPATCHER_SLOW_SLEEP,
    GAP_FRACTION,
    MIN_SLEEP,
    SPIN,
    WORKER_MAX_SLEEP,
    WORKER_SPIN,
)

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
    ``ceiling`` seconds): a long quiet spell is polled rarely. From
    ``time.perf_counter()`` = ``urgent_at`` on, it restarts at ``minimum`` capped at
    ``urgent_cap`` seconds: a message is expected.

    Examples
    --------
    >>> b = Backoff(); b.sleep(); b.delay
    2e-06
    """

    def __init__(self, minimum: float = MIN_SLEEP, maximum: float = WORKER_MAX_SLEEP,
                 spin: float = 0.0, stretch: float = 0.0, ceiling: float = 0.0,
                 urgent_at: float = float("inf"),
                 urgent_cap: float = DISPATCHER_MAX_SLEEP) -> None:
        self.minimum, self.maximum, self.spin = minimum, maximum, spin
        self.stretch, self.ceiling = stretch, ceiling
        self.urgent_at, self.urgent_cap = urgent_at, urgent_cap
        self.delay = minimum
        self._start = time.perf_counter()
        self._spin_until = self._start + spin

    def sleep(self) -> None:
        """Yield or sleep once, lengthening the next sleep."""
        now = time.perf_counter()
        if self.urgent_at <= now:
            self.delay, self.maximum, self.stretch = MIN_SLEEP, self.urgent_cap, 0.0
            self.urgent_at = float("inf")
        if self.spin and now < self._spin_until:
            os.sched_yield()
            return
        time.sleep(self.delay)
        cap = self.maximum
        if self.stretch:
            waited = time.perf_counter() - self._start
            cap = max(cap, min(waited * self.stretch, self.ceiling))
        self.delay = min(self.delay * 2.0, cap)


def worker_backoff(spin: float = WORKER_SPIN) -> Backoff:
    """A worker's wait for its reply: yield ``spin`` seconds, then sleep up to
    ``WORKER_MAX_SLEEP``."""
    return Backoff(maximum=WORKER_MAX_SLEEP, spin=spin)


class DispatcherPolling:
    """Rank 0's wait for the next request, shaped by the gaps between requests so far.

    While requests come faster than ``SPIN`` apart it yields for twice the average
    gap; its back-off cap is a ``GAP_FRACTION``-th of the average gap (at least
    ``DISPATCHER_MAX_SLEEP``), growing in a quiet spell to ``DISPATCHER_SLOW_SLEEP``.

    Examples
    --------
    >>> polling = DispatcherPolling()
    >>> polling.mean_gap = 1.0; polling.backoff().maximum  # requests 1 s apart
    0.01
    """

    def __init__(self) -> None:
        self.mean_gap = 0.0
        """Moving average of the seconds between requests."""
        self._last_arrival = time.perf_counter()

    def backoff(self, urgent_at: float = float("inf")) -> Backoff:
        """The back-off for one wait (``urgent_at``: see :class:`Backoff`)."""
        spin = 2 * self.mean_gap if self.mean_gap < SPIN else 0.0
        cap = min(max(DISPATCHER_MAX_SLEEP, self.mean_gap / GAP_FRACTION),
                  DISPATCHER_SLOW_SLEEP)
        return Backoff(cap / 4, cap, spin, 1 / GAP_FRACTION, DISPATCHER_SLOW_SLEEP,
                       urgent_at=urgent_at, urgent_cap=DISPATCHER_MAX_SLEEP)

    def arrived(self) -> None:
        """A request arrived now."""
        now = time.perf_counter()
        self.mean_gap = 0.8 * self.mean_gap + 0.2 * (now - self._last_arrival)
        self._last_arrival = now
