"""(a) Cost per no-op split: mpibench against its peers, side by side in one run.

Every system runs the same N no-op splits with W workers; the figure is makespan / N
in microseconds (first split start to last split end, start-up excluded; lower is
better). mpibench runs NoOpLearner + zero_score splits, journal included, with and
without isolation and with chunk size 1 or automatic chunking. With more ranks than
cores only the ratios within one run count.

Usage: python benchmarks/dispatch_overhead.py [--workers 2] [--splits 2000]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import peers


def systems(n_isolated: int) -> list[tuple[str, object]]:
    """(label, function(durations, workers, folder) -> timeline) for each system."""
    def mpibench(*args: str, limit: int | None = None):
        def run(durations, workers, folder):
            return peers.run_mpibench(durations[:limit], workers, folder, *args)
        run.limit = limit
        return run
    return [
        ("mpibench --no-isolate, chunk 1", mpibench("--no-isolate", "--chunk-size", "1")),
        ("mpibench --no-isolate, auto chunks", mpibench("--no-isolate")),
        ("mpibench isolated, chunk 1", mpibench("--chunk-size", "1", limit=n_isolated)),
        ("mpibench isolated, auto chunks", mpibench(limit=n_isolated)),
        ("minimal send/recv dispatcher", peers.run_sendrecv),
        ("mpi4py.futures, chunksize 1", peers.run_futures),
        ("mpi4py.futures, chunksize 64", lambda d, w, f: peers.run_futures(d, w, f, 64)),
        ("static partitioning (job-array style)", peers.run_static),
        ("file lock + CSV table", peers.run_filelock),
        ("joblib loky (default batching)", peers.run_joblib),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--splits", type=int, default=2000)
    parser.add_argument("--isolated-splits", type=int, default=300,
                        help="fewer splits for isolated runs (each forks a process)")
    args = parser.parse_args()
    durations = np.zeros(args.splits)
    rows, started = [], time.perf_counter()
    for label, run in systems(args.isolated_splits):
        with peers.scratch() as tmp:
            timeline = run(durations, args.workers, Path(tmp))
        n = len(timeline)
        rows.append((label, n, peers.makespan(timeline) / n * 1e6))
    print(f"no-op splits, {args.workers} workers ({time.perf_counter() - started:.0f} s in all)")
    print("| system | splits | us per split |\n|---|---:|---:|")
    for label, n, us in rows:
        print(f"| {label} | {n} | {us:.1f} |")


if __name__ == "__main__":
    main()
