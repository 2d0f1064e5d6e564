"""(a) Cost per no-op split: mpibench against its peers, side by side in one run.

Every system runs the same N no-op splits with W workers; the figure is makespan / N
in microseconds (first split start to last split end, start-up excluded; lower is
better). mpibench runs NoOpLearner + zero_score splits, journal included, with and
without isolation and with chunk size 1 or automatic chunking. With more ranks than
cores only the ratios within one run count.

Two tables: the peers' split is a bare function call; then ("same split work") each
peer runs mpibench's own split ``i`` of the same no-op project in its workers
(``PEER_SPLIT_PROJECT``, see peers.py), so that only dispatching and recording differ.

Each system runs ``--repeat`` times, the systems taking turns; the tables give the
median and the range.

Usage: python benchmarks/dispatch_overhead.py [--workers 2] [--splits 20000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import peers


def systems(n_isolated: int, n_slow: int) -> list[tuple[str, object]]:
    """(label, function(durations, workers, folder) -> timeline) for each system."""
    def mpibench(*args: str, limit: int | None = None):
        def run(durations, workers, folder):
            return peers.run_mpibench(durations[:limit], workers, folder, *args)
        run.limit = limit
        return run
    return [
        ("mpibench --no-isolate, chunk 1", mpibench("--no-isolate", "--chunk-size", "1")),
        ("mpibench --no-isolate, auto chunks", mpibench("--no-isolate")),
        ("mpibench default (isolated), chunk 1",
         mpibench("--chunk-size", "1", limit=n_isolated)),
        ("mpibench default (isolated), auto chunks", mpibench(limit=n_isolated)),
        ("minimal send/recv dispatcher", peers.run_sendrecv),
        ("mpi4py.futures, chunksize 1", peers.run_futures),
        ("mpi4py.futures, chunksize 64", lambda d, w, f: peers.run_futures(d, w, f, 64)),
        ("static partitioning (job-array style)", peers.run_static),
        ("file lock + CSV table",
         lambda d, w, f: peers.run_filelock(d[:n_slow], w, f)),
        ("joblib loky (default batching)", peers.run_joblib),
    ]


def measure(runs: list[tuple[str, object]], durations: np.ndarray, workers: int,
            repeat: int) -> list[tuple[str, int, list[float]]]:
    """(label, splits, us per split of each repetition) of each system; the systems
    take turns, so that a slow spell of the machine does not fall on one of them."""
    results = {label: [] for label, _ in runs}
    sizes = {}
    for _ in range(repeat):
        for label, run in runs:
            with peers.scratch() as tmp:
                timeline = run(durations, workers, Path(tmp))
            sizes[label] = len(timeline)
            results[label].append(peers.makespan(timeline) / len(timeline) * 1e6)
    return [(label, sizes[label], results[label]) for label, _ in runs]


def print_table(title: str, rows: list[tuple[str, int, list[float]]]) -> None:
    """A markdown table: median and range of the repetitions."""
    print(f"\n{title}\n| system | splits | us per split, median | range |\n"
          "|---|---:|---:|---:|")
    for label, n, values in rows:
        print(f"| {label} | {n} | {np.median(values):.1f} | "
              f"{min(values):.1f}-{max(values):.1f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--splits", type=int, default=20000)
    parser.add_argument("--isolated-splits", type=int, default=20000,
                        help="splits for the default (isolated) runs")
    parser.add_argument("--lock-splits", type=int, default=1000,
                        help="fewer splits for the file-lock table (it rewrites the table)")
    parser.add_argument("--repeat", type=int, default=3,
                        help="runs of each system, taking turns (median reported)")
    args = parser.parse_args()
    durations = np.zeros(args.splits)
    started = time.perf_counter()
    bare = measure(systems(args.isolated_splits, args.lock_splits), durations, args.workers,
                   args.repeat)
    in_process = [(label, run) for label, run in systems(args.isolated_splits, 0)
                  if "file lock" not in label]
    with tempfile.TemporaryDirectory(prefix="mpibench-bench-") as tmp:
        os.environ["PEER_SPLIT_PROJECT"] = str(peers.sleep_project(Path(tmp), durations))
        try:
            same = measure(in_process, durations, args.workers, args.repeat)
        finally:
            del os.environ["PEER_SPLIT_PROJECT"]
    print(f"no-op splits, {args.workers} workers, {args.repeat} runs each "
          f"({time.perf_counter() - started:.0f} s in all)")
    print_table("Peers run a bare function per split:", bare)
    print_table("Every system runs mpibench's split (same split work):", same)


if __name__ == "__main__":
    main()
