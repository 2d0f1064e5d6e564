"""Run each split in a child process: a fork server per worker, with timeouts and limits.

The worker rank starts one helper interpreter (``python -m mpibench._forkserver``) with an
environment that cannot attach to the MPI job. The helper imports the scientific stack,
loads task data once, and forks one child per split, so a split costs a fork
(milliseconds), not an interpreter. The helper watches each child: a deadline
(``timeout``: SIGTERM to the child's process group, a grace, then SIGKILL), a memory
limit (``RLIMIT_AS`` headroom plus resident-memory polling), and how the child ended
(signal, exit without result). Messages on the helper's stdin/stdout are pickles with
an 8-byte length prefix.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import os
import pickle
import resource
import select
import signal
import socket
import struct
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from .config import THREAD_VARIABLES
from .gridfile import GridFile
from .protocol import INTERRUPTED, Assignment, SplitResult

FRAME = struct.Struct("<Q")
POLL_SECONDS = 0.02
"""Interval of the helper's deadline and memory checks while a child runs."""
MPI_VARIABLE_PREFIXES = ("PMI_", "PMIX_", "OMPI_", "HYDRA_", "MPIR_", "I_MPI_", "MPICH_",
                         "PRTE_", "OPAL_")


@dataclass(frozen=True)
class IsolationLimits:
    """Per-split limits enforced by the helper.

    Attributes
    ----------
    timeout : float or None
        Wall-clock seconds a split may run.
    kill_grace : float
        Seconds between SIGTERM and SIGKILL when a split times out.
    memory_limit : int or None
        Bytes of memory a split may add to what its process started with.
    """

    timeout: float | None = None
    kill_grace: float = 2.0
    memory_limit: int | None = None


def child_environment(threads: int) -> dict[str, str]:
    """This environment minus MPI launcher variables, with thread limits set."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(MPI_VARIABLE_PREFIXES)}
    env["MPI4PY_RC_INITIALIZE"] = "false"
    for name in THREAD_VARIABLES:
        env[name] = str(threads)
    return env


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1)
OUTSIDE_STOPS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1)


def _die_with_parent() -> None:
    """Ask Linux to SIGKILL this process when its parent dies."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _helper_preexec() -> None:
    """In the helper before exec: die with the worker, ignore stop signals from birth.

    SLURM's step daemon (and some launchers) signal every process of a step; stopping
    is rank 0's decision, and the helper ends when the worker closes its stdin.
    """
    _die_with_parent()
    for sig in STOP_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)


def write_frame(stream, obj: object) -> None:
    """Pickle ``obj`` with a length prefix."""
    data = pickle.dumps(obj, protocol=5)
    stream.write(FRAME.pack(len(data)) + data)
    stream.flush()


def read_frame(stream) -> object:
    """Read one length-prefixed pickle (EOFError at end of stream)."""
    head = stream.read(FRAME.size)
    if len(head) < FRAME.size:
        raise EOFError
    (length,) = FRAME.unpack(head)
    return pickle.loads(stream.read(length))  # noqa: S301 - from our own helper


class ForkServer:
    """Worker side: starts the helper and runs assignments through it.

    Parameters
    ----------
    grid_path : pathlib.Path
        The project's ``grid.h5``.
    rank : int
        MPI rank (recorded per split).
    threads : int
        BLAS/OpenMP threads per split.
    limits : IsolationLimits
        Timeout, kill grace and memory limit.
    fallback : object
        ``None``, ``"featureless"`` or an estimator trained when a split fails.
    """

    def __init__(self, grid_path: Path, rank: int, threads: int, limits: IsolationLimits,
                 fallback: object = None) -> None:
        self._config = {"grid_path": str(grid_path), "rank": rank, "threads": threads,
                        "limits": limits, "fallback": fallback}
        self._env = child_environment(threads)
        self._n_scores = len(GridFile(grid_path).scorer_names())
        self._proc: subprocess.Popen | None = None

    def _start(self) -> subprocess.Popen:
        proc = subprocess.Popen(
            # the grid path is only a label: ps shows which project a helper serves
            [sys.executable, "-m", "mpibench._forkserver", self._config["grid_path"]],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, env=self._env, preexec_fn=_helper_preexec,
            start_new_session=True,  # signals for the MPI job are the worker's to handle
        )
        write_frame(proc.stdin, self._config)
        return proc

    def run(self, job: Assignment) -> SplitResult:
        """Run one split in a fresh child of the helper."""
        if self._proc is None or self._proc.poll() is not None:
            self._proc = self._start()
        start = time.time()
        try:
            write_frame(self._proc.stdin, job)
            return read_frame(self._proc.stdout)
        except (EOFError, BrokenPipeError):
            code = self._proc.wait()
            self._proc = None
        how = f"signal {signal.Signals(-code).name}" if code < 0 else f"exit code {code}"
        return SplitResult(
            job_id=job.job_id, status="crash", scores=(float("nan"),) * self._n_scores,
            error=f"rank {self._config['rank']} on {socket.gethostname()}: the isolation "
                  f"helper died ({how}); see the job's stderr",
            rank=self._config["rank"], host=socket.gethostname(), pid=os.getpid(),
            start_time=start, end_time=time.time(), fit_seconds=0.0, predict_seconds=0.0,
            score_seconds=0.0, max_rss_bytes=0, threads=self._config["threads"],
            attempt=job.attempt)

    def close(self) -> None:
        """Stop the helper."""
        if self._proc is not None:
            with contextlib.suppress(OSError):
                self._proc.stdin.close()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
            self._proc = None


def _rss_bytes(pid: int) -> int:
    try:
        pages = int(Path(f"/proc/{pid}/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return 0
    return pages * os.sysconf("SC_PAGE_SIZE")


def _vm_bytes() -> int:
    return int(Path("/proc/self/statm").read_text().split()[0]) * os.sysconf("SC_PAGE_SIZE")


def _child(runner, job: Assignment, learner: object, limits: IsolationLimits, fd: int) -> None:
    """In the forked child: run the split, write the pickled result, exit."""
    try:
        os.setpgid(0, 0)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)  # our timeout, or the job's end
        for sig in (signal.SIGINT, signal.SIGUSR1):  # a stop request is for rank 0
            signal.signal(sig, signal.SIG_IGN)
        _die_with_parent()
        if limits.memory_limit:
            ceiling = _vm_bytes() + limits.memory_limit
            resource.setrlimit(resource.RLIMIT_AS, (ceiling, ceiling))
        result = runner.run(job, learner=learner)._replace(pid=os.getpid())
        data = pickle.dumps(result, protocol=5)
        with os.fdopen(fd, "wb") as pipe:
            pipe.write(FRAME.pack(len(data)) + data)
    finally:
        os._exit(0)


def _kill_group(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


class Supervisor:
    """Helper side: forks a child per split and decides its status."""

    def __init__(self, runner, limits: IsolationLimits) -> None:
        self.runner = runner
        self.limits = limits
        self._base_rss = 0
        self._exited: list[int] = []  # children that delivered a result, not yet reaped

    def reap(self, block: bool = False) -> None:
        """Collect children that delivered their result (``block``: wait for all)."""
        for pid in list(self._exited):
            with contextlib.suppress(ChildProcessError):
                if os.waitpid(pid, 0 if block else os.WNOHANG)[0] == 0:
                    continue
            self._exited.remove(pid)

    def run(self, job: Assignment, learner: object = None) -> SplitResult:
        """Run ``job`` in a child; timeout, memory and crashes become statuses."""
        self.reap()
        self.runner.preload(job)
        if self.limits.memory_limit:
            self._base_rss = _rss_bytes(os.getpid())
        gc.freeze()  # the child's garbage collector then leaves shared pages alone
        start = time.time()
        read_fd, write_fd = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(read_fd)
            _child(self.runner, job, learner, self.limits, write_fd)
        os.close(write_fd)
        data, verdict = self._watch(pid, read_fd, start)
        _kill_group(pid, signal.SIGKILL)  # it is done; so are its descendants
        if verdict is None and data is not None:
            self._exited.append(pid)  # reaped later: its exit is off the critical path
            return pickle.loads(data)  # noqa: S301 - from our own child
        _, status = os.waitpid(pid, 0)
        return self.runner.failure(job, start, *self._classify(verdict, status))

    def _watch(self, pid: int, fd: int, start: float) -> tuple[bytes | None, str | None]:
        """Read the child's result frame while enforcing the limits.

        Returns the payload (None if the child ended without a whole frame) and the
        verdict (``"timeout"``, ``"oom"`` or None).
        """
        buffer, verdict, term_sent = bytearray(), None, 0.0
        deadline = start + self.limits.timeout if self.limits.timeout else None
        with os.fdopen(fd, "rb", buffering=0) as pipe:
            while True:
                ready, _, _ = select.select([pipe], [], [], POLL_SECONDS)
                if ready:
                    chunk = pipe.read(1 << 20)
                    if not chunk:
                        return None, verdict
                    buffer += chunk
                    if len(buffer) >= FRAME.size:
                        (length,) = FRAME.unpack_from(buffer)
                        if len(buffer) >= FRAME.size + length and verdict is None:
                            return bytes(buffer[FRAME.size:FRAME.size + length]), None
                    continue
                now = time.time()
                if term_sent and now - term_sent >= self.limits.kill_grace:
                    _kill_group(pid, signal.SIGKILL)
                elif verdict is None and deadline is not None and now > deadline:
                    verdict, term_sent = "timeout", now
                    _kill_group(pid, signal.SIGTERM)
                elif (verdict is None and self.limits.memory_limit
                      and _rss_bytes(pid) > self.limits.memory_limit + self._base_rss):
                    verdict = "oom"
                    _kill_group(pid, signal.SIGKILL)

    def _classify(self, verdict: str | None, status: int) -> tuple[str, str]:
        if verdict == "timeout":
            return "timeout", f"exceeded --timeout {self.limits.timeout:g}s"
        if verdict == "oom":
            return "oom", f"exceeded --memory-limit {self.limits.memory_limit} bytes"
        if os.WIFSIGNALED(status):
            name = signal.Signals(os.WTERMSIG(status)).name
            if os.WTERMSIG(status) in OUTSIDE_STOPS:
                return INTERRUPTED, f"stopped by {name} from outside"
            return "crash", f"killed by {name}"
        return "error", f"exited without result (exit code {os.WEXITSTATUS(status)})"


def serve(stdin, stdout) -> None:
    """Helper main loop: configuration, then one assignment in, one result out."""
    from .config import limit_threads
    from .worker import SplitRunner, run_with_fallback

    for sig in STOP_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)  # the worker rank decides when to stop
    config = read_frame(stdin)
    limit_threads(config["threads"])
    runner = SplitRunner(GridFile(Path(config["grid_path"])), config["rank"], config["threads"],
                         fallback=config["fallback"])
    supervisor = Supervisor(runner, config["limits"])
    while True:
        try:
            job = read_frame(stdin)
        except EOFError:
            supervisor.reap(block=True)
            return
        write_frame(stdout, run_with_fallback(supervisor.run, runner, job))
        supervisor.reap()


def main() -> None:
    """Entry point of the helper: keep stdin/stdout for frames, away from learners."""
    frames_in = os.fdopen(os.dup(0), "rb")
    frames_out = os.fdopen(os.dup(1), "wb")
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.dup2(2, 1)  # whatever a learner prints goes to stderr
    sys.stdout = sys.stderr
    serve(frames_in, frames_out)


if __name__ == "__main__":
    main()
