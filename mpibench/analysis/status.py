"""What a project has done so far, live: counts per status, in flight, the run, ETA.

Counts come from ``results.h5`` (the last checkpoint) plus the journal records written
after it (``results.h5`` holds the journal offset it was built to), so a status is
current within a second whatever the checkpoint interval, without parsing the whole
journal. A running run's rank 0 rewrites ``run.status`` every two seconds (splits in
flight, pending, the cost model's ETA); ``run.lock`` names the run.
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from dataclasses import asdict, dataclass, field

import numpy as np

from ..checkpoint import list_checkpoints
from ..errors import MpibenchError
from ..formatting import format_bytes, format_seconds, overdue_line
from ..store.gridfile import GridFile, read_column
from ..store.journal import RETRIED, changed_parts, read_tail, results_of
from ..store.lock import describe_holder, holder_alive, read_holder
from ..store.paths import ProjectPaths

HEARTBEAT_STALE = 60.0
"""Seconds without a heartbeat after which a run is reported as possibly dead."""


@dataclass(frozen=True)
class ProjectStatus:
    """Where a project stands.

    Attributes
    ----------
    n_total, n_done : int
        Splits in the grid, and splits with a result (failed ones included).
    counts : dict
        Results per status.
    eta_seconds : float
        Seconds left: the running run's cost-model estimate, else the last run's pace;
        NaN when unknown.
    n_in_flight : int
        Splits running now (0 without a running run).
    run : dict or None
        The running run (``run.lock``: host, pid, SLURM job, start time) with
        ``heartbeat_age_seconds``; None when no run holds the project.
    checkpoints : list of dict
        The splits' checkpoints kept (:func:`~mpibench.checkpoint.list_checkpoints`):
        splits that resume from one on their next attempt.
    """

    n_total: int
    n_done: int
    counts: dict
    eta_seconds: float
    n_in_flight: int = 0
    run: dict | None = field(default=None)
    checkpoints: list = field(default_factory=list)

    @property
    def n_failed(self) -> int:
        """Splits whose result is not ``ok``."""
        return self.n_done - self.counts.get("ok", 0)

    @property
    def n_todo(self) -> int:
        """Splits without a result."""
        return self.n_total - self.n_done

    @property
    def n_pending(self) -> int:
        """Splits without a result that are not running."""
        return self.n_todo - self.n_in_flight

    def format(self) -> str:
        """Two lines: counts and ETA; the run (or none)."""
        parts = ", ".join(f"{k} {v}" for k, v in sorted(self.counts.items()))
        overdue = bool(self.run and self.run.get("overdue"))
        eta = "-" if self.n_todo == 0 else (
            "?" if self.eta_seconds != self.eta_seconds
            else f"{'>=' if overdue else '~'}{format_seconds(self.eta_seconds)}")
        counts = (f"{self.n_done}/{self.n_total} done ({parts or 'none'}) | {self.n_failed} "
                  f"failed | {self.n_todo} todo ({self.n_in_flight} in flight, "
                  f"{self.n_pending} pending) | ETA {eta}")
        return "\n".join([counts, self._run_line(), *self._checkpoint_line()])

    def _checkpoint_line(self) -> list[str]:
        if not self.checkpoints:
            return []
        size = sum(c["bytes"] for c in self.checkpoints)
        age = format_seconds(max(time.time() - self.checkpoints[0]["saved"], 0.0))
        jobs = ", ".join(str(c["job_id"]) for c in self.checkpoints[:5])
        more = f" and {len(self.checkpoints) - 5} more" if len(self.checkpoints) > 5 else ""
        return [f"checkpoints: {len(self.checkpoints)} split(s) resume from one "
                f"({format_bytes(size)}, newest {age} ago): job {jobs}{more}"]

    def _run_line(self) -> str:
        if self.run is None:
            return "run: none active"
        if self.run.get("alive") is False:
            return (f"run: none active (run.lock left by a dead run: "
                    f"{describe_holder(self.run)}; the next run takes it over)")
        age = self.run.get("heartbeat_age_seconds")
        beat = ("no heartbeat yet" if age is None else
                f"last heartbeat {format_seconds(age)} ago")
        if age is not None and age > HEARTBEAT_STALE:
            beat += " (stale: the run may have died; run.lock stays until the next run)"
        stopping = f", stopping: {self.run['stopping']}" if self.run.get("stopping") else ""
        if self.run.get("core_hours_saved"):
            stopping += (f"; {self.run['core_hours_saved']} core-hours saved by stopping "
                         "workers for which no split fits before the time limit")
        line = f"run: active, {describe_holder(self.run)}; {beat}{stopping}"
        return "\n".join([line, *map(overdue_line, self.run.get("overdue") or [])])

    def to_dict(self) -> dict:
        """Everything, JSON-ready (``mpibench status --json``)."""
        eta = None if self.eta_seconds != self.eta_seconds else self.eta_seconds
        return {**asdict(self), "eta_seconds": eta, "n_failed": self.n_failed,
                "n_todo": self.n_todo, "n_pending": self.n_pending}


def project_status(project: str | os.PathLike) -> ProjectStatus:
    """Read a project's progress, live while a run is going.

    It costs the same on a million-split project as on a small one: ``results.h5``
    keeps its count per status as an attribute, and only the journal records written
    after it are read (and the statuses they replace).

    Raises :class:`MpibenchError` (one line) when the journal or ``results.h5`` were
    written for another grid than the project's ``grid.h5``.

    Examples
    --------
    >>> import tempfile, mpibench
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     print(project_status(mpibench.create_demo(tmp + "/p")).format())
    0/72 done (none) | 0 failed | 72 todo (0 in flight, 72 pending) | ETA ?
    run: none active
    """
    paths = ProjectPaths(project)
    if not paths.grid.exists():
        raise MpibenchError(f"No project at {paths.root}. Check the path.")
    attrs = GridFile(paths.grid).attrs()
    n_total = int(attrs["n_jobs"])
    counts, seconds, n_ranks = _recorded(paths, attrs)
    n_done = sum(counts.values())
    run = _running(paths)
    if run is not None and run.get("eta_seconds") is not None:  # as of its heartbeat
        eta = max(float(run["eta_seconds"]) - (run.get("heartbeat_age_seconds") or 0.0), 0.0)
    else:
        eta = (n_total - n_done) * seconds / max(1, n_ranks - 1) if seconds else float("nan")
    in_flight = int(run.get("n_in_flight", 0)) if run is not None else 0
    return ProjectStatus(n_total, n_done, counts, eta, in_flight, run,
                         list_checkpoints(paths.checkpoints))


class _Base:
    """What ``results.h5`` holds: counts per status, and (read only when the journal
    replaces some of them) the status of given job ids."""

    def __init__(self, paths: ProjectPaths, grid_attrs: dict) -> None:
        self.paths = paths
        self.counts: Counter = Counter()
        self.offset: int | None = 0
        self.seconds, self.n_ranks = 0.0, 1
        if not paths.results.exists():
            return
        from ..store.reading import open_results

        with open_results(paths.root) as h5:
            has_journal = paths.journal.exists() and paths.journal.stat().st_size
            if h5.attrs.get("fingerprint") != grid_attrs.get("fingerprint") and has_journal:
                return  # (the project grew since: the journal says it all)
            if h5.attrs.get("fingerprint") != grid_attrs.get("fingerprint"):
                raise MpibenchError(
                    f"{paths.results} was written for a different grid than {paths.grid}: "
                    "its results do not belong to this project. Move it away, or recreate "
                    "the project from the grid that made them.")
            self.offset = (int(h5.attrs["journal_offset"]) if "journal_offset" in h5.attrs
                           else None)
            self.n_ranks = int(h5.attrs.get("n_ranks", 1))
            splits = h5["splits"]
            if "status_counts" in h5.attrs:  # (results.h5 written before it: read all)
                self.counts = Counter(json.loads(h5.attrs["status_counts"]))
                self.seconds = float(h5.attrs.get("mean_split_seconds", 0.0))
            else:
                status = read_column(splits["status"])
                self.counts = Counter(dict(zip(*np.unique(status, return_counts=True),
                                               strict=True)))
                took = read_column(splits["end_time"]) - read_column(splits["start_time"])
                self.seconds = float(took.mean()) if len(took) else 0.0

    def statuses(self, job_ids: list[int]) -> dict[int, str]:
        """The status ``results.h5`` holds for each of ``job_ids`` that it has."""
        if not job_ids or not self.counts:
            return {}
        from ..store.reading import open_results

        with open_results(self.paths.root) as h5:
            splits = h5["splits"]
            ids = splits["job_id"][()]
            wanted = np.unique(np.asarray(job_ids, dtype=np.int64))
            rows = np.searchsorted(ids, wanted)
            found = rows < len(ids)
            found[found] = ids[rows[found]] == wanted[found]
            if not found.any():
                return {}
            status = splits["status"].asstr()[np.sort(rows[found])]
            return dict(zip(ids[np.sort(rows[found])].tolist(), status.tolist(), strict=True))


def _recorded(paths: ProjectPaths, grid_attrs: dict) -> tuple[dict, float, int]:
    """Splits with a result per status (``results.h5``, then the journal after it), the
    mean seconds of a split, and the last run's ranks."""
    parts = {k.removeprefix("fingerprint_"): str(v) for k, v in grid_attrs.items()
             if k.startswith("fingerprint_")}
    base = _Base(paths, grid_attrs)
    journal = paths.journal
    if not (journal.exists() and journal.stat().st_size):
        return dict(base.counts), base.seconds, base.n_ranks
    if base.offset is None:  # results.h5 of an older version: the journal says it all
        base.counts, base.offset = Counter(), 0
    header, records = read_tail(journal, base.offset)
    changed = changed_parts(header, parts)
    if changed:
        raise MpibenchError(
            f"{journal} was written for a different grid (changed: {', '.join(changed)})"
            f": {paths.grid} no longer matches its results. Recreate the project from "
            "the grid that made them, or move the journal and results.h5 away.")
    tail = _apply_tail(records)
    counts = base.counts
    for status in base.statuses(list(tail)).values():
        counts[status] -= 1  # replaced (or taken away) by the journal
    counts.update(s for s in tail.values() if s is not None)
    return {k: v for k, v in counts.items() if v > 0}, base.seconds, base.n_ranks


def _apply_tail(records: list[dict]) -> dict[int, str | None]:
    """The journal after ``results.h5``: the latest status of each job it names (None:
    a retry mark took its result away until its new one)."""
    statuses: dict[int, str | None] = {}
    for record in records:
        batch = results_of(record)
        if batch is not None:
            statuses.update(zip(batch.job_ids.tolist(), batch.status.tolist(), strict=True))
        elif record.get("t") == RETRIED:
            statuses.update(dict.fromkeys(record["jobs"]))
    return statuses


def _running(paths: ProjectPaths) -> dict | None:
    """The run holding ``run.lock``, with its last heartbeat (None: no run)."""
    holder = read_holder(paths.lock)
    if holder is None:
        return None
    try:
        beat = json.loads(paths.heartbeat.read_text())
    except (OSError, ValueError):
        beat = {}
    if beat.get("pid") != holder.get("pid") or beat.get("host") != holder.get("host"):
        beat = {}  # a heartbeat left by another run
    age = time.time() - float(beat["updated"]) if "updated" in beat else None
    alive = holder_alive(holder)  # None on another host: cannot tell
    keep = ("n_in_flight", "n_pending", "eta_seconds", "stopping", "n_ranks", "overdue",
            "core_hours_saved")
    if alive is False:
        beat = {}
    return {**holder, **{k: beat[k] for k in keep if k in beat},
            "heartbeat_age_seconds": age, "alive": alive}
