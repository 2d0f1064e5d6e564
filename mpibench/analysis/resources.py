"""What a project's splits cost, an energy estimate, and what to ask the scheduler for
next time, from the per-split ``cpu_seconds``, ``max_rss_bytes`` and ``gpu_seconds``.

Energy: :class:`~mpibench.energy.EnergyModel` of core-hours (the CPU time the splits
used, not the cores allocated), GB-hours (each split's peak memory held for its wall
time) and GPU-hours.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..constraints import Rule, check, integer, is_number, number
from ..energy import EnergyModel
from ..formatting import format_bytes
from ..store.gridfile import GridFile
from ..store.paths import ProjectPaths
from ..store.reading import read_ranks, read_results, read_runs

HOUR = 3600.0
GB = 1e9


def usage_by_learner(results: pd.DataFrame) -> pd.DataFrame:
    """Per learner (and ``all``): splits, CPU-hours, GPU-hours, GB-hours of peak memory
    held, and peak memory per split (median, 95th percentile, max; bytes).

    Examples
    --------
    >>> results = pd.DataFrame({"learner": ["a", "a", "b"], "cpu_seconds": [3600.0] * 3,
    ...     "gpu_seconds": [0.0] * 3, "max_rss_bytes": [1e9, 2e9, 4e9],
    ...     "start_time": [0.0] * 3, "end_time": [3600.0] * 3})
    >>> usage_by_learner(results)[["splits", "cpu_hours", "memory_max"]].to_dict("index")
    {'a': {'splits': 2, 'cpu_hours': 2.0, 'memory_max': 2000000000.0}, \
'b': {'splits': 1, 'cpu_hours': 1.0, 'memory_max': 4000000000.0}, \
'all': {'splits': 3, 'cpu_hours': 3.0, 'memory_max': 4000000000.0}}
    """
    frame = pd.DataFrame({
        "learner": results["learner"].astype(str),
        "cpu_hours": _column(results, "cpu_seconds") / HOUR,
        "gpu_hours": _column(results, "gpu_seconds") / HOUR,
        "memory": _column(results, "max_rss_bytes"),
        "hours": (results["end_time"] - results["start_time"]).clip(lower=0) / HOUR,
    })
    frame["gb_hours"] = frame["memory"] / GB * frame["hours"]
    rows = {}
    for learner, part in [*frame.groupby("learner", sort=True), ("all", frame)]:  # all last
        memory = part["memory"]
        rows[learner] = {  # (NaN where a split's use is unknown: an older version's)
            "splits": len(part), "cpu_hours": part["cpu_hours"].sum(skipna=False),
            "gpu_hours": part["gpu_hours"].sum(skipna=False),
            "gb_hours": part["gb_hours"].sum(skipna=False),
            "memory_median": memory.median(), "memory_p95": memory.quantile(0.95),
            "memory_max": memory.max()}
    return pd.DataFrame.from_dict(rows, orient="index")


def _column(results: pd.DataFrame, name: str) -> pd.Series:
    """A numeric column (NaN for results written before it existed: unknown, not 0)."""
    return results[name].astype(float) if name in results else pd.Series(
        np.nan, index=results.index)


@dataclass(frozen=True)
class NextRequest:
    """What to ask SLURM for to run the splits left (or the whole grid again).

    Attributes
    ----------
    ntasks, cpus_per_task : int
        Ranks (one dispatches) and cores per rank.
    time_seconds : float
        The time limit: the cost model's split-seconds over the workers (at least the
        longest split), plus the margin and the stop warning.
    mem_per_cpu_bytes : int
        The largest peak memory of a split or a rank, plus the margin, per core.
    n_splits : int
        The splits it is for; ``whole``: all of the grid (none was left).
    """

    ntasks: int
    cpus_per_task: int
    time_seconds: float
    mem_per_cpu_bytes: int
    n_splits: int
    whole: bool

    def command(self, project: str) -> str:
        """The ``mpibench sbatch`` line."""
        return (f"mpibench sbatch {project} --ntasks {self.ntasks} --cpus-per-task "
                f"{self.cpus_per_task} --time {slurm_time(self.time_seconds)} "
                f"--mem-per-cpu {slurm_memory(self.mem_per_cpu_bytes)}")


def slurm_time(seconds: float) -> str:
    """Seconds as SLURM's ``[D-]HH:MM:SS``, rounded up to whole minutes.

    Examples
    --------
    >>> slurm_time(59), slurm_time(3 * 3600 + 1), slurm_time(2 * 86400)
    ('00:01:00', '03:01:00', '2-00:00:00')
    """
    minutes = max(1, math.ceil(seconds / 60))
    days, minutes = divmod(minutes, 24 * 60)
    text = f"{minutes // 60:02d}:{minutes % 60:02d}:00"
    return f"{days}-{text}" if days else text


def slurm_memory(n_bytes: float) -> str:
    """Bytes as SLURM's memory size, rounded up to 256 MiB (``M`` below 1 GiB).

    Examples
    --------
    >>> slurm_memory(3e8), slurm_memory(1.5 * 2**30)
    ('512M', '1536M')
    >>> slurm_memory(4 * 2**30)
    '4G'
    """
    quarter_gib = max(1, math.ceil(n_bytes / 2**28))
    return f"{quarter_gib // 4}G" if quarter_gib % 4 == 0 else f"{quarter_gib * 256}M"


REQUEST_RULES: dict[str, Rule] = {
    "ntasks": integer(1).or_none(), "cpus_per_task": integer(1).or_none(),
    "margin": Rule(lambda v: is_number(v) and v >= 0, "a fraction >= 0 (0.25: 25 % more)"),
    "warning_seconds": number(0),
}


def next_request(project: str | os.PathLike, *, ntasks: int | None = None,
                 cpus_per_task: int | None = None, margin: float = 0.25,
                 warning_seconds: float = 120.0, results: pd.DataFrame | None = None,
                 spelling: str = "python") -> NextRequest:
    """What to ask for next time (see :class:`NextRequest`). ``ntasks`` and
    ``cpus_per_task`` default to the last run's; the time of a split not yet run is its
    learner's median seconds per training row times its rows (the median over all
    learners for a learner with no result); ``margin`` is added to time and memory;
    ``warning_seconds`` is ``mpibench sbatch --signal-seconds``.
    """
    check("next_request", {"ntasks": ntasks, "cpus_per_task": cpus_per_task,
                           "margin": margin, "warning_seconds": warning_seconds},
          REQUEST_RULES, spelling)
    results = read_results(project) if results is None else results
    runs = read_runs(project)
    last = runs.iloc[-1] if len(runs) else None
    ntasks = ntasks or (int(last["n_ranks"]) if last is not None else 0) or 2  # (0: unknown)
    cpus = cpus_per_task or (max(1, int(last["threads"])) if last is not None else 1)
    jobs = GridFile(ProjectPaths(project).grid).job_table(
        columns=["job_id", "learner", "n_train"])
    left = jobs[~jobs["job_id"].isin(results["job_id"])]
    whole = left.empty
    seconds = _predicted_seconds(results, jobs if whole else left)
    workers = max(1, ntasks - 1)
    time_seconds = (max(seconds.sum() / workers, seconds.max(initial=0.0))
                    * (1 + margin) + warning_seconds)
    ranks = read_ranks(project)
    peak = max(float(np.nanmax(_column(results, "max_rss_bytes").to_numpy(), initial=0.0)),
               float(np.max(ranks["max_rss_bytes"].to_numpy(float), initial=0.0)))
    return NextRequest(ntasks, cpus, time_seconds, int(peak * (1 + margin) / cpus),
                       len(jobs if whole else left), whole)


def _predicted_seconds(results: pd.DataFrame, jobs: pd.DataFrame) -> np.ndarray:
    """Seconds each of ``jobs`` is expected to take (per-learner seconds per row)."""
    took = (results["end_time"] - results["start_time"]).clip(lower=0)
    rows = results["n_train"].clip(lower=1).astype(float)
    rate = (took / rows).groupby(results["learner"].astype(str), observed=True).median()
    overall = float((took / rows).median()) if len(results) else 0.0
    per_row = jobs["learner"].astype(str).map(rate).fillna(overall).to_numpy(float)
    return per_row * jobs["n_train"].clip(lower=1).to_numpy(float)


def resources_summary(project: str | os.PathLike, energy: EnergyModel | None = None,
                      results: pd.DataFrame | None = None, **request: object) -> dict:
    """:func:`usage_by_learner` (``learners``: one dict per learner, ``all`` last), the
    energy estimate (``kwh``, ``grams_co2``, ``model``) and the ``mpibench sbatch`` line
    to use next time (``next``; ``request``: :func:`next_request`'s options), as a
    JSON-ready dict (``results``: the project's, if read already)."""
    energy = energy or EnergyModel()
    results = read_results(project) if results is None else results
    table = usage_by_learner(results)
    total = table.loc["all"]
    kwh = energy.kwh(total["cpu_hours"], total["gb_hours"], total["gpu_hours"])
    ask = next_request(project, results=results, **request)  # type: ignore[arg-type]
    return {  # (JSON has no NaN: None where unknown)
        "learners": [{"learner": str(name), **{k: _number(v) for k, v in row.items()}}
                     for name, row in table.iterrows()],
        "kwh": _number(kwh), "grams_co2": _number(kwh * energy.grams_co2_per_kwh),
        "model": energy.describe(),
        "next": ask.command(str(project)),
        "next_for": "the whole grid again" if ask.whole else f"the {ask.n_splits} splits left",
    }


def resources_text(project: str | os.PathLike, energy: EnergyModel | None = None,
                   **request: object) -> str:
    """:func:`resources_summary` as lines of text: CPU-hours, GPU-hours and peak memory
    per learner, the energy estimate, the ``mpibench sbatch`` line to use next time.

    Examples
    --------
    >>> import tempfile, mpibench
    >>> project = mpibench.create_demo(tempfile.mkdtemp() + "/demo")
    >>> mpibench.run(project, progress_every=0)
    0
    >>> print(resources_text(project))  # doctest: +ELLIPSIS
    resources (per learner: splits, CPU-hours, GPU-hours, peak memory median / 95% / max)
    ...
    next time (the whole grid again): mpibench sbatch ... --ntasks 1 --cpus-per-task 1 --time ...
    """
    summary = resources_summary(project, energy, **request)
    lines = ["resources (per learner: splits, CPU-hours, GPU-hours, peak memory median "
             "/ 95% / max)"]
    for row in summary["learners"]:
        lines.append(
            f"  {row['learner']}: {row['splits']:.0f} splits, {_known(row['cpu_hours'])} "
            f"CPU-h, {_known(row['gpu_hours'])} GPU-h, {format_bytes(row['memory_median'])}"
            f" / {format_bytes(row['memory_p95'])} / {format_bytes(row['memory_max'])}")
    if summary["kwh"] is None:
        lines.append("energy: unknown (some splits were recorded by an mpibench that did "
                     "not measure their CPU time)")
    else:
        lines.append(f"energy: {summary['kwh']:.4g} kWh, {summary['grams_co2']:.4g} g "
                     f"CO2e = {summary['model']}")
    lines.append(f"next time ({summary['next_for']}): {summary['next']}")
    return "\n".join(lines)


def _known(value: float | None) -> str:
    """``value`` for a line of text ("unknown" for None)."""
    return "unknown" if value is None else f"{value:.4g}"


def _number(value: float) -> float | None:
    """A float, None for NaN."""
    return None if math.isnan(value) else float(value)
