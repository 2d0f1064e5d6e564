"""The isolation supervisor of one worker rank and its long-lived executor processes.

Three processes per worker::

    worker rank --frames--> supervisor --frames--> executor (runs split after split)
                <--------              <--------   spare executor (forked ahead, idle)

The supervisor never runs a split. It forks an executor, which loads task data and
learners once and then runs every split it is sent; a split costs two pipe messages,
not a process. The supervisor enforces the limits while a split runs: a deadline
(``timeout``: SIGKILL to the executor, SIGTERM then SIGKILL to what it started) and a
memory bound (resident memory polled; the executor also lowers its own ``RLIMIT_AS``
for the split). A split whose executor dies (segfault, ``os._exit``, a signal) gets
its status (``crash``, ``error``, ``timeout``, ``oom``) and the spare executor, forked
ahead of time, takes over at once. An executor is recycled (told to exit, the spare
takes over) after ``recycle_after`` splits, after an ``oom`` split, or when its resident
memory has grown by ``RECYCLE_GROWTH`` bytes since its first split, so leaks cannot
accumulate. Each executor leads its own process group: processes a learner starts
end with the executor (timeout, crash, recycle, end of run).

Executors are forked from the supervisor, which has imported the stack and warmed up
scikit-learn's common paths before the first fork, so they start in milliseconds and
their first split's timings hold no import or first-call cost.
"""

from __future__ import annotations

import contextlib
import gc
import mmap
import os
import pickle
import select
import signal
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import MpibenchError
from ..limits import SplitLimits
from ..store.records import SplitResult, Status
from ..tuning import (
    LIVENESS_SECONDS,
    POLL_SECONDS,
    RECYCLE_GROWTH,
    RSS_CHECK_EVERY,
)
from .executor import Executor, ExecutorConfig, IsolationLimits, executor_loop
from .procs import (
    FRAME,
    become_subreaper,
    child_pids,
    close_quietly,
    end_executor,
    end_processes,
    escaped_descendants,
    fork_child,
    has_exited,
    kill_group,
    node_memory_bytes,
    read_exactly,
    read_frame,
    refuse_cuda_context,
    rss_bytes,
    set_process_name,
    write_frame,
)
from .stopping import Deadline

if TYPE_CHECKING:  # (the supervisor imports the stack only once forked)
    from .protocol import Assignment
    from .worker import SplitRunner

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1)
READY, REFUSED = "mpibench-ready", "mpibench-refused"
"""The supervisor's first frame: ``(READY, "")`` once every learner is loaded, or
``(REFUSED, one-line message)``."""
INTERRUPT = "mpibench-interrupt"
"""Frame from the worker while a split runs: stop it now (the run's grace is over)."""
OUTSIDE_STOPS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1)


class Supervisor:
    """Runs splits in long-lived executors with limits; keeps a spare executor warm.

    Parameters
    ----------
    runner : mpibench.engine.worker.SplitRunner
        Loaded (and warmed up) in this process; executors inherit it.
    limits : IsolationLimits
        Timeout, kill grace, memory limit and recycling.
    private_fds : list of int
        This process's own descriptors, closed in every executor.
    control_fd : int, optional
        The pipe from the worker: an :data:`INTERRUPT` frame there stops the running
        split (status ``interrupted``); EOF (the worker died) too.
    log_folder : pathlib.Path, optional
        ``--log-splits``: each split's output goes to ``JOB-ATTEMPT.log`` there (if it
        wrote any) instead of stderr.
    """

    def __init__(self, runner: SplitRunner, limits: IsolationLimits,
                 private_fds: tuple[int, ...] = (), control_fd: int | None = None,
                 log_folder: Path | None = None) -> None:
        self.runner, self.limits = runner, limits
        self._limits_of = [limits.split.under(o.limits) for o in runner.learner_options]
        """Per learner index: the limits of its splits (resolved once)."""
        self._limited = [bool(limits) for limits in self._limits_of]
        """Per learner index: do its splits run under a limit (then never batched)?"""
        self._escalate_of = [limits.escalate if o.escalate is None else o.escalate
                             for o in runner.learner_options]
        """Per learner index: the growth factor of its limits (``--escalate``)."""
        self._deadline = Deadline()
        """The SLURM job's end, less its margin: what an escalated timeout may reach."""
        self.log_folder = None if log_folder is None else Path(log_folder)
        self._private = set(private_fds)
        self._control = [] if control_fd is None else [control_fd]
        self._current: Executor | None = None
        self._last: Executor | None = None
        self._spare: Executor | None = None
        self._retired: list[int] = []

    def _fork(self) -> Executor:
        jobs_r, jobs_w = os.pipe()
        results_r, results_w = os.pipe()
        output_r, output_w = os.pipe()
        os.set_blocking(output_r, False)
        refuse_cuda_context()  # a forked CUDA context is unusable in the child
        gc.freeze()  # the executor's garbage collector then leaves shared pages alone
        private = (*self._private, jobs_w, results_r, output_r)

        def executor() -> None:
            close_quietly(*private)
            os.dup2(output_w, 1)  # what the split prints: through us, tail kept
            os.dup2(output_w, 2)
            os.close(output_w)
            executor_loop(self.runner, jobs_r, results_w, progress)

        progress = mmap.mmap(-1, 8)  # anonymous and shared: the executor sees our view
        pid = fork_child(executor)
        close_quietly(jobs_r, results_w, output_w)
        self._private.update((jobs_w, results_r, output_r))
        return Executor(pid, jobs_w, results_r, output_r, progress=progress)

    def _forget(self, executor: Executor, reaped: bool = False) -> None:
        """Close our ends of ``executor``'s pipes (it exits at EOF) and reap it later
        (unless it is ``reaped`` already)."""
        fds = (executor.jobs_fd, executor.results_fd, executor.output_fd)
        self._private.difference_update(fds)
        close_quietly(*fds)
        if not reaped:
            self._retired.append(executor.pid)

    def end_orphans(self) -> None:
        """End and collect our children that are no executor: what learners started
        in sessions of their own and left behind when their executor ended (we are
        their subreaper)."""
        executors = {e.pid for e in (self._current, self._spare, self._last) if e}
        orphans = [p for p in child_pids(os.getpid())
                   if p not in executors and p not in self._retired]
        end_processes(orphans)
        for pid in orphans:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)

    def reap(self, block: bool = False) -> None:
        """Collect retired executors (``block``: wait for every one, killing stragglers)."""
        collected = False
        for pid in list(self._retired):
            if block:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):
                if os.waitpid(pid, 0 if block else os.WNOHANG)[0] == 0:
                    continue
            kill_group(pid, signal.SIGKILL)  # whatever its learners left running
            self._retired.remove(pid)
            collected = True
        if collected:
            self.end_orphans()

    def prepare(self) -> None:
        """Fork the executor and its spare now, before the first split arrives."""
        self._ready()
        if self._spare is None:
            self._spare = self._fork()

    def _ready(self) -> Executor:
        """The executor for the next split: the current one, else the spare, else new."""
        if self._current is None:
            self._current, self._spare = self._spare or self._fork(), None
        return self._current

    def _send(self, frame: Any) -> Executor:
        """Send a split (or a batch) to a live executor (one that died while idle is
        replaced)."""
        for _ in range(3):
            executor = self._ready()
            try:
                write_frame(executor.jobs_fd, frame)
                return executor
            except BrokenPipeError:
                self._current = None
                self._forget(executor)
        raise RuntimeError("executors die before they can take a split")

    def run(self, job: Assignment, learner: Any = None) -> SplitResult:
        """Run ``job`` in the executor; timeout, memory and crashes become statuses.
        The limits are the run's, or those the grid's ``learner_options`` set for the
        job's learner (its fallback, ``learner``, runs under the run's)."""
        limits = self.limits.split if learner is not None else self._limits_for(job)
        result = self._run(job, learner, limits)
        self._write_log(job, learner)
        if limits:  # (recorded with the result: an escalated retry shows its own)
            result = result._replace(limit_seconds=limits.timeout or 0.0,
                                     limit_bytes=limits.memory_limit or 0)
        return result

    def _limits_for(self, job: Assignment) -> SplitLimits:
        """The limits of ``job``'s attempt: its learner's, grown by ``escalate`` per
        earlier ``timeout``/``oom`` result, at most the job's time left and the node's
        memory."""
        limits = self._limits_of[job.learner_i]
        if not job.escalation or not limits:
            return limits
        return limits.escalated(self._escalate_of[job.learner_i], job.escalation,
                                self._deadline.seconds_left(), node_memory_bytes())

    def _write_log(self, job: Assignment, learner: Any) -> None:
        """``--log-splits``: the split's output to its file (the fallback's after it)."""
        executor = self._last
        if self.log_folder is None or executor is None or not executor.log:
            return
        self.log_folder.mkdir(parents=True, exist_ok=True)
        suffix = ".fallback" if learner is not None else ""
        with open(self.log_folder / f"{job.job_id}-{job.attempt}{suffix}.log", "ab") as out:
            out.write(bytes(executor.log))
        executor.log = None

    def _run(self, job: Assignment, learner: Any, limits: SplitLimits) -> SplitResult:
        self.reap()
        base_rss = rss_bytes(self._current.pid) if self._current and limits.memory_limit \
            else 0
        start = time.time()
        executor = self._send((job, learner, limits.memory_limit))
        executor.output_tail = b""
        executor.log = bytearray() if self.log_folder is not None else None
        self._last = executor
        if self._spare is None:
            self._spare = self._fork()  # while the split runs: off the critical path
        base_rss = base_rss or (rss_bytes(executor.pid) if limits.memory_limit else 0)
        data, verdict = self._watch(executor, start, base_rss, limits)
        if verdict is None and data is not None:  # (output written before the result
            # was reported ready with it: _watch has forwarded it)
            result = pickle.loads(data)  # noqa: S301 - from our own executor
            self._after_split(executor, result.status)
            return result
        return self._ended(executor, job, start, verdict, limits)

    def _ended(self, executor: Executor, job: Assignment, start: float,
               verdict: Status | None, limits: SplitLimits) -> SplitResult:
        """The result of ``job``, whose executor died or was stopped (``verdict``)."""
        escaped = escaped_descendants(executor.pid)
        kill_group(executor.pid, signal.SIGKILL)  # it and whatever it started
        end_processes(escaped)  # (and what it started in sessions of their own)
        _, status, usage = os.wait4(executor.pid, 0)  # (its peak: since the split began)
        executor.take_output()
        self._current = None
        self._forget(executor, reaped=True)
        self.end_orphans()
        status_name, message = self._classify(verdict, status, limits)
        if status_name is not Status.INTERRUPTED:
            message += executor.last_lines()
        return self.runner.failure(job, start, status_name, message,
                                   max_rss_bytes=int(usage.ru_maxrss) * 1024)

    def can_batch(self, jobs: list[Assignment]) -> bool:
        """May ``jobs`` go to the executor as one batch? Only without limits (the run's
        or a learner's) and without ``--log-splits``, which act per split."""
        limited = self._limited
        return self.log_folder is None and not any(limited[j.learner_i] for j in jobs)

    def run_batch(self, jobs: list[Assignment]) -> list[SplitResult]:
        """Run ``jobs`` (see :meth:`can_batch`) in the executor: one frame there, one
        frame back with every result. If the executor dies, the split it was running
        (shared memory says which) gets its status as in :meth:`run`; the others run
        again one by one (after an interrupt, all are interrupted: they run on resume)."""
        self.reap()
        start = time.time()
        executor = self._send(list(jobs))
        executor.output_tail = b""
        self._last = executor
        if self._spare is None:
            self._spare = self._fork()
        data, verdict = self._watch(executor, start, 0, self.limits.split)
        if verdict is None and data is not None:
            results = pickle.loads(data)  # noqa: S301 - from our own executor
            worst = Status.OOM if any(r.status == Status.OOM for r in results) else Status.OK
            self._after_split(executor, worst, len(jobs))
            return results
        blamed = min(executor.running(), len(jobs) - 1)
        ended = self._ended(executor, jobs[blamed], start, verdict, self.limits.split)
        if ended.status == Status.INTERRUPTED:
            return [ended if i == blamed else self.runner.failure(
                job, start, Status.INTERRUPTED, ended.error) for i, job in enumerate(jobs)]
        return [ended if i == blamed else self.run(job) for i, job in enumerate(jobs)]

    def _after_split(self, executor: Executor, status: str, count: int = 1) -> None:
        """Count the split(s), end what they started in sessions of their own; retire
        the executor when it is due for recycling."""
        if child_pids(executor.pid):  # (one read of /proc when it started nothing)
            end_processes(escaped_descendants(executor.pid))
        executor.n_splits += count
        if not executor.first_rss:
            executor.first_rss = rss_bytes(executor.pid)
        grown = (executor.n_splits % RSS_CHECK_EVERY == 0
                 and rss_bytes(executor.pid) - executor.first_rss > RECYCLE_GROWTH)
        if executor.n_splits >= self.limits.recycle_after or status == Status.OOM or grown:
            self._current = None
            self._forget(executor)

    def _watch(self, executor: Executor, start: float, base_rss: int,
               limits: SplitLimits) -> tuple[bytes | None, Status | None]:
        """Wait for the executor's result frame while forwarding its output, taking
        the worker's interrupt and enforcing the limits (every ``POLL_SECONDS``, or
        ``LIVENESS_SECONDS`` without limits).

        Returns the payload (None if the executor ended without a whole frame) and the
        verdict (``Status.TIMEOUT``, ``OOM``, ``INTERRUPTED`` or None).
        """
        fd = executor.results_fd
        interval = POLL_SECONDS if limits.timeout or limits.memory_limit else LIVENESS_SECONDS
        verdict, term_sent = None, 0.0
        deadline = start + limits.timeout if limits.timeout else None
        output, next_check = [executor.output_fd], time.monotonic() + interval
        while True:
            ready, _, _ = select.select([fd, *output, *self._control], [], [], interval)
            if output and output[0] in ready and not executor.take_output():
                output = []  # closed: nothing more to forward
            if fd in ready:
                try:
                    payload = read_exactly(fd, FRAME.unpack(read_exactly(fd, FRAME.size))[0])
                except EOFError:
                    return None, verdict
                if verdict in (None, Status.INTERRUPTED):  # (done before the interrupt took)
                    return payload, None
            if self._control and self._control[0] in ready:  # the worker's interrupt
                self._read_control()
                if verdict is None:
                    verdict, term_sent = Status.INTERRUPTED, time.time()
                    end_executor(executor.pid)
            if time.monotonic() >= next_check:
                next_check = time.monotonic() + interval
                if has_exited(executor.pid):  # dead; a process it started holds the pipe
                    kill_group(executor.pid, signal.SIGKILL)
                    return None, verdict
                verdict, term_sent = self._enforce(executor.pid, verdict, term_sent,
                                                   deadline, base_rss, limits)

    def _enforce(self, pid: int, verdict: Status | None, term_sent: float,
                 deadline: float | None, base_rss: int,
                 limits: SplitLimits) -> tuple[Status | None, float]:
        """One check of the limits: the executor ended past the deadline, its process
        group killed after the kill grace, SIGKILL over the memory limit. Returns the
        verdict and when the split was ended."""
        now = time.time()
        if term_sent and now - term_sent >= self.limits.kill_grace:
            kill_group(pid, signal.SIGKILL)
        elif verdict is None and deadline is not None and now > deadline:
            verdict, term_sent = Status.TIMEOUT, now
            end_executor(pid)
        elif (verdict is None and limits.memory_limit
              and rss_bytes(pid) > limits.memory_limit + base_rss):
            verdict = Status.OOM
            kill_group(pid, signal.SIGKILL)
        return verdict, term_sent

    def _read_control(self) -> None:
        """Take the worker's frame (EOF: it is gone; serve() ends after this split)."""
        try:
            read_frame(self._control[0])
        except EOFError:
            self._control = []

    def _classify(self, verdict: Status | None, status: int,
                  limits: SplitLimits) -> tuple[Status, str]:
        """How a split whose executor died ended, and why (``status``: from waitpid)."""
        if verdict is Status.INTERRUPTED:
            return verdict, "interrupted: the run stopped and its grace period ended"
        if verdict is Status.TIMEOUT:
            return verdict, f"exceeded the timeout of {limits.timeout:g}s"
        if verdict is Status.OOM:
            return verdict, f"exceeded the memory limit of {limits.memory_limit} bytes"
        if os.WIFSIGNALED(status):
            name = signal.Signals(os.WTERMSIG(status)).name
            if os.WTERMSIG(status) in OUTSIDE_STOPS:
                return Status.INTERRUPTED, f"stopped by {name} from outside"
            return Status.CRASH, f"killed by {name}"
        return Status.ERROR, f"exited without result (exit code {os.WEXITSTATUS(status)})"

    def close(self) -> None:
        """End every executor (they exit at EOF; stragglers are killed) and reap them."""
        for executor in (self._current, self._spare):
            if executor is not None:
                self._forget(executor)
        self._current = self._spare = None
        deadline = time.monotonic() + 2.0
        while self._retired and time.monotonic() < deadline:
            self.reap()
            time.sleep(0.005)
        self.reap(block=True)
        self._last = None
        self.end_orphans()


def serve(frames_in: int, frames_out: int) -> None:
    """Supervisor main loop: a configuration, then one split in, one result out.

    Parameters
    ----------
    frames_in, frames_out : int
        File descriptors of the pipes from and to the worker rank. EOF on
        ``frames_in`` before the configuration (a rank that runs no split) or after
        any split ends the supervisor.
    """
    for sig in STOP_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)  # the worker rank decides when to stop
    set_process_name("mpibench-super")
    become_subreaper()
    from ..store.gridfile import GridFile
    from ..store.paths import ProjectPaths
    from .config import limit_threads  # the stack loads while MPI starts on the rank
    from .worker import SplitRunner, run_with_fallback, warm_up_stack, with_fallback

    warm_up_stack()  # also while MPI starts: off the path to the first split
    try:
        config: ExecutorConfig = read_frame(frames_in)
    except EOFError:
        return

    for name, value in config.environment.items():
        os.environ[name] = value
    limit_threads(config.threads)
    try:  # every learner, scorer, fallback and record function, loaded once
        runner = SplitRunner(GridFile(Path(config.grid_path)), config.rank, config.threads,
                             fallback=config.fallback, predictions=config.predictions,
                             host=config.host, gpu=config.gpu,
                             project=None if config.project is None
                             else ProjectPaths(config.project),
                             run_number=config.run_number)
        runner.preload()  # executors and spares start with the task data (a small grid)
        runner.warm_up()
    except MpibenchError as exc:
        write_frame(frames_out, (REFUSED, str(exc)))
        return
    write_frame(frames_out, (READY, ""))
    supervisor = Supervisor(runner, config.limits, (frames_in, frames_out), frames_in,
                            config.log_folder)
    supervisor.prepare()
    try:
        while True:
            try:
                job = read_frame(frames_in)
            except EOFError:
                return
            if isinstance(job, str) and job == INTERRUPT:
                continue  # it crossed the result of the split it was meant for
            if isinstance(job, list):  # a batch of short splits: one frame each way
                done = (supervisor.run_batch(job) if supervisor.can_batch(job)
                        else [supervisor.run(j) for j in job])
                write_frame(frames_out, [with_fallback(r, supervisor.run, runner, j)
                                         for r, j in zip(done, job, strict=True)])
                continue
            write_frame(frames_out, run_with_fallback(supervisor.run, runner, job))
    finally:
        supervisor.close()


def main() -> None:
    """``python -m mpibench.engine._forkserver``: a supervisor started as its own interpreter
    (when the worker rank had initialised MPI before it could fork one); frames on
    stdin and stdout, which learners then cannot write to."""
    frames_in, frames_out = os.dup(0), os.dup(1)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.dup2(2, 1)  # whatever a learner prints goes to stderr
    sys.stdout = sys.stderr
    serve(frames_in, frames_out)
