"""``run.lock``: one run per project at a time.

The file is created exclusively and holds JSON (host, pid, SLURM job id, start
time), so a person can see who holds it. A lock left by a dead process on this host
is taken over with a warning; one from another host is never guessed stale.
"""

from __future__ import annotations

import json
import os
import socket
import time
import warnings
from pathlib import Path

from .errors import MpibenchError


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def describe_holder(info: dict) -> str:
    """``host pid N (SLURM job J) since <time>``."""
    job = f" (SLURM job {info['slurm_job_id']})" if info.get("slurm_job_id") else ""
    since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(info.get("start_time", 0)))
    return f"{info.get('host')} pid {info.get('pid')}{job} since {since}"


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
            with os.fdopen(fd, "w") as handle:
                json.dump(self.info, handle)
                handle.write("\n")
            self._held = True
            return
        raise MpibenchError(f"Could not create {self.path}; another run raced for it. Retry.")

    def _take_over_if_stale(self) -> None:
        try:
            holder = json.loads(self.path.read_text() or "{}")
        except (OSError, ValueError):
            holder = {}
        same_host = holder.get("host") == self.info["host"]
        if same_host and isinstance(holder.get("pid"), int) and not _alive(holder["pid"]):
            warnings.warn(f"Taking over the stale lock {self.path} of dead "
                          f"{describe_holder(holder)}.", stacklevel=3)
            self.path.unlink(missing_ok=True)
            return
        raise MpibenchError(
            f"Another run holds {self.path}: {describe_holder(holder)}. Wait for it to "
            "finish; if it is dead (e.g. on another node), delete that file and rerun."
        )

    def release(self) -> None:
        """Remove the lock file if we hold it."""
        if self._held:
            self.path.unlink(missing_ok=True)
            self._held = False

    def __enter__(self) -> ProjectLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
