"""``mpibench sbatch``: render (and submit) the SLURM batch script of a project run."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import InitVar, dataclass, field, fields
from importlib import resources
from pathlib import Path
from typing import Any

from ._version import __version__
from .constraints import Rule, check, flag, integer, matching, one_of
from .errors import MpibenchError

TIME_PATTERN = re.compile(r"^(\d+-)?\d{1,2}(:\d{2}){0,2}$")
MPI_PLUGINS = ("pmi2", "pmix", "pmi1", "none")
GRES_PATTERN = r"[\w.-]+(:[\w.-]+){0,2}(,[\w.-]+(:[\w.-]+){0,2})*"


def _comma_list(text: str) -> tuple[str, ...]:
    """``"gcc/12,openmpi/5"`` -> ``("gcc/12", "openmpi/5")``."""
    return tuple(part for part in text.split(",") if part)


def _option(default: Any = None, help: str = "", parse: Any = str,
            required: bool = False) -> Any:
    """A field of :class:`SbatchOptions` with what the command line needs to take it."""
    return field(default=default, metadata={"help": help, "parse": parse,
                                            "required": required})


@dataclass(frozen=True)
class SbatchOptions:
    """What goes into the batch script; times in SLURM's formats, memory as SLURM takes it.

    Checked when made (a bad value raises :class:`~mpibench.MpibenchError` naming the
    parameter, or its flag with ``spelling="cli"``); the ``mpibench sbatch`` flags are
    made from these fields.

    Attributes
    ----------
    ntasks : int
        MPI ranks (rank 0 dispatches, the others work).
    time : str
        Time limit, ``HH:MM:SS``, ``MM:SS``, ``D-HH:MM:SS``.
    cpus_per_task : int
        Cores per rank; becomes each worker's ``--threads``.
    mem_per_cpu, partition, account, nodes : str, optional
        As ``sbatch`` takes them.
    modules : tuple of str
        Environment modules loaded first.
    signal_seconds : int
        Seconds before the time limit at which the run is told to stop (SIGUSR1).
    max_submissions : int
        Submissions in all, counting resubmissions after a resumable stop (exit 3).
    mpi : str
        ``srun --mpi`` plugin (default: from the MPI library mpi4py uses).
    overcommit : bool
        ``srun --overcommit``: more ranks than allocated cores.
    job_name : str, optional
        Default ``mpibench-PROJECT``.
    gpus_per_task : int
        GPUs SLURM binds to each rank (``--gpus-per-task``; it sets each rank's
        ``CUDA_VISIBLE_DEVICES``, which mpibench keeps).
    gres : str
        Generic resources per node (``--gres=gpu:4``): every rank of a node sees the
        node's GPUs, and mpibench gives each working rank one of them in turn.

    Examples
    --------
    >>> SbatchOptions(ntasks=8, time="04:00:00", modules=["gcc/12"]).modules
    ('gcc/12',)
    >>> SbatchOptions(ntasks=8, time="4h", spelling="cli")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    mpibench.errors.MpibenchError: --time must be a SLURM time like 04:00:00 ... '4h' instead.
    """

    ntasks: int = _option(help="MPI ranks (1 dispatcher)", parse=int, required=True)
    time: str = _option(help="time limit, e.g. 04:00:00", required=True)
    cpus_per_task: int = _option(1, "cores per rank, passed to --threads", int)
    mem_per_cpu: str | None = _option(help="e.g. 4G")
    partition: str | None = _option()
    account: str | None = _option()
    nodes: str | None = _option(help="node count or range, e.g. 2 or 1-4")
    modules: tuple[str, ...] = _option((), "comma-separated modules to load first",
                                       _comma_list)
    signal_seconds: int = _option(120, "stop this many seconds before the time limit", int)
    max_submissions: int = _option(10, "submissions in all, resubmitting while the run is "
                                   "resumable", int)
    mpi: str | None = _option(help="srun --mpi plugin (default: pmi2 for MPICH, pmix for "
                              "Open MPI)")
    overcommit: bool = _option(False, "srun --overcommit: more ranks than allocated cores",
                               bool)
    job_name: str | None = _option(help="the job's name (default: mpibench-PROJECT)")
    gpus_per_task: int | None = _option(help="GPUs bound to each rank (rank 0 dispatches: "
                                        "give it none with --gres instead if GPUs are "
                                        "scarce)", parse=int)
    gres: str | None = _option(help="generic resources per node, e.g. gpu:4 (the ranks of "
                               "a node share the node's GPUs out, one each)")
    spelling: InitVar[str] = "python"

    def __post_init__(self, spelling: str) -> None:
        object.__setattr__(self, "modules", tuple(self.modules))
        check("SbatchOptions", {f.name: getattr(self, f.name) for f in fields(self)},
              SBATCH_RULES, spelling)

    @classmethod
    def from_arguments(cls, arguments: dict[str, Any], spelling: str = "cli") -> SbatchOptions:
        """Options from the parsed command line (names it does not know are ignored)."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in arguments.items() if k in known}, spelling=spelling)


SBATCH_RULES: dict[str, Rule] = {
    "ntasks": integer(1),
    "time": matching(TIME_PATTERN.pattern, "a SLURM time like 04:00:00 or 1-12:00:00"),
    "cpus_per_task": integer(1),
    "mpi": one_of(MPI_PLUGINS).or_none(),
    "gpus_per_task": integer(1).or_none(),
    "gres": matching(GRES_PATTERN, "NAME[:TYPE][:COUNT][,...], e.g. gpu:4 or gpu:a100:2"
                     ).or_none(),
    "signal_seconds": integer(1),
    "max_submissions": integer(1),
}
"""What each of :class:`SbatchOptions` may be."""


def sbatch_arguments() -> list[tuple[str, dict[str, Any]]]:
    """The ``mpibench sbatch`` flags, made from :class:`SbatchOptions`' fields: each
    ``(flag, argparse keyword arguments)``."""
    arguments = []
    for option in fields(SbatchOptions):
        meta = option.metadata
        kwargs: dict[str, Any] = {"help": meta["help"] or None}
        if meta["parse"] is bool:
            kwargs["action"] = "store_true"
        elif meta["required"]:
            kwargs.update(type=meta["parse"], required=True)
        else:
            kwargs.update(type=meta["parse"], default=option.default)
            if option.default not in (None, ()):
                kwargs["help"] = f"{meta['help']} (default: {option.default})"
        arguments.append((flag(option.name), kwargs))
    return arguments


def default_mpi_plugin() -> str:
    """``pmix`` for Open MPI, ``pmi2`` otherwise (MPICH and its derivatives)."""
    try:
        from mpi4py import MPI

        library = MPI.Get_library_version()
    except Exception:
        return "pmi2"
    return "pmix" if "Open MPI" in library else "pmi2"


def render_sbatch(project: str | os.PathLike, options: SbatchOptions, *,
                  python: str | None = None, run_arguments: Sequence[str] = ()) -> str:
    """The batch script text for ``project`` (absolute paths, this Python by default);
    ``run_arguments`` go to its ``mpibench run`` (``["--grace", "10"]``).

    Examples
    --------
    >>> text = render_sbatch("/data/proj", SbatchOptions(ntasks=64, time="04:00:00"),
    ...                      python="/opt/venv/bin/python")
    >>> "#SBATCH --ntasks=64" in text and "srun --mpi=" in text
    True
    """
    from .store.paths import ProjectPaths  # (numpy: not for the command line's --help)

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
        "RUN_ARGUMENTS": "".join(f" {shlex.quote(a)}" for a in run_arguments),
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
                 python: str | None = None, run_arguments: Sequence[str] = ()) -> Path:
    """Write ``PROJECT/mpibench.sbatch`` (see :func:`render_sbatch`); returns its path."""
    from .store.paths import ProjectPaths

    paths = ProjectPaths(project)
    if not paths.grid.exists():
        raise MpibenchError(f"No project at {paths.root}. Create it first "
                            "(mpibench.create_project or `mpibench demo`).")
    target = paths.root.absolute() / "mpibench.sbatch"
    tmp = paths.temporary(target)
    tmp.write_text(render_sbatch(project, options, python=python,
                                run_arguments=run_arguments))
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
