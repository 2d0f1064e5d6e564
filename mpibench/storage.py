"""``results.h5``: written atomically by rank 0, read into pandas by anyone.

Layout (plain datasets and attributes, no pickles)::

    /splits/<column>   one row per finished split (see RESULT_COLUMNS)
    /ranks/<column>    one row per rank of the latest run
    attrs              fingerprint, complete, n_total, n_done, mpibench_version,
                       mpi_library, n_ranks, schema_version
"""

from __future__ import annotations

import os
from pathlib import Path

import h5py
import numpy as np
import pandas as pd

from .errors import MpibenchError
from .gridfile import SCHEMA_VERSION, read_column, write_column
from .paths import ProjectPaths, replace_atomically
from .protocol import RankStats, SplitResult

JOB_COLUMNS = (
    "job_id", "task", "learner", "resampling", "iteration", "test_fold", "test_subset",
    "train_subsets", "groups", "n_train_groups", "n_train", "n_test", "seed", "random_state",
)
"""Columns copied from the job table into every result row."""
STATUS_COLUMNS = ("status", "error", "attempt", "fallback")
RUN_COLUMNS = (
    "rank", "host", "pid", "start_time", "end_time", "fit_seconds", "predict_seconds",
    "score_seconds", "max_rss_bytes", "threads",
)
RANK_COLUMNS = (
    "rank", "host", "pid", "n_splits", "busy_seconds", "idle_seconds", "start_time",
    "end_time",
)
CATEGORICAL = ("task", "learner", "resampling", "test_subset", "train_subsets", "status")
STATUSES = ("ok", "error", "timeout", "crash", "oom", "invalid")


def result_columns(scorer_names: list[str]) -> list[str]:
    """Every column of ``/splits``, in order."""
    return [*JOB_COLUMNS, *STATUS_COLUMNS, *scorer_names, *RUN_COLUMNS]


def results_to_frame(results: list[SplitResult], scorer_names: list[str]) -> pd.DataFrame:
    """Result objects -> a frame of the result fields (no job metadata)."""
    frame = pd.DataFrame({
        "job_id": np.fromiter((r.job_id for r in results), np.int64, len(results)),
        **{c: [getattr(r, c) for r in results] for c in STATUS_COLUMNS},
        **{n: np.array([r.scores[i] for r in results], dtype=np.float64)
           for i, n in enumerate(scorer_names)},
        **{c: [getattr(r, c) for r in results] for c in RUN_COLUMNS},
    })
    return frame


class ResultStore:
    """Rank 0's record of finished splits, and the writer of ``results.h5``.

    Parameters
    ----------
    paths : ProjectPaths
        The project.
    jobs : pandas.DataFrame
        Job table (``JOB_COLUMNS``), indexed by position = job id.
    scorer_names : list of str
        Score columns, in order.
    fingerprint : str
        The project's fingerprint; an existing ``results.h5`` must carry the same.
    """

    def __init__(self, paths: ProjectPaths, jobs: pd.DataFrame, scorer_names: list[str],
                 fingerprint: str) -> None:
        self.paths = paths
        self.jobs = jobs
        self.scorer_names = list(scorer_names)
        self.fingerprint = fingerprint
        self._new: list[SplitResult] = []
        self._previous = self._load_previous()

    def _load_previous(self) -> pd.DataFrame | None:
        if not self.paths.results.exists():
            return None
        attrs = read_attrs(self.paths.results)
        if attrs.get("fingerprint") != self.fingerprint:
            raise MpibenchError(
                f"{self.paths.results} was written for a different grid (fingerprint "
                "mismatch). Move it away to start over; it is left untouched."
            )
        return read_results(self.paths.root, categorical=False)

    def done_ids(self) -> np.ndarray:
        """Job ids with a recorded result (previous runs and this one)."""
        ids = [np.fromiter((r.job_id for r in self._new), np.int64, len(self._new))]
        if self._previous is not None:
            ids.append(self._previous["job_id"].to_numpy(dtype=np.int64))
        return np.concatenate(ids)

    def add(self, results: list[SplitResult]) -> None:
        """Record finished splits."""
        self._new.extend(results)

    @property
    def n_new(self) -> int:
        """Results recorded by this run."""
        return len(self._new)

    def new_results(self) -> list[SplitResult]:
        """Results recorded by this run, in arrival order."""
        return list(self._new)

    def frame(self) -> pd.DataFrame:
        """All rows (previous runs and this one), sorted by job id."""
        fresh = results_to_frame(self._new, self.scorer_names)
        meta = self.jobs.iloc[fresh["job_id"].to_numpy()][list(JOB_COLUMNS[1:])]
        fresh = pd.concat([fresh[["job_id"]], meta.reset_index(drop=True),
                           fresh.drop(columns="job_id")], axis=1)
        frames = [fresh] if self._previous is None else [self._previous, fresh]
        frame = pd.concat(frames, ignore_index=True) if len(frames) > 1 else fresh
        return frame[result_columns(self.scorer_names)].sort_values("job_id",
                                                                    ignore_index=True)

    def write(self, ranks: list[RankStats], attrs: dict) -> Path:
        """Replace ``results.h5`` atomically with every row so far.

        Parameters
        ----------
        ranks : list of RankStats
            One per rank of this run.
        attrs : dict
            Extra root attributes (``complete``, ``n_ranks``, ``mpi_library``, ...).
        """
        frame = self.frame()
        target = self.paths.results
        tmp = self.paths.temporary(target)
        try:
            with h5py.File(tmp, "w") as h5:
                h5.attrs.update({
                    "fingerprint": self.fingerprint, "n_total": len(self.jobs),
                    "n_done": len(frame), "schema_version": SCHEMA_VERSION, **attrs,
                })
                splits = h5.create_group("splits")
                splits.attrs["order"] = list(frame.columns)
                for column in frame.columns:
                    write_column(splits, column, frame[column].to_numpy())
                table = h5.create_group("ranks")
                table.attrs["order"] = list(RANK_COLUMNS)
                for column in RANK_COLUMNS:
                    write_column(table, column, [getattr(r, column) for r in ranks])
            replace_atomically(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)
        return target


def _results_path(path: str | os.PathLike) -> Path:
    path = Path(path)
    target = path if path.suffix == ".h5" else ProjectPaths(path).results
    if not target.exists():
        raise MpibenchError(
            f"No results at {target}. Run `mpibench run {path}` first (or check the path)."
        )
    return target


def read_attrs(path: str | os.PathLike) -> dict:
    """Root attributes of ``results.h5`` (a project folder or the file itself)."""
    with h5py.File(_results_path(path), "r") as h5:
        return {k: (v.item() if isinstance(v, np.generic) else v) for k, v in h5.attrs.items()}


def _read_table(path: str | os.PathLike, name: str) -> pd.DataFrame:
    with h5py.File(_results_path(path), "r") as h5:
        group = h5[name]
        return pd.DataFrame({c: read_column(group[c]) for c in group.attrs["order"]})


def read_results(path: str | os.PathLike, *, categorical: bool = True) -> pd.DataFrame:
    """Results of a project as a pandas DataFrame, one row per finished split.

    Parameters
    ----------
    path : str or os.PathLike
        Project folder (or its ``results.h5``).
    categorical : bool, default=True
        Make task, learner, resampling, subset and status columns categorical.

    Returns
    -------
    pandas.DataFrame
        Columns of DESIGN.md section 3: job metadata, status, one column per scorer,
        rank/host/pid, Unix start/end times and per-stage seconds.
    """
    frame = _read_table(path, "splits")
    if categorical:
        for column in CATEGORICAL:
            frame[column] = frame[column].astype("category")
    return frame


def read_ranks(path: str | os.PathLike) -> pd.DataFrame:
    """The ``/ranks`` table: one row per rank of the latest run (seconds, Unix times)."""
    return _read_table(path, "ranks")
