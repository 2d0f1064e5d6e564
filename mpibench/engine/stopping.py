"""When to stop early: stop signals and the SLURM end time."""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from pathlib import Path
from typing import Any

from ..tuning import END_MARGIN, INTERRUPT_WAIT, STOP_FILE_SECONDS
from .config import env_int

STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1, signal.SIGINT)


_EARLY: dict[str, str | None] = {"received": None}
"""A stop signal caught by :func:`catch_stop_signals_early` before ``run()`` began."""


def catch_stop_signals_early() -> None:
    """From the command's first line on, a stop signal is a flag, not a death: the
    run that follows stops cleanly with exit code 3 (:class:`StopSignals` takes it)."""
    def handle(signum: int, frame: Any) -> None:
        if _EARLY["received"] is None:
            _EARLY["received"] = signal.Signals(signum).name

    for sig in STOP_SIGNALS:
        signal.signal(sig, handle)


class StopSignals:
    """Turns SIGTERM, SIGUSR1 and SIGINT into a flag; a second SIGINT interrupts at once.

    Examples
    --------
    >>> import os, signal
    >>> stop = StopSignals(); stop.install()
    >>> os.kill(os.getpid(), signal.SIGUSR1); stop.received
    'SIGUSR1'
    >>> stop.restore()
    """

    def __init__(self) -> None:
        self.received: str | None = None
        self._previous: dict = {}

    def install(self) -> None:
        """Catch the stop signals (only possible in the main thread)."""
        if threading.current_thread() is not threading.main_thread():
            return
        for sig in STOP_SIGNALS:
            self._previous[sig] = signal.signal(sig, self._handle)
        if self.received is None and _EARLY["received"] is not None:
            self.received, _EARLY["received"] = _EARLY["received"], None

    def restore(self) -> None:
        """Put the previous handlers back."""
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def _handle(self, signum: int, frame: Any) -> None:
        if self.received is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        if self.received is None:
            self.received = signal.Signals(signum).name


class Deadline:
    """The allocation's end (``SLURM_JOB_END_TIME``, Unix seconds) minus a margin."""

    def __init__(self, end_time: float | None = None, margin: float | None = None) -> None:
        self.end_time = end_time if end_time is not None else env_int("SLURM_JOB_END_TIME",
                                                                      None)
        from_env = env_int("MPIBENCH_END_MARGIN", END_MARGIN)
        self.margin: float = (margin if margin is not None
                              else from_env if from_env is not None else END_MARGIN)

    def allows(self, expected_seconds: float) -> bool:
        """Can a split of ``expected_seconds`` start now and end before the deadline?"""
        if self.end_time is None:
            return True
        return time.time() + expected_seconds <= self.end_time - self.margin

    def seconds_left(self) -> float:
        """Seconds until the deadline (inf when there is none)."""
        if self.end_time is None:
            return float("inf")
        return self.end_time - self.margin - time.time()


class GraceExpired(Exception):
    """Splits were still running after the stop grace period and the interrupt."""


class RunStop:
    """Rank 0's view of a stop: whether one was asked for, why, and when the splits
    still in flight are interrupted.

    A stop begins on a stop signal, the stop file (looked for every
    ``STOP_FILE_SECONDS``) or a worker's stop signal (the time limit instead stops the
    workers for which no split fits, one by one: see the dispatcher). The splits in
    flight then get ``grace`` seconds (less when the allocation ends sooner); after that
    they are interrupted, and if some are still out ``kill_grace + INTERRUPT_WAIT``
    seconds later, :meth:`interrupt_due` raises :class:`GraceExpired`.

    Parameters
    ----------
    signals : StopSignals
        The stop signal handlers of this rank.
    stop_file : pathlib.Path
        ``PROJECT/stop.request``: its existence asks for a stop.
    grace, kill_grace : float
        Seconds, as in :class:`~mpibench.engine.options.RunOptions`.
    deadline : Deadline
        The allocation's end.
    marker : pathlib.Path, optional
        ``PROJECT/run.stopping``: written (with the reason) when the stop begins, so the
        splits' checkpoints can tell their learners to save and return.

    Examples
    --------
    >>> stop = RunStop(StopSignals(), Path("/nonexistent/stop"), grace=0.0, kill_grace=0.0,
    ...                deadline=Deadline(end_time=None))
    >>> stop.poll(), stop.begin("asked"), stop.begin("asked again"), stop.reason
    (None, True, False, 'asked')
    >>> stop.interrupt_due(), stop.interrupt_due()
    (True, False)
    """

    def __init__(self, signals: StopSignals, stop_file: Path, *, grace: float,
                 kill_grace: float, deadline: Deadline, marker: Path | None = None) -> None:
        self.signals, self.stop_file, self.deadline = signals, stop_file, deadline
        self.marker = marker
        self.grace, self.kill_grace = grace, kill_grace
        self.reason: str | None = None
        """Why the run is stopping (None: it is not)."""
        self._started = 0.0
        self._interrupted_at: float | None = None
        self._file_checked = 0.0

    def poll(self) -> str | None:
        """A stop signal, or the stop file (looked for at most every
        ``STOP_FILE_SECONDS``): the reason, or None."""
        if self.signals.received:
            return f"received {self.signals.received}"
        now = time.monotonic()
        if now - self._file_checked >= STOP_FILE_SECONDS:
            self._file_checked = now
            if self.stop_file.exists():
                return f"found {self.stop_file.name}"
        return None

    def begin(self, reason: str) -> bool:
        """Stop for ``reason`` (the first reason stays); True if the stop is new."""
        if self.reason is not None:
            return False
        self.reason, self._started = reason, time.monotonic()
        if self.marker is not None:
            with contextlib.suppress(OSError):  # (best effort: learners then run on)
                self.marker.write_text(reason + "\n")
        return True

    def interrupt_due(self) -> bool:
        """Called while splits are in flight during a stop: True once, when the grace
        period is over and they should be interrupted; raises :class:`GraceExpired`
        when they are still out ``kill_grace + INTERRUPT_WAIT`` seconds after that."""
        now = time.monotonic()
        if self._interrupted_at is None:
            grace = min(self.grace, self.deadline.seconds_left() + 25)
            if now - self._started < grace:
                return False
            self._interrupted_at = now
            return True
        if now - self._interrupted_at >= self.kill_grace + INTERRUPT_WAIT:
            raise GraceExpired
        return False
