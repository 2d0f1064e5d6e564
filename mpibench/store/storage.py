"""``results.h5`` and the journal as rank 0 keeps them during a run: every finished
split journaled, ``results.h5`` rewritten atomically at checkpoints and at the end
(:mod:`~mpibench.store.reading` reads them)."""

from __future__ import annotations

import json
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pandas as pd

from ..errors import MpibenchError
from ..tuning import FEW_SPLITS
from .batch import EncodedResults, ResultBatch, ResultColumns
from .gridfile import SCHEMA_VERSION, write_column
from .journal import JournalContents, JournalHeaderDamaged, JournalWriter, read_journal
from .paths import ProjectPaths, write_hdf5_atomically
from .reading import (
    FINGERPRINT_PARTS,
    RANK_COLUMNS,
    RESULT_ROW_BYTES,
    RUN_COLUMNS,
    RUNS_COLUMNS,
    RUNS_UNKNOWN,
    STATUS_COLUMNS,
    current_rows,
    read_attrs,
    read_results,
    read_runs,
    result_columns,
    split_columns,
)
from .records import RankStats


def batch_from_frame(frame: pd.DataFrame, scorer_names: list[str]) -> ResultBatch:
    """Rows of ``/splits`` back into result columns (to seed a journal)."""
    columns = {name: frame[name].tolist() for name in ["job_id", *STATUS_COLUMNS,
                                                      *RUN_COLUMNS] if name in frame}
    columns["scores"] = frame[list(scorer_names)].to_numpy(dtype=np.float64)
    return ResultBatch.from_columns(columns)


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
        self.run_facts: dict[float, dict] = {}
        """Per run (rank 0's start time): its ``/runs`` row (see :meth:`begin_run`)."""
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
            for key, facts in self.run_facts.items():
                self.journal.run_facts(key, facts)
            self.journal.commit()

    def _read_journal(self, repair: bool) -> JournalContents | None:
        """The journal's contents (None: no journal, or one whose damaged header
        ``repair`` moved aside: it cannot say which grid its results belong to)."""
        if not (self.paths.journal.exists() and self.paths.journal.stat().st_size):
            return None
        try:
            contents = read_journal(self.paths.journal, self.parts, repair=repair)
        except JournalHeaderDamaged:
            if not repair:
                raise
            aside = self.paths.journal.with_name(
                f"{self.paths.journal.name}.damaged-{int(time.time())}")
            self.paths.journal.rename(aside)
            warnings.warn(f"{self.paths.journal}: its header was damaged; moved it to "
                          f"{aside.name} (kept). Splits not in results.h5 run again.",
                          stacklevel=4)
            return None
        if contents.interrupted_growth:
            self._growth_undone = True
            warnings.warn(f"{self.paths.root} was being grown when that was stopped, before "
                          "grid.h5 was replaced: running the grid as it is. Create the "
                          "project again to grow it.", stacklevel=4)
        return contents

    def _read_previous(self, repair: bool) -> ResultBatch | None:
        """Load the journal; without one (or with one cut to its header), adopt the rows
        of an existing results.h5."""
        contents = self._read_journal(repair)
        if contents is not None and (contents.n_rows or not self.paths.results.exists()):
            for batch in contents.batches:
                self._results.append(batch)
            self.started = contents.started_counts(len(self.jobs))
            self.rows_before_retry, self.started_before_retry = contents.retry_marks(
                len(self.jobs))
            self.run_ranks = {float(k): v for k, v in contents.ranks.items()}
            self.run_facts = {float(k): v for k, v in contents.runs.items()}
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
        for row in read_runs(self.paths.root).to_dict("records"):
            row.pop("run")
            self.run_facts[float(row["start_time"])] = {k: _plain(v) for k, v in row.items()}
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

    def run_keys(self) -> list[float]:
        """Every run's key (rank 0's start time), in start order: run ``i + 1`` is
        ``run_keys()[i]``."""
        return sorted(set(self.run_facts) | set(self.run_ranks))

    def begin_run(self, run: float, facts: dict) -> int:
        """Journal (and commit) run ``run``'s ``/runs`` row as far as it is known at the
        start; returns the run's number (1, 2, ...: recorded with each of its splits)."""
        self.update_run(run, **facts)
        self.journal.commit()
        return self.run_keys().index(run) + 1

    def update_run(self, run: float, **facts: Any) -> None:
        """Journal more of run ``run``'s row (committed with the next group)."""
        self.run_facts[run] = {**self.run_facts.get(run, {}), **facts}
        self.journal.run_facts(run, self.run_facts[run])

    def write(self, ranks: list[RankStats], attrs: dict, run: float | None = None) -> Path:
        """Commit the journal, then replace ``results.h5`` atomically with every row.

        Parameters
        ----------
        ranks : list of RankStats
            One per rank of this run.
        attrs : dict
            Extra root attributes (``complete``, ``n_ranks``, ``mpi_library``, ...).
        run : float, optional
            The run's key (rank 0's start time; default: the earliest start of
            ``ranks``).
        """
        run = float(min(r.start_time for r in ranks)) if run is None else run
        self.run_ranks[run] = [[_plain(getattr(r, c)) for c in RANK_COLUMNS] for r in ranks]
        self.journal.rank_table(run, self.run_ranks[run])
        self.journal.commit()
        attrs = {**attrs, "journal_offset": self.journal.size,  # status reads on from here
                 **self._status_summary()}
        n_rows, columns = self.columns()
        rank_table, runs_table = self.rank_table(), self.runs_table()
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
            _write_table(h5.create_group("runs"), runs_table)
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
        frames, keys = [], self.run_keys()
        for run in sorted(self.run_ranks):
            number = keys.index(run) + 1
            at = RANK_COLUMNS.index("gpu")  # (journals older than the gpu column lack it)
            rows = [row if len(row) == len(RANK_COLUMNS) else [*row[:at], "", *row[at:]]
                    for row in self.run_ranks[run]]
            frame = pd.DataFrame(rows, columns=list(RANK_COLUMNS))
            frame.insert(0, "run", number)
            frames.append(frame)
        worked = [f for f in frames if f["n_splits"].sum() > 0] or frames[-1:]
        return pd.concat(worked, ignore_index=True)

    def runs_table(self) -> pd.DataFrame:
        """``/runs``: one row per run (also those of older versions, known only by their
        rank tables: their facts unknown)."""
        rows = []
        for number, run in enumerate(self.run_keys(), start=1):
            facts = self.run_facts.get(run, {})
            row = {name: facts.get(name, RUNS_UNKNOWN.get(name, "")) for name in RUNS_COLUMNS}
            row.update(run=number, start_time=float(facts.get("start_time", run)))
            rows.append(row)
        frame = pd.DataFrame(rows, columns=list(RUNS_COLUMNS))
        for name in RUNS_COLUMNS:
            if name != "run" and isinstance(RUNS_UNKNOWN.get(name, ""), str):
                frame[name] = frame[name].astype(str).astype(object)
        return frame

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


