"""``run.lock``: one run per project at a time.

The file holds JSON (host, pid, SLURM job id, start time), so a person can see who
holds it. It is written whole to a temporary file and hard-linked into place (a link
fails if the name exists, on NFS too), so a lock is never seen half written; a full
disk leaves none. A lock left by a dead process on this host is taken over with a
warning; one from another host is never guessed stale; an empty or garbled one older
than ``GARBLED_STALE_SECONDS`` is stale. A takeover renames the stale lock aside and
checks that what it moved is what it judged, so two runs taking over the same stale
lock never both hold it.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import socket
import subprocess
import time
import warnings
from pathlib import Path
from typing import Any

from ..errors import MpibenchError, WriteFailed
from .paths import ProjectPaths

GARBLED_STALE_SECONDS = 5.0
"""Age (seconds) past which an empty or unreadable lock counts as stale."""


def pid_alive(pid: int) -> bool:
    """True if ``pid`` runs on this host (a zombie, killed but not reaped, is dead)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[-1].split()[0] not in ("Z", "X")


def describe_holder(info: dict) -> str:
    """``host pid N (SLURM job J) since <time>``."""
    job = f" (SLURM job {info['slurm_job_id']})" if info.get("slurm_job_id") else ""
    since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(info.get("start_time", 0)))
    return f"{info.get('host')} pid {info.get('pid')}{job} since {since}"


def read_holder(path: Path) -> dict | None:
    """The JSON a lock file holds (None when it is missing or unreadable)."""
    try:
        holder = json.loads(Path(path).read_text(errors="replace") or "{}")
    except (OSError, ValueError):
        return None
    return holder if isinstance(holder, dict) else None


def holder_alive(holder: dict) -> bool | None:
    """Whether a lock's holder runs: its pid, when it is on this host; None (cannot
    tell) on another host."""
    pid = holder.get("pid")
    if holder.get("host") == socket.gethostname() and isinstance(pid, int):
        return pid_alive(pid)
    return None


def _slurm_job_running(job_id: str) -> bool:
    """True unless squeue says the job is not running (True when it cannot tell)."""
    squeue = shutil.which("squeue")
    if squeue is None:
        return True
    try:
        done = subprocess.run([squeue, "-h", "-j", job_id, "-o", "%T"], capture_output=True,
                              text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return True
    if done.returncode != 0 and "Invalid job id" not in done.stderr:
        return True
    return done.stdout.strip() in ("RUNNING", "COMPLETING", "SUSPENDED")


class ProjectLock:
    """Exclusive lock on a project, as a context manager.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "run.lock"
    >>> with ProjectLock(path):
    ...     path.exists()
    True
    >>> path.exists()
    False
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.info = {
            "host": socket.gethostname(), "pid": os.getpid(),
            "slurm_job_id": os.environ.get("SLURM_JOB_ID", ""), "start_time": time.time(),
        }
        self._held = False

    def acquire(self) -> None:
        """Take the lock, or raise :class:`MpibenchError` naming its holder."""
        text = json.dumps(self.info) + "\n"
        for _ in range(4):
            if self._create(text):
                self._held = True
                return
            self._take_over_if_stale()
        raise MpibenchError(f"Could not create {self.path}; another run raced for it. Retry.")

    def _create(self, text: str) -> bool:
        """Put a lock holding ``text`` at the path; False if one is there already."""
        tmp = ProjectPaths(self.path.parent).temporary(self.path)
        try:
            try:
                with open(tmp, "w") as handle:
                    handle.write(text)
                    handle.flush()
                    os.fsync(handle.fileno())
                os.link(tmp, self.path)
            except FileExistsError:
                return False
            except OSError as exc:
                if exc.errno in (errno.EPERM, errno.ENOTSUP, errno.EMLINK, errno.EXDEV):
                    return self._create_exclusively(text)  # (no hard links here)
                raise self._cannot_write(exc) from None
            return True
        finally:
            with contextlib.suppress(OSError):  # (a read-only folder: it was never made)
                tmp.unlink()

    def _create_exclusively(self, text: str) -> bool:
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return False
        except OSError as exc:
            raise self._cannot_write(exc) from None
        try:
            os.write(fd, text.encode())
        except OSError as exc:
            os.close(fd)
            self.path.unlink(missing_ok=True)
            raise self._cannot_write(exc) from None
        os.close(fd)
        return True

    def _cannot_write(self, exc: OSError) -> MpibenchError:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return WriteFailed(f"Cannot write {self.path}: {exc.strerror}. Free space there "
                               "(or raise the quota) and rerun; nothing was changed.")
        return MpibenchError(
            f"Cannot create {self.path}: {exc.strerror}. A run writes into the "
            "project folder: make it writable (chmod u+w) or copy the project to "
            "a folder you can write, and rerun.")

    def _take_over_if_stale(self) -> None:
        try:
            seen = self.path.read_bytes()
        except FileNotFoundError:
            return  # released meanwhile: try again
        except OSError as exc:
            raise self._cannot_write(exc) from None
        holder = read_holder(self.path) if seen else None
        reason = self._stale_reason(holder) if holder else self._garbled_reason(seen)
        if not reason:
            raise MpibenchError(
                f"Another run holds {self.path}: {describe_holder(holder or {})}. Wait for "
                "it to finish; if it is dead (e.g. on another node), delete that file and "
                "rerun.")
        aside = self.path.with_name(f".{self.path.name}.{os.getpid()}.stale")
        try:
            self.path.rename(aside)
        except FileNotFoundError:
            return  # another run took it over first
        if aside.read_bytes() != seen:  # moved a newer lock: put it back
            try:
                os.link(aside, self.path)
            except FileExistsError:
                pass
            aside.unlink(missing_ok=True)
            return
        aside.unlink(missing_ok=True)
        who = describe_holder(holder) if holder else "nobody (an empty or garbled lock)"
        warnings.warn(f"Taking over the stale lock {self.path} of {who}: {reason}.",
                      stacklevel=4)

    def _garbled_reason(self, seen: bytes) -> str:
        try:
            age = time.time() - self.path.stat().st_mtime
        except OSError:
            return ""
        if age < GARBLED_STALE_SECONDS:
            raise MpibenchError(f"{self.path} is being written by another run; retry in a "
                                "few seconds.")
        return f"it is {'empty' if not seen.strip() else 'not a lock mpibench wrote'}"

    def _stale_reason(self, holder: dict) -> str:
        """Why the holder is certainly gone, or '' when it may be alive."""
        job, alive = holder.get("slurm_job_id"), holder_alive(holder)
        if alive is not None:
            return "" if alive else "that process is dead"
        if job and job == self.info["slurm_job_id"]:
            return "an earlier run of this same SLURM job (requeued)"
        if job and not _slurm_job_running(str(job)):
            return f"SLURM job {job} is no longer running"
        return ""

    @property
    def held(self) -> bool:
        """True while this object holds the lock."""
        return self._held

    def release(self) -> None:
        """Remove the lock file if we hold it (and it is still ours)."""
        if self._held:
            holder = read_holder(self.path)
            if holder is None or holder.get("pid") == self.info["pid"]:
                self.path.unlink(missing_ok=True)
            self._held = False

    def __enter__(self) -> ProjectLock:
        self.acquire()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()
