"""mpibench: machine-learning benchmark grids as one MPI program.

Define tasks x learners x resamplings in Python, create a project, run it with
``mpiexec -n 8 mpibench run PROJECT`` (or ``srun``), read the results into pandas.

Every public name is imported on first use, so that ``mpibench --help`` needs no
numpy and a worker rank loads no analysis or plotting code.
"""

from __future__ import annotations

from typing import Any

from ._version import __version__
from .errors import MpibenchError, MpibenchWarning

_HOMES = {
    "PValue": "analysis.pvalues", "pvalue": "analysis.pvalues",
    "pvalue_downsample": "analysis.pvalues",
    "friedman": "analysis.ranking", "critical_difference": "analysis.ranking",
    "pairwise": "analysis.ranking", "score_table": "analysis.ranking",
    "plot_critical_difference": "analysis.plotting",
    "DebugLearner": "debug", "NoOpLearner": "debug", "zero_score": "debug",
    "create_demo": "demo", "demo_data": "demo", "demo_grid": "demo",
    "Grid": "grid", "Task": "grid", "GridFile": "store.gridfile",
    "create_project": "project", "run": "engine.runner", "RunOptions": "engine.options",
    "SameOtherSizesCV": "splitters",
    "split_checkpoint": "checkpoint", "SplitCheckpoint": "checkpoint", "Epochs": "epochs",
    "project_status": "analysis.status",
    "read_attrs": "store.reading", "read_ranks": "store.reading", "read_results": "store.reading",
    "read_predictions": "store.reading", "read_runs": "store.reading",
    "plot_pvalue": "analysis.plotting", "plot_scores": "analysis.plotting",
    "plot_timeline": "analysis.plotting",
    "write_report": "analysis.report", "run_summary": "analysis.report",
    "EnergyModel": "energy", "resources_summary": "analysis.resources",
    "resources_text": "analysis.resources", "next_request": "analysis.resources",
    "usage_by_learner": "analysis.resources",
}
"""The module of each public name (imported on first use)."""


def __getattr__(name: str) -> Any:
    if name in _HOMES:
        from importlib import import_module

        value = getattr(import_module(f".{_HOMES[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'mpibench' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*__all__, *_HOMES})


__all__ = [  # noqa: RUF022 - grouped by role, not sorted
    # defining an experiment
    "Grid", "Task", "SameOtherSizesCV", "DebugLearner", "create_project",
    "create_demo", "demo_data", "demo_grid",
    # running it
    "run", "RunOptions", "MpibenchError", "MpibenchWarning",
    # long splits: a checkpoint inside a split
    "split_checkpoint", "SplitCheckpoint", "Epochs",
    # reading and comparing results
    "read_results", "read_attrs", "read_ranks", "read_runs", "read_predictions",
    "project_status",
    "PValue", "pvalue", "pvalue_downsample",
    "score_table", "friedman", "critical_difference", "pairwise",
    # figures and the report
    "plot_scores", "plot_pvalue", "plot_timeline", "plot_critical_difference",
    "write_report", "run_summary",
    # what the splits used, and the next request
    "usage_by_learner", "resources_summary", "resources_text", "next_request", "EnergyModel",
    "__version__",
]
"""Public names by role. ``GridFile``, ``NoOpLearner`` and ``zero_score`` stay
importable (benchmarks and tests use them) but are not part of the API."""
