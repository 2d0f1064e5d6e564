"""mpibench: machine-learning benchmark grids as one MPI program.

Define tasks x learners x resamplings in Python, create a project, run it with
``mpiexec -n 8 mpibench run PROJECT`` (or ``srun``), read the results into pandas.
"""

from ._version import __version__
from .analysis import PValue, pvalue, pvalue_downsample
from .debug import DebugLearner, NoOpLearner, zero_score
from .demo import create_demo, demo_data, demo_grid
from .errors import MpibenchError
from .grid import Grid, Task
from .gridfile import GridFile
from .project import create_project
from .runner import run
from .splitters import SameOtherSizesCV
from .status import project_status
from .storage import read_attrs, read_ranks, read_results

_LAZY = {
    "plot_pvalue": "plotting", "plot_scores": "plotting", "plot_timeline": "plotting",
    "write_report": "report", "run_summary": "report",
}
"""Names whose modules import matplotlib: loaded on first use, not by workers."""


def __getattr__(name: str) -> object:
    if name in _LAZY:
        from importlib import import_module

        return getattr(import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'mpibench' has no attribute {name!r}")


__all__ = [
    "DebugLearner",
    "Grid",
    "GridFile",
    "MpibenchError",
    "NoOpLearner",
    "PValue",
    "SameOtherSizesCV",
    "Task",
    "__version__",
    "create_demo",
    "create_project",
    "demo_data",
    "demo_grid",
    "plot_pvalue",
    "plot_scores",
    "plot_timeline",
    "project_status",
    "pvalue",
    "pvalue_downsample",
    "read_attrs",
    "read_ranks",
    "read_results",
    "run",
    "run_summary",
    "write_report",
    "zero_score",
]
