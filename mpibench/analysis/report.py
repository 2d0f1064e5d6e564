"""One self-contained HTML report: run summary, failures, p-values and figures."""

from __future__ import annotations

import base64
import html
import io
import os
import re
import time
from pathlib import Path

import pandas as pd

from ..energy import EnergyModel
from ..errors import MpibenchError
from ..formatting import format_bytes, without_rank
from ..store.gridfile import GridFile
from ..store.paths import ProjectPaths
from ..store.reading import read_attrs, read_ranks, read_results, read_runs
from .plotting import (
    MAX_SCORE_PANELS,
    _panels,
    plot_critical_difference,
    plot_pvalue,
    plot_scores,
    plot_timeline,
)
from .pvalues import pvalue
from .ranking import critical_difference, friedman, pairwise, rank_rows, score_table
from .resources import resources_summary

MIN_RANKED_TASKS = 3
"""Tasks (with every learner scored) from which the report ranks learners across tasks."""
MAX_TABLE_ROWS = 200
"""Rows of the pairwise and p-value tables shown in the report."""
MAX_HEATMAP_TASKS = 1000
"""Tasks of the tasks x learners table shown in the report."""

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 2em; }
table { border-collapse: collapse; font-size: 0.85em; margin: 0.5em 0; }
th, td { border-bottom: 1px solid #ddd; padding: 3px 8px; text-align: right; }
th { background: #f4f4f4; } td:first-child, th:first-child { text-align: left; }
img { max-width: 100%; border: 1px solid #eee; } code { background: #f4f4f4; }
"""


def run_summary(results: pd.DataFrame) -> dict:
    """Counts and timings of a run.

    Returns
    -------
    dict
        ``n_splits``, ``statuses`` (count per status), ``makespan_seconds`` (first start
        to last end), ``work_seconds`` (sum of split durations), ``longest_seconds``,
        ``n_workers`` (ranks that ran splits) and ``efficiency`` =
        max(work / workers, longest) / makespan (1.0 is a perfect schedule).
    """
    durations = results["end_time"] - results["start_time"]
    makespan = float(results["end_time"].max() - results["start_time"].min())
    workers = int(results["rank"].nunique())
    bound = max(float(durations.sum()) / workers, float(durations.max()))
    return {
        "n_splits": len(results),
        "statuses": results["status"].astype(str).value_counts().to_dict(),
        "makespan_seconds": makespan, "work_seconds": float(durations.sum()),
        "longest_seconds": float(durations.max()), "n_workers": workers,
        "efficiency": bound / makespan if makespan > 0 else float("nan"),
    }


def _figure(figure) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    data = base64.b64encode(buffer.getvalue()).decode()
    return f'<img alt="figure" src="data:image/png;base64,{data}">'


def _failures(results: pd.DataFrame) -> pd.DataFrame:
    failed = results[results["status"].astype(str) != "ok"]
    messages = failed["error"].map(without_rank)
    table = pd.DataFrame({"status": failed["status"].astype(str), "learner":
                          failed["learner"].astype(str), "error": messages})
    return table.value_counts().rename("count").reset_index()


def _table(frame: pd.DataFrame) -> str:
    return frame.to_html(index=False, float_format=lambda v: f"{v:.4g}", border=0)


def _resources_section(project: Path, results: pd.DataFrame,
                       energy: EnergyModel) -> list[str]:
    """CPU-hours, GPU-hours and peak memory per learner, energy, the next request, and
    the runs (versions, nodes, SLURM job, git commit)."""
    summary = resources_summary(project, energy, results)
    table = pd.DataFrame(summary["learners"])
    for column in ("memory_median", "memory_p95", "memory_max"):
        table[column] = table[column].map(format_bytes)
    runs = read_runs(project)
    shown = [c for c in ("run", "exit_code", "n_ranks", "threads", "slurm_job_id",
                         "mpibench_version", "scikit_learn_version", "torch_version",
                         "git_commit", "git_dirty", "command") if c in runs]
    return ["<h2>Resources</h2>", "<p>Per learner: CPU-hours and GPU-hours the splits "
            "used, GB-hours of their peak memory, peak memory per split (median, 95th "
            "percentile, max).</p>", _table(table.drop(columns=["gb_hours"])),
            f"<p>Energy: {summary['kwh']:.4g} kWh, {summary['grams_co2']:.4g} g CO2e = "
            f"{html.escape(summary['model'])}.</p>",
            f"<p>Next time ({summary['next_for']}): "
            f"<code>{html.escape(summary['next'])}</code></p>",
            "<h2>Runs</h2>", _table(runs[shown]) if len(runs) else
            "<p>Not recorded (the project was last run by an older mpibench).</p>"]


def _sections(project: Path, results: pd.DataFrame, score: str,
              energy: EnergyModel | None = None) -> list[str]:
    summary = run_summary(results)
    ranks = read_ranks(project)
    ranks["busy_fraction"] = ranks["busy_seconds"] / (ranks["end_time"] - ranks["start_time"])
    attrs = read_attrs(project)
    facts = pd.DataFrame({"": [
        "splits", "statuses", "complete", "makespan (s)", "work (s)", "longest split (s)",
        "workers", "efficiency: max(work/workers, longest)/makespan", "MPI", "ranks"],
        "value": [f"{summary['n_splits']} of {attrs['n_total']}",
                  ", ".join(f"{k} {v}" for k, v in summary["statuses"].items()),
                  str(bool(attrs["complete"])), f"{summary['makespan_seconds']:.2f}",
                  f"{summary['work_seconds']:.2f}", f"{summary['longest_seconds']:.3f}",
                  str(summary["n_workers"]), f"{summary['efficiency']:.3f}",
                  html.escape(str(attrs.get("mpi_library", ""))), str(attrs.get("n_ranks"))]})
    parts = ["<h2>Run</h2>", _table(facts),
             "<h2>Ranks</h2>", _table(ranks[[c for c in (
                 "run", "rank", "host", "gpu", "n_splits", "busy_seconds", "idle_seconds",
                 "busy_fraction") if c in ranks and (c != "gpu" or (ranks[c] != "").any())]])]
    failures = _failures(results)
    parts += ["<h2>Failures</h2>",
              _table(failures) if len(failures) else "<p>None: every split is ok.</p>"]
    if "n_warnings" in results and (results["n_warnings"] > 0).any():
        warned = results[results["n_warnings"] > 0]
        table = pd.DataFrame({"learner": warned["learner"].astype(str),
                              "first warning": warned["warning"].astype(str)})
        parts += ["<h2>Warnings</h2>", "<p>Splits whose fit, predict or scorers raised "
                  "Python warnings (first warning of each split).</p>",
                  _table(table.value_counts().rename("splits").reset_index())]
    parts += ["<h2>Timeline</h2>", _figure(plot_timeline(results, ranks=ranks))]
    parts += _resources_section(project, results, energy or EnergyModel())
    parts += _across_tasks(results, score)
    parts += _pvalue_section(results, score, attrs)
    n_panels = len(_panels(results[results["status"].astype(str) == "ok"]))
    if n_panels == 0:
        parts += [f"<h2>Scores: {html.escape(score)}</h2>",
                  "<p>None: no split has status ok.</p>"]
    elif n_panels <= MAX_SCORE_PANELS:
        parts += [f"<h2>Scores: {html.escape(score)}</h2>", _figure(plot_scores(results, score))]
    else:
        parts += [f"<h2>Scores: {html.escape(score)}</h2>", f"<p>{n_panels} task panels: "
                  "see the ranks across tasks above; <code>mpibench plot PROJECT scores</code>"
                  f" draws the first {MAX_SCORE_PANELS}.</p>"]
    return parts


def _across_tasks(results: pd.DataFrame, score: str) -> list[str]:
    """Mean ranks, Friedman and Nemenyi, pairwise tests and a tasks x learners table,
    for a grid of at least ``MIN_RANKED_TASKS`` tasks and two learners."""
    table = score_table(results, score)
    if len(table.columns) < 2 or len(table.dropna()) < MIN_RANKED_TASKS:
        return []
    test = friedman(results, score)
    cd = critical_difference(test)
    better = "larger" if test.greater_is_better else "smaller"
    facts = (f"<p>Each task's score is the mean over its splits (plain cross-validation, "
             f"or SOAK's full-size <code>all</code> splits); learners are ranked within "
             f"each task ({better} {html.escape(score)} is better; 1 = best). Friedman "
             f"chi-square {test.statistic:.4g} (p = {test.pvalue:.3g}), Iman-Davenport F "
             f"{test.iman_davenport:.4g} (p = {test.pvalue_f:.3g}) over {test.n_tasks} tasks"
             + (f" ({test.n_left_out} tasks left out: a learner has no score there)"
                if test.n_left_out else "")
             + f"; Nemenyi's critical difference at alpha {cd.alpha:g}: {cd.cd:.3f}.</p>")
    ranks = test.mean_ranks.rename("mean rank").rename_axis("learner").reset_index()
    pairs = pairwise(results, score).sort_values("p_holm", na_position="last")
    shown = pairs.head(MAX_TABLE_ROWS)
    note = (f"<p>The {MAX_TABLE_ROWS} pairs with the smallest adjusted p-values of "
            f"{len(pairs)}; all of them: <code>mb.pairwise(results, score)</code>.</p>"
            if len(pairs) > MAX_TABLE_ROWS else "")
    return [f"<h2>Learners across tasks: {html.escape(score)}</h2>", facts, _table(ranks),
            _figure(plot_critical_difference(cd)),
            "<h3>Learner against learner</h3><p>Wins, ties and losses of the first learner "
            "over the tasks where both have a score; Wilcoxon signed-rank test of the "
            "per-task differences, Holm-adjusted over all pairs.</p>", note, _table(shown),
            "<h3>Tasks x learners</h3>", _heatmap(table, test.greater_is_better)]


def _heatmap(table: pd.DataFrame, greater: bool) -> str:
    """The tasks x learners mean scores as an HTML table, each cell coloured by the
    learner's rank on that task (green best, red worst): text, so a thousand tasks stay
    readable and searchable."""
    shown = table.head(MAX_HEATMAP_TASKS)
    ranks = rank_rows(shown, greater).to_numpy()
    hues = 120 * (1 - (ranks - 1) / (max(len(table.columns), 2) - 1))
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in table.columns)
    rows = []
    for task, values, row_hues in zip(shown.index, shown.to_numpy(), hues, strict=True):
        cells = "".join(
            f'<td style="background:hsl({hue:.0f},60%,80%)">{value:.4g}</td>'
            if hue == hue else f'<td style="background:#eee">{value:.4g}</td>'
            for value, hue in zip(values.tolist(), row_hues.tolist(), strict=True))
        rows.append(f"<tr><td>{html.escape(str(task))}</td>{cells}</tr>")
    more = (f"<p>The first {MAX_HEATMAP_TASKS} of {len(table)} tasks; all of them: "
            "<code>mb.score_table(results, score)</code>.</p>"
            if len(table) > MAX_HEATMAP_TASKS else "")
    return (f"{more}<table><tr><th>task</th>{head}</tr>{''.join(rows)}</table>")


def _pvalue_section(results: pd.DataFrame, score: str, attrs: dict) -> list[str]:
    """Same vs other vs all, or one line saying why there is none yet."""
    kinds = set(results["train_subsets"].astype(str))
    title = f"<h2>Same vs other vs all: {html.escape(score)}</h2>"
    if not kinds - {""}:
        return [title, "<p>No p-values: this grid has no SOAK train subsets (plain "
                "cross-validation); use SameOtherSizesCV for same/other/all.</p>"]
    if "same" not in kinds or not {"other", "all"} & kinds:
        return [title, f"<p>No p-values yet: the {len(results)} of {attrs['n_total']} "
                f"splits done hold train subsets {sorted(kinds)}, and a comparison needs "
                "'same' beside 'other' or 'all'. Write the report again when more are "
                "done.</p>"]
    result = pvalue(results, score)
    note = "" if attrs.get("complete") else (
        f" Partial results ({len(results)} of {attrs['n_total']} splits): missing splits "
        "show as NaN means and smaller n.")
    rows = result.pvalues.drop(columns="label")
    if len(rows) > MAX_TABLE_ROWS:
        note += (f" The first {MAX_TABLE_ROWS} of {len(rows)} comparisons; all of them: "
                 "<code>mb.pvalue(results, score).pvalues</code>.")
    figure = (_figure(plot_pvalue(result)) if len(_panels(results)) <= MAX_SCORE_PANELS
              else "<p>(Too many task panels for the figure: <code>mpibench plot PROJECT "
              "pvalue</code> draws them.)</p>")
    return [title, "<p>Paired two-sided t-tests over test folds (and seeds), full-size "
            f"train sets; p_unpaired is Welch's.{note}</p>",
            _table(rows.head(MAX_TABLE_ROWS)), figure]


def write_report(project: str | os.PathLike, path: str | os.PathLike,
                 score: str | None = None, energy: EnergyModel | None = None) -> Path:
    """Write ``path``: one HTML file with the run summary, failures, p-values, figures.

    Parameters
    ----------
    project : str or os.PathLike
        Project folder with results.
    path : str or os.PathLike
        HTML file to write.
    score : str, optional
        Score column to test and plot (default: the first scorer).
    energy : EnergyModel, optional
        The energy estimate's numbers (default: :class:`EnergyModel`'s).

    Examples
    --------
    >>> import mpibench as mb
    >>> project = finished_demo()  # mb.create_demo(folder), then mb.run(folder)
    >>> text = mb.write_report(project, project / "report.html").read_text()
    >>> "Same vs other vs all: rmse" in text and text.count("data:image/png") == 3
    True
    """
    paths = ProjectPaths(project)
    results = read_results(paths.root)
    score = score or GridFile(paths.grid).scorer_names()[0]
    if score not in results:
        raise MpibenchError(f"No score column {score!r} in the results. Pick one of "
                            f"{GridFile(paths.grid).scorer_names()}.")
    if not len(results):
        raise MpibenchError(f"{paths.results} has no splits yet. Run the project first.")
    title = f"mpibench report: {html.escape(str(paths.root))}"
    body = "\n".join(_sections(paths.root, results, score, energy))
    generated = time.strftime("%Y-%m-%d %H:%M:%S")
    document = (f"<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>{title}</title>"
                f"<style>{STYLE}</style></head><body><h1>{title}</h1>"
                f"<p>Generated {generated}.</p>\n{body}\n</body></html>\n")
    target = Path(path)
    target.write_text(re.sub(r"[ \t]+\n", "\n", document))
    return target
