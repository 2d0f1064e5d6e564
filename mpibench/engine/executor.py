"""An executor: the long-lived process that runs split after split for a supervisor
(:mod:`mpibench.engine.supervisor`), and the supervisor's handle on it."""

from __future__ import annotations

import contextlib
import mmap
import os
import resource
import signal
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..limits import NO_LIMITS, SplitLimits
from ..tuning import RECYCLE_AFTER
from .procs import die_with_parent, read_frame, set_process_name, vm_bytes, write_frame

if TYPE_CHECKING:
    from .worker import SplitRunner

OUTPUT_TAIL = 4096
"""Bytes of a split's output kept to explain its failure."""
LOG_BYTES = 1 << 20
"""Bytes of a split's output kept in its ``--log-splits`` file."""


def executor_loop(runner: SplitRunner, jobs_fd: int, results_fd: int,
                  progress: mmap.mmap | None = None) -> None:
    """In an executor: run each ``(job, learner, memory_limit)`` read from ``jobs_fd``
    until EOF (``memory_limit``: bytes the split may add, or None); a list of jobs is a
    batch: their results go back in one frame, and ``progress`` (memory shared with the
    supervisor) holds the index of the split running, for the supervisor to blame if
    the executor dies."""
    os.setpgid(0, 0)
    # A stop request is for rank 0, which lets the split finish or save its checkpoint
    # within the grace: SLURM's SIGTERM (scancel, requeue, preemption) reaches every
    # process of the step, this one too. Our supervisor ends us with SIGKILL.
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1):
        signal.signal(sig, signal.SIG_IGN)
    die_with_parent()
    set_process_name("mpibench-exec")
    runner.pid = os.getpid()
    runner.warm_up()  # copies the pages its first split would write: not in its timings
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    while True:
        try:
            frame = read_frame(jobs_fd)
        except EOFError:
            return
        if isinstance(frame, list):  # a batch of splits without limits
            results = []
            for index, job in enumerate(frame):
                if progress is not None:
                    progress[:8] = index.to_bytes(8, "little")
                results.append(runner.run(job))
            write_frame(results_fd, results)
            continue
        job, learner, memory_limit = frame
        if memory_limit:
            resource.setrlimit(resource.RLIMIT_AS, (vm_bytes() + memory_limit, hard))
        result = runner.run(job, learner=learner)
        if memory_limit:
            resource.setrlimit(resource.RLIMIT_AS, (hard, hard))
        write_frame(results_fd, result)


@dataclass
class Executor:
    """The supervisor's handle on one executor process."""

    pid: int
    jobs_fd: int
    results_fd: int
    output_fd: int
    """Read end of the executor's stdout and stderr (forwarded to ours)."""
    n_splits: int = 0
    first_rss: int = 0
    output_tail: bytes = b""
    """The last ``OUTPUT_TAIL`` bytes it wrote during the current split."""
    log: bytearray | None = None
    """With ``--log-splits``: what it wrote during the current split (up to
    ``LOG_BYTES``), kept instead of forwarded to stderr."""
    progress: mmap.mmap | None = None
    """Shared with the executor: the index of the split of a batch it runs."""

    def running(self) -> int:
        """Index, in the batch it was sent, of the split the executor runs (or ran)."""
        return int.from_bytes(self.progress[:8], "little") if self.progress is not None else 0

    def take_output(self) -> bool:
        """Forward what the executor wrote (without waiting) and keep its tail; False
        once its output is closed."""
        while True:
            try:
                data = os.read(self.output_fd, 1 << 16)
            except (BlockingIOError, OSError):
                return True
            if not data:
                return False
            if self.log is None:
                with contextlib.suppress(OSError):
                    os.write(2, data)
            elif len(self.log) < LOG_BYTES:
                self.log += data[:LOG_BYTES - len(self.log)]
            self.output_tail = (self.output_tail + data)[-OUTPUT_TAIL:]

    def last_lines(self, n_lines: int = 3) -> str:
        """``; last output: a | b | c`` from the current split ('' if it wrote none)."""
        lines = [line.strip() for line in self.output_tail.decode(errors="replace")
                 .splitlines() if line.strip()][-n_lines:]
        return f"; last output: {' | '.join(line[:200] for line in lines)}" if lines else ""


@dataclass(frozen=True)
class IsolationLimits:
    """What the supervisor enforces: the run's per-split limits (a learner's own
    ``learner_options`` limits win over them) and its executors' lives.

    Attributes
    ----------
    split : SplitLimits
        The run's timeout (seconds) and memory limit (bytes a split may add to what
        its executor held when it started).
    kill_grace : float
        When a split times out or is interrupted its executor is killed at once; the
        processes its learner started get SIGTERM, and SIGKILL at most this many
        seconds later.
    recycle_after : int
        Splits an executor runs before a fresh one replaces it.
    escalate : float
        The run's growth factor of a split's limits per earlier ``timeout`` or ``oom``
        result of it (1: none; a learner's ``learner_options`` may set its own).
    """

    split: SplitLimits = NO_LIMITS
    kill_grace: float = 2.0
    recycle_after: int = RECYCLE_AFTER
    escalate: float = 1.0


@dataclass(frozen=True)
class ExecutorConfig:
    """Everything a supervisor needs to start, sent by its worker rank as one frame.

    Attributes
    ----------
    grid_path : str
        The project's ``grid.h5`` (or this node's copy).
    rank : int
        The worker's MPI rank (recorded per split).
    threads : int
        BLAS/OpenMP threads per split.
    limits : IsolationLimits
        Per-split limits, kill grace, recycling.
    fallback : object
        The run's fallback learner (None: the grid's).
    predictions : pathlib.Path or None
        Folder for each split's predictions (``--save-predictions``).
    log_folder : pathlib.Path or None
        Folder for each split's output (``--log-splits``).
    environment : dict
        Variables set in the supervisor (threads, the rank's GPU).
    host : str
        The node's name.
    gpu : str
        The ``CUDA_VISIBLE_DEVICES`` of the splits ("": none).
    project : pathlib.Path or None
        The project folder (checkpoints, the stop marker); None: no checkpoints.
    run_number : int
        The run's number, recorded per split.
    """

    grid_path: str
    rank: int
    threads: int
    limits: IsolationLimits
    fallback: Any = None
    predictions: Path | None = None
    log_folder: Path | None = None
    environment: dict[str, str] = field(default_factory=dict)
    host: str = ""
    gpu: str = ""
    project: Path | None = None
    run_number: int = 0
