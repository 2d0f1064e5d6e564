"""When to stop early: stop signals and the SLURM end time."""

from __future__ import annotations

import signal
import threading
import time
from typing import Any

from ..tuning import END_MARGIN
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
