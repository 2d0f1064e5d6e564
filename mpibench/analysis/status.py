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

from ..errors import MpibenchError
from ..formatting import format_seconds
from ..store.gridfile import GridFile, read_column
from ..store.journal import batch_from_columns_record, batch_from_record, changed_parts, read_tail
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
    """

    n_total: int
    n_done: int
    counts: dict
    eta_seconds: float
    n_in_flight: int = 0
    run: dict | None = field(default=None)

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
        eta = "-" if self.n_todo == 0 else (
            "?" if self.eta_seconds != self.eta_seconds else f"~{format_seconds(self.eta_seconds)}"
        )
        counts = (f"{self.n_done}/{self.n_total} done ({parts or 'none'}) | {self.n_failed} "
                  f"failed | {self.n_todo} todo ({self.n_in_flight} in flight, "
                  f"{self.n_pending} pending) | ETA {eta}")
        return f"{counts}\n{self._run_line()}"

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
        return f"run: active, {describe_holder(self.run)}; {beat}{stopping}"

    def to_dict(self) -> dict:
        """Everything, JSON-ready (``mpibench status --json``)."""
        eta = None if self.eta_seconds != self.eta_seconds else self.eta_seconds
        return {**asdict(self), "eta_seconds": eta, "n_failed": self.n_failed,
                "n_todo": self.n_todo, "n_pending": self.n_pending}


def project_status(project: str | os.PathLike) -> ProjectStatus:
    """Read a project's progress, live while a run is going.

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
    statuses, seconds, n_ranks = _recorded(paths, attrs)
    counts = dict(Counter(str(s) for s in statuses.values()))
    run = _running(paths)
    if run is not None and run.get("eta_seconds") is not None:
        eta = float(run["eta_seconds"])
    else:
        eta = (n_total - len(statuses)) * seconds / max(1, n_ranks - 1) if seconds else float("nan")
    in_flight = int(run.get("n_in_flight", 0)) if run is not None else 0
    return ProjectStatus(n_total, len(statuses), counts, eta, in_flight, run)


def _recorded(paths: ProjectPaths, grid_attrs: dict) -> tuple[dict, float, int]:
    """Current status of each job with a result (``results.h5``, then the journal
    after it), the mean seconds of a split, and the last run's ranks."""
    parts = {k.removeprefix("fingerprint_"): str(v) for k, v in grid_attrs.items()
             if k.startswith("fingerprint_")}
    statuses: dict = {}
    offset: int | None = 0
    seconds, n_ranks = 0.0, 1
    if paths.results.exists():
        statuses, offset, seconds, n_ranks = _from_results(paths, grid_attrs)
    journal = paths.journal
    if journal.exists() and journal.stat().st_size:
        if offset is None:  # results.h5 of an older version: the journal says it all
            statuses, offset = {}, 0
        header, records = read_tail(journal, offset)
        changed = changed_parts(header, parts)
        if changed:
            raise MpibenchError(
                f"{journal} was written for a different grid (changed: {', '.join(changed)})"
                f": {paths.grid} no longer matches its results. Recreate the project from "
                "the grid that made them, or move the journal and results.h5 away.")
        _apply_tail(statuses, records)
    return statuses, seconds, n_ranks


def _from_results(paths: ProjectPaths,
                  grid_attrs: dict) -> tuple[dict, int | None, float, int]:
    from ..store.storage import open_results

    with open_results(paths.root) as h5:
        has_journal = paths.journal.exists() and paths.journal.stat().st_size
        if h5.attrs.get("fingerprint") != grid_attrs.get("fingerprint") and has_journal:
            return {}, 0, 0.0, 1  # (the project grew since: the journal says it all)
        if h5.attrs.get("fingerprint") != grid_attrs.get("fingerprint"):
            raise MpibenchError(
                f"{paths.results} was written for a different grid than {paths.grid}: "
                "its results do not belong to this project. Move it away, or recreate the "
                "project from the grid that made them.")
        splits = h5["splits"]
        job_ids = read_column(splits["job_id"])
        status = read_column(splits["status"])
        took = read_column(splits["end_time"]) - read_column(splits["start_time"])
        return (dict(zip(job_ids.tolist(), status.tolist(), strict=True)),
                int(h5.attrs["journal_offset"]) if "journal_offset" in h5.attrs else None,
                float(took.mean()) if len(took) else 0.0,
                int(h5.attrs.get("n_ranks", 1)))


def _apply_tail(statuses: dict, records: list[dict]) -> None:
    """Results in the journal after ``results.h5`` replace the ones before; a retry
    mark takes a job's result away until its new one."""
    for record in records:
        kind = record.get("t")
        if kind in ("r", "c"):
            batch = batch_from_record(record) if kind == "r" else \
                batch_from_columns_record(record)
            statuses.update(zip(batch.job_ids.tolist(), batch.status.tolist(), strict=True))
        elif kind == "x":
            for job in record["jobs"]:
                statuses.pop(job, None)


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
    keep = ("n_in_flight", "n_pending", "eta_seconds", "stopping", "n_ranks")
    if alive is False:
        beat = {}
    return {**holder, **{k: beat[k] for k in keep if k in beat},
            "heartbeat_age_seconds": age, "alive": alive}
