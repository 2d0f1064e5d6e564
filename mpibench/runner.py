"""Run a project: rank 0 dispatches and records, the other ranks fit and score.

One SPMD program. With one process the same code runs every split serially.
"""

from __future__ import annotations

import os
import socket
import sys
import time
import traceback

import numpy as np

from ._version import __version__
from .config import check_launch, inject_fault, limit_threads, resolve_threads
from .errors import MpibenchError
from .gridfile import GridFile
from .paths import ProjectPaths
from .progress import Progress, summary
from .protocol import STOP, TAG_REPLY, TAG_REQUEST, Assignment, RankStats, WorkRequest
from .scheduler import Scheduler
from .storage import JOB_COLUMNS, ResultStore
from .transport import MPITransport
from .worker import SplitRunner

ABORT_DELAY = 0.5
"""Seconds between printing a fatal error and ``MPI_Abort``."""
ASSIGNMENT_COLUMNS = ("task_i", "learner_i", "resampling_i", "split_i", "random_state")


class PeerRefused(MpibenchError):
    """Rank 0 refused the run; raised on the other ranks, which print nothing."""


class Dispatcher:
    """Rank 0: schedules splits, collects results, writes ``results.h5``.

    Parameters
    ----------
    paths : ProjectPaths
        The project.
    n_ranks : int
        Size of the MPI job.
    order : str
        Dispatch order (see :class:`~mpibench.scheduler.Scheduler`).
    chunk_size : int
        Splits per assignment.
    checkpoint_every : float
        Seconds between rewrites of ``results.h5`` during the run.
    progress_every : float
        Seconds between progress lines (0: none).
    """

    def __init__(self, paths: ProjectPaths, n_ranks: int, *, order: str, chunk_size: int,
                 checkpoint_every: float, progress_every: float, mpi_library: str) -> None:
        if not paths.grid.exists():
            raise MpibenchError(
                f"No project at {paths.root} (missing {paths.grid.name}). Create it with "
                "mpibench.create_project() or `mpibench demo PROJECT`."
            )
        self.paths = paths
        self.grid_file = GridFile(paths.grid)
        attrs = self.grid_file.attrs()
        jobs = self.grid_file.job_table()
        self.store = ResultStore(paths, jobs[list(JOB_COLUMNS)], self.grid_file.scorer_names(),
                                 str(attrs["fingerprint"]))
        todo = np.setdiff1d(jobs["job_id"].to_numpy(), self.store.done_ids())
        self.scheduler = Scheduler(todo, jobs["n_train"].to_numpy()[todo], order=order,
                                   chunk_size=chunk_size, seed=int(attrs["seed"]))
        self._columns = {c: jobs[c].to_numpy().tolist() for c in ASSIGNMENT_COLUMNS}
        self.n_total = len(jobs)
        self.n_ranks = n_ranks
        self.progress = Progress(len(todo), self.n_total, progress_every)
        self.checkpoint_every = checkpoint_every
        self._last_checkpoint = time.monotonic()
        self.ranks: dict[int, RankStats] = {
            0: RankStats(0, socket.gethostname(), os.getpid(), time.time())
        }
        self.mpi_library = mpi_library

    def assignments(self, job_ids: list[int]) -> list[Assignment]:
        """Everything a worker needs to run ``job_ids``."""
        c = self._columns
        return [Assignment(j, c["task_i"][j], c["learner_i"][j], c["resampling_i"][j],
                           c["split_i"][j], c["random_state"][j]) for j in job_ids]

    def handle(self, request: WorkRequest) -> list[Assignment] | None:
        """Record a worker's results and choose its next assignments (``STOP``: none)."""
        if request.results:
            self.store.add(request.results)
            self.progress.add(request.results)
            self.scheduler.complete(request.rank, [r.job_id for r in request.results])
        if request.stats is not None:
            self.ranks[request.rank] = request.stats
        chunk = self.scheduler.next_chunk(request.rank)
        return self.assignments(chunk) if chunk else STOP

    def tick(self) -> None:
        """Periodic duties between messages: progress line and checkpoint."""
        self.progress.maybe_print()
        if time.monotonic() - self._last_checkpoint >= self.checkpoint_every:
            self.checkpoint(complete=False)

    def checkpoint(self, complete: bool) -> None:
        """Rewrite ``results.h5`` atomically with everything recorded so far."""
        self._last_checkpoint = time.monotonic()
        self.ranks[0].end_time = time.time()
        self.store.write(sorted(self.ranks.values(), key=lambda r: r.rank), {
            "complete": complete, "mpibench_version": __version__,
            "mpi_library": self.mpi_library, "n_ranks": self.n_ranks,
        })

    def serve(self, transport: MPITransport) -> None:
        """Answer worker requests until every worker has been told to stop."""
        active = transport.size - 1
        while active:
            request, source = transport.receive(None, TAG_REQUEST, on_idle=self.tick)
            reply = self.handle(request)
            transport.send(reply, source, TAG_REPLY)
            if reply is STOP:
                active -= 1
            inject_fault("dispatcher", 0)
            self.tick()

    def run_serially(self, runner: SplitRunner) -> None:
        """One process: run every split here, in dispatch order."""
        stats = self.ranks[0]
        while True:
            chunk = self.scheduler.next_chunk(0)
            if not chunk:
                return
            results = [runner.run(job) for job in self.assignments(chunk)]
            stats.n_splits += len(results)
            stats.busy_seconds += sum(r.end_time - r.start_time for r in results)
            self.store.add(results)
            self.progress.add(results)
            self.scheduler.complete(0, chunk)
            self.tick()

    def finish(self) -> int:
        """Final write and summary; exit code 0 when every split has a result."""
        n_done = len(self.store.done_ids())
        complete = n_done == self.n_total
        self.checkpoint(complete=complete)
        wall = time.monotonic() - self.progress.start
        print(summary(self.store.new_results(), sorted(self.ranks.values(), key=lambda r: r.rank),
                      self.n_total, n_done, wall), file=sys.stderr, flush=True)
        print(f"[mpibench] results: {self.paths.results}", file=sys.stderr, flush=True)
        return 0 if complete else 3


def work(transport: MPITransport, runner: SplitRunner) -> None:
    """Worker loop: ask for splits, run them, send results with the next request."""
    stats = RankStats(transport.rank, runner.host, runner.pid, time.time())
    results = []
    while True:
        stats.end_time = time.time()
        transport.send(WorkRequest(transport.rank, results, stats), 0, TAG_REQUEST)
        jobs, _ = transport.receive(0, TAG_REPLY)
        if jobs is STOP:
            return
        results = [runner.run(job) for job in jobs]
        inject_fault("worker", transport.rank)
        stats.n_splits += len(results)
        stats.busy_seconds += sum(r.end_time - r.start_time for r in results)


def run(
    project: str | os.PathLike, *, threads: int | None = None, order: str = "lpt",
    chunk_size: int = 1, checkpoint_every: float = 300.0, progress_every: float = 5.0,
    comm: object = None,
) -> int:
    """Run every split of a project that has no result yet.

    Call it from every rank of an MPI job (``mpiexec -n 8 mpibench run PROJECT`` does);
    in a single process it runs serially and gives the same results.

    Parameters
    ----------
    project : str or os.PathLike
        Project folder made by :func:`~mpibench.create_project`.
    threads : int, optional
        BLAS/OpenMP threads per worker (default: ``SLURM_CPUS_PER_TASK``, else 1).
    order : {"lpt", "grid", "random"}, default="lpt"
        Dispatch order; ``lpt`` sends the largest train sets first.
    chunk_size : int, default=1
        Splits per message.
    checkpoint_every : float, default=300.0
        Seconds between rewrites of ``results.h5`` during the run.
    progress_every : float, default=5.0
        Seconds between progress lines on stderr (0: none).
    comm : mpi4py.MPI.Comm, optional
        Communicator (default ``COMM_WORLD``).

    Returns
    -------
    int
        0 when every split has a result (failed splits are results), 3 when some remain.
    """
    from mpi4py import MPI

    comm = comm if comm is not None else MPI.COMM_WORLD
    transport = MPITransport(comm)
    check_launch(transport.size)
    threads = resolve_threads(threads)
    paths = ProjectPaths(project)
    dispatcher, error = None, None
    if transport.rank == 0:
        try:
            dispatcher = Dispatcher(
                paths, transport.size, order=order, chunk_size=chunk_size,
                checkpoint_every=checkpoint_every, progress_every=progress_every,
                mpi_library=MPI.Get_library_version().splitlines()[0].strip(),
            )
        except MpibenchError as exc:
            error = str(exc)
    error = comm.bcast(error, root=0) if transport.size > 1 else error
    if error is not None:
        raise (MpibenchError if transport.rank == 0 else PeerRefused)(error)
    try:
        limit_threads(threads)
        return _run_role(transport, dispatcher, paths, threads)
    except Exception:
        if transport.size == 1:
            raise
        sys.stderr.write(f"[mpibench] rank {transport.rank} of {transport.size} on "
                         f"{socket.gethostname()} failed; aborting the job:\n"
                         f"{traceback.format_exc()}")
        sys.stderr.flush()
        time.sleep(ABORT_DELAY)  # let the launcher forward stderr before the job is torn down
        transport.abort(1)
        raise


def _run_role(transport: MPITransport, dispatcher: Dispatcher | None, paths: ProjectPaths,
              threads: int) -> int:
    if dispatcher is None:
        work(transport, SplitRunner(GridFile(paths.grid), transport.rank, threads))
        return 0
    if transport.size == 1:
        dispatcher.run_serially(SplitRunner(GridFile(paths.grid), 0, threads))
    else:
        dispatcher.serve(transport)
    return dispatcher.finish()
