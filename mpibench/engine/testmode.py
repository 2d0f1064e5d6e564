"""Test mode: the first split of each task x learner x resampling, on small data.

``mpibench run PROJECT --test`` builds ``PROJECT/test/`` from the project's grid: every
task down-sampled per stratum (``min_rows`` in the smallest stratum, proportionally
more in the others), only the first split of each task x learner x resampling, and runs
it into ``PROJECT/test/results.h5``, so errors show in a minute, before a big
submission.
"""

from __future__ import annotations

import math
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import MpibenchError
from ..grid import Grid, Task, derive_seed
from ..project import create_project
from ..store.gridfile import GridFile
from ..store.paths import ProjectPaths

MIN_ROWS = 10
"""Rows kept in the smallest stratum of each task."""


def downsample_rows(strata: np.ndarray, min_rows: int, seed: int) -> np.ndarray:
    """Row indices: ``min_rows`` of the smallest stratum, proportionally of the others.

    Examples
    --------
    >>> rows = downsample_rows(np.array(["a"] * 20 + ["b"] * 80), 5, seed=0)
    >>> len(rows), int((rows < 20).sum())
    (25, 5)
    """
    rng = np.random.default_rng(seed)
    values, counts = np.unique(strata, return_counts=True)
    scale = min(1.0, min_rows / counts.min())
    keep = [rng.choice(np.flatnonzero(strata == value), min(n, math.ceil(n * scale)),
                       replace=False) for value, n in zip(values, counts, strict=True)]
    return np.sort(np.concatenate(keep))


def _small_task(grid_file: GridFile, task_i: int, name: str, min_rows: int,
                seed: int) -> Task:
    X, y = grid_file.task_data(task_i)
    columns = grid_file.task_columns(task_i)
    kind = grid_file.task_kind(task_i)
    strata = columns.get("stratum", columns.get("subset"))
    if strata is None:
        strata = y.astype(str) if kind == "classification" else np.zeros(len(y))
    rows = downsample_rows(np.asarray(strata).astype(str), min_rows, seed)
    X_small = X.iloc[rows].reset_index(drop=True) if isinstance(X, pd.DataFrame) else X[rows]
    return Task(name, X=X_small, y=y[rows], kind=kind,
                **{role: values[rows] for role, values in columns.items()})


def small_grid(project: str | os.PathLike, min_rows: int = MIN_ROWS) -> Grid:
    """The project's grid with every task down-sampled per stratum."""
    grid_file = GridFile(ProjectPaths(project).grid)
    seed = int(grid_file.attrs()["seed"])
    tasks = [_small_task(grid_file, i, name, min_rows, derive_seed(seed, i))
             for i, name in enumerate(grid_file.names("tasks"))]
    return Grid(tasks, grid_file.pickled("learners"), grid_file.pickled("resamplings"),
                {s.name: s.spec for s in grid_file.scorers()}, seed=seed,
                fallback=grid_file.fallback())


def first_splits(jobs: pd.DataFrame) -> pd.DataFrame:
    """The first full-size split of each task x learner x resampling (a down-sampled
    one of a SOAK grid with ``sizes`` can train on a row or two of the small data, and
    fail where the real run would not).

    Examples
    --------
    >>> jobs = pd.DataFrame({"task_i": 0, "learner_i": 0, "resampling_i": 0,
    ...                      "split_i": [0, 1, 2], "groups": 4, "n_train_groups": [1, 4, 4]})
    >>> first_splits(jobs)["split_i"].tolist()
    [1]
    """
    keys = ["task_i", "learner_i", "resampling_i"]
    order = jobs["split_i"].astype(np.int64)
    if {"groups", "n_train_groups"} <= set(jobs):
        down_sampled = (jobs["n_train_groups"] < jobs["groups"]).to_numpy()
        order = order + down_sampled * (int(order.max()) + 1)  # full size first
    chosen = jobs.assign(_order=order).sort_values("_order").groupby(keys).head(1)
    return jobs.loc[sorted(chosen.index)]


def create_test_project(project: str | os.PathLike, min_rows: int = MIN_ROWS) -> Path:
    """Create (or reuse) ``PROJECT/test``, the test-mode sub-project.

    Examples
    --------
    >>> import tempfile, mpibench as mb
    >>> project = mb.create_demo(tempfile.mkdtemp() + "/demo")
    >>> test = create_test_project(project)
    >>> int(mb.GridFile(test / "grid.h5").attrs()["n_jobs"])
    4
    """
    paths = ProjectPaths(project)
    if not paths.grid.exists():
        raise MpibenchError(f"No project at {paths.root}. Check the path.")
    target = paths.root / "test"
    grid = small_grid(project, min_rows)
    try:
        return create_project(target, grid, select_jobs=first_splits)
    except MpibenchError:
        if not (target / "grid.h5").exists():
            raise
    shutil.rmtree(target)  # made from an older grid: it is derived data, rebuild it
    return create_project(target, grid, select_jobs=first_splits)
