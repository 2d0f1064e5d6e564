"""Figures: p-values (same vs other vs all), the run timeline, scores per train subset.

Each function returns a matplotlib ``Figure`` and, given ``path``, saves it; the file
extension picks the format (``.png``, ``.svg``, ``.pdf``). No pyplot state is touched.
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from ..errors import MpibenchError
from .pvalues import PValue
from .ranking import CriticalDifference

Y_LEVELS = ("all", "all-same", "same", "other-same", "other")
MAX_SCORE_PANELS = 24
"""Panels (task x test subset) the scores figure draws at most: past a few tasks the
report ranks learners across tasks instead."""
MAX_COLUMNS = 4
"""Panels per row of the scores figure (more wrap onto further rows)."""
DENSE_SPLITS = 40
"""Splits per rank above which the timeline marks split ends in white, not black."""
GREY = "0.55"


def _save(figure: Figure, path: str | os.PathLike | None) -> Figure:
    if path is not None:
        figure.savefig(path, dpi=150, bbox_inches="tight")
    return figure


def _colors(names: list[str]) -> dict[str, tuple]:
    from matplotlib import colormaps

    palette = colormaps["tab10"]
    return {name: palette(i % 10) for i, name in enumerate(names)}


def _panels(frame: pd.DataFrame) -> list[tuple[str, str]]:
    return sorted({(str(t), str(s)) for t, s in zip(frame["task"], frame["test_subset"],
                                                    strict=True)})


def _align(lowest: float, highest: float, low: float, high: float,
           third: bool = False) -> str:
    """Where a label at ``lowest``..``highest`` goes in a panel spanning ``low``..``high``
    so that it stays inside: starting there (left part of the panel), ending there
    (right part), or centred (as mlr3resampling places its labels).

    Examples
    --------
    >>> _align(0.1, 0.2, 0.0, 1.0), _align(0.8, 0.9, 0.0, 1.0), _align(0.4, 0.6, 0.0, 1.0)
    ('left', 'right', 'center')
    """
    if not np.isfinite([lowest, highest, low, high]).all() or high <= low:
        return "center"
    cut_low, cut_high = ((low * 2 + high) / 3, (low + high * 2) / 3) if third else (
        (low + high) / 2, (low + high) / 2)
    if highest < cut_low:
        return "left"
    if lowest > cut_high:
        return "right"
    return "center"


def plot_pvalue(result: PValue, path: str | os.PathLike | None = None) -> Figure:
    """Mean ± sd per train subset, and the paired p-value of other/all vs same.

    One panel per learner (rows) and task x test subset (columns); y from the bottom:
    all, all-same, same, other-same, other, with room for labels at the top.

    Examples
    --------
    >>> import mpibench as mb
    >>> project = finished_demo()  # mb.create_demo(folder), then mb.run(folder)
    >>> figure = mb.plot_pvalue(mb.pvalue(mb.read_results(project), "rmse"))
    >>> len(figure.axes)
    8
    """
    stats, pvalues = result.stats, result.pvalues
    learners = sorted(stats["learner"].unique())
    panels = _panels(stats)
    present = set(stats["train_subsets"]) | set(pvalues.get("comparison", []))
    levels = [level for level in Y_LEVELS if level in present]
    y_of = {level: i for i, level in enumerate(levels)}
    figure = Figure(figsize=(3.4 * len(panels), 0.55 * (len(levels) + 1) * len(learners) + 1))
    axes = figure.subplots(len(learners), len(panels), squeeze=False)
    for row, learner in enumerate(learners):
        for col, (task, subset) in enumerate(panels):
            ax = axes[row][col]
            in_panel = (stats["task"] == task) & (stats["test_subset"] == subset)
            low, high = np.nanmin(stats.loc[in_panel, "lo"].to_numpy(float), initial=np.inf), \
                np.nanmax(stats.loc[in_panel, "hi"].to_numpy(float), initial=-np.inf)
            for item in stats[in_panel & (stats["learner"] == learner)].itertuples():
                y = y_of[item.train_subsets]
                ax.plot([item.lo, item.hi], [y, y], color="black", lw=1)
                ax.plot(item.mean, y, marker="o", mfc="white", mec="black", ms=6)
                ax.annotate(item.label, (item.mean, y), xytext=(0, 5),
                            textcoords="offset points", fontsize=7,
                            ha=_align(item.mean, item.mean, low, high, third=True))
            near = (pvalues["learner"] == learner) & (pvalues["task"] == task) & (
                pvalues["test_subset"] == subset) if len(pvalues) else []
            for item in pvalues[near].itertuples() if len(pvalues) else []:
                y = y_of[item.comparison]
                ax.plot([item.compare_mean, item.same_mean], [y, y], color=GREY, lw=2)
                ends = sorted([item.compare_mean, item.same_mean])
                ha = _align(ends[0], ends[1], low, high)
                x = {"left": ends[0], "right": ends[1]}.get(ha, sum(ends) / 2)
                ax.annotate(item.label, (x, y), xytext=(0, 4), textcoords="offset points",
                            ha=ha, fontsize=7, color=GREY)
            ax.set_yticks(range(len(levels)), levels if col == 0 else [""] * len(levels))
            ax.set_ylim(-0.6, len(levels) + 0.2)
            ax.margins(x=0.15)
            ax.tick_params(labelsize=7)
            if row == 0:
                ax.set_title(f"task: {task}\ntest_subset: {subset}", fontsize=8)
            if col == len(panels) - 1:
                ax.yaxis.set_label_position("right")
                ax.set_ylabel(f"learner: {learner}", fontsize=8, rotation=270, labelpad=12)
    figure.supxlabel(f"{result.score} (mean ± sd)", fontsize=9)
    figure.supylabel("Train subsets", fontsize=9)
    return _save(figure, path)


def _runs(results: pd.DataFrame, ranks: pd.DataFrame | None) -> tuple[np.ndarray, list]:
    """Per split, the seconds to subtract so that runs sit side by side (each starts
    where the previous one's splits ended), and ``(x, run number)`` of each run's start.
    One run (or no ``/ranks`` runs): seconds since the first split started."""
    t0 = float(results["start_time"].min())
    if ranks is None or "run" not in ranks or ranks["run"].nunique() < 2:
        return np.full(len(results), t0), []
    starts = ranks.groupby("run")["start_time"].min().sort_values()
    which = np.searchsorted(starts.to_numpy(), results["start_time"].to_numpy(),
                            side="right") - 1
    shift, boundaries, x = np.zeros(len(results)), [], 0.0
    for k in np.unique(np.clip(which, 0, None)):
        mine = np.clip(which, 0, None) == k
        first = float(results["start_time"][mine].min())
        shift[mine] = first - x
        boundaries.append((x, int(starts.index[k])))
        x += float(results["end_time"][mine].max()) - first
    return shift, boundaries


TIMELINE_SEGMENTS = 20_000
"""Splits a timeline draws one by one; past this, each rank's busy time per bin."""
TIMELINE_BINS = 1000
"""Time bins per rank of a timeline with more splits than ``TIMELINE_SEGMENTS``."""
MAX_INCHES = 30.0
"""Largest height of a figure (4500 pixels at the report's resolution)."""


def _binned(rank: np.ndarray, start: np.ndarray, end: np.ndarray, learner: np.ndarray,
            failed: np.ndarray) -> tuple[np.ndarray, ...]:
    """At most ``TIMELINE_BINS`` segments per rank: in each time bin, one segment as long
    as the rank's busy time there, coloured by the learner that took most of it; a
    failed split marks its bin. Splits longer than a bin stay whole."""
    span = float(end.max() - start.min()) or 1.0
    width = span / TIMELINE_BINS
    long = (end - start) > width
    frame = pd.DataFrame({"rank": rank, "bin": ((start + end) / 2 - start.min()) // width,
                          "learner": learner, "busy": end - start, "failed": failed})[~long]
    per = frame.groupby(["rank", "bin", "learner"], observed=True, sort=False).agg(
        busy=("busy", "sum"), failed=("failed", "any")).reset_index()
    per["total"] = per.groupby(["rank", "bin"])["busy"].transform("sum")
    per["any_failed"] = per.groupby(["rank", "bin"])["failed"].transform("any")
    top = per.sort_values("busy", ascending=False).drop_duplicates(["rank", "bin"])
    x0 = start.min() + top["bin"].to_numpy() * width
    x1 = x0 + np.minimum(top["total"].to_numpy(), width)
    return (np.concatenate([top["rank"].to_numpy(), rank[long]]),
            np.concatenate([x0, start[long]]), np.concatenate([x1, end[long]]),
            np.concatenate([top["learner"].to_numpy(), learner[long]]),
            np.concatenate([top["any_failed"].to_numpy(), failed[long]]))


def plot_timeline(results: pd.DataFrame, path: str | os.PathLike | None = None,
                  ranks: pd.DataFrame | None = None) -> Figure:
    """One row per rank, one segment per split from start to end, coloured by learner.

    The end of each split is marked (in white when a rank ran many, so the bars do not
    turn black), so back-to-back splits stay distinct and idle gaps show as white
    space; x is seconds from the first start. Given ``ranks`` (:func:`read_ranks`) of
    a project computed in several runs, the runs sit side by side (the days between
    them left out), each marked with its number.

    Examples
    --------
    >>> import mpibench as mb
    >>> project = finished_demo()  # mb.create_demo(folder), then mb.run(folder)
    >>> mb.plot_timeline(mb.read_results(project)).axes[0].get_xlabel()
    'seconds since the first split started'
    """
    shift, boundaries = _runs(results, ranks)
    learners = sorted(map(str, results["learner"].unique()))
    colors = _colors(learners)
    rank_ids = sorted(int(r) for r in results["rank"].unique())
    figure = Figure(figsize=(10, min(1.2 + 0.35 * len(rank_ids), MAX_INCHES)))
    ax = figure.subplots()
    mark = "black" if len(results) <= DENSE_SPLITS * len(rank_ids) else "white"  # no smear
    start_x = (results["start_time"] - shift).to_numpy()
    end_x = (results["end_time"] - shift).to_numpy()
    rank = results["rank"].to_numpy()
    learner_of = results["learner"].astype(str).to_numpy()
    failed = (results["status"].astype(str) != "ok").to_numpy()
    binned = len(results) > TIMELINE_SEGMENTS
    if binned:  # a bounded number of segments: the busy time of each rank per time bin
        rank, start_x, end_x, learner_of, failed = _binned(rank, start_x, end_x, learner_of,
                                                           failed)
    for learner in learners:
        mine = learner_of == learner
        ax.hlines(rank[mine], start_x[mine], end_x[mine], color=colors[learner], lw=6)
        if not binned:
            ax.plot(end_x[mine], rank[mine], "|", color=mark, ms=9,
                    mew=0.8 if mark == "black" else 0.4)
    if failed.any():
        ax.plot(end_x[failed], rank[failed], "x", color="red", ms=6)
    for x, run in boundaries:
        ax.axvline(x, color="0.3", ls=":", lw=1)
        ax.annotate(f"run {run}", (x, 0), xycoords=("data", "axes fraction"),
                    xytext=(3, 3), textcoords="offset points", fontsize=7, color="0.3")
    span = float(end_x.max())
    ax.set_yticks(rank_ids, [f"rank {r}" for r in rank_ids])
    ax.set_ylim(min(rank_ids) - 0.7, max(rank_ids) + 0.7)
    ax.invert_yaxis()
    ax.set_xlim(0, span * 1.01 or 1)
    ax.set_xlabel("seconds of the runs, side by side" if boundaries
                  else "seconds since the first split started")
    runs = f" in {len(boundaries)} runs" if boundaries else ""
    drawn = (f"; busy time per {TIMELINE_BINS}th of the span, coloured by its main learner"
             if binned else "")
    ax.set_title(f"{len(results)} splits on {len(rank_ids)} rank(s){runs}, "
                 f"{'busy span' if boundaries else 'makespan'} {span:.1f} s{drawn}",
                 fontsize=10)
    handles = [Line2D([], [], color=colors[name], lw=6, label=name) for name in learners]
    if failed.any():
        handles.append(Line2D([], [], color="red", marker="x", ls="", label="failed"))
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8,
              title="learner", title_fontsize=8, frameon=False)
    return _save(figure, path)


def plot_scores(results: pd.DataFrame, score: str,
                path: str | os.PathLike | None = None) -> Figure:
    """Score of every split, per train subset (or resampling) and learner; means marked.
    Panels (task x test subset) wrap onto rows of ``MAX_COLUMNS``.

    Examples
    --------
    >>> import mpibench as mb
    >>> project = finished_demo()  # mb.create_demo(folder), then mb.run(folder)
    >>> len(mb.plot_scores(mb.read_results(project), "mae").axes)
    4
    """
    frame = results[results["status"].astype(str) == "ok"].copy()
    if "groups" in frame:
        frame = frame[frame["n_train_groups"] == frame["groups"]]
    frame["row"] = np.where(frame["train_subsets"].astype(str) != "",
                            frame["train_subsets"].astype(str), frame["resampling"].astype(str))
    learners = sorted(map(str, frame["learner"].unique()))
    colors = _colors(learners)
    every_panel = _panels(frame)
    if not every_panel:
        raise MpibenchError(f"No split with status ok has a {score!r} score to draw: see "
                            "the failures (mpibench status PROJECT, or the report).")
    panels = every_panel[:MAX_SCORE_PANELS]
    present = set(frame["row"])
    soak = ("all", "same", "other")
    rows = [r for r in soak if r in present] + sorted(present.difference(soak))
    groups = dict(iter(frame.assign(task=frame["task"].astype(str),
                                    test_subset=frame["test_subset"].astype(str))
                       .groupby(["task", "test_subset"], sort=False)))
    n_cols = min(len(panels), MAX_COLUMNS)
    n_rows = -(-len(panels) // n_cols)  # panels wrap onto rows of MAX_COLUMNS
    figure = Figure(figsize=(3.2 * n_cols,
                             (1 + 0.5 * len(rows) * len(learners)) * n_rows))
    grid = figure.subplots(n_rows, n_cols, squeeze=False).ravel()
    for spare in grid[len(panels):]:
        spare.set_visible(False)
    axes = grid[:len(panels)]
    offsets = np.linspace(-0.25, 0.25, len(learners)) if len(learners) > 1 else [0.0]
    for ax, (task, subset) in zip(axes, panels, strict=True):
        here = groups[(task, subset)]
        for offset, learner in zip(offsets, learners, strict=True):
            mine = here[here["learner"].astype(str) == learner]
            y = np.array([rows.index(r) for r in mine["row"]]) + offset
            ax.plot(mine[score], y, "o", color=colors[learner], ms=4, alpha=0.7)
            means = mine.groupby("row")[score].mean()
            ax.plot(means.to_numpy(), [rows.index(r) + offset for r in means.index], "|",
                    color=colors[learner], ms=14, mew=2)
        ax.set_yticks(range(len(rows)), rows)
        ax.set_title(f"task: {task}" + (f"\ntest_subset: {subset}" if subset else ""),
                     fontsize=8)
        ax.tick_params(labelsize=7)
    more = (f"; the first {len(panels)} of {len(every_panel)} panels (see the report's "
            "ranks across tasks)" if len(every_panel) > len(panels) else "")
    figure.supxlabel(f"{score} (one point per split, bar: mean){more}", fontsize=9)
    handles = [Line2D([], [], color=colors[n], marker="o", ls="", label=n) for n in learners]
    figure.legend(handles=handles, loc="upper right", fontsize=8, title="learner",
                  title_fontsize=8, frameon=False)
    return _save(figure, path)


CD_LABELS = 40
"""Learners named in a critical-difference diagram (the best and the worst half each);
the others are ticks on the axis."""


def plot_critical_difference(result: CriticalDifference,
                             path: str | os.PathLike | None = None) -> Figure:
    """Demsar's critical-difference diagram: mean ranks on an axis (best on the left),
    a bar joining learners whose ranks differ by less than Nemenyi's critical
    difference, the CD itself drawn to scale above the axis.

    Examples
    --------
    >>> import mpibench as mb
    >>> cd = mb.critical_difference(mb.read_results(finished_demo()), "rmse")
    >>> mb.plot_critical_difference(cd).axes[0].get_title()[:27]
    'rmse: mean rank over 2 task'
    """
    ranks = result.friedman.mean_ranks
    k = len(ranks)
    half = CD_LABELS // 2
    shown = list(ranks.index[:half]) + list(ranks.index[max(half, k - half):])
    left = [n for n in shown if ranks[n] <= (k + 1) / 2]
    right = [n for n in shown if n not in left]
    rows = max(len(left), len(right))
    figure = Figure(figsize=(8, 1.4 + 0.22 * rows + 0.12 * len(result.groups)))
    ax = figure.subplots()
    ax.set_xlim(0.5 - 0.35 * k, k + 0.5 + 0.35 * k)
    ax.set_ylim(-(rows + 1.5 + 0.35 * len(result.groups)), 1.8)
    ax.axis("off")
    ax.hlines(0, 1, k, color="black", lw=1)
    for tick in range(1, k + 1):
        ax.vlines(tick, 0, 0.15, color="black", lw=0.8)
        if k <= 30 or tick in (1, k) or tick % max(1, k // 10) == 0:
            ax.text(tick, 0.3, str(tick), ha="center", va="bottom", fontsize=7)
    for rank in ranks.to_numpy():
        ax.vlines(rank, -0.1, 0.1, color="0.5", lw=0.6)
    for side, names in (("left", left), ("right", right)):
        for row, name in enumerate(names if side == "left" else names[::-1]):
            y, x = -(row + 1.2), ranks[name]
            edge = 0.5 - 0.05 * k if side == "left" else k + 0.5 + 0.05 * k
            ax.plot([x, x, edge], [0, y, y], color="black", lw=0.7)
            ax.text(edge, y, f" {name} ({x:.2f})" if side == "right" else f"{name} ({x:.2f}) ",
                    ha="left" if side == "right" else "right", va="center", fontsize=7)
    for i, group in enumerate(result.groups):
        low, high = ranks[group[0]], ranks[group[-1]]
        ax.hlines(-(0.35 + 0.3 * i), low - 0.03, high + 0.03, color="black", lw=3)
    ax.hlines(1.3, 1, 1 + result.cd, color="black", lw=1.2)
    ax.text(1, 1.45, f"CD = {result.cd:.2f} (Nemenyi, alpha {result.alpha:g})", fontsize=7,
            va="bottom")
    test = result.friedman
    hidden = f"; {k - len(shown)} more learners unnamed" if k > len(shown) else ""
    ax.set_title(f"{test.score}: mean rank over {test.n_tasks} tasks (1 = best); Friedman "
                 f"p = {test.pvalue:.3g}{hidden}", fontsize=9)
    return _save(figure, path)
