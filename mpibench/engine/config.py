"""Settings from arguments, ``MPIBENCH_*``/SLURM environment variables and defaults."""

from __future__ import annotations

import os
import warnings

from ..errors import MpibenchError

THREAD_VARIABLES = (
    "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
    "BLIS_NUM_THREADS", "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS",
)
LAUNCH_SIZE_VARIABLES = ("SLURM_NTASKS", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE")
RANK_VARIABLES = ("PMI_RANK", "OMPI_COMM_WORLD_RANK", "PMIX_RANK", "SLURM_PROCID")
"""Where launchers announce a process's rank before MPI starts (Hydra, Open MPI,
PMIx, SLURM), in that order."""


def launch_rank() -> int | None:
    """This process's rank as its launcher announced it before MPI starts (the first
    of :data:`RANK_VARIABLES` that is set); None when it was launched alone."""
    value = next((os.environ[n] for n in RANK_VARIABLES if os.environ.get(n)), None)
    return int(value) if value is not None and value.strip().isdigit() else None


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


def find_modules_in_working_directory() -> None:
    """Put the working directory first on ``sys.path`` (as ``python -m`` does) and on
    ``PYTHONPATH`` (for an isolation supervisor started as its own interpreter), so
    ``mpibench run`` finds a learner's module where ``python -m mpibench run`` would."""
    import sys
    from pathlib import Path

    here = str(Path.cwd())
    if here not in sys.path:
        sys.path.insert(0, here)
    paths = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    if here not in paths:
        os.environ["PYTHONPATH"] = os.pathsep.join([here, *paths])
