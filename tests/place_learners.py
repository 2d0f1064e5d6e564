"""Learners that report where their split ran (importable by executors when ``tests/``
is on PYTHONPATH), and the ``record`` function that keeps what they saw."""

from __future__ import annotations

import os
from pathlib import Path

from sklearn.base import BaseEstimator, RegressorMixin


class WhereLearner(RegressorMixin, BaseEstimator):
    """Predicts the training mean; remembers the split's ``CUDA_VISIBLE_DEVICES`` and
    which files its process has memory-mapped."""

    def fit(self, X, y):
        self.mean_ = float(sum(y) / len(y))
        self.cuda_ = os.environ.get("CUDA_VISIBLE_DEVICES", "<unset>")
        maps = Path("/proc/self/maps").read_text()
        self.mapped_ = sorted({line.split()[-1] for line in maps.splitlines()
                               if line.split()[-1].endswith(".h5")})
        return self

    def predict(self, X):
        return [self.mean_] * len(X)


def where(model) -> dict:
    """The ``record`` of a :class:`WhereLearner` (other learners: nothing)."""
    if not hasattr(model, "cuda_"):
        return {}
    return {"cuda": model.cuda_, "mapped": ";".join(model.mapped_)}
