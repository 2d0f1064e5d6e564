"""Every path of a project, in one place (nobody else builds project paths)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ProjectPaths:
    """The files of one project folder.

    Examples
    --------
    >>> ProjectPaths("proj").grid.name
    'grid.h5'
    """

    root: Path

    def __init__(self, root: str | os.PathLike) -> None:
        object.__setattr__(self, "root", Path(root))

    @property
    def grid(self) -> Path:
        """Grid definition: data, splits, job table, learners (written once)."""
        return self.root / "grid.h5"

    @property
    def results(self) -> Path:
        """User-facing results (replaced atomically)."""
        return self.root / "results.h5"

    @property
    def journal(self) -> Path:
        """Append-only record of finished splits."""
        return self.root / "results.journal"

    @property
    def stop_request(self) -> Path:
        """Created (e.g. by the batch script's signal trap) to ask a run to stop."""
        return self.root / "stop.request"

    @property
    def lock(self) -> Path:
        """Present while a run owns the project."""
        return self.root / "run.lock"

    def temporary(self, target: Path) -> Path:
        """Temp file beside ``target`` for an atomic replace."""
        return target.with_name(f".{target.name}.{os.getpid()}.tmp")


def fsync_directory(path: Path) -> None:
    """Flush a directory entry (after a rename) to stable storage."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def replace_atomically(tmp: Path, target: Path) -> None:
    """fsync ``tmp``, rename it over ``target`` and fsync the folder."""
    with open(tmp, "rb+") as handle:
        os.fsync(handle.fileno())
    Path(tmp).replace(target)
    fsync_directory(target.parent)
