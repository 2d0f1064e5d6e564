"""``Epochs``: a scikit-learn estimator trained epoch by epoch, checkpointed after each.

Wrap an estimator that learns incrementally (``partial_fit``: SGD, MLP, naive Bayes;
or ``warm_start`` with a size parameter: forests and gradient boosting grow
``n_estimators``, histogram gradient boosting ``max_iter``) and it saves itself to its
split's checkpoint (:func:`mpibench.split_checkpoint`) after every epoch. When the run
stops (SLURM's time limit, a stop signal, preemption) it returns after the epoch it is
in; the split's next attempt resumes from the last epoch saved, and ends with the
estimator an uninterrupted fit gives. Outside a run it is a plain estimator.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, MetaEstimatorMixin, clone, is_classifier
from sklearn.utils.metaestimators import available_if

from .checkpoint import split_checkpoint
from .constraints import check, integer

GROWN = ("n_estimators", "max_iter")
"""The size parameters a ``warm_start`` estimator grows by one step per epoch."""


def _inner_has(method: str) -> Any:
    """For ``available_if``: the wrapped (or fitted) estimator has ``method``."""
    def check(self: Epochs) -> bool:
        inner = getattr(self, "estimator_", self.estimator)
        return hasattr(inner, method)
    return check


class Epochs(MetaEstimatorMixin, BaseEstimator):
    """Fit ``estimator`` for ``epochs`` epochs, saving a checkpoint after each.

    Parameters
    ----------
    estimator : estimator
        One with ``partial_fit``, or with ``warm_start`` and ``n_estimators`` or
        ``max_iter`` (each epoch adds its value at construction: a forest of 50 trees
        over 4 epochs ends with 200).
    epochs : int, default=10
        Passes (``partial_fit`` over the whole training set) or growth steps.

    Attributes
    ----------
    estimator_ : estimator
        The fitted estimator (after every epoch, or after those done before the run
        stopped).
    epochs_done_ : int
        Epochs fitted.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.linear_model import SGDRegressor
    >>> X, y = np.arange(20.0).reshape(10, 2), np.arange(10.0)
    >>> Epochs(SGDRegressor(random_state=0), epochs=3).fit(X, y).epochs_done_
    3
    """

    def __init__(self, estimator: Any, epochs: int = 10) -> None:
        self.estimator = estimator
        self.epochs = epochs

    @property
    def _estimator_type(self) -> str | None:  # (sklearn < 1.6 reads this)
        return getattr(self.estimator, "_estimator_type", None)

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        inner = self.estimator.__sklearn_tags__()
        tags.estimator_type = inner.estimator_type
        tags.classifier_tags, tags.regressor_tags = inner.classifier_tags, inner.regressor_tags
        return tags

    def fit(self, X: Any, y: Any) -> Epochs:
        """Fit epoch by epoch from the last checkpoint (if the split has one)."""
        check("Epochs", {"epochs": self.epochs}, {"epochs": integer(1)})
        checkpoint = split_checkpoint()
        state = checkpoint.load() if checkpoint is not None else None
        if state is not None:
            self.estimator_, self.epochs_done_ = state
        else:
            self.estimator_, self.epochs_done_ = clone(self.estimator), 0
        classes = np.unique(y) if is_classifier(self.estimator) else None
        while self.epochs_done_ < self.epochs:
            self._epoch(X, y, classes)
            self.epochs_done_ += 1
            if checkpoint is not None:
                checkpoint.save((self.estimator_, self.epochs_done_))
                if self.epochs_done_ < self.epochs and checkpoint.should_stop():
                    break  # the split is interrupted; it resumes from this save
        if is_classifier(self.estimator):
            self.classes_ = self.estimator_.classes_
        return self

    def _epoch(self, X: Any, y: Any, classes: np.ndarray | None) -> None:
        """One pass of ``partial_fit``, or one growth step of a ``warm_start`` fit."""
        estimator = self.estimator_
        if hasattr(estimator, "partial_fit"):
            if classes is not None:
                estimator.partial_fit(X, y, classes=classes)
            else:
                estimator.partial_fit(X, y)
            return
        params = estimator.get_params(deep=False)
        grown = next((name for name in GROWN if name in params), None)
        if "warm_start" not in params or grown is None:
            raise TypeError(f"Epochs needs an estimator with partial_fit, or with "
                            f"warm_start and one of {GROWN}; {type(estimator).__name__} "
                            "has neither.")
        step = self.estimator.get_params(deep=False)[grown]
        estimator.set_params(warm_start=True, **{grown: step * (self.epochs_done_ + 1)})
        estimator.fit(X, y)

    def predict(self, X: Any) -> Any:
        """The fitted estimator's predictions."""
        return self.estimator_.predict(X)

    @available_if(_inner_has("predict_proba"))
    def predict_proba(self, X: Any) -> Any:
        """The fitted estimator's class probabilities."""
        return self.estimator_.predict_proba(X)

    @available_if(_inner_has("decision_function"))
    def decision_function(self, X: Any) -> Any:
        """The fitted estimator's decision function."""
        return self.estimator_.decision_function(X)

    def score(self, X: Any, y: Any) -> float:
        """The fitted estimator's default score."""
        return float(self.estimator_.score(X, y))
