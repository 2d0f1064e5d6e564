"""The built-in SOAK example (README, "SOAK"): Alice and Bob, easy and impossible."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.dummy import DummyRegressor
from sklearn.tree import DecisionTreeRegressor

from .grid import Grid, Task
from .project import create_project
from .splitters import SameOtherSizesCV


def demo_data(n_rows: int = 80, seed: int = 1) -> pd.DataFrame:
    """The demo table: ``x``, ``person`` (Alice, then Bob) and targets ``easy``/``impossible``.

    Examples
    --------
    >>> demo_data().groupby("person").size().to_dict()
    {'Alice': 40, 'Bob': 40}
    """
    rng = np.random.default_rng(seed)
    x = rng.uniform(-2, 2, n_rows)
    person = np.where(np.arange(n_rows) < n_rows // 2, "Alice", "Bob")
    noise = rng.normal(0, 0.5, n_rows)
    sign = np.where(person == "Alice", -1.0, 1.0)
    return pd.DataFrame({
        "x": x, "person": person, "easy": x**2 + noise, "impossible": sign * x**2 + noise,
    })


def demo_grid(n_rows: int = 80, seed: int = 1, sizes: int = -1) -> Grid:
    """Two tasks x two learners x ``SameOtherSizesCV(folds=3)``: 72 splits by default."""
    data = demo_data(n_rows, seed)
    tasks = [
        Task(name, X=data[["x"]], y=data[name], subset=data["person"], stratum=data["person"])
        for name in ("easy", "impossible")
    ]
    learners = {"featureless": DummyRegressor(), "rpart": DecisionTreeRegressor()}
    return Grid(tasks, learners, resamplings=[SameOtherSizesCV(folds=3, sizes=sizes)],
                scoring=["rmse", "mae"], seed=seed)


def create_demo(path: str | os.PathLike) -> Path:
    """Create the demo project at ``path``, ready for ``mpibench run``.

    Examples
    --------
    >>> import tempfile, mpibench
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     print(mpibench.GridFile(create_demo(tmp + "/demo") / "grid.h5").attrs()["n_jobs"])
    72
    """
    return create_project(path, demo_grid())
