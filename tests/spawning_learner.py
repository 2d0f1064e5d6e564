"""A learner whose fit starts a child process and then hangs (importable by executors
when ``tests/`` is on PYTHONPATH)."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from sklearn.base import BaseEstimator, RegressorMixin


class SpawningLearner(RegressorMixin, BaseEstimator):
    """Starts ``sleep 300``, writes its pid to ``pid_file``, then sleeps ``hang`` seconds."""

    def __init__(self, pid_file: str = "", hang: float = 300.0) -> None:
        self.pid_file = pid_file
        self.hang = hang

    def fit(self, X, y):
        child = subprocess.Popen(["sleep", "300"])
        Path(self.pid_file).write_text(str(child.pid))
        time.sleep(self.hang)
        return self

    def predict(self, X):
        return [0.0] * len(X)
