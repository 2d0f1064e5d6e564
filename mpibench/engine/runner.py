"""Run a project: rank 0 dispatches and records, the other ranks fit and score.

One SPMD program. With one process the same code runs every split serially.
"""

from __future__ import annotations

import os
import socket
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import MpibenchError, inject_fault
from ..store.paths import ProjectPaths
from .config import (
    check_launch,
    check_run_options,
    limit_threads,
    parse_retry,
    resolve_threads,
)
from .isolation import (
    IsolatedExecutor,
    IsolationLimits,
    SupervisorProcess,
    fork_supervisor,
    mpi_initialized,
    runs_no_split,
)
from .protocol import (
    TAG_DONE,
    TAG_SETUP,
)
from .stopping import StopSignals
from .supervisor import RECYCLE_AFTER
from .transport import MPITransport
from .workerloop import work

if TYPE_CHECKING:
    from ..grid import Grid
    from .dispatcher import Dispatcher

ABORT_DELAY = 0.5
"""Seconds between printing a fatal error and ``MPI_Abort``."""


class PeerRefused(MpibenchError):
    """Rank 0 refused the run; raised on the other ranks, which print nothing."""

    quiet = True


def make_executor(paths: ProjectPaths, rank: int, threads: int, options: dict) -> object:
    """An isolated executor (``isolate``; through the supervisor forked before MPI
    started, if there is one) or an in-process runner, with limits and fallback."""
    predictions = paths.predictions if options.get("save_predictions") else None
    if options["isolate"]:
        limits = IsolationLimits(options["timeout"], options["kill_grace"],
                                 options["memory_limit"], options["recycle_after"])
        supervisor, options["supervisor"] = options.get("supervisor"), None
        return IsolatedExecutor(paths.grid, rank, threads, limits,
                                fallback=options["fallback"], supervisor=supervisor,
                                predictions=predictions,
                                log_folder=paths.logs if options.get("log_splits") else None)
    from ..store.gridfile import GridFile
    from .worker import InProcessExecutor, SplitRunner

    runner = SplitRunner(GridFile(paths.grid), rank, threads, fallback=options["fallback"],
                         predictions=predictions)
    runner.warm_up()  # first-call costs stay out of the first split's timings
    return InProcessExecutor(runner)


def run(
    project: str | os.PathLike | Grid, folder: str | os.PathLike | None = None, *,
    threads: int | None = None, order: str = "lpt",
    chunk_size: int | str = "auto", checkpoint_every: float = 300.0, progress_every: float = 5.0,
    grace: float = 20.0, max_attempts: int = 2, repair: bool = False, isolate: bool = True,
    timeout: float | None = None, memory_limit: int | None = None, kill_grace: float = 2.0,
    fallback: object = None, test: bool = False, recycle_after: int = RECYCLE_AFTER,
    retry: str | list[str] | None = None, save_predictions: bool = False,
    log_splits: bool = False, comm: object = None,
) -> int:
    """Run every split of a project that has no result yet.

    Call it from every rank of an MPI job (``mpiexec -n 8 mpibench run PROJECT`` does);
    in a single process it runs serially and gives the same results. SIGTERM, SIGUSR1
    and SIGINT stop it cleanly (exit code 3); rerunning resumes.

    Parameters
    ----------
    project : str, os.PathLike or Grid
        Project folder made by :func:`~mpibench.create_project`; or a
        :class:`~mpibench.Grid`, with ``folder``: then rank 0 creates the project (or
        checks that the one there is the same grid) and every rank then runs it, so a
        script started as ``mpiexec -n 16 python experiment.py`` is one launch.
    folder : str or os.PathLike, optional
        The project folder, when ``project`` is a grid.
    threads : int, optional
        BLAS/OpenMP threads per worker (default: ``SLURM_CPUS_PER_TASK``, else 1).
    order : {"lpt", "grid", "random"}, default="lpt"
        Dispatch order; ``lpt`` sends the longest expected splits first (train rows x a
        per-learner rate learned from finished splits). A ``priority`` column given to
        :func:`~mpibench.create_project` comes first.
    chunk_size : int or "auto", default="auto"
        Splits per message; ``"auto"`` sends about 10 ms of expected work per message,
        shrinking as the run ends, and long splits one at a time.
    checkpoint_every : float, default=300.0
        Seconds between rewrites of ``results.h5`` during the run.
    progress_every : float, default=5.0
        Seconds between progress lines on stderr (0: none).
    grace : float, default=20.0
        Seconds the splits in flight get to finish after a stop signal.
    max_attempts : int, default=2
        Runs a split may be in flight in when they die before it is recorded ``crash``.
    repair : bool, default=False
        Drop damaged journal records (those splits run again) instead of refusing.
    isolate : bool, default=True
        Run the splits in a long-lived executor process per worker (forked before MPI
        starts; replaced when it dies), so a crash, hang or memory blow-up ends only
        that split.
    timeout : float, optional
        Wall-clock seconds per split (then SIGTERM, ``kill_grace`` seconds, SIGKILL);
        status ``timeout``. Needs ``isolate``.
    memory_limit : int, optional
        Bytes of memory a split may add; status ``oom``. Needs ``isolate``.
    kill_grace : float, default=2.0
        Seconds between SIGTERM and SIGKILL of a split that timed out.
    fallback : "featureless" or estimator, optional
        Overrides the grid's fallback learner for failed splits.
    test : bool, default=False
        Test mode: run the first split of each task x learner x resampling on tasks
        down-sampled per stratum, in the sub-project ``PROJECT/test`` (its own
        ``results.h5``), to find errors in a minute.
    recycle_after : int, default=1000
        Splits an executor runs before a fresh one replaces it (it is also replaced
        after an ``oom`` split and when its memory grew by 1 GiB).
    retry : str or list of str, optional
        Run again the splits whose result has one of these statuses (``"error"``,
        ``"timeout"``, ``"crash"``, ``"oom"``, ``"invalid"``, or ``"ok"`` to recompute
        finished ones, e.g. to save their predictions; a comma-separated string or a
        list), with this run's options. Their earlier results stay as history
        (``read_results(attempts="all")``); ``attempt`` counts on.
    save_predictions : bool, default=False
        Keep every split's test-row predictions (and class probabilities) in
        ``/predictions`` of ``results.h5`` (:func:`~mpibench.read_predictions`).
    log_splits : bool, default=False
        Keep what each split prints (stdout and stderr of its executor, up to 1 MiB) in
        ``PROJECT/logs/JOB-ATTEMPT.log`` instead of the job's stderr. Needs ``isolate``.
    comm : mpi4py.MPI.Comm, optional
        Communicator (default ``COMM_WORLD``).

    Returns
    -------
    int
        0 when every split has a result (failed splits are results), 3 when stopped
        early (resumable).

    Examples
    --------
    >>> import tempfile, mpibench
    >>> project = mpibench.create_demo(tempfile.mkdtemp() + "/demo")
    >>> mpibench.run(project, progress_every=0)
    0
    """
    check_run_options(max_attempts=max_attempts, recycle_after=recycle_after,
                      isolate=isolate, timeout=timeout, memory_limit=memory_limit,
                      grace=grace, kill_grace=kill_grace)
    if log_splits and not isolate:
        raise MpibenchError("--log-splits captures the output of isolated executors: "
                            "drop --no-isolate.")
    retry = parse_retry(retry)
    threads = resolve_threads(threads)
    signals = StopSignals()
    signals.install()  # from here on a stop signal is a clean stop, whatever the rank does
    supervisor = None
    try:
        if isolate and comm is None and not mpi_initialized() and not runs_no_split():
            supervisor = fork_supervisor(threads)  # before MPI starts: no second interpreter
        return _launch(project, folder, threads, supervisor, comm, {
            "order": order, "chunk_size": chunk_size, "checkpoint_every": checkpoint_every,
            "progress_every": progress_every, "grace": grace, "max_attempts": max_attempts,
            "repair": repair, "isolate": isolate, "timeout": timeout,
            "memory_limit": memory_limit, "kill_grace": kill_grace, "fallback": fallback,
            "recycle_after": recycle_after, "test": test, "signals": signals,
            "retry": retry, "save_predictions": save_predictions,
            "log_splits": log_splits})
    finally:
        signals.restore()
        if supervisor is not None and not supervisor.configured:
            supervisor.kill()  # unused: rank 0, or a refused run


def _launch(project: object, folder: object, threads: int,
            supervisor: SupervisorProcess | None, comm: object, options: dict) -> int:
    """Initialise MPI, settle the project folder, and play this rank's role."""
    from mpi4py import MPI

    comm = comm if comm is not None else MPI.COMM_WORLD
    transport = MPITransport(comm)
    check_launch(transport.size)
    project = settle_project(transport, project, folder)
    test = options.pop("test")
    paths = ProjectPaths(Path(project) / "test" if test else project)
    if transport.size > 1:
        exit_when_orphaned()
    return _start(transport, paths, threads, {
        **options, "supervisor": supervisor, "test_source": project if test else None,
        "mpi_library": library_name(MPI)})


def settle_project(transport: MPITransport, project: object, folder: object) -> object:
    """The project folder; given a grid, rank 0 creates or checks it, and every rank
    learns the outcome (a refusal raises :class:`MpibenchError` on rank 0 and
    :class:`PeerRefused` elsewhere)."""
    if isinstance(project, (str, os.PathLike)):
        return project  # (importing Grid would load scikit-learn on every rank)
    from ..grid import Grid

    if not isinstance(project, Grid):
        raise MpibenchError(f"run() takes a project folder or a Grid. Got {project!r} "
                            "instead.")
    if folder is None:
        raise MpibenchError("run(grid, folder): name the project folder, e.g. "
                            "mpibench.run(grid, 'proj').")
    outcome = None
    if transport.rank == 0:
        from ..project import create_project

        try:
            create_project(folder, project)
        except Exception as exc:  # every rank must learn of it
            outcome = _refusal(exc)
    share_refusal(transport, outcome)
    return folder


def _refusal(error: Exception) -> tuple[int, str]:
    """``(exit code, one-line message)`` for an error rank 0 met before the run: the
    error's own for bad input (2) or a failed write (1); an unexpected one is an
    internal error (1), its traceback printed here."""
    if isinstance(error, MpibenchError):
        return error.exit_code, str(error)
    traceback.print_exc()
    return 1, (f"internal error while opening the project ({type(error).__name__}: "
               f"{error}); the traceback is above. Please report it.")


def share_refusal(transport: MPITransport, outcome: tuple[int, str] | None) -> None:
    """Every rank learns rank 0's ``outcome`` (None: go on); a refusal raises
    :class:`MpibenchError` on rank 0 and :class:`PeerRefused` elsewhere, both with the
    refusal's exit code."""
    outcome = transport.share(outcome, TAG_SETUP)
    if outcome is not None:
        code, message = outcome
        error = (MpibenchError if transport.rank == 0 else PeerRefused)(message)
        error.exit_code = code
        raise error


ORPHAN_CHECK_SECONDS = 1.0
"""How often each rank of a multi-rank job checks that its launcher is still alive."""


def exit_when_orphaned(interval: float = ORPHAN_CHECK_SECONDS) -> None:
    """Start a daemon thread that ends this process if its launcher dies.

    A rank's parent is the launcher's per-node daemon (Hydra's proxy, Open MPI's prted,
    slurmstepd). If that is killed the rank is re-parented and nothing would ever stop
    it: it exits instead (its isolation supervisor and executors follow, by PDEATHSIG).
    """
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(interval)
        os._exit(1)

    threading.Thread(target=watch, name="mpibench-orphan-check", daemon=True).start()


def library_name(mpi: object) -> str:
    """First line of the MPI library's version string (Open MPI pads it with NULs)."""
    return mpi.Get_library_version().replace("\x00", "").splitlines()[0].strip()


def _start(transport: MPITransport, paths: ProjectPaths, threads: int, options: dict) -> int:
    """Rank 0 opens the project (all ranks learn if it could not), each rank plays its
    role, and all end together with rank 0's exit code."""
    dispatcher, outcome = None, None
    if transport.rank != 0 and not options["isolate"]:
        import mpibench.engine.worker  # noqa: F401 - loads while rank 0 opens the project
    if transport.rank == 0:
        try:
            dispatcher = _open_dispatcher(paths, transport.size, options)
        except Exception as exc:  # every rank must learn of it
            outcome = _refusal(exc)
    share_refusal(transport, outcome)
    try:
        if dispatcher is None or transport.size == 1:  # rank 0 of a job runs no split:
            limit_threads(threads)  # finding the thread pools costs it 10-90 ms of CPU
        code = _run_role(transport, dispatcher, paths, threads, options)
    except Exception as exc:
        if transport.size == 1:
            raise
        if dispatcher is not None:
            dispatcher.close()  # the lock goes before the job does
        _abort(transport, _failure_message(transport, exc), getattr(exc, "exit_code", 1))
        raise
    finally:
        if dispatcher is not None:
            dispatcher.close()
    return _end_together(transport, code)


def _open_dispatcher(paths: ProjectPaths, n_ranks: int, options: dict) -> Dispatcher:
    """Rank 0's dispatcher for ``paths`` (first the ``--test`` sub-project, if asked)."""
    from .dispatcher import Dispatcher
    from .progress import log

    inject_fault("setup", 0)
    if options["test_source"] is not None:
        from .testmode import create_test_project

        create_test_project(options["test_source"])
        log(f"test mode: {paths.root} (first split of each task x learner x "
            "resampling, small data)")
    return Dispatcher(paths, n_ranks, **options)


def _end_together(transport: MPITransport, code: int) -> int:
    """Rank 0 tells every worker the run's exit code (after ``results.h5`` is written
    and the lock released); workers wait for it with their stop handlers installed, so
    a stop signal at the end of a run cannot kill a rank that finished early."""
    code = transport.share(code, TAG_DONE)
    transport.flush()
    return code


def _failure_message(transport: MPITransport, error: Exception) -> str:
    """What a failing rank prints before it ends the job: one line for a refusal or a
    failed write, the traceback for anything else."""
    where = f"rank {transport.rank} of {transport.size} on {socket.gethostname()}"
    if isinstance(error, MpibenchError):
        return f"error on {where}: {error} Ending the job.\n"
    return f"{where} failed; ending the job:\n{traceback.format_exc()}"


def _abort(transport: MPITransport, message: str, code: int) -> None:
    sys.stderr.write(f"[mpibench] {message}")
    sys.stderr.flush()
    time.sleep(ABORT_DELAY)  # let the launcher forward stderr before the job is torn down
    transport.abort(code)


def _run_role(transport: MPITransport, dispatcher: Dispatcher | None, paths: ProjectPaths,
              threads: int, options: dict) -> int:
    executor = None
    if dispatcher is None or transport.size == 1:
        executor = make_executor(paths, transport.rank, threads, options)
    try:
        return _play(transport, dispatcher, executor, options.get("signals"))
    finally:
        if executor is not None:
            executor.close()


def _play(transport: MPITransport, dispatcher: Dispatcher | None, executor: object,
          signals: StopSignals | None = None) -> int:
    if dispatcher is None:
        work(transport, executor, signals)
        transport.flush()
        return 0
    from .dispatcher import GraceExpired
    from .progress import log

    try:
        if executor is not None:
            dispatcher.run_serially(executor)
        else:
            dispatcher.serve(transport)
            transport.flush()
    except GraceExpired:  # splits that could not be interrupted (--no-isolate)
        n_stuck = dispatcher.give_back_in_flight()
        code = dispatcher.finish()
        log(f"{n_stuck} split(s) still running after the grace period and the interrupt "
            "(--no-isolate cannot stop a split); ending the job. They run again on resume.")
        dispatcher.close()
        if transport.size > 1:
            _abort(transport, "", code)
        return code
    return dispatcher.finish()
