"""``results.h5``: written atomically by rank 0, read into pandas by anyone.

Layout (plain datasets and attributes, no pickles)::

    /splits/<column>   one row per finished split (see RESULT_COLUMNS)
    /ranks/<column>    one row per rank of the latest run
    attrs              fingerprint, complete, n_total, n_done, mpibench_version,
                       mpi_library, n_ranks, schema_version
"""

from __future__ import annotations

import contextlib
import json
import os
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pandas as pd

from ..errors import MpibenchError, invalid_parameter
from ..tuning import FEW_SPLITS
from .batch import EncodedResults, ResultBatch, ResultColumns
from .checksums import DamagedFile
from .gridfile import SCHEMA_VERSION, GridFile, read_column, write_column
from .journal import JournalHeaderDamaged, JournalWriter, changed_parts, parse, read_journal
from .paths import ProjectPaths, write_hdf5_atomically
from .records import RankStats

FINGERPRINT_PARTS = ("data", "splits", "learners", "scorers", "seed")

JOB_COLUMNS = (
    "job_id", "task", "learner", "resampling", "iteration", "test_fold", "test_subset",
    "train_subsets", "groups", "n_train_groups", "n_train", "n_test", "seed", "random_state",
)
"""Columns copied from the job table into every result row."""
STATUS_COLUMNS = ("status", "error", "attempt", "fallback", "n_warnings", "warning",
                  "record")
RUN_COLUMNS = (
    "rank", "host", "gpu", "pid", "start_time", "end_time", "fit_seconds",
    "predict_seconds", "score_seconds", "max_rss_bytes", "threads",
)
RANK_COLUMNS = (
    "rank", "host", "gpu", "pid", "n_splits", "busy_seconds", "idle_seconds", "cpu_seconds",
    "max_rss_bytes", "start_time", "end_time",
)
RESULT_ROW_BYTES = 520
"""Bytes a result row takes in ``results.h5`` (scale.py: 520 MB for a million rows of
one scorer), to decide whether it is built in memory or written to a temporary file
(see :func:`~mpibench.store.paths.write_hdf5_atomically`)."""
CATEGORICAL = ("task", "learner", "resampling", "test_subset", "train_subsets", "status")


def result_columns(scorer_names: list[str]) -> list[str]:
    """Every column of ``/splits``, in order."""
    return [*JOB_COLUMNS, *STATUS_COLUMNS, *scorer_names, *RUN_COLUMNS]


def batch_from_frame(frame: pd.DataFrame, scorer_names: list[str]) -> ResultBatch:
    """Rows of ``/splits`` back into result columns (to seed a journal)."""
    columns = {name: frame[name].tolist() for name in ["job_id", *STATUS_COLUMNS,
                                                      *RUN_COLUMNS] if name in frame}
    columns["scores"] = frame[list(scorer_names)].to_numpy(dtype=np.float64)
    return ResultBatch.from_columns(columns)


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


class ResultStore:
    """Rank 0's record of finished splits: the journal, and ``results.h5`` built from it.

    Parameters
    ----------
    paths : ProjectPaths
        The project.
    jobs : pandas.DataFrame
        Job table (``JOB_COLUMNS``), indexed by position = job id.
    scorer_names : list of str
        Score columns, in order.
    grid_attrs : dict
        Root attributes of ``grid.h5`` (``fingerprint`` and ``fingerprint_<part>``).
    repair : bool, default=False
        Drop damaged journal records instead of refusing.
    """

    def __init__(self, paths: ProjectPaths, jobs: pd.DataFrame, scorer_names: list[str],
                 grid_attrs: dict, *, repair: bool = False) -> None:
        self.paths = paths
        self.jobs = jobs
        self.scorer_names = list(scorer_names)
        self.fingerprint = str(grid_attrs["fingerprint"])
        self.parts = {k: str(grid_attrs[f"fingerprint_{k}"]) for k in FINGERPRINT_PARTS}
        self._results = ResultColumns(len(self.scorer_names))
        self.started = np.zeros(len(jobs), dtype=np.int32)
        self.rows_before_retry = np.full(len(jobs), -1, dtype=np.int64)
        """Per job: result rows recorded before its latest ``--retry`` mark (-1: none);
        its results among them are history."""
        self.started_before_retry = np.zeros(len(jobs), dtype=np.int32)
        self.run_ranks: dict = {}
        """Per run (rank 0's start time, Unix seconds): its ``/ranks`` rows."""
        for leftover in paths.root.glob(f".{paths.results.name}.*.tmp"):
            leftover.unlink()  # from a run killed while consolidating; we hold the lock
        self._growth_undone = False
        seed = self._read_previous(repair)
        self.n_previous = len(self._results)
        self.journal = JournalWriter(paths.journal, {"fingerprint": self.fingerprint,
                                                    "parts": self.parts,
                                                    "created": time.time()})
        if self._growth_undone:  # the journal names this grid again
            self.journal.grew(self.parts, self.fingerprint)
            self.journal.commit()
        if seed is not None:
            self.journal.append_results(seed.results())
            self.journal.commit()

    def _read_previous(self, repair: bool) -> ResultBatch | None:
        """Load the journal; without one, adopt the rows of an existing results.h5."""
        if self.paths.journal.exists() and self.paths.journal.stat().st_size:
            try:
                contents = read_journal(self.paths.journal, self.parts, repair=repair)
            except JournalHeaderDamaged:
                if not repair:
                    raise
                contents = None
                aside = self.paths.journal.with_name(
                    f"{self.paths.journal.name}.damaged-{int(time.time())}")
                self.paths.journal.rename(aside)
                warnings.warn(f"{self.paths.journal}: its header was damaged; moved it to "
                              f"{aside.name} (kept). Splits not in results.h5 run again.",
                              stacklevel=3)
        else:
            contents = None
        if contents is not None and not contents.n_rows and self.paths.results.exists():
            contents = None  # a journal cut to its header: results.h5 holds the results
        if contents is not None and contents.interrupted_growth:
            self._growth_undone = True
            warnings.warn(f"{self.paths.root} was being grown when that was stopped, before "
                          "grid.h5 was replaced: running the grid as it is. Create the "
                          "project again to grow it.", stacklevel=3)
        if contents is not None:
            for batch in contents.batches:
                self._results.append(batch)
            self.started = contents.started_counts(len(self.jobs))
            self.rows_before_retry, self.started_before_retry = contents.retry_marks(
                len(self.jobs))
            self.run_ranks = {float(k): v for k, v in contents.ranks.items()}
            return None
        if not self.paths.results.exists():
            return None
        if read_attrs(self.paths.results).get("fingerprint") != self.fingerprint:
            raise MpibenchError(
                f"{self.paths.results} was written for a different grid (fingerprint "
                "mismatch). Move it away to start over; it is left untouched."
            )
        seed = batch_from_frame(read_results(self.paths.root, categorical=False),
                                self.scorer_names)
        self._results.append(seed)
        return seed

    def done_ids(self) -> np.ndarray:
        """Job ids with a current result (not one made history by ``--retry``)."""
        return self._current(self._results.joined())[0]

    def _current(self, batch: ResultBatch) -> tuple[np.ndarray, np.ndarray]:
        return current_rows(batch, self.rows_before_retry)

    def latest_status(self) -> pd.Series:
        """Status of each job's current result, indexed by job id."""
        batch = self._results.joined()
        job_ids, rows = self._current(batch)
        return pd.Series(batch.columns["status"][rows], index=job_ids)

    def mark_retry(self, job_ids: np.ndarray) -> None:
        """Run these splits again (``--retry``): their results so far become history,
        and attempts are counted anew for ``--max-attempts``."""
        self.journal.retried(job_ids)
        self.journal.commit()
        self.rows_before_retry[job_ids] = len(self._results)
        self.started_before_retry[job_ids] = self.started[job_ids]

    def attempts_since_retry(self) -> np.ndarray:
        """Hand-outs of each job since its latest ``--retry`` mark (all, without one)."""
        return self.started - self.started_before_retry

    def add(self, results: EncodedResults) -> None:
        """Journal finished splits (fsynced by the next group commit) and keep them."""
        self.journal.append_results(results)
        self._results.add(results)

    def mark_started(self, job_ids: np.ndarray | list[int]) -> None:
        """Journal that these splits were handed out (for attempt counting)."""
        self.journal.handed_out(job_ids)
        if isinstance(job_ids, list) and len(job_ids) <= FEW_SPLITS:
            for job_id in job_ids:
                self.started[job_id] += 1
        else:
            self.started[job_ids] += 1

    def mark_returned(self, job_ids: np.ndarray) -> None:
        """Journal that these splits came back unstarted (their hand-out did not count)."""
        self.journal.handed_back(job_ids)
        self.started[job_ids] -= 1

    def all_results(self) -> ResultBatch:
        """Every recorded result, previous runs first."""
        return self._results.joined()

    def new_results(self) -> ResultBatch:
        """Results recorded by this run, in arrival order."""
        return self._results.joined(self.n_previous)

    def columns(self, history: bool = False) -> tuple[int, Iterator[tuple[str, np.ndarray]]]:
        """Rows of ``/splits``: their number, and ``(name, values)`` column by column.

        One row per job id (its current result: the last, unless ``--retry`` made it
        history), sorted by job id; with ``history``, the other rows instead (earlier
        attempts). Each column is built only when asked for, so a million rows never
        sit in memory twice.
        """
        batch = self._results.joined()
        job_ids, rows = self._current(batch)
        if history:
            others = np.ones(len(batch), dtype=bool)
            others[rows] = False
            rows = np.flatnonzero(others)
            rows = rows[np.lexsort((batch.columns["attempt"][rows], batch.job_ids[rows]))]
            job_ids = batch.job_ids[rows]

        return len(job_ids), split_columns(batch, job_ids, rows, self.jobs, self.scorer_names)

    def write(self, ranks: list[RankStats], attrs: dict) -> Path:
        """Commit the journal, then replace ``results.h5`` atomically with every row.

        Parameters
        ----------
        ranks : list of RankStats
            One per rank of this run.
        attrs : dict
            Extra root attributes (``complete``, ``n_ranks``, ``mpi_library``, ...).
        """
        run = float(min(r.start_time for r in ranks))
        self.run_ranks[run] = [[_plain(getattr(r, c)) for c in RANK_COLUMNS] for r in ranks]
        self.journal.rank_table(run, self.run_ranks[run])
        self.journal.commit()
        attrs = {**attrs, "journal_offset": self.journal.size,  # status reads on from here
                 **self._status_summary()}
        n_rows, columns = self.columns()
        rank_table = self.rank_table()
        predictions = self._predictions()

        def fill(h5: h5py.File) -> None:
            h5.attrs.update({
                "fingerprint": self.fingerprint, "n_total": len(self.jobs),
                "n_done": n_rows, "schema_version": SCHEMA_VERSION, **attrs,
            })
            splits = h5.create_group("splits")
            splits.attrs["order"] = result_columns(self.scorer_names)
            for name, values in columns:
                write_column(splits, name, values, checked=True)
            n_history, earlier = self.columns(history=True)
            if n_history:  # attempts that --retry replaced
                group = h5.create_group("history")
                group.attrs["order"] = result_columns(self.scorer_names)
                for name, values in earlier:
                    write_column(group, name, values, checked=True)
            _write_table(h5.create_group("ranks"), rank_table)
            if predictions is not None:
                _write_table(h5.create_group("predictions"), predictions)

        write_hdf5_atomically(
            self.paths.results, fill, fault="consolidate",
            fix=f"Free space and rerun `mpibench run {self.paths.root}`: it rebuilds "
                f"{self.paths.results.name} from the journal, which keeps every split.",
            expected_bytes=RESULT_ROW_BYTES * len(self._results))
        return self.paths.results

    def _status_summary(self) -> dict:
        """``status_counts`` (JSON: splits per status) and ``mean_split_seconds`` of the
        current results: ``mpibench status`` reads these instead of every row."""
        batch = self._results.joined()
        _, rows = self._current(batch)
        names, counts = np.unique(batch.columns["status"][rows], return_counts=True)
        took = batch.columns["end_time"][rows] - batch.columns["start_time"][rows]
        return {"status_counts": json.dumps(dict(zip(map(str, names), map(int, counts),
                                                     strict=True))),
                "mean_split_seconds": float(took.mean()) if len(took) else 0.0}

    def _predictions(self) -> pd.DataFrame | None:
        """``/predictions`` (the latest attempt of each split with a result), or None
        when no split saved any."""
        from .predictions import gather

        batch = self._results.joined()
        job_ids, rows = self._current(batch)
        attempts = dict(zip(job_ids.tolist(), batch.columns["attempt"][rows].tolist(),
                            strict=True))
        return gather(self.paths.predictions, attempts)

    def rank_table(self) -> pd.DataFrame:
        """``/ranks``: the ranks of every run that ran splits (``run`` 1, 2, ... in
        start order; a run that found nothing to do adds no rows unless no run did)."""
        frames = []
        for number, run in enumerate(sorted(self.run_ranks), start=1):
            at = RANK_COLUMNS.index("gpu")  # (journals older than the gpu column lack it)
            rows = [row if len(row) == len(RANK_COLUMNS) else [*row[:at], "", *row[at:]]
                    for row in self.run_ranks[run]]
            frame = pd.DataFrame(rows, columns=list(RANK_COLUMNS))
            frame.insert(0, "run", number)
            frames.append(frame)
        worked = [f for f in frames if f["n_splits"].sum() > 0] or frames[-1:]
        return pd.concat(worked, ignore_index=True)

    def close(self) -> None:
        """Commit and close the journal."""
        self.journal.close()


def _plain(value: Any) -> Any:
    """A JSON-ready scalar (numpy numbers to Python ones)."""
    return value.item() if isinstance(value, np.generic) else value


def _write_table(group: h5py.Group, frame: pd.DataFrame) -> None:
    group.attrs["order"] = [str(c) for c in frame.columns]
    for column in frame.columns:
        write_column(group, column, frame[column].to_numpy(), checked=True)


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


def read_ranks(path: str | os.PathLike) -> pd.DataFrame:
    """The ``/ranks`` table: one row per rank of each run that ran splits (``run`` 1,
    2, ... in start order; seconds, Unix times)."""
    return _read_table(path, "ranks")
