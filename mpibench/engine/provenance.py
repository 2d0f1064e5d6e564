"""Where and with what a run ran: library versions, the MPI library, SLURM's job, the
thread settings, the git commit of the folder it was launched from, and each node's
CPU, memory and GPUs; one row of the ``/runs`` table per run (``mb.read_runs``).

:func:`launch_facts` runs once on rank 0 before MPI starts (git is asked then: a
process started after ``MPI_Init`` is unsafe with some interconnects);
:func:`run_facts` adds the rest when the project is open; :func:`node_hardware` runs
on the first rank of each node, which sends it to rank 0 with its placement.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

from .config import THREAD_VARIABLES

PACKAGES = {"mpibench": "mpibench", "numpy": "numpy", "scipy": "scipy",
            "sklearn": "scikit-learn", "pandas": "pandas", "h5py": "h5py",
            "mpi4py": "mpi4py", "torch": "torch"}
"""Module -> distribution whose installed version is recorded (column
``<distribution>_version``, ``-`` as ``_``; empty: absent)."""
THREAD_SETTINGS = (*THREAD_VARIABLES, "SLURM_CPUS_PER_TASK", "MPIBENCH_THREADS")
"""The variables recorded as a run's ``thread_settings`` (those set)."""



def git_state(folder: Path, timeout: float = 5.0) -> tuple[str, bool | None]:
    """``(commit, dirty)`` of the git work tree holding ``folder`` (``("", None)``
    outside one, or when git is missing or slow). Dirty: tracked files changed."""
    folder = folder.absolute()
    if not any((parent / ".git").exists() for parent in (folder, *folder.parents)):
        return "", None
    try:
        head = subprocess.run(["git", "-C", str(folder), "rev-parse", "HEAD"],
                              capture_output=True, text=True, timeout=timeout)
        status = subprocess.run(["git", "-C", str(folder), "status", "--porcelain",
                                 "--untracked-files=no"], capture_output=True, text=True,
                                timeout=timeout)
    except (OSError, subprocess.SubprocessError):
        return "", None
    if head.returncode != 0:
        return "", None
    return head.stdout.strip(), bool(status.stdout.strip()) if status.returncode == 0 else None


def launch_facts(ask_git: bool = True) -> dict[str, Any]:
    """What rank 0 records before MPI starts: the command line, the working directory
    and its git commit (``ask_git`` False: MPI is running already, no process is
    started and the commit is left unknown)."""
    commit, dirty = git_state(Path.cwd()) if ask_git else ("", None)
    argv = getattr(sys, "orig_argv", None) or [sys.executable, *sys.argv]
    return {"command": shlex.join(argv),
            "working_directory": str(Path.cwd()), "git_commit": commit,
            "git_dirty": -1 if dirty is None else int(dirty)}


def installed_versions() -> dict[str, str]:
    """``{"numpy_version": "2.4.6", ...}``: the installed versions (those imported in
    this process: their ``__version__``; the others from the environment's metadata)."""
    from importlib import metadata

    versions = {}
    for module_name, distribution in PACKAGES.items():
        version = getattr(sys.modules.get(module_name), "__version__", None)
        if not isinstance(version, str):
            try:
                version = metadata.version(distribution)
            except metadata.PackageNotFoundError:
                version = ""
        versions[f"{distribution.replace('-', '_')}_version"] = version
    return versions


def run_facts(launch: dict[str, Any] | None, *, n_ranks: int, threads: int,
              mpi_library: str, start_time: float) -> dict[str, Any]:
    """A ``/runs`` row of this run as far as rank 0 knows it at the start (the nodes,
    end time and exit code come later; what is never learnt is filled in as unknown
    when ``/runs`` is written)."""
    environment = os.environ
    facts: dict[str, Any] = {
        "start_time": start_time, "n_ranks": n_ranks, "threads": threads, **(launch or {}),
        "python_version": sys.version.split()[0], **installed_versions(),
        "mpi_library": mpi_library,
        "slurm_job_id": environment.get("SLURM_JOB_ID", ""),
        "slurm_partition": environment.get("SLURM_JOB_PARTITION", ""),
        "slurm_nodelist": environment.get("SLURM_JOB_NODELIST", ""),
        "thread_settings": json.dumps({name: environment[name] for name in THREAD_SETTINGS
                                       if name in environment}),
    }
    return facts


def node_hardware(node: str) -> dict[str, Any]:
    """This node's CPU model, cores (all, and those this process may use), memory
    (bytes) and GPU models (from the NVIDIA driver's ``/proc`` files; none read
    through CUDA)."""
    return {"node": node, "cpu_model": _cpu_model(), "cores": os.cpu_count() or 0,
            "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
            else os.cpu_count() or 0,
            "memory_bytes": _memory_bytes(), "gpus": _gpu_models()}


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as cpuinfo:  # (read to the first match only: the
            for line in cpuinfo:  # file has a block per core)
                if line.startswith(("model name", "Model", "cpu model")):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine()


def _memory_bytes() -> int:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def _gpu_models() -> list[str]:
    models = []
    for info in sorted(Path("/proc/driver/nvidia/gpus").glob("*/information")):
        try:
            line = next(x for x in info.read_text().splitlines() if x.startswith("Model:"))
        except (OSError, StopIteration):
            continue
        models.append(line.split(":", 1)[1].strip())
    return models
