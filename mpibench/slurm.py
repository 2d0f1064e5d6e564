"""``mpibench sbatch``: render (and submit) the SLURM batch script of a project run."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from ._version import __version__
from .errors import MpibenchError, invalid_parameter
from .store.paths import ProjectPaths

TIME_PATTERN = re.compile(r"^(\d+-)?\d{1,2}(:\d{2}){0,2}$")
MPI_PLUGINS = ("pmi2", "pmix", "pmi1", "none")


@dataclass
class SbatchOptions:
    """What goes into the batch script; times in SLURM's formats, memory as SLURM takes it.

    Attributes
    ----------
    ntasks : int
        MPI ranks (rank 0 dispatches, the others work).
    time : str
        Time limit, ``HH:MM:SS``, ``MM:SS``, ``D-HH:MM:SS``.
    cpus_per_task : int
        Cores per rank; becomes each worker's ``--threads``.
    signal_seconds : int
        Seconds before the time limit at which the run is told to stop (SIGUSR1).
    max_submissions : int
        Submissions in all, counting resubmissions after a resumable stop (exit 3).
    mpi : str
        ``srun --mpi`` plugin (default: from the MPI library mpi4py uses).
    gpus_per_task : int
        GPUs SLURM binds to each rank (``--gpus-per-task``; it sets each rank's
        ``CUDA_VISIBLE_DEVICES``, which mpibench keeps).
    gres : str
        Generic resources per node (``--gres=gpu:4``): every rank of a node sees the
        node's GPUs, and mpibench gives each working rank one of them in turn.
    """

    ntasks: int
    time: str
    cpus_per_task: int = 1
    mem_per_cpu: str | None = None
    partition: str | None = None
    account: str | None = None
    nodes: str | None = None
    modules: list[str] = field(default_factory=list)
    signal_seconds: int = 120
    max_submissions: int = 10
    mpi: str | None = None
    overcommit: bool = False
    job_name: str | None = None
    gpus_per_task: int | None = None
    gres: str | None = None

    def check(self) -> None:
        """Refuse values SLURM would refuse, with the fix."""
        if self.ntasks < 1:
            raise invalid_parameter("mpibench sbatch", "--ntasks", "an int >= 1", self.ntasks)
        if not TIME_PATTERN.match(self.time):
            raise invalid_parameter("mpibench sbatch", "--time",
                                    "a SLURM time like 04:00:00 or 1-12:00:00", self.time)
        if self.cpus_per_task < 1:
            raise invalid_parameter("mpibench sbatch", "--cpus-per-task", "an int >= 1",
                                    self.cpus_per_task)
        if self.mpi is not None and self.mpi not in MPI_PLUGINS:
            raise invalid_parameter("mpibench sbatch", "--mpi", f"one of {MPI_PLUGINS}",
                                    self.mpi)
        if self.gpus_per_task is not None and self.gpus_per_task < 1:
            raise invalid_parameter("mpibench sbatch", "--gpus-per-task", "an int >= 1",
                                    self.gpus_per_task)
        if self.gres is not None and not re.fullmatch(r"[\w.-]+(:[\w.-]+){0,2}"
                                                      r"(,[\w.-]+(:[\w.-]+){0,2})*", self.gres):
            raise invalid_parameter("mpibench sbatch", "--gres",
                                    "NAME[:TYPE][:COUNT][,...], e.g. gpu:4 or gpu:a100:2",
                                    self.gres)
        if self.max_submissions < 1 or self.signal_seconds < 1:
            raise MpibenchError("--max-submissions and --signal-seconds must be >= 1.")


def default_mpi_plugin() -> str:
    """``pmix`` for Open MPI, ``pmi2`` otherwise (MPICH and its derivatives)."""
    try:
        from mpi4py import MPI

        library = MPI.Get_library_version()
    except Exception:
        return "pmi2"
    return "pmix" if "Open MPI" in library else "pmi2"


def render_sbatch(project: str | os.PathLike, options: SbatchOptions, *,
                  python: str | None = None) -> str:
    """The batch script text for ``project`` (absolute paths, this Python by default).

    Examples
    --------
    >>> text = render_sbatch("/data/proj", SbatchOptions(ntasks=64, time="04:00:00"),
    ...                      python="/opt/venv/bin/python")
    >>> "#SBATCH --ntasks=64" in text and "srun --mpi=" in text
    True
    """
    options.check()
    root = Path(project).absolute()
    script = ProjectPaths(root).root / "mpibench.sbatch"
    extra = [f"#SBATCH --{flag}={value}" for flag, value in (
        ("mem-per-cpu", options.mem_per_cpu), ("partition", options.partition),
        ("account", options.account), ("nodes", options.nodes),
        ("gpus-per-task", options.gpus_per_task), ("gres", options.gres)) if value]
    values = {
        "PROJECT": str(root), "PROJECT_Q": shlex.quote(str(root)),
        "SCRIPT_Q": shlex.quote(str(script)), "VERSION": __version__,
        "STOP_FILE_Q": shlex.quote(str(ProjectPaths(root).stop_request)),
        "EXIT_FILE_Q": shlex.quote(str(ProjectPaths(root).exit_code)),
        "JOB_NAME": re.sub(r"[^\w.-]", "_", options.job_name or f"mpibench-{root.name}"),
        "OUTPUT": _directive_value(f"{root}/slurm-%j.out"),
        "NTASKS": str(options.ntasks), "CPUS": str(options.cpus_per_task),
        "TIME": options.time, "SIGNAL_SECONDS": str(options.signal_seconds),
        "EXTRA_SBATCH": "\n".join(extra), "MAX_SUBMISSIONS": str(options.max_submissions),
        "MODULES": "\n".join(f"module load {m}" for m in options.modules),
        "MPI": options.mpi or default_mpi_plugin(),
        "SRUN_EXTRA": " --overcommit" if options.overcommit else "",
        "PYTHON": shlex.quote(python or sys.executable),
    }
    template = resources.files("mpibench").joinpath("templates/run.sbatch").read_text()
    lines = []
    for line in template.splitlines():
        alone = re.fullmatch(r"\{\{(\w+)\}\}", line.strip())
        if alone and not values[alone.group(1)]:
            continue  # an optional block that is empty
        lines.append(re.sub(r"\{\{(\w+)\}\}", lambda m: values[m.group(1)], line))
    return "\n".join(lines) + "\n"


def _directive_value(value: str) -> str:
    """A value for an ``#SBATCH`` line: double-quoted when it holds blanks."""
    return f'"{value}"' if re.search(r"\s", value) else value


def write_sbatch(project: str | os.PathLike, options: SbatchOptions, *,
                 python: str | None = None) -> Path:
    """Write ``PROJECT/mpibench.sbatch`` and return its path."""
    paths = ProjectPaths(project)
    if not paths.grid.exists():
        raise MpibenchError(f"No project at {paths.root}. Create it first "
                            "(mpibench.create_project or `mpibench demo`).")
    target = paths.root.absolute() / "mpibench.sbatch"
    tmp = paths.temporary(target)
    tmp.write_text(render_sbatch(project, options, python=python))
    tmp.chmod(0o755)
    tmp.replace(target)
    return target


def submit(script: Path) -> str:
    """``sbatch --parsable SCRIPT``; returns the job id."""
    sbatch = shutil.which("sbatch")
    if sbatch is None:
        raise MpibenchError("sbatch not found: run this on a SLURM login node, or drop "
                            "--submit and submit the printed script there.")
    done = subprocess.run([sbatch, "--parsable", str(script)], capture_output=True,
                          text=True, timeout=60)
    if done.returncode != 0:
        message = " ".join(done.stderr.split())
        raise MpibenchError(f"sbatch refused the job: {message}. Check the options "
                            "(partition, account, time limit) against `sinfo`.")
    return done.stdout.strip().split(";")[0]
