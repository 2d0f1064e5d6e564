"""Learners whose use of memory and CPU is known (importable by executors when
``tests/`` is on PYTHONPATH), for the per-split accounting tests."""

from __future__ import annotations

import time

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin


class Allocating(RegressorMixin, BaseEstimator):
    """Touches ``megabytes`` MB in ``fit`` and lets them go; predicts zeros."""

    def __init__(self, megabytes: int = 0, random_state: int | None = None) -> None:
        self.megabytes = megabytes
        self.random_state = random_state

    def fit(self, X, y):
        block = np.ones(self.megabytes * 2**20 // 8)  # (np.ones writes every page)
        self.checksum_ = float(block[::4096].sum())
        del block
        return self

    def predict(self, X):
        return np.zeros(len(X))


class Sleeping(RegressorMixin, BaseEstimator):
    """Sleeps ``seconds`` in ``fit`` (wall time, almost no CPU)."""

    def __init__(self, seconds: float = 0.5, random_state: int | None = None) -> None:
        self.seconds = seconds
        self.random_state = random_state

    def fit(self, X, y):
        time.sleep(self.seconds)
        return self

    def predict(self, X):
        return np.zeros(len(X))


class Spinning(RegressorMixin, BaseEstimator):
    """Computes in ``fit`` until it has used ``seconds`` of CPU time (however busy the
    machine is)."""

    def __init__(self, seconds: float = 0.3, random_state: int | None = None) -> None:
        self.seconds = seconds
        self.random_state = random_state

    def fit(self, X, y):
        end, total = time.process_time() + self.seconds, 0
        while time.process_time() < end:
            total += sum(range(1000))
        self.total_ = total
        return self

    def predict(self, X):
        return np.zeros(len(X))


class AllocatingThenDying(Allocating):
    """Touches ``megabytes`` MB in ``fit``, then kills its own process (SIGKILL)."""

    def fit(self, X, y):
        import os
        import signal

        block = np.ones(self.megabytes * 2**20 // 8)
        self.checksum_ = float(block[::4096].sum())
        os.kill(os.getpid(), signal.SIGKILL)
