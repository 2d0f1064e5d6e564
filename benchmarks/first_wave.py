"""First wave: how well the default mode schedules a grid it knows nothing about.

32 sleep splits: 7 learners of 0.25 s, then one of 3.0 s (the worst grid order: the
expensive learner comes last), KFold(4), 8 workers (``mpiexec -n 9``), default mode
(isolated, lpt, auto chunks). Efficiency is max(sum / 8, longest) / makespan, the
makespan from the first split's start to the last split's end in ``results.h5``.
Rows: no prior knowledge; after a ``--test`` run of the same project (which seeds the
cost model); and ``--order grid`` (what a blind first wave does).

Usage: python benchmarks/first_wave.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import numpy as np
import peers
from sklearn.model_selection import KFold

import mpibench as mb

WORKERS = 8
SECONDS = [0.25] * 7 + [3.0]


def project(folder: Path) -> Path:
    rng = np.random.default_rng(0)
    task = mb.Task("t", X=rng.normal(size=(100, 2)), y=rng.normal(size=100))
    learners = {f"l{i}": mb.DebugLearner(sleep_fit=s) for i, s in enumerate(SECONDS)}
    grid = mb.Grid([task], learners, resamplings=[KFold(4)], scoring=["rmse"])
    return mb.create_project(folder / "p", grid)


def efficiency(path: Path) -> float:
    results = mb.read_results(path)
    durations = np.repeat(SECONDS, 4)
    makespan = results["end_time"].max() - results["start_time"].min()
    return max(durations.sum() / WORKERS, durations.max()) / makespan


def one(mode: str) -> float:
    with peers.scratch() as tmp:
        path = project(Path(tmp))
        args = ["--progress-every", "0"]
        if mode == "after --test":
            peers.mpibench_run(path, WORKERS + 1, "--test", *args)
        if mode == "--order grid":
            args += ["--order", "grid"]
        peers.mpibench_run(path, WORKERS + 1, *args)
        return efficiency(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    print(f"32 sleep splits (7 learners x 0.25 s, then 1 x 3.0 s; KFold(4)), {WORKERS} "
          f"workers, default mode; efficiency = max(sum/P, longest) / makespan; "
          f"median of {args.repeat} (range)\n")
    print("| first wave | efficiency |")
    print("|---|---|")
    for mode in ("no prior knowledge", "after --test", "--order grid"):
        values = [one(mode) for _ in range(args.repeat)]
        print(f"| {mode} | {statistics.median(values):.3f} "
              f"({min(values):.3f}-{max(values):.3f}) |", flush=True)


if __name__ == "__main__":
    main()
