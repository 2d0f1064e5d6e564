"""Scorers: short names, scikit-learn scorer names, or callables ``f(y_true, y_pred)``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from sklearn import metrics

from .errors import MpibenchError


def _rmse(y_true, y_pred) -> float:
    return float(np.sqrt(metrics.mean_squared_error(y_true, y_pred)))


def _f1_macro(y_true, y_pred) -> float:
    return float(metrics.f1_score(y_true, y_pred, average="macro"))


def _auc(y_true, proba, classes) -> float:
    if proba.shape[1] == 2:
        return float(metrics.roc_auc_score(y_true == classes[1], proba[:, 1]))
    return float(metrics.roc_auc_score(y_true, proba, multi_class="ovr", labels=classes))


def _logloss(y_true, proba, classes) -> float:
    return float(metrics.log_loss(y_true, proba, labels=classes))


PREDICTION_SCORERS: dict[str, Callable] = {
    "rmse": _rmse,
    "mse": metrics.mean_squared_error,
    "mae": metrics.mean_absolute_error,
    "medae": metrics.median_absolute_error,
    "r2": metrics.r2_score,
    "accuracy": metrics.accuracy_score,
    "balanced_accuracy": metrics.balanced_accuracy_score,
    "f1": _f1_macro,
    "error": lambda y_true, y_pred: 1.0 - metrics.accuracy_score(y_true, y_pred),
}
"""Short names scored on ``predict`` output (``f1`` is macro-averaged)."""

PROBA_SCORERS: dict[str, Callable] = {"auc": _auc, "logloss": _logloss}
"""Short names scored on ``predict_proba`` output."""

REGRESSION_SCORERS = ("rmse", "mse", "mae", "medae", "r2")
CLASSIFICATION_SCORERS = ("accuracy", "balanced_accuracy", "f1", "error", "auc", "logloss")


@dataclass(frozen=True)
class Scorer:
    """A named scorer.

    Attributes
    ----------
    name : str
        Column name in the results.
    kind : {"predict", "proba", "estimator"}
        What it consumes: predictions, class probabilities, or ``(estimator, X, y)``
        (scikit-learn scorer objects).
    spec : str or callable
        The short name, scikit-learn scorer name, or the user's callable.
    """

    name: str
    kind: str
    spec: object

    def function(self) -> Callable:
        """The callable to apply (resolved lazily, so pickles stay small)."""
        if self.kind == "predict" and isinstance(self.spec, str):
            return PREDICTION_SCORERS[self.spec]
        if self.kind == "proba":
            return PROBA_SCORERS[self.spec]
        if self.kind == "estimator" and isinstance(self.spec, str):
            return metrics.get_scorer(self.spec)
        return self.spec


def resolve_scorer(spec: object, name: str | None = None) -> Scorer:
    """Turn a short name, a scikit-learn scorer name or a callable into a :class:`Scorer`.

    Examples
    --------
    >>> resolve_scorer("rmse")
    Scorer(name='rmse', kind='predict', spec='rmse')
    >>> resolve_scorer("neg_mean_absolute_error").kind
    'estimator'
    """
    if isinstance(spec, str):
        if spec in PREDICTION_SCORERS:
            return Scorer(name or spec, "predict", spec)
        if spec in PROBA_SCORERS:
            return Scorer(name or spec, "proba", spec)
        if spec in metrics.get_scorer_names():
            return Scorer(name or spec, "estimator", spec)
        short = sorted(PREDICTION_SCORERS) + sorted(PROBA_SCORERS)
        raise MpibenchError(
            f"Unknown scorer {spec!r}. Use a short name ({', '.join(short)}), a "
            "scikit-learn scorer name (sklearn.metrics.get_scorer_names()) or a "
            "callable f(y_true, y_pred) -> float."
        )
    if callable(spec):
        label = name or getattr(spec, "__name__", None)
        if not label or label == "<lambda>":
            raise MpibenchError(
                "A callable scorer needs a name: pass scoring as a dict "
                "{'name': f} or use a named function."
            )
        return Scorer(label, "predict", spec)
    raise MpibenchError(
        f"A scorer must be a name or a callable f(y_true, y_pred). Got {spec!r} instead."
    )


def resolve_scoring(scoring: object) -> list[Scorer]:
    """Resolve a list, a dict ``{name: spec}`` or a single spec into scorers."""
    if isinstance(scoring, dict):
        scorers = [resolve_scorer(spec, name) for name, spec in scoring.items()]
    elif isinstance(scoring, str) or callable(scoring):
        scorers = [resolve_scorer(scoring)]
    else:
        scorers = [resolve_scorer(spec) for spec in scoring]
    names = [s.name for s in scorers]
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise MpibenchError(
            f"Scorer names must be unique; {duplicated} appear twice. Rename one."
        )
    if not scorers:
        raise MpibenchError("scoring is empty. Give at least one scorer, e.g. ['rmse'].")
    return scorers


def bind_scorers(scorers: list[Scorer]) -> list[tuple[str, Callable]]:
    """``(kind, callable)`` of each scorer, looked up once for a worker's many splits.

    Examples
    --------
    >>> bind_scorers([resolve_scorer("rmse")])[0][1]([1.0, 3.0], [1.0, 1.0])
    1.4142135623730951
    """
    return [(scorer.kind, scorer.function()) for scorer in scorers]


def score_split(
    scoring: list[tuple[str, Callable]], estimator: object, X_test: object,
    y_test: np.ndarray, y_pred: np.ndarray, proba: np.ndarray | None,
) -> tuple[float, ...]:
    """Apply every scorer (from :func:`bind_scorers`) to one split's test predictions.

    Returns
    -------
    tuple of float
        One score per scorer, in order.
    """
    scores = []
    for kind, function in scoring:
        if kind == "predict":
            value = function(y_test, y_pred)
        elif kind == "proba":
            value = function(y_test, proba, np.asarray(estimator.classes_))
        else:
            value = function(estimator, X_test, y_test)
        scores.append(float(value))
    return tuple(scores)
