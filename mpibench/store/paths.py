"""Every path of a project, in one place (nobody else builds project paths)."""

from __future__ import annotations

import io
import os
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..errors import MpibenchError, WriteFailed, inject_fault
from ..formatting import format_bytes
from ..tuning import IN_MEMORY_LIMIT, WRITE_CHUNK


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
    def stopping(self) -> Path:
        """Present while a run is stopping (rank 0 writes the reason): what a split's
        checkpoint asks (:meth:`~mpibench.checkpoint.SplitCheckpoint.should_stop`)."""
        return self.root / "run.stopping"

    @property
    def checkpoints(self) -> Path:
        """Folder of the splits' checkpoints (``checkpoints/JOB_ID/``, see
        :mod:`mpibench.checkpoint`)."""
        return self.root / "checkpoints"

    @property
    def exit_code(self) -> Path:
        """The last run's exit code, written by rank 0 as the run ends (``0``: every
        split has a result; ``3``: stopped early, resumable). The batch script reads it:
        srun's own status is not the run's once ``--kill-on-bad-exit`` has killed a rank
        that was still exiting."""
        return self.root / "exit_code"

    @property
    def predictions(self) -> Path:
        """Folder of the per-rank prediction files (``--save-predictions``)."""
        return self.root / "predictions"

    @property
    def logs(self) -> Path:
        """Folder of each split's output (``--log-splits``): ``JOB-ATTEMPT.log``."""
        return self.root / "logs"

    @property
    def heartbeat(self) -> Path:
        """JSON a running run's rank 0 rewrites every few seconds (counts, ETA)."""
        return self.root / "run.status"

    @property
    def lock(self) -> Path:
        """Present while a run owns the project."""
        return self.root / "run.lock"

    def refuse_links(self) -> None:
        """Refuse a project whose journal, results, lock, logs or predictions are
        symbolic links: a run writes only inside its project folder.

        Raises :class:`MpibenchError` naming the link and where it points."""
        for path in (self.journal, self.results, self.lock, self.heartbeat, self.exit_code,
                     self.stop_request, self.logs, self.predictions, self.stopping,
                     self.checkpoints):
            if path.is_symlink():
                raise MpibenchError(
                    f"{path} is a symbolic link (to {path.readlink()}): a run writes only "
                    "inside its project folder. Replace the link with the file or folder "
                    "itself (or remove it), and rerun.")

    def stop_requester(self) -> str | None:
        """Who asked to stop: the first 80 printable characters of ``stop.request``
        ("unnamed" when empty, "a directory" for one); None when there is none."""
        stop = self.stop_request
        if stop.is_dir():
            return "a directory"
        try:
            text = stop.read_bytes()[:400].decode(errors="replace")
        except FileNotFoundError:
            return None
        except OSError as exc:
            return f"unreadable: {exc.strerror}"
        shown = "".join(c if c.isprintable() else " " for c in text.strip())
        return " ".join(shown.split())[:80] or "unnamed"

    def remove_stop_request(self) -> None:
        """Remove ``stop.request`` (an empty directory of that name too).

        Raises :class:`MpibenchError` for a directory with files in it."""
        stop = self.stop_request
        try:
            if stop.is_dir():
                stop.rmdir()
            else:
                stop.unlink(missing_ok=True)
        except OSError as exc:
            raise MpibenchError(
                f"Cannot remove {stop} ({exc.strerror}): a stop request is a file. Move "
                "it away and rerun.") from None

    def temporary(self, target: Path) -> Path:
        """Temp file beside ``target`` for an atomic replace."""
        return target.with_name(f".{target.name}.{os.getpid()}.tmp")

    def dead_temporaries(self) -> list[Path]:
        """Temp files of the project folder (see :meth:`temporary`) whose process is
        dead on this host: left by a killed ``create_project`` or write."""
        from .lock import pid_alive

        found = []
        for entry in self.root.iterdir():
            match = re.fullmatch(r"\..+\.(\d+)\.tmp", entry.name)
            if match and entry.is_file() and not pid_alive(int(match.group(1))):
                found.append(entry)
        return found


def fsync_path(path: Path) -> None:
    """Flush a file, or a directory's entries (after a rename), to stable storage."""
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
    fsync_path(target.parent)


def write_failed(path: Path, error: OSError, fix: str) -> WriteFailed:
    """The one-line error for a failed write of ``path``: the cause, the space left on
    that file system, and ``fix``."""
    try:
        free = f"{format_bytes(shutil.disk_usage(Path(path).parent).free)} free there"
    except OSError:
        free = "free space unknown"
    cause = error.strerror or str(error)
    return WriteFailed(f"Could not write {path}: {cause} ({free}). {fix}")


def write_bytes_atomically(target: Path, data: bytes | memoryview, fix: str,
                           fault: str | None = None) -> None:
    """Write ``data`` to a temp file beside ``target``, fsync it and rename it over
    ``target``; on any error remove the temp file and raise :class:`WriteFailed`
    (``fault``: the ``MPIBENCH_FAULT`` test hook's name for the moment before the
    rename)."""
    tmp = ProjectPaths(target.parent).temporary(target)
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            view = memoryview(data).cast("B")
            while view:
                view = view[os.write(fd, view[:WRITE_CHUNK]):]
            os.fsync(fd)
        finally:
            os.close(fd)
        if fault is not None:
            inject_fault(fault, 0)
        Path(tmp).replace(target)
        fsync_path(target.parent)
    except OSError as exc:
        raise write_failed(target, exc, fix) from None
    finally:
        tmp.unlink(missing_ok=True)


def write_hdf5_atomically(target: Path, fill: Callable[[object], None], fix: str,
                          expected_bytes: int = 0, fault: str | None = None) -> None:
    """Build an HDF5 file with ``fill(h5)`` and put it at ``target`` atomically.

    A file expected below ``IN_MEMORY_LIMIT`` bytes is built in memory and written with
    plain ``write`` calls: a full disk is then one :class:`WriteFailed` (HDF5 writing to
    a full disk prints pages of errors and can crash the process). A larger one is
    written in place after checking that the file system has room for it.

    Examples
    --------
    >>> import tempfile, h5py
    >>> target = Path(tempfile.mkdtemp()) / "x.h5"
    >>> write_hdf5_atomically(target, lambda h5: h5.attrs.update(n=3), fix="Free space.")
    >>> with h5py.File(target, "r") as h5:
    ...     int(h5.attrs["n"]), [p.name for p in target.parent.iterdir()]
    (3, ['x.h5'])
    """
    import h5py

    if expected_bytes < IN_MEMORY_LIMIT:
        buffer = io.BytesIO()
        with h5py.File(buffer, "w") as h5:
            fill(h5)
        write_bytes_atomically(target, buffer.getbuffer(), fix, fault)
        return
    free = shutil.disk_usage(target.parent).free
    if free < expected_bytes:
        raise write_failed(target, OSError(28, f"needs about {format_bytes(expected_bytes)}"),
                           fix)
    tmp = ProjectPaths(target.parent).temporary(target)
    try:
        with h5py.File(tmp, "w") as h5:
            fill(h5)
        replace_atomically(tmp, target)
    except OSError as exc:
        raise write_failed(target, exc, fix) from None
    finally:
        tmp.unlink(missing_ok=True)
