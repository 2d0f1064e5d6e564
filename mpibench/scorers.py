"""Scorers: short names, scikit-learn scorer names, or callables ``f(y_true, y_pred)``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import MpibenchError


def _numbers(y_true: Any, y_pred: Any) -> tuple[np.ndarray, np.ndarray] | None:
    """Both as 1-D float arrays when they are finite numbers of one length, else None
    (then scikit-learn validates them, and raises where it would)."""
    t, p = np.asarray(y_true), np.asarray(y_pred)
    if (t.ndim != 1 or p.shape != t.shape or not len(t)
            or t.dtype.kind not in "fiub" or p.dtype.kind not in "fiub"):
        return None
    t, p = t.astype(np.float64, copy=False), p.astype(np.float64, copy=False)
    if not (np.isfinite(t).all() and np.isfinite(p).all()):
        return None
    return t, p


def _labels(y_true: Any, y_pred: Any) -> tuple[np.ndarray, np.ndarray] | None:
    """Both as 1-D arrays when they are integer (or bool) or string labels of one kind
    and length, else None."""
    t, p = np.asarray(y_true), np.asarray(y_pred)
    kinds = {t.dtype.kind, p.dtype.kind}
    if (t.ndim != 1 or p.shape != t.shape or not len(t)
            or not (kinds <= set("iub") or kinds <= set("U"))):
        return None
    return t, p


def mse(y_true: Any, y_pred: Any) -> float:
    """Mean squared error (numpy on plain 1-D numbers; scikit-learn otherwise).

    Examples
    --------
    >>> mse([1.0, 2.0], [1.0, 4.0])
    2.0
    """
    pair = _numbers(y_true, y_pred)
    if pair is None:
        return float(_metrics().mean_squared_error(y_true, y_pred))
    diff = pair[0] - pair[1]
    return float(np.dot(diff, diff) / len(diff))


def rmse(y_true: Any, y_pred: Any) -> float:
    """Root mean squared error, ``sqrt(mse)``."""
    return float(np.sqrt(mse(y_true, y_pred)))


def mae(y_true: Any, y_pred: Any) -> float:
    """Mean absolute error."""
    pair = _numbers(y_true, y_pred)
    if pair is None:
        return float(_metrics().mean_absolute_error(y_true, y_pred))
    return float(np.mean(np.abs(pair[0] - pair[1])))


def medae(y_true: Any, y_pred: Any) -> float:
    """Median absolute error."""
    pair = _numbers(y_true, y_pred)
    if pair is None:
        return float(_metrics().median_absolute_error(y_true, y_pred))
    return float(np.median(np.abs(pair[0] - pair[1])))


def r2(y_true: Any, y_pred: Any) -> float:
    """Coefficient of determination (scikit-learn's rules for constant ``y_true`` and a
    single row).

    Examples
    --------
    >>> r2([1.0, 2.0, 3.0], [1.0, 2.0, 2.0])
    0.5
    """
    pair = _numbers(y_true, y_pred)
    if pair is not None and len(pair[0]) > 1:
        t, p = pair
        centred, residual = t - t.mean(), t - p
        total = float(np.dot(centred, centred))
        if total != 0.0:
            return 1.0 - float(np.dot(residual, residual)) / total
    return float(_metrics().r2_score(y_true, y_pred))


def accuracy(y_true: Any, y_pred: Any) -> float:
    """Share of correct labels."""
    pair = _labels(y_true, y_pred)
    if pair is None:
        return float(_metrics().accuracy_score(y_true, y_pred))
    return float(np.count_nonzero(pair[0] == pair[1]) / len(pair[0]))


def error(y_true: Any, y_pred: Any) -> float:
    """Classification error, ``1 - accuracy``."""
    return 1.0 - accuracy(y_true, y_pred)


def _metrics() -> Any:
    """``sklearn.metrics``, imported on first use (workers scoring only short names
    computed here never import it)."""
    from sklearn import metrics

    return metrics


def _balanced_accuracy(y_true, y_pred) -> float:
    return float(_metrics().balanced_accuracy_score(y_true, y_pred))


def _f1_macro(y_true, y_pred) -> float:
    return float(_metrics().f1_score(y_true, y_pred, average="macro"))


def _auc(y_true, proba, classes) -> float:
    metrics = _metrics()
    if proba.shape[1] == 2:
        return float(metrics.roc_auc_score(y_true == classes[1], proba[:, 1]))
    return float(metrics.roc_auc_score(y_true, proba, multi_class="ovr", labels=classes))


def _logloss(y_true, proba, classes) -> float:
    return float(_metrics().log_loss(y_true, proba, labels=classes))


PREDICTION_SCORERS: dict[str, Callable] = {
    "rmse": rmse,
    "mse": mse,
    "mae": mae,
    "medae": medae,
    "r2": r2,
    "accuracy": accuracy,
    "balanced_accuracy": _balanced_accuracy,
    "f1": _f1_macro,
    "error": error,
}
"""Short names scored on ``predict`` output (``f1`` is macro-averaged). ``rmse``, ``mse``,
``mae``, ``medae``, ``r2``, ``accuracy`` and ``error`` are computed with numpy on plain
1-D numbers (or integer or string labels), equal to scikit-learn's to 1e-12 without its
per-call validation (150 us a call); anything else goes to scikit-learn."""

COLUMN_NAMES = {"error": "error_rate"}
"""A short name whose column is named otherwise: ``error`` is the failure-message column."""

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
    spec: Any

    def function(self) -> Callable:
        """The callable to apply (resolved lazily, so pickles stay small)."""
        if self.kind == "predict" and isinstance(self.spec, str):
            return PREDICTION_SCORERS[self.spec]
        if self.kind == "proba":
            return PROBA_SCORERS[self.spec]
        if self.kind == "estimator" and isinstance(self.spec, str):
            return _metrics().get_scorer(self.spec)
        return self.spec


def resolve_scorer(spec: Any, name: str | None = None) -> Scorer:
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
            return Scorer(name or COLUMN_NAMES.get(spec, spec), "predict", spec)
        if spec in PROBA_SCORERS:
            return Scorer(name or spec, "proba", spec)
        if spec in _metrics().get_scorer_names():
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


def resolve_scoring(scoring: Any) -> list[Scorer]:
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
    from .store.reading import result_columns

    reserved = [n for n in names if n in result_columns([])]
    if reserved:
        raise MpibenchError(
            f"Scorer name {reserved[0]!r} is a column of the results already. Name the "
            f"scorer otherwise: scoring={{'{reserved[0]}_score': ...}}.")
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
    scoring: list[tuple[str, Callable]], estimator: Any, X_test: Any,
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
