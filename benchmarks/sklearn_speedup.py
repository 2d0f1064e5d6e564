"""(e) CPU-bound scikit-learn splits: speed-up with P workers against one process.

A grid of gradient-boosting fits (single-threaded, ~0.3 s each here) is run serially
(``mpibench run``, one process) and with P workers (``mpiexec -n P+1``: rank 0 only
dispatches), isolated (the default) and ``--no-isolate``. Wall time is measured around
the whole command (start-up included) and as makespan (first split start to last end).

Usage: python benchmarks/sklearn_speedup.py [--workers N (default: cores)] [--splits 32]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import peers
from sklearn.datasets import make_classification
from sklearn.ensemble import GradientBoostingClassifier
from sklearn.model_selection import ShuffleSplit

import mpibench as mb


def run(project: Path, ranks: int | None, *args: str) -> tuple[float, float]:
    """(wall seconds of the command, makespan seconds) of a fresh run."""
    start = time.perf_counter()
    peers.mpibench_run(project, ranks, "--progress-every", "0", *args, fresh=True)
    wall = time.perf_counter() - start
    results = mb.read_results(project)
    assert (results["status"] == "ok").all()
    return wall, float(results["end_time"].max() - results["start_time"].min())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--splits", type=int, default=32)
    args = parser.parse_args()
    X, y = make_classification(n_samples=3000, n_features=20, random_state=0)
    grid = mb.Grid([mb.Task("clf", X=X, y=y)],
                   {"gbm": GradientBoostingClassifier(n_estimators=60, max_depth=3)},
                   resamplings=[ShuffleSplit(args.splits, test_size=0.2)],
                   scoring=["accuracy"])
    print(f"{args.splits} GradientBoostingClassifier splits, P = {args.workers} workers")
    print("| mode | serial wall, s | P-worker wall, s | speed-up (wall) | "
          "speed-up (makespan) |\n|---|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as tmp:
        project = mb.create_project(Path(tmp) / "p", grid)
        for label, extra in (("isolated", ()), ("--no-isolate", ("--no-isolate",))):
            serial = run(project, None, *extra)
            parallel = run(project, args.workers + 1, *extra)
            print(f"| {label} | {serial[0]:.1f} | {parallel[0]:.1f} | "
                  f"{serial[0] / parallel[0]:.2f} | {serial[1] / parallel[1]:.2f} |",
                  flush=True)


if __name__ == "__main__":
    main()
