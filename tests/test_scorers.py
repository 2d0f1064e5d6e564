"""The short-name scorers computed with numpy equal scikit-learn's, and fail where it does."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from sklearn import metrics

from mpibench.scorers import PREDICTION_SCORERS, bind_scorers, resolve_scorer

REFERENCE = {
    "rmse": lambda t, p: np.sqrt(metrics.mean_squared_error(t, p)),
    "mse": metrics.mean_squared_error,
    "mae": metrics.mean_absolute_error,
    "medae": metrics.median_absolute_error,
    "r2": metrics.r2_score,
    "accuracy": metrics.accuracy_score,
    "error": lambda t, p: 1.0 - metrics.accuracy_score(t, p),
}


def regression_cases():
    rng = np.random.default_rng(3)
    for n in (1, 2, 3, 10, 101, 5000):
        yield rng.normal(size=n) * 1e3, rng.normal(size=n) * 1e3
    yield np.full(7, 2.5), np.full(7, 2.5)  # constant y_true, perfect: r2 is 1
    yield np.full(7, 2.5), np.arange(7.0)  # constant y_true: r2 is 0
    yield np.arange(6), np.arange(6)[::-1]  # integers
    yield np.arange(6.0).reshape(-1, 1), np.arange(6.0).reshape(-1, 1) + 1  # 2-D
    yield np.arange(4.0).tolist(), [0.5, 1.5, 1.0, 3.0]  # lists


def classification_cases():
    rng = np.random.default_rng(4)
    for n in (1, 5, 200):
        yield rng.integers(0, 3, n), rng.integers(0, 3, n)
    labels = np.array(["a", "b", "c"])
    yield labels[rng.integers(0, 3, 50)], labels[rng.integers(0, 3, 50)]
    yield rng.integers(0, 2, 30).astype(bool), rng.integers(0, 2, 30).astype(bool)
    yield np.array([0.0, 1.0, 1.0]), np.array([1.0, 1.0, 1.0])  # float labels
    yield np.array(["x", "y"], dtype=object), np.array(["x", "x"], dtype=object)


@pytest.mark.parametrize("name", ["rmse", "mse", "mae", "medae", "r2"])
def test_regression_scorers_equal_scikit_learn(name):
    ours = PREDICTION_SCORERS[name]
    for y_true, y_pred in regression_cases():
        with warnings.catch_warnings():  # r2 of one row: scikit-learn warns, gives nan
            warnings.simplefilter("ignore")
            expected = float(REFERENCE[name](y_true, y_pred))
            got = ours(y_true, y_pred)
        assert type(got) is float
        np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12, err_msg=name)


@pytest.mark.parametrize("name", ["accuracy", "error"])
def test_label_scorers_equal_scikit_learn(name):
    for y_true, y_pred in classification_cases():
        assert PREDICTION_SCORERS[name](y_true, y_pred) == pytest.approx(
            REFERENCE[name](y_true, y_pred), abs=1e-12)


@pytest.mark.parametrize("name", ["rmse", "mae", "r2"])
def test_non_finite_predictions_are_refused_as_scikit_learn_refuses(name):
    with pytest.raises(ValueError, match=r"NaN|infinity"):
        PREDICTION_SCORERS[name](np.arange(3.0), np.array([1.0, np.nan, 2.0]))


def test_mixed_label_types_are_refused_as_scikit_learn_refuses():
    with pytest.raises(ValueError, match=r"[Mm]ix"):
        PREDICTION_SCORERS["accuracy"](np.array([0, 1, 1]), np.array([0.5, 1.0, 1.2]))


def test_bound_short_names_never_go_through_scikit_learn(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("scikit-learn was called")

    for name in ("mean_squared_error", "mean_absolute_error", "r2_score", "accuracy_score"):
        monkeypatch.setattr(metrics, name, refuse)
    scoring = bind_scorers([resolve_scorer(n) for n in ("rmse", "mae", "r2", "mse")])
    y = np.arange(10.0)
    assert [f(y, y + 1) for _, f in scoring] == [1.0, 1.0, pytest.approx(1 - 10 / 82.5), 1.0]
    assert PREDICTION_SCORERS["accuracy"](np.arange(4), np.array([0, 1, 2, 0])) == 0.75

