"""mpibench: machine-learning benchmark grids as one MPI program.

Define tasks x learners x resamplings in Python, create a project, run it with
``mpiexec -n 8 mpibench run PROJECT`` (or ``srun``), read the results into pandas.

Every public name is imported on first use, so that ``mpibench --help`` needs no
numpy and a worker rank loads no analysis or plotting code.
"""

from __future__ import annotations

from ._version import __version__
from .errors import MpibenchError

_HOMES = {
    "PValue": "analysis", "pvalue": "analysis", "pvalue_downsample": "analysis",
    "DebugLearner": "debug", "NoOpLearner": "debug", "zero_score": "debug",
    "create_demo": "demo", "demo_data": "demo", "demo_grid": "demo",
    "Grid": "grid", "Task": "grid", "GridFile": "gridfile",
    "create_project": "project", "run": "runner", "SameOtherSizesCV": "splitters",
    "project_status": "status",
    "read_attrs": "storage", "read_ranks": "storage", "read_results": "storage",
    "read_predictions": "storage",
    "plot_pvalue": "plotting", "plot_scores": "plotting", "plot_timeline": "plotting",
    "write_report": "report", "run_summary": "report",
}
"""The module of each public name (imported on first use)."""


def __getattr__(name: str) -> object:
    if name in _HOMES:
        from importlib import import_module

        value = getattr(import_module(f".{_HOMES[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'mpibench' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)


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
    "read_predictions",
    "read_ranks",
    "read_results",
    "run",
    "run_summary",
    "write_report",
    "zero_score",
]
