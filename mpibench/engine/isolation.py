"""Worker side of isolation: start the supervisor, send it splits, read their results.

A worker rank has one supervisor process (see :mod:`mpibench.engine.supervisor`), which runs
the splits in long-lived executor processes. The supervisor is forked from the rank
*before* MPI is initialised (:func:`fork_supervisor`, called by
:func:`mpibench.run`), so it shares the rank's imports and costs no interpreter start,
and can fork executors safely. Where MPI was initialised first (a script that
imported ``mpi4py.MPI`` itself), it is started as ``python -m mpibench.engine._forkserver``
instead. Either way it gets an environment that cannot attach to the MPI job.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import MpibenchError
from ..tuning import INTERRUPT_POLL
from .config import LAUNCH_SIZE_VARIABLES, THREAD_VARIABLES, launch_rank
from .executor import ExecutorConfig, IsolationLimits
from .placement import Placement, node_name
from .procs import close_quietly, die_with_parent, fork_child, read_frame, write_frame
from .supervisor import INTERRUPT, READY, STOP_SIGNALS, serve

if TYPE_CHECKING:  # (this module is imported before MPI starts: nothing heavy)
    from ..store.records import SplitResult
    from .protocol import Assignment

MPI_VARIABLE_PREFIXES = ("PMI_", "PMIX_", "OMPI_", "HYDRA_", "MPIR_", "I_MPI_", "MPICH_",
                         "PRTE_", "OPAL_")
__all__ = ["ExecutorConfig", "IsolatedExecutor", "IsolationLimits", "SupervisorProcess",
           "child_environment", "fork_supervisor"]


def child_environment(threads: int) -> dict[str, str]:
    """This environment minus MPI launcher variables, with thread limits set."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(MPI_VARIABLE_PREFIXES)}
    env["MPI4PY_RC_INITIALIZE"] = "false"
    for name in THREAD_VARIABLES:
        env[name] = str(threads)
    return env


def mpi_initialized() -> bool:
    """True if this process has initialised MPI through mpi4py (no import otherwise)."""
    module = sys.modules.get("mpi4py.MPI")
    return bool(module is not None and module.Is_initialized())


def runs_no_split() -> bool:
    """True when the launcher says this is rank 0 of a multi-rank job (the dispatcher)."""
    size = max((int(os.environ.get(n, "1") or 1) for n in LAUNCH_SIZE_VARIABLES), default=1)
    return size > 1 and launch_rank() == 0


class SupervisorProcess:
    """A running supervisor: its pid and the pipes to and from it.

    Made by :func:`fork_supervisor` (before MPI is initialised) or
    :meth:`SupervisorProcess.spawn` (a new interpreter).
    """

    def __init__(self, pid: int, to_fd: int, from_fd: int,
                 popen: subprocess.Popen | None = None) -> None:
        self.pid, self.to_fd, self.from_fd, self._popen = pid, to_fd, from_fd, popen
        self.exit_code: int | None = None
        self.configured = False

    @classmethod
    def spawn(cls, env: dict[str, str]) -> SupervisorProcess:
        """Start ``python -m mpibench.engine._forkserver`` (frames on its stdin and stdout)."""
        proc = subprocess.Popen(
            [sys.executable, "-m", "mpibench.engine._forkserver"], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, env=env, preexec_fn=_spawned_preexec,
            start_new_session=True)  # signals for the MPI job are the worker's to handle
        assert proc.stdin is not None and proc.stdout is not None  # (both piped)
        return cls(proc.pid, proc.stdin.fileno(), proc.stdout.fileno(), proc)

    def send(self, obj: Any) -> Any:
        """Send a frame and read the reply frame (EOFError or OSError if it died)."""
        write_frame(self.to_fd, obj)
        return read_frame(self.from_fd)

    def configure(self, config: ExecutorConfig) -> None:
        """Send the configuration frame (no reply)."""
        write_frame(self.to_fd, config)
        self.configured = True

    def kill(self) -> None:
        """End an unconfigured supervisor at once (it holds no executor) and reap it."""
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGKILL)
        self.close()

    def close(self, timeout: float = 10.0) -> int:
        """Close its input (it ends its executors and exits); returns its exit status."""
        if self._popen is not None:
            assert self._popen.stdin is not None and self._popen.stdout is not None
            with contextlib.suppress(OSError):
                self._popen.stdin.close()
            try:
                self.exit_code = self._popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self._popen.kill()
                self.exit_code = self._popen.wait()
            self._popen.stdout.close()
            return self.exit_code
        close_quietly(self.to_fd, self.from_fd)
        return self.wait(timeout)

    def wait(self, timeout: float = 10.0) -> int:
        """Reap a forked supervisor (SIGKILL after ``timeout`` seconds); its status as
        ``Popen`` gives it."""
        deadline = time.monotonic() + timeout
        while self.exit_code is None:
            try:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:
                self.exit_code = 0
                break
            if pid:
                self.exit_code = os.waitstatus_to_exitcode(status)
            elif time.monotonic() > deadline:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.pid, signal.SIGKILL)
            else:
                time.sleep(0.002)
        return self.exit_code


def _spawned_preexec() -> None:
    """In a spawned supervisor before exec: die with the worker, ignore stop signals.

    SLURM's step daemon (and some launchers) signal every process of a step; stopping
    is rank 0's decision, and the supervisor ends when the worker closes its input.
    """
    die_with_parent()
    for sig in STOP_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)


def fork_supervisor(threads: int = 1) -> SupervisorProcess:
    """Fork this process into a supervisor that waits for its configuration.

    Call before MPI is initialised: the child never touches MPI, keeps every module
    imported so far, and forks executors from that state. Its environment is
    :func:`child_environment` (``threads`` BLAS/OpenMP threads), set before it imports
    anything more.
    """
    to_r, to_w = os.pipe()
    from_r, from_w = os.pipe()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    parent = os.getpid()

    def supervisor() -> None:
        close_quietly(to_w, from_r)
        os.setsid()
        die_with_parent()
        if os.getppid() != parent:
            return
        environment = child_environment(threads)  # before clearing: it starts from this
        os.environ.clear()
        os.environ.update(environment)
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.dup2(2, 1)  # whatever a learner prints goes to stderr
        sys.stdout = sys.stderr
        serve(to_r, from_w)

    pid = fork_child(supervisor)
    os.close(to_r)
    os.close(from_w)
    return SupervisorProcess(pid, to_w, from_r)


class IsolatedExecutor:
    """Worker side: runs assignments through the supervisor (a
    :class:`~mpibench.engine.interfaces.SplitExecutor`).

    Parameters
    ----------
    grid_path : pathlib.Path
        The project's ``grid.h5``.
    rank : int
        MPI rank (recorded per split).
    threads : int
        BLAS/OpenMP threads per split.
    limits : IsolationLimits
        Timeout, kill grace, memory limit, recycling.
    fallback : object
        ``None``, ``"featureless"`` or an estimator trained when a split fails.
    supervisor : SupervisorProcess, optional
        One forked before MPI was initialised; else one is spawned. A supervisor that
        dies is replaced by a spawned one.
    predictions : pathlib.Path, optional
        Folder for each split's predictions (``--save-predictions``).
    log_folder : pathlib.Path, optional
        Folder for each split's output (``--log-splits``).
    placement : Placement, optional
        The rank's node and GPU, recorded per split; the GPU goes into the splits'
        environment (default: this node, no GPU given out).
    project : pathlib.Path, optional
        The project folder: its splits' checkpoints and the run's stop marker (None:
        splits get no checkpoint).
    run_number : int
        The run's number, recorded per split.
    """

    def __init__(self, grid_path: Path, rank: int, threads: int, limits: IsolationLimits,
                 fallback: Any = None, supervisor: SupervisorProcess | None = None,
                 predictions: Path | None = None, log_folder: Path | None = None,
                 placement: Placement | None = None, project: Path | None = None,
                 run_number: int = 0) -> None:
        place = placement or Placement(rank, node_name())
        environment = {**{name: str(threads) for name in THREAD_VARIABLES},
                       **place.cuda_environment}
        self._config = ExecutorConfig(str(grid_path), rank, threads, limits, fallback,
                                      predictions, log_folder, environment, place.node,
                                      place.gpu, project, run_number)
        self._env = {**child_environment(threads), **environment}
        self._n_scores: int | None = None
        self.batches = True
        """A batch of short splits crosses the pipes as one frame each way."""
        self.interrupt_check: Callable[[], bool] | None = None
        """Asked every ``INTERRUPT_POLL`` seconds while a split runs: True stops it
        (status ``interrupted``). Set by the worker loop."""
        self._supervisor = supervisor
        self._ready = False
        if supervisor is not None:
            supervisor.configure(self._config)

    def _started(self) -> SupervisorProcess:
        if self._supervisor is None:
            self._supervisor = SupervisorProcess.spawn(self._env)
            self._supervisor.configure(self._config)
            self._ready = False
        if not self._ready:
            self._await_ready(self._supervisor)
        return self._supervisor

    def _await_ready(self, supervisor: SupervisorProcess) -> None:
        """Wait for the supervisor's first frame: its learners are loaded, or it refused
        (:class:`MpibenchError`, the supervisor gone)."""
        try:
            kind, message = read_frame(supervisor.from_fd)
        except (EOFError, OSError):
            self._supervisor = None
            code = supervisor.close(timeout=5.0)
            raise MpibenchError(
                f"The isolation supervisor of rank {self._config.rank} died while it "
                f"loaded the grid's learners (exit code {code}); its output is above."
            ) from None
        if kind != READY:
            self._supervisor = None
            supervisor.close(timeout=5.0)
            raise MpibenchError(message)
        self._ready = True

    def ready(self) -> None:
        """Start the supervisor if needed and wait until it has loaded every learner.

        Raises :class:`MpibenchError` (one line naming the learner and the fix) if one
        cannot be loaded on this rank."""
        self._started()

    def run(self, job: Assignment) -> SplitResult:
        """Run one split in the supervisor's executor; a dead supervisor is a ``crash``."""
        start = time.time()
        supervisor = self._started()
        try:
            write_frame(supervisor.to_fd, job)
            self._wait_for_result(supervisor)
            return read_frame(supervisor.from_fd)
        except (EOFError, OSError):
            self._supervisor = None
            code = supervisor.close(timeout=5.0)
        how = f"signal {signal.Signals(-code).name}" if code < 0 else f"exit code {code}"
        return self._crash(job, start, f"the isolation supervisor (pid {supervisor.pid}) "
                                       f"died ({how}); a fresh one takes over")

    def run_many(self, jobs: list[Assignment]) -> list[SplitResult]:
        """Run short splits as one batch: one frame to the supervisor and one back (see
        :meth:`~mpibench.engine.supervisor.Supervisor.run_batch`). If the supervisor
        dies, each split runs again on its own (a fresh supervisor), so the one that
        ended it is the one recorded."""
        supervisor = self._started()
        try:
            write_frame(supervisor.to_fd, list(jobs))
            self._wait_for_result(supervisor)
            return read_frame(supervisor.from_fd)
        except (EOFError, OSError):
            self._supervisor = None
            supervisor.close(timeout=5.0)
        return [self.run(job) for job in jobs]

    def _wait_for_result(self, supervisor: SupervisorProcess) -> None:
        """Until the supervisor's reply is there, ask :attr:`interrupt_check` every
        ``INTERRUPT_POLL`` seconds; on True tell the supervisor to stop the split."""
        if self.interrupt_check is None:
            return
        asked = False
        while not select.select([supervisor.from_fd], [], [], INTERRUPT_POLL)[0]:
            if not asked and self.interrupt_check():
                write_frame(supervisor.to_fd, INTERRUPT)
                asked = True

    def _crash(self, job: Assignment, start: float, message: str) -> SplitResult:
        from ..store.gridfile import GridFile
        from ..store.records import Status, failed_result

        if self._n_scores is None:
            self._n_scores = len(GridFile(Path(self._config.grid_path)).scorer_names())
        rank, host = self._config.rank, self._config.host
        return failed_result(job.job_id, job.attempt, Status.CRASH,
                             message, n_scores=self._n_scores,
                             rank=rank, host=host, pid=os.getpid(), start=start,
                             threads=self._config.threads, gpu=self._config.gpu,
                             run=self._config.run_number)

    def close(self) -> None:
        """Stop the supervisor and its executors."""
        if self._supervisor is not None:
            self._supervisor.close()
            self._supervisor = None
