"""When to stop early: stop signals, the SLURM end time, and a split cost model."""

from __future__ import annotations

import signal
import threading
import time

import numpy as np

from .config import env_int
from .protocol import SplitResult

STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1, signal.SIGINT)
END_MARGIN = 30
"""Seconds kept free before SLURM_JOB_END_TIME for the final commit and exit."""


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

    def restore(self) -> None:
        """Put the previous handlers back."""
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def _handle(self, signum: int, frame: object) -> None:
        if self.received is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        if self.received is None:
            self.received = signal.Signals(signum).name


class CostModel:
    """Expected seconds of a split: its train rows x seconds per row of its learner.

    The rate per learner is learned from finished splits (all learners pooled until a
    learner has its own).
    """

    def __init__(self, learner_of_job: np.ndarray, n_train_of_job: np.ndarray) -> None:
        self.learner = np.asarray(learner_of_job)
        self.n_train = np.asarray(n_train_of_job, dtype=np.float64)
        self._seconds: dict[int, float] = {}
        self._rows: dict[int, float] = {}

    def add(self, results: list[SplitResult]) -> None:
        """Learn from finished splits."""
        for r in results:
            if r.status != "ok":
                continue
            learner = int(self.learner[r.job_id])
            self._seconds[learner] = self._seconds.get(learner, 0.0) + r.end_time - r.start_time
            self._rows[learner] = self._rows.get(learner, 0.0) + max(self.n_train[r.job_id], 1)

    def expected(self, job_id: int) -> float:
        """Expected seconds for ``job_id`` (0 when nothing is known yet)."""
        learner = int(self.learner[job_id])
        if learner in self._rows:
            rate = self._seconds[learner] / self._rows[learner]
        elif self._rows:
            rate = sum(self._seconds.values()) / sum(self._rows.values())
        else:
            return 0.0
        return rate * max(self.n_train[job_id], 1)


class Deadline:
    """The allocation's end (``SLURM_JOB_END_TIME``, Unix seconds) minus a margin."""

    def __init__(self, end_time: float | None = None, margin: float | None = None) -> None:
        self.end_time = end_time if end_time is not None else env_int("SLURM_JOB_END_TIME",
                                                                      None)
        self.margin = margin if margin is not None else env_int("MPIBENCH_END_MARGIN",
                                                                END_MARGIN)

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
