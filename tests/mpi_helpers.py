"""Launch mpiexec (or the mpibench command) as a subprocess with a hard timeout.

A hang fails the test: the process group gets SIGTERM, then SIGKILL after a grace.
"""

from __future__ import annotations

import atexit
import functools
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

BIN = Path(sys.executable).parent


@dataclass
class Completed:
    """Exit code and output of a finished subprocess."""

    returncode: int
    stdout: str
    stderr: str


def mpiexec() -> str:
    """Path of the mpiexec next to this Python (the mpich wheel's), else on PATH."""
    local = BIN / "mpiexec"
    found = str(local) if local.exists() else shutil.which("mpiexec")
    if found is None:
        raise RuntimeError("mpiexec not found: pip install 'mpibench[mpich]'")
    return found


@functools.cache
def is_open_mpi() -> bool:
    """True when this environment's mpiexec is Open MPI's."""
    done = subprocess.run([mpiexec(), "--version"], capture_output=True, text=True, timeout=30)
    return "Open MPI" in done.stdout + done.stderr or "prte" in done.stdout.lower()


def launcher(n_ranks: int) -> list[str]:
    """``mpiexec -n N``, plus what Open MPI needs to run more ranks than cores."""
    extra = ["--oversubscribe"] if is_open_mpi() else []
    return [mpiexec(), *extra, "-n", str(n_ranks)]


@functools.cache
def _launch_tmp_root() -> Path:
    root = Path(tempfile.mkdtemp(prefix="mpit", dir="/tmp"))
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    return root


def launch_env() -> dict[str, str]:
    """Environment of one launch: with Open MPI, a fresh short ``TMPDIR``.

    A killed or aborted Open MPI job leaves its session directory ``/tmp/ompi.PID``
    (PMIx rendezvous files named after the launcher's PID). Once PIDs wrap (32768 here,
    after a few thousand test processes) a new launcher that gets an old PID fails with
    "The PMIx server's listener thread failed to start". A directory per launch (short:
    the rendezvous files are Unix socket paths, at most 107 bytes) avoids the collision.
    """
    if not is_open_mpi():
        return {}
    return {"TMPDIR": tempfile.mkdtemp(prefix="l", dir=_launch_tmp_root())}


def mpibench_command() -> list[str]:
    """The mpibench command of this environment."""
    return [sys.executable, "-m", "mpibench"]


TEST_RUN = os.environ.setdefault("MPIBENCH_TEST_RUN", str(os.getpid()))
"""Marks every process this test run starts (inherited through the environment; the
launchers put each rank in a session of its own, so sessions cannot tell)."""


def ours(pid: str) -> bool:
    """True for a process of this test run (a re-parented orphan keeps its environment)."""
    try:
        environment = Path("/proc", pid, "environ").read_bytes()
    except OSError:
        return False
    return f"\0MPIBENCH_TEST_RUN={TEST_RUN}\0".encode() in b"\0" + environment


def run_process(args: list[str], *, timeout: float = 120, env: dict | None = None,
                cwd: str | os.PathLike | None = None) -> Completed:
    """Run ``args`` in a new session; on timeout kill the whole group and fail."""
    full_env = {**os.environ, "MPIEXEC_TIMEOUT": str(int(timeout) + 30), **launch_env(),
                **(env or {})}
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=full_env, cwd=cwd, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            out, err = proc.communicate(timeout=5)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, err = proc.communicate()
        raise AssertionError(
            f"timed out after {timeout}s: {' '.join(map(str, args))}\n{out}\n{err}"
        ) from None
    return Completed(proc.returncode, out, err)


def run_mpibench(n_ranks: int | None, *args: str, timeout: float = 120,
                 env: dict | None = None) -> Completed:
    """``mpiexec -n N python -m mpibench ARGS`` (``n_ranks=None``: no mpiexec)."""
    command = mpibench_command() + [str(a) for a in args]
    if n_ranks is not None:
        command = [*launcher(n_ranks), *command]
    return run_process(command, timeout=timeout, env=env)


def start_mpibench(n_ranks: int, *args: str, env: dict | None = None) -> subprocess.Popen:
    """Start ``mpiexec -n N python -m mpibench ARGS`` in a new session (for kill tests)."""
    command = [*launcher(n_ranks), *mpibench_command(), *[str(a) for a in args]]
    full_env = {**os.environ, "MPIEXEC_TIMEOUT": "300", **launch_env(), **(env or {})}
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=full_env, start_new_session=True)


def processes_mentioning(text: str) -> list[str]:
    """Command lines of live processes that contain ``text`` (orphan check)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if text in cmdline and ours(entry.name):
            found.append(f"{entry.name}: {cmdline}")
    return found


def processes_named(*names: str) -> list[str]:
    """Live processes of this test session whose name (``/proc/PID/comm``) is one of
    ``names``: mpibench's isolation supervisors and executors are named
    ``mpibench-super``/``mpibench-exec``. Zombies (dead, waiting for a parent that does
    not reap, e.g. a container's init) are not live. Processes of other test runs on
    the machine are not ours (see :func:`ours`)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            name = (entry / "comm").read_text().strip()
            state = (entry / "stat").read_text().rsplit(")", 1)[-1].split()[0]
        except (OSError, IndexError):
            continue
        if name in names and state not in ("Z", "X") and ours(entry.name):
            found.append(f"{entry.name}: {name}")
    return found


ISOLATION_PROCESSES = ("mpibench-super", "mpibench-exec")


def wait_no_processes(text: str, timeout: float = 10.0) -> list[str]:
    """Wait until no process mentions ``text``; returns the stragglers (empty: none)."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        left = processes_mentioning(text)
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.1)
