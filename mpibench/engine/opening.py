"""Rank 0 opens a project for a run: the grid checked, the journal reconciled, retries
marked, exhausted splits retired, suspects singled out, costs learned, the scheduler
built. What it finds is an :class:`OpenedRun`, which the
:class:`~mpibench.engine.dispatcher.Dispatcher` then serves from."""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import MpibenchError
from ..limits import LearnerOptions, learner_options_of, refuse_without_isolation
from ..store.batch import EncodedResults
from ..store.checksums import verify_checksums
from ..store.gridfile import GRID_FIX, GridFile
from ..store.paths import ProjectPaths
from ..store.reading import JOB_COLUMNS
from ..store.records import RankStats, Status, failed_result
from ..store.storage import ResultStore
from .costs import CostModel, learn_from_test_run
from .interfaces import SplitScheduler
from .options import RunOptions
from .pools import make_scheduler
from .progress import log

ASSIGNMENT_COLUMNS = ("task_i", "learner_i", "resampling_i", "split_i", "random_state")
ESCALATING = ("timeout", "oom")
"""Statuses after which ``--escalate`` grows a split's limits for its next attempt."""


@dataclass
class OpenedRun:
    """What rank 0 knows once it has opened the project, before the first request."""

    store: ResultStore
    n_total: int
    """Jobs in the grid."""
    assignment_rows: np.ndarray
    """:class:`~mpibench.engine.protocol.Assignment` fields by job id (int64)."""
    costs: CostModel
    scheduler: SplitScheduler
    gpu_learners: list[str]
    n_todo: int
    """Splits this run has to run (0: no pickled code of grid.h5 was loaded)."""
    n_failed_before: int
    """Splits whose current result is not ok, before this run."""
    checkpointing: np.ndarray
    """Per learner index: its splits checkpoint (they may start near a time limit)."""


def clear_stop_request(paths: ProjectPaths) -> None:
    """A ``stop.request`` asked an earlier run to stop (that run may have been killed
    before it could remove it): this run starts without it. One written by this SLURM
    job (``job N ...``: its time limit came while the ranks started; SLURM may send the
    warning up to 60 s early) stays, and stops this run."""
    paths.stopping.unlink(missing_ok=True)  # (left by a run that was killed as it stopped)
    owner = paths.stop_requester()
    if owner is None:
        return
    job = os.environ.get("SLURM_JOB_ID")
    if job and owner.startswith(f"job {job} "):
        log(f"{paths.stop_request.name} from this job ({owner}) came before the start: "
            "stopping")
        return
    paths.remove_stop_request()
    log(f"removed {paths.stop_request} left by an earlier run ({owner}); to stop this run, "
        "create it again")


def open_run(paths: ProjectPaths, options: RunOptions, n_ranks: int, me: RankStats,
             test_source: Any = None) -> OpenedRun:
    """Open ``paths`` for a run of ``n_ranks`` ranks (rank 0 is ``me``); the caller
    holds the lock. Raises :class:`MpibenchError` (one line) for a damaged grid, a
    journal of another grid, or options the grid's ``learner_options`` refuse."""
    grid_file = GridFile(paths.grid)
    try:
        attrs = grid_file.attrs()
        jobs = grid_file.job_table(exclude=("job_key",), compact=True)
    except (OSError, KeyError) as exc:
        raise MpibenchError(
            f"{paths.grid} is damaged or incomplete ({str(exc)[:160]}). Restore it from a "
            "copy, or create the project again (same grid, new folder); results.journal "
            "is kept.") from None
    verify_checksums(paths.grid, GRID_FIX)
    store = ResultStore(paths, jobs[list(JOB_COLUMNS)], grid_file.scorer_names(), attrs,
                        repair=options.repair)
    n_features = grid_file.task_shapes()[:, 1]
    costs = CostModel(jobs["learner_i"].to_numpy(), jobs["n_train"].to_numpy(),
                      jobs["task_i"].to_numpy(), n_features)
    learners = grid_file.names("learners")
    if test_source is None:
        learn_from_test_run(costs, paths, learners, dict(zip(
            grid_file.names("tasks"), n_features.tolist(), strict=True)))
    mark_retries(store, options.retry)
    retire_exhausted(store, options.crash_after, me)
    history = store.all_results()
    costs.add_columns(history.job_ids, history.status,
                      history.columns["end_time"] - history.columns["start_time"])
    current = store.latest_status()  # (one pass: the done ids and the failures)
    prune_checkpoints(paths, current)
    todo = np.setdiff1d(jobs["job_id"].to_numpy(), current.index.to_numpy())
    settings = learner_options(grid_file, learners, options) if len(todo) else []
    gpu_learners = [name for name, own in zip(learners, settings, strict=False) if own.gpu]
    scheduler = make_scheduler(
        todo, np.isin(jobs["learner_i"].to_numpy(), [learners.index(n) for n in gpu_learners]),
        costs=costs, priority=jobs["priority"].to_numpy() if "priority" in jobs else None,
        order=options.order, chunk_size=options.chunk_size, n_workers=n_ranks - 1,
        seed=int(attrs["seed"]), solo=suspects(store, todo))
    escalation = np.zeros(len(jobs), dtype=np.int64)
    if options.escalate != 1 or any(own.escalate not in (None, 1) for own in settings):
        grows = np.logical_or.reduce([history.status == s for s in ESCALATING])
        escalation = np.bincount(history.job_ids[grows], minlength=len(jobs))
    rows = np.column_stack([jobs["job_id"].to_numpy(),
                            *(jobs[c].to_numpy() for c in ASSIGNMENT_COLUMNS),
                            np.zeros(len(jobs)), escalation]).astype(np.int64)
    checkpointing = np.array([own.checkpoints for own in settings] or
                             [False] * len(learners), dtype=bool)
    return OpenedRun(store, len(jobs), rows, costs, scheduler, gpu_learners, len(todo),
                     int((current != "ok").sum()), checkpointing)


def learner_options(grid_file: GridFile, learners: list[str],
                    options: RunOptions) -> list[LearnerOptions]:
    """Per learner index, the grid's ``learner_options`` for it; limits are refused when
    the run has no isolation."""
    settings = learner_options_of(grid_file.learner_options(), learners)
    if not options.isolate:
        limited = [name for name, own in zip(learners, settings, strict=True) if own.limits]
        refuse_without_isolation([f"The grid's learner_options limits for {limited}"]
                                 if limited else [])
    return settings


def prune_checkpoints(paths: ProjectPaths, latest: Any) -> None:
    """Remove the checkpoints of splits whose latest result is ``ok`` (a split removes
    its own as it gets its result; one killed at that moment leaves them); say how many
    splits will resume from one."""
    if not paths.checkpoints.is_dir():
        return
    kept = 0
    for folder in paths.checkpoints.iterdir():
        job = int(folder.name) if folder.name.isdigit() else -1
        if job in latest.index and latest.loc[job] == "ok":
            shutil.rmtree(folder, ignore_errors=True)
        elif (folder / "meta.json").exists():
            kept += 1
    if kept:
        log(f"{kept} split(s) resume from their checkpoints in {paths.checkpoints}")


def mark_retries(store: ResultStore, statuses: tuple[str, ...]) -> None:
    """``--retry STATUS,...``: splits whose result has one of those statuses run again
    (their results so far stay in the journal and ``/history``)."""
    if not statuses:
        return
    latest = store.latest_status()
    again = latest.index[latest.isin(statuses)].to_numpy(dtype=np.int64)
    if len(again):
        store.mark_retry(again)
    log(f"retry {','.join(statuses)}: {len(again)} split(s) run again")


def retire_exhausted(store: ResultStore, limit: int, me: RankStats) -> None:
    """Record as ``crash`` the splits in flight in ``limit`` runs that died."""
    started = store.attempts_since_retry()
    exhausted = np.setdiff1d(np.flatnonzero(started >= limit), store.done_ids())
    if not len(exhausted):
        return
    now, n_scores = time.time(), len(store.scorer_names)
    store.add(EncodedResults([failed_result(
        j, int(store.started[j]), Status.CRASH,
        f"in flight when {started[j]} runs died; not retried (crash_after={limit})",
        n_scores=n_scores, rank=0, host=me.host, pid=me.pid, start=now, threads=0,
        end=now, run=len(store.run_keys()) + 1)  # (the run opening now)
        for j in exhausted.tolist()]))
    log(f"{len(exhausted)} split(s) recorded as crash after {limit} attempts")


def suspects(store: ResultStore, todo: np.ndarray) -> np.ndarray:
    """Pending splits that were handed out in a run that died: each goes out alone, to
    an idle worker, so that if this run dies too they were running, not queued behind
    other splits (only what was running is blamed)."""
    found = todo[store.attempts_since_retry()[todo] > 0]
    if len(found):
        log(f"{len(found)} split(s) were in flight when an earlier run died; each runs "
            "again on its own, so that a split that ends the run is singled out")
    return found
