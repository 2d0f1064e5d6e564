"""How numbers and failures read to a person: seconds, bytes, groups of errors."""

from __future__ import annotations

import re
from collections import Counter

import numpy as np


def format_seconds(seconds: float) -> str:
    """Human-readable duration.

    Examples
    --------
    >>> format_seconds(4.25), format_seconds(372), format_seconds(7300)
    ('4.2s', '6.2min', '2.0h')
    """
    if seconds < 60:
        return f"{seconds:.1f}s"
    if seconds < 3600:
        return f"{seconds / 60:.1f}min"
    return f"{seconds / 3600:.1f}h"


def format_bytes(n_bytes: float) -> str:
    """``1536`` -> ``'1.5 KiB'``.

    Examples
    --------
    >>> format_bytes(1536), format_bytes(3 * 2**30)
    ('1.5 KiB', '3.0 GiB')
    """
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if abs(n_bytes) < 1024 or unit == "GiB":
            return f"{n_bytes:.0f} {unit}" if unit == "bytes" else f"{n_bytes:.1f} {unit}"
        n_bytes /= 1024
    return f"{n_bytes:.1f} GiB"  # pragma: no cover


RANK_PREFIX = re.compile(r"^rank \d+ on \S+: ")
"""The ``rank R on HOST: `` head that errors recorded by mpibench 0.1 (before rank and
host were left to their own columns) begin with."""


def without_rank(error: str) -> str:
    """An error message's first line (without the ``rank R on HOST:`` head of results
    from older projects): what groups identical errors (the first of a group carries
    its full traceback below).

    Examples
    --------
    >>> without_rank("rank 3 on node7: in fit: ValueError: bad\\nTraceback (most ...")
    'in fit: ValueError: bad'
    """
    return RANK_PREFIX.sub("", error.split("\n", 1)[0])


def error_groups(status: np.ndarray, error: np.ndarray, top: int = 5) -> list[str]:
    """Identical errors (rank and host removed) with counts, most frequent first.

    Parameters
    ----------
    status, error : numpy.ndarray
        Status and error message of each split.
    """
    failed = status != "ok"
    counts = Counter(zip(status[failed].tolist(),
                         map(without_rank, error[failed].tolist()), strict=True))
    lines = [f"  {n} x {status}: {message}" for (status, message), n in counts.most_common(top)]
    if len(counts) > top:
        lines.append(f"  ... and {len(counts) - top} more kinds of failure")
    return lines


def overdue_line(split: dict) -> str:
    """One split running far longer than the cost model expected, as ``status`` and
    the progress line name it.

    Examples
    --------
    >>> overdue_line({"job_id": 7, "task": "t", "learner": "svm", "rank": 2,
    ...               "running_seconds": 300.0, "expected_seconds": 20.0})
    'overdue: job 7 (t, svm) on rank 2, running 5.0min (expected ~20.0s)'
    """
    return (f"overdue: job {split['job_id']} ({split['task']}, {split['learner']}) on rank "
            f"{split['rank']}, running {format_seconds(split['running_seconds'])} (expected "
            f"~{format_seconds(split['expected_seconds'])})")
