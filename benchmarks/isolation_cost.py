"""Per-split cost of isolation (a forked child per split) on no-op splits.

Runs grids of no-op DebugLearner splits in one process (no MPI noise), isolated and not,
at two sizes; the cost per split is the slope of wall time against the number of splits,
so start-up (the helper interpreter) cancels out.

Usage: python benchmarks/isolation_cost.py [--small 100] [--large 500]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from sklearn.model_selection import ShuffleSplit

import mpibench as mb


def noop_project(folder: Path, n_splits: int) -> Path:
    rng = np.random.default_rng(0)
    task = mb.Task("t", X=rng.normal(size=(200, 3)), y=rng.normal(size=200))
    grid = mb.Grid([task], {"noop": mb.DebugLearner()},
                   resamplings=[ShuffleSplit(n_splits, test_size=0.2)])
    return mb.create_project(folder / f"p{n_splits}", grid)


def wall(folder: Path, n_splits: int, isolate: bool) -> float:
    project = noop_project(folder, n_splits)
    start = time.perf_counter()
    assert mb.run(project, isolate=isolate, progress_every=0) == 0
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=int, default=100)
    parser.add_argument("--large", type=int, default=500)
    args = parser.parse_args()
    rows = {}
    for isolate in (False, True):
        with tempfile.TemporaryDirectory() as tmp:
            small = wall(Path(tmp) / "a", args.small, isolate)
            large = wall(Path(tmp) / "b", args.large, isolate)
        rows[isolate] = (small, large, (large - small) / (args.large - args.small))
    print(f"one process, no-op DebugLearner splits, {args.small} and {args.large} splits:")
    print("mode          wall_small_s  wall_large_s  per_split_ms")
    for isolate, (small, large, slope) in rows.items():
        name = "isolated" if isolate else "in-process"
        print(f"{name:12s}  {small:12.2f}  {large:12.2f}  {slope * 1e3:12.2f}")
    print(f"isolation cost per split: {(rows[True][2] - rows[False][2]) * 1e3:.2f} ms")


if __name__ == "__main__":
    main()
