"""A learner whose epochs take a while (importable by executors when ``tests/`` is on
PYTHONPATH): a deterministic ``partial_fit`` regressor for checkpoint tests."""

from __future__ import annotations

import time

from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.linear_model import SGDRegressor


class SlowPartialFit(RegressorMixin, BaseEstimator):
    """``SGDRegressor.partial_fit`` after ``pause`` seconds of sleep (a long epoch)."""

    def __init__(self, pause: float = 0.2, random_state: int | None = None) -> None:
        self.pause = pause
        self.random_state = random_state

    def partial_fit(self, X, y):
        time.sleep(self.pause)
        if not hasattr(self, "model_"):
            self.model_ = SGDRegressor(random_state=self.random_state)
        self.model_.partial_fit(X, y)
        return self

    def predict(self, X):
        return self.model_.predict(X)
