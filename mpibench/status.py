"""What a project has done so far: counts per status and an ETA."""

from __future__ import annotations

import os
from dataclasses import dataclass

from .errors import MpibenchError
from .gridfile import GridFile
from .paths import ProjectPaths
from .progress import format_seconds
from .storage import read_attrs, read_results


@dataclass(frozen=True)
class ProjectStatus:
    """Counts of a project's splits, and an ETA in seconds at the last run's pace."""

    n_total: int
    n_done: int
    counts: dict
    eta_seconds: float

    @property
    def n_todo(self) -> int:
        """Splits without a result."""
        return self.n_total - self.n_done

    def format(self) -> str:
        """One line: ``done / error / todo``, per status, ETA."""
        parts = ", ".join(f"{k} {v}" for k, v in sorted(self.counts.items()))
        eta = "-" if self.n_todo == 0 else (
            "?" if self.eta_seconds != self.eta_seconds else f"~{format_seconds(self.eta_seconds)}"
        )
        errors = self.n_done - self.counts.get("ok", 0)
        return (f"{self.n_done}/{self.n_total} done ({parts or 'none'}) | {errors} failed | "
                f"{self.n_todo} todo | ETA {eta}")


def project_status(project: str | os.PathLike) -> ProjectStatus:
    """Read a project's progress.

    Examples
    --------
    >>> import tempfile, mpibench
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     print(project_status(mpibench.create_demo(tmp + "/p")).format())
    0/72 done (none) | 0 failed | 72 todo | ETA ?
    """
    paths = ProjectPaths(project)
    if not paths.grid.exists():
        raise MpibenchError(f"No project at {paths.root}. Check the path.")
    n_total = int(GridFile(paths.grid).attrs()["n_jobs"])
    if not paths.results.exists():
        return ProjectStatus(n_total, 0, {}, float("nan"))
    frame = read_results(paths.root, categorical=False)
    counts = frame["status"].value_counts().to_dict()
    n_ranks = int(read_attrs(paths.root).get("n_ranks", 1))
    mean_split = float((frame["end_time"] - frame["start_time"]).mean()) if len(frame) else 0.0
    workers = max(1, n_ranks - 1)
    eta = (n_total - len(frame)) * mean_split / workers if len(frame) else float("nan")
    return ProjectStatus(n_total, len(frame), {str(k): int(v) for k, v in counts.items()}, eta)
