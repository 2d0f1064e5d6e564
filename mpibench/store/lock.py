"""``run.lock``: one run per project at a time.

The file is created exclusively and holds JSON (host, pid, SLURM job id, start
time), so a person can see who holds it. A lock left by a dead process on this host
is taken over with a warning; one from another host is never guessed stale.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
import warnings
from pathlib import Path
from typing import Any

from ..errors import MpibenchError


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
        return json.loads(Path(path).read_text() or "{}")
    except (OSError, ValueError):
        return None


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
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                self._take_over_if_stale()
                continue
            except OSError as exc:
                raise MpibenchError(
                    f"Cannot create {self.path}: {exc.strerror}. A run writes into the "
                    "project folder: make it writable (chmod u+w) or copy the project to "
                    "a folder you can write, and rerun.") from None
            with os.fdopen(fd, "w") as handle:
                json.dump(self.info, handle)
                handle.write("\n")
            self._held = True
            return
        raise MpibenchError(f"Could not create {self.path}; another run raced for it. Retry.")

    def _take_over_if_stale(self) -> None:
        holder = read_holder(self.path) or {}
        reason = self._stale_reason(holder)
        if reason:
            warnings.warn(f"Taking over the stale lock {self.path} of "
                          f"{describe_holder(holder)}: {reason}.", stacklevel=3)
            self.path.unlink(missing_ok=True)
            return
        raise MpibenchError(
            f"Another run holds {self.path}: {describe_holder(holder)}. Wait for it to "
            "finish; if it is dead (e.g. on another node), delete that file and rerun."
        )

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
        """Remove the lock file if we hold it."""
        if self._held:
            self.path.unlink(missing_ok=True)
            self._held = False

    def __enter__(self) -> ProjectLock:
        self.acquire()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()
