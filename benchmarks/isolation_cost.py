"""What isolation costs per split: default mode against ``--no-isolate``.

No-op DebugLearner splits (200-row task, rmse) run by ``mpiexec -n 3 mpibench run``
(two workers) at two grid sizes; the cost per split is the slope of whole-command wall
time against the number of splits, so start-up cancels out. Also reported: the
makespan per split from ``results.h5`` (first start to last end, over splits) and the
median ``fit_seconds`` of the first and of the other splits of each executor (the
timings hold no warm-up).

Usage: python benchmarks/isolation_cost.py [--small 300] [--large 1500] [--ranks 3]
       [--repeat 3]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import time
from pathlib import Path

import numpy as np
import peers
from sklearn.model_selection import ShuffleSplit

import mpibench as mb


def noop_project(folder: Path, n_splits: int) -> Path:
    rng = np.random.default_rng(0)
    task = mb.Task("t", X=rng.normal(size=(200, 3)), y=rng.normal(size=200))
    grid = mb.Grid([task], {"noop": mb.DebugLearner()},
                   resamplings=[ShuffleSplit(n_splits, test_size=0.2)], scoring=["rmse"])
    return mb.create_project(folder / f"p{n_splits}", grid)


def wall(project: Path, ranks: int, *args: str) -> float:
    for name in ("results.h5", "results.journal"):
        (project / name).unlink(missing_ok=True)
    command = [str(peers.BIN / "mpiexec"), "-n", str(ranks), str(peers.BIN / "mpibench"),
               "run", str(project), "--progress-every", "0", *args]
    start = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True, timeout=1800)
    return time.perf_counter() - start


def first_fits(project: Path) -> tuple[float, float]:
    """Median fit seconds of each executor's first split, and of the others."""
    results = mb.read_results(project).sort_values("start_time")
    first = results.groupby("pid").head(1)
    rest = results.drop(first.index)
    return float(first["fit_seconds"].median()), float(rest["fit_seconds"].median())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=int, default=300)
    parser.add_argument("--large", type=int, default=1500)
    parser.add_argument("--ranks", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    modes = {"default (isolated)": (), "--no-isolate": ("--no-isolate",)}
    rows = {}
    with peers.scratch() as tmp:
        small, large = (noop_project(Path(tmp), n) for n in (args.small, args.large))
        slopes: dict[str, list[float]] = {mode: [] for mode in modes}
        spans: dict[str, list[float]] = {mode: [] for mode in modes}
        for _ in range(args.repeat):
            for mode, extra in modes.items():
                a, b = wall(small, args.ranks, *extra), wall(large, args.ranks, *extra)
                slopes[mode].append((b - a) / (args.large - args.small))
                done = mb.read_results(large)
                spans[mode].append((done["end_time"].max() - done["start_time"].min())
                                   / args.large)
                rows[mode] = first_fits(large)
    print(f"no-op splits, mpiexec -n {args.ranks}, {args.small} and {args.large} splits; "
          f"median of {args.repeat} (range)\n")
    print("| mode | cost per split (slope, ms) | makespan per split (ms) | "
          "fit_seconds: first split of an executor / others (ms) |")
    print("|---|---|---|---|")
    for mode in modes:
        s, m = slopes[mode], spans[mode]
        print(f"| {mode} | {statistics.median(s) * 1e3:.3f} ({min(s) * 1e3:.3f}-"
              f"{max(s) * 1e3:.3f}) | {statistics.median(m) * 1e3:.3f} | "
              f"{rows[mode][0] * 1e3:.3f} / {rows[mode][1] * 1e3:.3f} |")
    cost = (statistics.median(slopes["default (isolated)"])
            - statistics.median(slopes["--no-isolate"]))
    print(f"\nisolation cost per split: {cost * 1e3:.3f} ms")


if __name__ == "__main__":
    main()
