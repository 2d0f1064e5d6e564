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
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import MpibenchError, inject_fault
from ..store.paths import ProjectPaths
from ..tuning import ABORT_DELAY, ORPHAN_CHECK_SECONDS
from .config import check_launch, launch_rank, limit_threads
from .interfaces import SplitExecutor
from .isolation import (
    IsolatedExecutor,
    IsolationLimits,
    SupervisorProcess,
    fork_supervisor,
    mpi_initialized,
    runs_no_split,
)
from .layout import exchange_placements, remove_grid_copy, settle_grid_copy
from .options import RunOptions, resolve_threads
from .placement import Placement, node_name
from .progress import log
from .protocol import (
    TAG_DONE,
    TAG_SETUP,
)
from .provenance import launch_facts
from .stopping import StopSignals
from .transport import MPITransport, Transport, TransportAborted
from .workerloop import work

if TYPE_CHECKING:
    from ..grid import Grid
    from .dispatcher import Dispatcher


class PeerRefused(MpibenchError):
    """Rank 0 refused the run; raised on the other ranks, which print nothing."""

    quiet = True


class Role(Enum):
    """What a process does in a run, decided once from its rank and the job's size."""

    SERIAL = "serial"
    """The only process: dispatches and runs every split itself."""
    DISPATCHER = "dispatcher"
    """Rank 0 of a job: hands out splits, records results, runs none."""
    WORKER = "worker"
    """Any other rank: asks for splits and runs them."""

    @classmethod
    def of(cls, rank: int, size: int) -> Role:
        """The role of ``rank`` in a job of ``size`` processes.

        Examples
        --------
        >>> Role.of(0, 1).runs_splits, Role.of(0, 4).runs_splits, Role.of(3, 4).name
        (True, False, 'WORKER')
        """
        if size == 1:
            return cls.SERIAL
        return cls.DISPATCHER if rank == 0 else cls.WORKER

    @property
    def runs_splits(self) -> bool:
        """True for the roles that fit learners (they get an executor)."""
        return self is not Role.DISPATCHER

    @property
    def dispatches(self) -> bool:
        """True for the roles that own the project (lock, journal, results.h5)."""
        return self is not Role.WORKER


@dataclass
class RunContext:
    """What a run has besides its options: set up by :func:`run` on every rank."""

    threads: int
    """BLAS/OpenMP threads per split (resolved from the option and the environment)."""
    signals: StopSignals
    supervisor: SupervisorProcess | None = None
    """The isolation supervisor forked before MPI started (None: spawn one if needed)."""
    test_source: Any = None
    """In test mode, the project the ``test`` sub-project is made from."""
    mpi_library: str = "-"
    placement: Placement | None = None
    """This rank's node, GPU and grid copy (set once every rank has reported)."""
    run_number: int = 0
    """This run's number among the project's runs (from rank 0, recorded per split)."""
    launch: dict | None = None
    """Rank 0's command line and git commit, taken before MPI started (``/runs``)."""


def make_executor(paths: ProjectPaths, rank: int, options: RunOptions,
                  context: RunContext) -> SplitExecutor:
    """An isolated executor (``isolate``; through the supervisor forked before MPI
    started, if there is one) or an in-process one, on the node and GPU of
    ``context.placement``."""
    predictions = paths.predictions if options.save_predictions else None
    place = context.placement or Placement(rank, node_name())
    grid = Path(place.grid_copy) if place.grid_copy else paths.grid
    if options.isolate:
        limits = IsolationLimits(options.limits, options.kill_grace, options.recycle_after,
                                 options.escalate)
        supervisor, context.supervisor = context.supervisor, None
        return IsolatedExecutor(grid, rank, context.threads, limits,
                                fallback=options.fallback, supervisor=supervisor,
                                predictions=predictions,
                                log_folder=paths.logs if options.log_splits else None,
                                placement=place, project=paths.root,
                                run_number=context.run_number)
    from ..store.gridfile import GridFile
    from .inprocess import InProcessExecutor
    from .worker import SplitRunner

    os.environ.update(place.cuda_environment)  # before any learner could initialise CUDA
    runner = SplitRunner(GridFile(grid), rank, context.threads, fallback=options.fallback,
                         predictions=predictions, host=place.node, gpu=place.gpu,
                         project=paths, run_number=context.run_number)
    runner.warm_up()  # first-call costs stay out of the first split's timings
    return InProcessExecutor(runner)


def run(project: str | os.PathLike | Grid, folder: str | os.PathLike | None = None, *,
        options: RunOptions | None = None, comm: Any = None, **settings: Any) -> int:
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
    options : RunOptions, optional
        The run's options as one object; or give them as keywords.
    comm : mpi4py.MPI.Comm, optional
        Communicator (default ``COMM_WORLD``).
    **settings
        Any parameter of :class:`~mpibench.RunOptions` (``threads``, ``order``,
        ``chunk_size``, ``checkpoint_every``, ``progress_every``, ``grace``,
        ``crash_after``, ``repair``, ``isolate``, ``timeout``, ``memory_limit``,
        ``kill_grace``, ``fallback``, ``test``, ``recycle_after``, ``retry``,
        ``save_predictions``, ``log_splits``), checked before anything is touched.

    Returns
    -------
    int
        0 when every split has a result (failed splits are results), 3 when stopped
        early (resumable).

    Examples
    --------
    >>> import tempfile, mpibench
    >>> project = mpibench.create_demo(tempfile.mkdtemp() + "/demo")
    >>> mpibench.run(project, progress_every=0, order="grid")
    0
    """
    if options is None:
        options = RunOptions.from_arguments(settings)
    elif settings:
        raise MpibenchError(f"run() takes options= or keyword options, not both; got "
                            f"{sorted(settings)} beside options=.")
    if folder is not None:
        one_line_errors()  # the one-launch form: a program of its own
    context = RunContext(resolve_threads(options.threads), StopSignals())
    context.signals.install()  # from here on a stop is a clean stop, whatever the rank does
    if launch_rank() in (0, None):  # (git runs now: after MPI_Init a fork is unsafe)
        context.launch = launch_facts(ask_git=not mpi_initialized())
    try:
        if (options.isolate and comm is None and not mpi_initialized()
                and not runs_no_split()):  # before MPI starts: no second interpreter
            context.supervisor = fork_supervisor(context.threads)
        return _launch(project, folder, comm, options, context)
    finally:
        context.signals.restore()
        if context.supervisor is not None and not context.supervisor.configured:
            context.supervisor.kill()  # unused: rank 0, or a refused run


def one_line_errors() -> None:
    """Make an uncaught :class:`MpibenchError` end the program as the ``mpibench``
    command does: one line on stderr (none for a quiet one, raised on the ranks that
    did not find the problem), MPI finalised, its exit code (2: refused). A script's
    own ``try``/``except`` still catches it; other exceptions keep Python's traceback."""
    previous = sys.excepthook
    if getattr(previous, "mpibench_one_line", False):
        return

    def hook(kind: type, error: BaseException, trace: Any) -> None:
        if not isinstance(error, MpibenchError):
            previous(kind, error, trace)
            return
        if not error.quiet:
            print(f"mpibench: error: {error}", file=sys.stderr)
        sys.stdout.flush()
        sys.stderr.flush()
        mpi = sys.modules.get("mpi4py.MPI")
        if mpi is not None and mpi.Is_initialized() and not mpi.Is_finalized():
            mpi.Finalize()
        os._exit(error.exit_code)

    hook.mpibench_one_line = True  # type: ignore[attr-defined]
    sys.excepthook = hook


def _launch(project: Any, folder: Any, comm: Any, options: RunOptions,
            context: RunContext) -> int:
    """Initialise MPI, settle the project folder, and play this rank's role."""
    from mpi4py import MPI

    transport = MPITransport(comm if comm is not None else MPI.COMM_WORLD)
    check_launch(transport.size)
    project = settle_project(transport, project, folder)
    paths = ProjectPaths(Path(project) / "test" if options.test else project)
    context.test_source = project if options.test else None
    context.mpi_library = library_name(MPI)
    if transport.size > 1:
        exit_when_orphaned()
    return _start(transport, paths, options, context)


def settle_project(transport: Transport, project: Any, folder: Any) -> Any:
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


def share_refusal(transport: Transport, outcome: tuple[int, str] | None) -> None:
    """Every rank learns rank 0's ``outcome`` (None: go on); a refusal raises
    :class:`MpibenchError` on rank 0 and :class:`PeerRefused` elsewhere, both with the
    refusal's exit code."""
    outcome = transport.share(outcome, TAG_SETUP)
    if outcome is not None:
        code, message = outcome
        error = (MpibenchError if transport.rank == 0 else PeerRefused)(message)
        error.exit_code = code
        raise error


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


def library_name(mpi: Any) -> str:
    """First line of the MPI library's version string (Open MPI pads it with NULs)."""
    return mpi.Get_library_version().replace("\x00", "").splitlines()[0].strip()


def _start(transport: Transport, paths: ProjectPaths, options: RunOptions,
           context: RunContext) -> int:
    """Rank 0 opens the project (all ranks learn if it could not), each rank plays its
    role, and all end together with rank 0's exit code; any failure ends every rank."""
    role = Role.of(transport.rank, transport.size)
    dispatcher, outcome, failure, abort = None, None, None, False
    if role is Role.WORKER and not options.isolate:
        import mpibench.engine.worker  # noqa: F401 - loads while rank 0 opens the project
    if role.dispatches:
        try:
            dispatcher = _open_dispatcher(paths, transport.size, options, context)
        except Exception as exc:  # every rank must learn of it
            outcome = _refusal(exc)
    share_refusal(transport, outcome)
    executor = None
    try:
        _place(transport, role, dispatcher, paths, context)
        if role.runs_splits:  # (rank 0 of a job skips it: finding the pools costs CPU)
            limit_threads(context.threads)
        executor = _ready_executor(transport, role, dispatcher, paths, options, context)
    except BaseException:
        if dispatcher is not None:
            dispatcher.close()  # a refusal: the lock goes before the job does
        raise
    try:
        code, abort = _run_role(transport, role, dispatcher, executor, context)
    except TransportAborted:  # (in-process ranks) another rank ended the job
        raise
    except Exception as exc:
        if role is Role.SERIAL:
            raise
        failure, code = exc, getattr(exc, "exit_code", 1)
        message = _failure_message(transport, exc)
    finally:
        if dispatcher is not None:
            dispatcher.close()  # the lock goes before the job does
    if failure is not None:
        _abort(transport, message, code)
        raise failure
    if abort:  # (results.h5 is written: resumable, though srun will report the abort)
        record_exit_code(paths, code)
        _abort(transport, "", code)
    code = _end_together(transport, code)
    if role.dispatches:
        record_exit_code(paths, code)
    remove_grid_copy(context.placement)
    return code


def record_exit_code(paths: ProjectPaths, code: int) -> None:
    """Write ``PROJECT/exit_code`` (atomically; a failure to write is only logged)."""
    try:
        tmp = paths.temporary(paths.exit_code)
        tmp.write_text(f"{code}\n")
        tmp.replace(paths.exit_code)
    except OSError as exc:
        log(f"could not write {paths.exit_code} ({exc.strerror}); exit code {code}")


def _place(transport: Transport, role: Role, dispatcher: Dispatcher | None,
           paths: ProjectPaths, context: RunContext) -> None:
    """Every rank learns its node, GPU and grid copy; rank 0's dispatcher learns them
    all and may refuse the run (GPU learners, no GPU): every rank then ends with that."""
    try:
        context.placement, everyone, nodes = exchange_placements(transport, paths.grid)
    except Exception as exc:  # a rank that cannot report would leave rank 0 waiting
        _abort(transport, _failure_message(transport, exc), getattr(exc, "exit_code", 1))
        raise
    outcome = None
    if dispatcher is not None and everyone is not None:
        try:
            dispatcher.place(everyone, nodes)
        except Exception as exc:  # every rank must learn of it
            outcome = _refusal(exc)
    share_refusal(transport, outcome)


def _open_dispatcher(paths: ProjectPaths, n_ranks: int, options: RunOptions,
                     context: RunContext) -> Dispatcher:
    """Rank 0's dispatcher for ``paths`` (first the test sub-project, if asked)."""
    from .dispatcher import Dispatcher

    inject_fault("setup", 0)
    if context.test_source is not None:
        from .testmode import create_test_project

        create_test_project(context.test_source)
        log(f"test mode: {paths.root} (first split of each task x learner x "
            "resampling, small data)")
    return Dispatcher(paths, n_ranks, options, signals=context.signals,
                      mpi_library=context.mpi_library, test_source=context.test_source,
                      launch=context.launch, threads=context.threads)


def _end_together(transport: Transport, code: int) -> int:
    """Rank 0 tells every worker the run's exit code (after ``results.h5`` is written
    and the lock released); workers wait for it with their stop handlers installed, so
    a stop signal at the end of a run cannot kill a rank that finished early."""
    code = transport.share(code, TAG_DONE)
    transport.flush()
    return code


def _failure_message(transport: Transport, error: Exception) -> str:
    """What a failing rank prints before it ends the job: one line for a refusal or a
    failed write, the traceback for anything else."""
    where = f"rank {transport.rank} of {transport.size} on {socket.gethostname()}"
    if isinstance(error, MpibenchError):
        return f"error on {where}: {error} Ending the job.\n"
    return f"{where} failed; ending the job:\n{traceback.format_exc()}"


def _abort(transport: Transport, message: str, code: int) -> None:
    sys.stderr.write(f"[mpibench] {message}")
    sys.stderr.flush()
    time.sleep(ABORT_DELAY)  # let the launcher forward stderr before the job is torn down
    transport.abort(code)


def _ready_executor(transport: Transport, role: Role, dispatcher: Dispatcher | None,
                    paths: ProjectPaths, options: RunOptions,
                    context: RunContext) -> SplitExecutor | None:
    """The executor of a rank that runs splits, once it has loaded every learner; None
    when there is nothing to run (then no pickled code of ``grid.h5`` is loaded).
    Collective: a rank that cannot load them ends every rank, in one line (exit 2)."""
    has_work, context.run_number = transport.share(
        (dispatcher.n_todo > 0, dispatcher.run_number) if dispatcher else None, TAG_SETUP)
    executor, problem = None, None
    if role.runs_splits and has_work:
        try:
            if context.placement is not None:
                settle_grid_copy(context.placement, paths.grid)
            executor = make_executor(paths, transport.rank, options, context)
            executor.ready()
        except Exception as exc:
            problem = _refusal(exc)
    problems = transport.gather(problem, TAG_SETUP)
    outcome = next((p for p in problems or [] if p is not None), None)
    try:
        share_refusal(transport, outcome)
    except BaseException:
        if executor is not None:
            executor.close()
        raise
    return executor


def _run_role(transport: Transport, role: Role, dispatcher: Dispatcher | None,
              executor: SplitExecutor | None, context: RunContext) -> tuple[int, bool]:
    """Play ``role``; returns the exit code and whether the job must end at once
    (splits that could not be interrupted are still running)."""
    try:
        if role is Role.WORKER:
            work(transport, executor, context.signals, context.placement)
            transport.flush()
            return 0, False
        assert dispatcher is not None  # (every role but WORKER dispatches)
        return _dispatch(transport, role, dispatcher, executor)
    finally:
        if executor is not None:
            executor.close()


def _dispatch(transport: Transport, role: Role, dispatcher: Dispatcher,
              executor: SplitExecutor | None) -> tuple[int, bool]:
    from .stopping import GraceExpired

    try:
        if role is Role.SERIAL:
            dispatcher.run_serially(executor)
        else:
            dispatcher.serve(transport)
            transport.flush()
    except GraceExpired:  # splits that could not be interrupted (isolate=False)
        n_stuck = dispatcher.give_back_in_flight()
        code = dispatcher.finish()
        log(f"{n_stuck} split(s) still running after the grace period and the interrupt "
            "(--no-isolate cannot stop a split); ending the job. They run again on resume.")
        return code, role is not Role.SERIAL
    return dispatcher.finish(), False
