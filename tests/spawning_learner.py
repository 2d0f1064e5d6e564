"""A learner whose fit starts a child process and then hangs (importable by executors
when ``tests/`` is on PYTHONPATH)."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from sklearn.base import BaseEstimator, RegressorMixin


class SpawningLearner(RegressorMixin, BaseEstimator):
    """Starts ``sleep 300`` (in a session of its own with ``new_session``), appends its
    pid to ``pid_file``, then sleeps ``hang`` seconds."""

    def __init__(self, pid_file: str = "", hang: float = 300.0,
                 new_session: bool = False) -> None:
        self.pid_file = pid_file
        self.hang = hang
        self.new_session = new_session

    def fit(self, X, y):
        child = subprocess.Popen(["sleep", "300"], start_new_session=self.new_session)
        with open(self.pid_file, "a") as pids:
            pids.write(f"{child.pid}\n")
        time.sleep(self.hang)
        return self

    def predict(self, X):
        return [0.0] * len(X)


class ForkingCrasher(RegressorMixin, BaseEstimator):
    """Forks a child that sleeps (holding every inherited descriptor, the executor's
    result pipe included), writes its pid to ``pid_file``, then segfaults."""

    def __init__(self, pid_file: str = "") -> None:
        self.pid_file = pid_file

    def fit(self, X, y):
        import os
        import signal

        child = os.fork()
        if child == 0:
            time.sleep(300)
            os._exit(0)
        Path(self.pid_file).write_text(str(child))
        os.kill(os.getpid(), signal.SIGSEGV)
        return self

    def predict(self, X):
        return [0.0] * len(X)


class EnvironmentRecorder(RegressorMixin, BaseEstimator):
    """Writes the environment its fit sees (as JSON) to ``path``; predicts 0."""

    def __init__(self, path: str = "") -> None:
        self.path = path

    def fit(self, X, y):
        import json
        import os

        Path(self.path).write_text(json.dumps(dict(os.environ)))
        return self

    def predict(self, X):
        return [0.0] * len(X)


class NoisyExit(RegressorMixin, BaseEstimator):
    """Prints a few lines to stderr in fit, then ends its process (``os._exit(7)``)."""

    def __init__(self, message: str = "") -> None:
        self.message = message

    def fit(self, X, y):
        import os
        import sys

        for i in range(5):
            print(f"{self.message} line {i}", file=sys.stderr, flush=True)
        os._exit(7)

    def predict(self, X):
        return [0.0] * len(X)


class Warner(RegressorMixin, BaseEstimator):
    """Predicts the mean; ``fit`` raises ``n`` UserWarnings (the first says ``text``)."""

    def __init__(self, n: int = 2, text: str = "careful") -> None:
        self.n = n
        self.text = text

    def fit(self, X, y):
        import warnings

        for i in range(self.n):
            warnings.warn(self.text if i == 0 else f"{self.text} {i}", UserWarning,
                          stacklevel=2)
        self.mean_ = float(sum(y) / len(y))
        return self

    def predict(self, X):
        return [self.mean_] * len(X)


def tree_shape(model) -> dict:
    """A ``Grid(record=...)`` function: the fitted tree's depth and leaves."""
    return {"depth": model.get_depth(), "n_leaves": model.get_n_leaves(),
            "params": {"max_depth": model.max_depth}}


class Chatty(RegressorMixin, BaseEstimator):
    """Predicts the mean; prints a line to stdout and one to stderr in ``fit``."""

    def fit(self, X, y):
        import sys

        print(f"chatty fit on {len(X)} rows", flush=True)
        print("chatty says on stderr", file=sys.stderr, flush=True)
        self.mean_ = float(sum(y) / len(y))
        return self

    def predict(self, X):
        return [self.mean_] * len(X)


class MarkedSleeper(RegressorMixin, BaseEstimator):
    """Touches a new file in ``marker_dir`` when its fit starts (so a test knows the
    split runs, not only that it was handed out), then sleeps ``sleep_per_row``
    seconds per training row; predicts the training mean."""

    def __init__(self, marker_dir: str = "", sleep_per_row: float = 0.0) -> None:
        self.marker_dir = marker_dir
        self.sleep_per_row = sleep_per_row

    def fit(self, X, y):
        import os

        Path(self.marker_dir, f"fit-{len(X)}-{os.getpid()}-{time.time_ns()}").touch()
        time.sleep(self.sleep_per_row * len(X))
        self.mean_ = float(sum(y) / len(y))
        return self

    def predict(self, X):
        return [self.mean_] * len(X)


def wait_for_fits(marker_dir: Path, count: int, timeout: float = 60) -> None:
    """Until ``count`` :class:`MarkedSleeper` fits have started."""
    deadline = time.monotonic() + timeout
    while len(list(Path(marker_dir).glob("fit-*"))) < count:
        assert time.monotonic() < deadline, f"{count} fits never started"
        time.sleep(0.05)


class LoudLearner(RegressorMixin, BaseEstimator):
    """Appends its process id to ``marker`` whenever it is unpickled; predicts 0."""

    def __init__(self, marker: str = "") -> None:
        self.marker = marker

    def __setstate__(self, state):
        import os

        self.__dict__.update(state)
        if self.marker:
            with open(self.marker, "a") as out:
                out.write(f"{os.getpid()}\n")

    def fit(self, X, y):
        return self

    def predict(self, X):
        return [0.0] * len(X)
