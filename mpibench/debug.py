"""DebugLearner: a baseline learner that sleeps or fails on purpose, seeded per split."""

from __future__ import annotations

import ctypes
import os
import time
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator

FAILURES = ("error", "segfault", "hang", "memory", "exit")


class DebugLearner(BaseEstimator):
    """Predicts the training mean (regression) or majority class; can misbehave.

    Like mlr3's debug learner: for tests, benchmarks and dry runs. Each failure is
    drawn once per split from ``random_state`` (which mpibench derives from the grid
    seed and the job id), so a run is reproducible whatever the number of ranks.

    Parameters
    ----------
    sleep_fit, sleep_predict : float, default=0.0
        Seconds to sleep in ``fit`` / ``predict``.
    sleep_per_row : float, default=0.0
        Further seconds to sleep in ``fit`` per train row (a fit time that grows with
        the data, as a real learner's does).
    p_error, p_segfault, p_hang, p_memory, p_exit : float, default=0.0
        Probability of raising ``RuntimeError``, a segmentation fault, hanging forever,
        allocating memory without bound, and ``os._exit(0)``.
    fail_in : {"fit", "predict"}, default="fit"
        Where a drawn failure happens.
    random_state : int, optional
        Seed of the failure draw.

    Examples
    --------
    >>> import numpy as np
    >>> DebugLearner().fit(np.zeros((3, 1)), np.array([1.0, 2.0, 3.0])).predict(np.zeros((2, 1)))
    array([2., 2.])
    """

    def __init__(
        self, sleep_fit: float = 0.0, sleep_predict: float = 0.0, p_error: float = 0.0,
        p_segfault: float = 0.0, p_hang: float = 0.0, p_memory: float = 0.0,
        p_exit: float = 0.0, fail_in: str = "fit", random_state: int | None = None,
        sleep_per_row: float = 0.0,
    ) -> None:
        self.sleep_fit = sleep_fit
        self.sleep_per_row = sleep_per_row
        self.sleep_predict = sleep_predict
        self.p_error = p_error
        self.p_segfault = p_segfault
        self.p_hang = p_hang
        self.p_memory = p_memory
        self.p_exit = p_exit
        self.fail_in = fail_in
        self.random_state = random_state

    def _drawn_failure(self) -> str | None:
        draw = np.random.default_rng(self.random_state).random()
        edge = 0.0
        for failure in FAILURES:
            edge += getattr(self, f"p_{failure}")
            if draw < edge:
                return failure
        return None

    def _maybe_fail(self, stage: str) -> None:
        if self.fail_in != stage or not any(getattr(self, f"p_{f}") for f in FAILURES):
            return  # no draw: default_rng costs 8 us (timeit), as much as a no-op fit
        failure = self._drawn_failure()
        if failure == "error":
            raise RuntimeError(f"DebugLearner: planned error in {stage}")
        if failure == "segfault":
            ctypes.string_at(0)
        if failure == "hang":
            while True:
                time.sleep(1.0)
        if failure == "memory":
            blocks = []
            while True:
                blocks.append(np.ones(2**27, dtype=np.uint8))
        if failure == "exit":
            os._exit(0)

    def fit(self, X: Any, y: Any) -> DebugLearner:
        """Remember the mean or majority class of ``y``."""
        if self.sleep_fit or self.sleep_per_row:
            time.sleep(self.sleep_fit + self.sleep_per_row * len(y))
        self._maybe_fail("fit")
        y = np.asarray(y)
        if y.dtype.kind == "f":
            self.constant_ = float(np.mean(y))
        else:
            self.classes_, counts = np.unique(y, return_counts=True)
            self.constant_ = self.classes_[np.argmax(counts)]
            self.class_prior_ = counts / counts.sum()
        return self

    def predict(self, X: Any) -> np.ndarray:
        """The constant, once per row."""
        if self.sleep_predict:
            time.sleep(self.sleep_predict)
        self._maybe_fail("predict")
        return np.full(len(X), self.constant_)

    def predict_proba(self, X: Any) -> np.ndarray:
        """Training class frequencies, once per row (classification only)."""
        return np.tile(self.class_prior_, (len(X), 1))


class NoOpLearner(BaseEstimator):
    """Does nothing: ``fit`` learns nothing, ``predict`` returns zeros.

    With :func:`zero_score` it makes the cheapest possible split, so that a run measures
    mpibench's own cost per split (dispatch, transport, bookkeeping, journal).

    Examples
    --------
    >>> import numpy as np
    >>> NoOpLearner().fit(np.zeros((3, 1)), np.zeros(3)).predict(np.zeros((2, 1)))
    array([0., 0.])
    """

    def fit(self, X: Any, y: Any) -> NoOpLearner:
        """Return ``self`` unchanged."""
        return self

    def predict(self, X: Any) -> np.ndarray:
        """Zeros, once per row."""
        return np.zeros(len(X))


def zero_score(y_true: Any, y_pred: Any) -> float:
    """A scorer that costs nothing and always says 0.0 (for :class:`NoOpLearner`).

    Examples
    --------
    >>> zero_score([1.0], [2.0])
    0.0
    """
    return 0.0
