"""Progress lines and the end-of-run summary, printed by rank 0 to stderr."""

from __future__ import annotations

import sys
import time
from collections import Counter
from typing import TextIO

import numpy as np

from ..formatting import error_groups, format_seconds
from ..store.batch import ResultBatch
from ..store.records import RankStats
from .timeleft import TimeLeft


def log(message: str) -> None:
    """One ``[mpibench]`` line on stderr."""
    print(f"[mpibench] {message}", file=sys.stderr, flush=True)


class Progress:
    """Counts finished splits and prints a line every ``every`` seconds.

    Parameters
    ----------
    n_todo : int
        Splits this run has to do.
    n_total : int
        Splits in the grid.
    every : float
        Seconds between lines (0 prints none).
    """

    def __init__(self, n_todo: int, n_total: int, every: float,
                 stream: TextIO | None = None) -> None:
        self.n_todo, self.n_total, self.every = n_todo, n_total, every
        self.n_before = n_total - n_todo
        self.done = 0
        self.errors = 0
        self.start = time.monotonic()
        self._last = self.start
        self.stream = stream or sys.stderr

    def add(self, status: np.ndarray | list[str]) -> None:
        """Count results, given their statuses."""
        self.done += len(status)
        if isinstance(status, list):
            self.errors += sum(s != "ok" for s in status)
        else:
            self.errors += int((status != "ok").sum())

    def line(self, left: TimeLeft | None = None, overdue: str = "") -> str:
        """The progress line, with the run's estimate of the time left (``?`` while
        nothing is known) and the most overdue split, if any."""
        elapsed = time.monotonic() - self.start
        remaining = "?" if left is None else left.text()
        return (f"[mpibench] {self.n_before + self.done}/{self.n_total} splits | "
                f"{self.errors} failed | elapsed {format_seconds(elapsed)} | remaining "
                f"{remaining}" + (f" | {overdue}" if overdue else ""))

    def maybe_print(self, left: TimeLeft | None = None, overdue: str = "") -> None:
        """Print a line if ``every`` seconds have passed since the last one."""
        now = time.monotonic()
        if self.every and now - self._last >= self.every:
            self._last = now
            print(self.line(left, overdue), file=self.stream, flush=True)


def summary(results: ResultBatch, ranks: list[RankStats], n_total: int,
            n_done: int, wall_seconds: float) -> str:
    """End-of-run summary: counts, wall time, busy fraction per worker, error groups."""
    failed = int(np.count_nonzero(results.status != "ok"))
    busy = ", ".join(
        f"r{r.rank} {100 * r.busy_seconds / max(r.end_time - r.start_time, 1e-9):.0f}%"
        for r in ranks if r.n_splits
    )
    lines = [
        f"[mpibench] {n_done}/{n_total} splits done; this run: {len(results)} "
        f"({len(results) - failed} ok, {failed} failed) in {format_seconds(wall_seconds)} "
        f"on {len(ranks)} rank(s); busy: {busy or '-'}",
    ]
    if failed:
        lines.append("[mpibench] failures (recorded as results):")
        lines.extend(error_groups(results.status, results.columns["error"]))
    warned = results.columns["n_warnings"] > 0
    if warned.any():
        counts = Counter(results.columns["warning"][warned].tolist())
        lines.append(f"[mpibench] {int(warned.sum())} split(s) raised warnings "
                     f"({int(results.columns['n_warnings'].sum())} in all; columns "
                     "n_warnings, warning):")
        lines.extend(f"  {n} x {text}" for text, n in counts.most_common(3))
        if len(counts) > 3:
            lines.append(f"  ... and {len(counts) - 3} more kinds of warning")
    return "\n".join(lines)
