"""Reading a project's results: ``results.h5`` (checked against its checksums) into
pandas, or, while a run has not written it yet, what its journal holds.

``results.h5`` layout (plain datasets and attributes, no pickles)::

    /splits/<column>   one row per finished split (see :func:`result_columns`)
    /history/<column>  earlier attempts of splits run again by --retry
    /ranks/<column>    one row per rank of each run that ran splits
    /runs/<column>     one row per run: versions, nodes, SLURM job, git commit
    /predictions/...   with --save-predictions
    attrs              fingerprint, complete, n_total, n_done, mpibench_version,
                       mpi_library, n_ranks, schema_version
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pandas as pd

from ..errors import MpibenchError, invalid_parameter
from .batch import ResultBatch, ResultColumns
from .checksums import DamagedFile
from .gridfile import GridFile, read_column
from .journal import changed_parts, parse
from .paths import ProjectPaths

FINGERPRINT_PARTS = ("data", "splits", "learners", "scorers", "seed")

JOB_COLUMNS = (
    "job_id", "task", "learner", "resampling", "iteration", "test_fold", "test_subset",
    "train_subsets", "groups", "n_train_groups", "n_train", "n_test", "seed", "random_state",
)
"""Columns copied from the job table into every result row."""
STATUS_COLUMNS = ("status", "error", "attempt", "resumed_from", "fallback", "n_warnings",
                  "warning", "record")
RUN_COLUMNS = (
    "run", "rank", "host", "gpu", "pid", "start_time", "end_time", "fit_seconds",
    "predict_seconds", "score_seconds", "cpu_seconds", "max_rss_bytes",
    "gpu_max_memory_bytes", "gpu_seconds", "threads", "limit_seconds", "limit_bytes",
)
RANK_COLUMNS = (
    "rank", "host", "gpu", "pid", "n_splits", "busy_seconds", "idle_seconds", "cpu_seconds",
    "max_rss_bytes", "start_time", "end_time",
)
RUNS_COLUMNS = (
    "run", "start_time", "end_time", "exit_code", "n_ranks", "threads", "command",
    "working_directory", "git_commit", "git_dirty", "python_version", "mpibench_version",
    "numpy_version", "scipy_version", "scikit_learn_version", "pandas_version",
    "h5py_version", "mpi4py_version", "torch_version", "mpi_library", "slurm_job_id",
    "slurm_partition", "slurm_nodelist", "thread_settings", "nodes",
)
"""Columns of ``/runs`` (``thread_settings`` and ``nodes``: JSON text)."""
RUNS_UNKNOWN = {"start_time": 0.0, "end_time": 0.0, "exit_code": -1, "n_ranks": 0,
                "threads": 0, "git_dirty": -1}
"""A ``/runs`` value never learnt (a run killed early, one of an older version): the
numeric columns' (these are the numeric columns); text columns: ""."""
RESULT_ROW_BYTES = 520
"""Bytes a result row takes in ``results.h5`` (scale.py: 520 MB for a million rows of
one scorer), to decide whether it is built in memory or written to a temporary file
(see :func:`~mpibench.store.paths.write_hdf5_atomically`)."""
CATEGORICAL = ("task", "learner", "resampling", "test_subset", "train_subsets", "status")


def result_columns(scorer_names: list[str]) -> list[str]:
    """Every column of ``/splits``, in order."""
    return [*JOB_COLUMNS, *STATUS_COLUMNS, *scorer_names, *RUN_COLUMNS]


def current_rows(batch: ResultBatch,
                 rows_before_retry: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Job ids with a current result and the row of each (its last, if recorded after
    the job's latest retry mark), sorted by job id."""
    reversed_ids = batch.job_ids[::-1]
    job_ids, last = np.unique(reversed_ids, return_index=True)
    rows = len(batch) - 1 - last  # row of the last result of each job id
    keep = rows >= rows_before_retry[job_ids]
    return job_ids[keep], rows[keep]


def split_columns(batch: ResultBatch, job_ids: np.ndarray, rows: np.ndarray,
                  jobs: pd.DataFrame, scorer_names: list[str]
                  ) -> Iterator[tuple[str, np.ndarray]]:
    """``(name, values)`` of each ``/splits`` column for ``rows`` of ``batch``, one at a
    time (a million rows never sit in memory twice)."""
    for name in result_columns(scorer_names):
        if name == "job_id":
            yield name, job_ids
        elif name in JOB_COLUMNS:
            yield name, jobs[name].to_numpy()[job_ids]
        elif name in scorer_names:
            yield name, batch.columns["scores"][rows, scorer_names.index(name)]
        else:
            yield name, batch.columns[name][rows]


def journal_results(root: Path) -> pd.DataFrame | None:
    """The current results a journal holds, read without touching it (a run may be
    appending): what a run has recorded before it wrote its first ``results.h5``.
    None when there is no journal of this grid with results."""
    paths = ProjectPaths(root)
    if not (paths.grid.exists() and paths.journal.exists()
            and paths.journal.stat().st_size):
        return None
    contents = parse(paths.journal.read_bytes())
    grid = GridFile(paths.grid)
    attrs = grid.attrs()
    parts = {k: str(attrs.get(f"fingerprint_{k}")) for k in FINGERPRINT_PARTS}
    if contents.header is None or changed_parts(contents.header, parts) or not contents.n_rows:
        return None
    jobs = grid.job_table(columns=list(JOB_COLUMNS))
    scorer_names = grid.scorer_names()
    results = ResultColumns(len(scorer_names))
    for batch in contents.batches:
        results.append(batch)
    joined = results.joined()
    job_ids, rows = current_rows(joined, contents.retry_marks(len(jobs))[0])
    return pd.DataFrame(dict(split_columns(joined, job_ids, rows, jobs, scorer_names)))


def _results_path(path: str | os.PathLike) -> Path:
    path = Path(path)
    target = path if path.suffix == ".h5" else ProjectPaths(path).results
    if not target.exists():
        raise MpibenchError(
            f"No results at {target}. Run `mpibench run {path}` first (or check the path)."
        )
    return target


def _damaged_results(target: Path, cause: Any,
                     error_class: type[MpibenchError] = MpibenchError) -> MpibenchError:
    """The one-line error for a ``results.h5`` that cannot be read, with the fix."""
    journal = ProjectPaths(target.parent).journal
    fix = (f"`mpibench run {target.parent}` rebuilds it from {journal.name}"
           if journal.exists() and journal.stat().st_size else
           f"there is no journal to rebuild it from: move it aside (mv {target} "
           f"{target}.damaged) and `mpibench run {target.parent}` computes its splits again")
    return error_class(f"{target} is damaged or incomplete ({cause}); {fix}.")


@contextlib.contextmanager
def open_results(path: str | os.PathLike) -> Iterator[h5py.File]:
    """``results.h5`` open for reading; damage is one :class:`MpibenchError`."""
    target = _results_path(path)
    try:
        h5 = h5py.File(target, "r")
    except OSError as exc:
        raise _damaged_results(target, str(exc)[:160]) from None
    try:
        with h5:
            yield h5
    except DamagedFile as exc:
        raise _damaged_results(target, exc.cause, DamagedFile) from None
    except (KeyError, OSError, ValueError) as exc:
        raise _damaged_results(target, f"{type(exc).__name__}: {exc}") from None


def read_attrs(path: str | os.PathLike) -> dict:
    """Root attributes of ``results.h5`` (a project folder or the file itself)."""
    with open_results(path) as h5:
        return {k: (v.item() if isinstance(v, np.generic) else v) for k, v in h5.attrs.items()}


def _read_table(path: str | os.PathLike, name: str,
                missing_ok: bool = False) -> pd.DataFrame | None:
    with open_results(path) as h5:
        if missing_ok and name not in h5:
            return None
        group = h5[name]
        return pd.DataFrame({c: read_column(group[c]) for c in group.attrs["order"]})


MLR3_COLUMNS = {
    "task": "task_id", "learner": "learner_id", "resampling": "resampling_id",
    "test_subset": "test.subset", "train_subsets": "train.subsets",
    "test_fold": "test.fold", "n_train_groups": "n.train.groups", "n_train": "n.train",
    "n_test": "n.test",
}
"""mpibench's result columns under mlr3resampling's names (``score()`` output)."""
MLR3_MEASURES = {
    "rmse": "regr.rmse", "mse": "regr.mse", "mae": "regr.mae", "medae": "regr.medae",
    "r2": "regr.rsq", "accuracy": "classif.acc", "balanced_accuracy": "classif.bacc",
    "error_rate": "classif.ce",
}
"""Scorer names as mlr3 measure ids: only those whose values equal mlr3measures' on the
same predictions. ``f1`` (macro; mlr3's ``classif.fbeta`` is the positive class's F1),
``auc`` (mlr3's ``classif.auc`` is binary only) and ``logloss`` (mlr3measures clips
probabilities at 1e-15, scikit-learn at 2.2e-16) keep their names, as does the
``error`` message column: R's ``pvalue()`` takes the first ``classif.``/``regr.``
column as the measure."""


def mlr3_names(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with mlr3resampling's column names: ``task_id``, ``learner_id``,
    ``test.subset``, ``train.subsets``, ``test.fold``, ``n.train.groups``, ``groups``,
    ``seed``, measures such as ``regr.rmse`` (in the grid's scorer order: R's
    ``pvalue()`` takes the first ``classif|regr`` column), and ``algorithm`` (the
    learner name). The other columns keep their names.

    Examples
    --------
    >>> frame = pd.DataFrame({"task": ["t"], "learner": ["ridge"], "rmse": [1.0]})
    >>> list(mlr3_names(frame).columns)
    ['task_id', 'learner_id', 'regr.rmse', 'algorithm']
    """
    out = frame.rename(columns={**MLR3_COLUMNS, **MLR3_MEASURES})
    if "learner_id" in out:
        out["algorithm"] = out["learner_id"].astype(str)
    return out


def read_results(path: str | os.PathLike, *, categorical: bool = True,
                 names: str = "mpibench", attempts: str = "latest") -> pd.DataFrame:
    """Results of a project as a pandas DataFrame, one row per finished split.

    Parameters
    ----------
    path : str or os.PathLike
        Project folder (or its ``results.h5``).
    categorical : bool, default=True
        Make task, learner, resampling, subset and status columns categorical.
    names : {"mpibench", "mlr3"}, default="mpibench"
        Column names: mpibench's, or mlr3resampling's (see :func:`mlr3_names`), so that
        R's ``mlr3resampling::pvalue()`` reads the table as it is.
    attempts : {"latest", "all"}, default="latest"
        One row per split (its latest attempt), or also the earlier attempts that
        ``mpibench run --retry`` replaced (sorted by job id and ``attempt``).

    Returns
    -------
    pandas.DataFrame
        The columns README.md lists under "Files": job metadata, status, one column
        per scorer, rank/host/pid, Unix start/end times and per-stage seconds.
    """
    for name, value, allowed in (("names", names, ("mpibench", "mlr3")),
                                 ("attempts", attempts, ("latest", "all"))):
        if value not in allowed:
            raise invalid_parameter("read_results", name, f"one of {allowed}", value)
    if not Path(path).suffix == ".h5" and not ProjectPaths(path).results.exists():
        frame = journal_results(Path(path))  # a run that has not written results.h5 yet
        if frame is None or attempts == "all":
            frame = _read_table(path, "splits")  # (raises: no results)
    else:
        frame = _read_table(path, "splits")
    assert frame is not None  # (missing_ok=False raises instead)
    if attempts == "all":
        earlier = _read_table(path, "history", missing_ok=True)
        if earlier is not None:
            frame = pd.concat([frame, earlier], ignore_index=True).sort_values(
                ["job_id", "attempt"], ignore_index=True, kind="stable")
    if categorical:
        for column in CATEGORICAL:
            frame[column] = frame[column].astype("category")
    frame = _expand_record(frame)
    return mlr3_names(frame) if names == "mlr3" else frame


def _expand_record(frame: pd.DataFrame) -> pd.DataFrame:
    """The ``record`` column's JSON (a grid's ``record`` function) as columns, one per
    key (``record_<key>`` where the key is a column already)."""
    if "record" not in frame:
        return frame
    texts = frame.pop("record").astype(str)
    if not (texts != "").any():
        return frame
    extra = pd.DataFrame([json.loads(t) if t else {} for t in texts], index=frame.index)
    return frame.join(extra.rename(columns=lambda c: f"record_{c}" if c in frame else c))


def read_predictions(path: str | os.PathLike) -> pd.DataFrame:
    """The ``/predictions`` table of a project run with ``--save-predictions``: one row
    per (split, test row): ``job_id``, ``attempt``, ``row`` (index of the task's row),
    ``prediction`` and ``proba_<class>`` columns for learners with ``predict_proba``.
    Join it with :func:`read_results` on ``job_id`` for the split's metadata.
    """
    frame = _read_table(path, "predictions", missing_ok=True)
    if frame is None:
        raise MpibenchError(f"No predictions in {_results_path(path)}: run with "
                            "--save-predictions (mb.run(..., save_predictions=True)); "
                            "--retry ok,error,... recomputes splits already done.")
    return frame


def read_runs(path: str | os.PathLike) -> pd.DataFrame:
    """The ``/runs`` table: one row per run of the project (``run`` 1, 2, ... in start
    order; the ``run`` column of :func:`read_results` names it): start and end (Unix
    seconds), exit code (-1: unknown, e.g. killed), ranks, threads, command line,
    working directory and its git commit (``git_dirty`` 1: tracked files changed, -1:
    not a git work tree), the installed versions of Python, mpibench, numpy, scipy,
    scikit-learn, pandas, h5py, mpi4py and torch (empty: not installed), the MPI
    library, SLURM's job id, partition and node list, the thread variables (JSON) and
    each node's CPU model, cores, memory and GPUs (``nodes``, JSON). Projects last run
    by an older mpibench have none (an empty table)."""
    frame = _read_table(path, "runs", missing_ok=True)
    return frame if frame is not None else pd.DataFrame(columns=list(RUNS_COLUMNS))


def read_ranks(path: str | os.PathLike) -> pd.DataFrame:
    """The ``/ranks`` table: one row per rank of each run that ran splits (``run`` 1,
    2, ... in start order; seconds, Unix times)."""
    return _read_table(path, "ranks")
