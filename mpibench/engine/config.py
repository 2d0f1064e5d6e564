"""Settings from arguments, ``MPIBENCH_*``/SLURM environment variables and defaults."""

from __future__ import annotations

import os
import warnings

from ..errors import MpibenchError, invalid_parameter
from ..store.records import RECORDED

THREAD_VARIABLES = (
    "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
    "BLIS_NUM_THREADS", "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS",
)
LAUNCH_SIZE_VARIABLES = ("SLURM_NTASKS", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE")


def env_int(name: str, default: int | None) -> int | None:
    """An integer environment variable; warns (naming it) and uses ``default`` if invalid."""
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        warnings.warn(f"Ignoring {name}={raw!r}: not an integer.", stacklevel=2)
        return default


def resolve_threads(threads: int | None) -> int:
    """Threads per worker: argument > MPIBENCH_THREADS > SLURM_CPUS_PER_TASK > 1."""
    value = threads if threads is not None else env_int("MPIBENCH_THREADS", None)
    if value is None:
        value = env_int("SLURM_CPUS_PER_TASK", 1)
    if value < 1:
        raise MpibenchError(f"--threads must be >= 1. Got {value} instead.")
    return value


def limit_threads(threads: int) -> None:
    """Cap BLAS/OpenMP threads in this process (threadpoolctl) and in its children."""
    for name in THREAD_VARIABLES:
        os.environ[name] = str(threads)
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=threads)


def check_launch(comm_size: int) -> None:
    """Refuse a run started as N separate single processes instead of one MPI job.

    Raises
    ------
    MpibenchError
        When COMM_WORLD has size 1 but the launcher says there are more tasks.
    """
    if comm_size != 1:
        return
    for name in LAUNCH_SIZE_VARIABLES:
        size = env_int(name, 1) or 1
        if size > 1:
            raise MpibenchError(
                f"This process sees an MPI job of size 1, but {name}={size}: the launcher "
                "started separate single processes. Inside SLURM use `srun --mpi=pmi2` "
                "(MPICH) or `srun --mpi=pmix` (Open MPI), or install mpi4py built for the "
                "MPI that mpiexec belongs to."
            )


RETRY_STATUSES = RECORDED


def parse_retry(retry: str | list[str] | None) -> tuple[str, ...]:
    """The statuses of ``--retry`` (a comma-separated string or a list), checked.

    Examples
    --------
    >>> parse_retry("error, timeout"), parse_retry(None)
    (('error', 'timeout'), ())
    """
    if retry is None:
        return ()
    names = [s.strip() for s in (retry.split(",") if isinstance(retry, str) else retry)]
    wrong = [name for name in names if name not in RETRY_STATUSES]
    if wrong or not names:
        raise invalid_parameter("run", "retry", f"statuses among {RETRY_STATUSES}", retry)
    return tuple(dict.fromkeys(names))


def check_run_options(*, max_attempts: int, recycle_after: int, isolate: bool,
                      timeout: float | None, memory_limit: int | None, grace: float,
                      kill_grace: float) -> None:
    """Refuse option values :func:`run` cannot honour, before anything starts.

    Examples
    --------
    >>> try:
    ...     check_run_options(max_attempts=2, recycle_after=1000, isolate=True,
    ...                       timeout=-1, memory_limit=None, grace=20, kill_grace=2)
    ... except MpibenchError as exc:
    ...     print(exc)
    The 'timeout' parameter of run must be a number of seconds > 0. Got -1 instead.
    """
    checks = (("max_attempts", max_attempts, max_attempts >= 1, "an int >= 1"),
              ("recycle_after", recycle_after, recycle_after >= 1, "an int >= 1"),
              ("timeout", timeout, timeout is None or timeout > 0,
               "a number of seconds > 0"),
              ("memory_limit", memory_limit, memory_limit is None or memory_limit > 0,
               "a number of bytes > 0"),
              ("grace", grace, grace >= 0, "a number of seconds >= 0"),
              ("kill_grace", kill_grace, kill_grace >= 0, "a number of seconds >= 0"))
    for name, value, valid, expected in checks:
        if not valid:
            raise invalid_parameter("run", name, expected, value)
    if not isolate and (timeout is not None or memory_limit is not None):
        raise MpibenchError("--timeout and --memory-limit need isolation: drop --no-isolate.")
