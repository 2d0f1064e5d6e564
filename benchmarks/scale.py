"""(5) A grid of a million splits: create, run with no-op learners, consolidate, resume.

10 tasks (20 rows) x 10 NoOpLearners x ``--splits-per-task`` ShuffleSplit splits
(default 10,000: 1,000,000 jobs), ``mpiexec -n 3 mpibench run --no-isolate`` with
automatic chunking. Prints each phase's wall time and rank 0's peak memory (its
``ru_maxrss``, from the ``/ranks`` table and the run's last log line), then the time
of a second run that finds everything done (reading the whole journal back).

Usage: python benchmarks/scale.py [--splits-per-task 10000] [--ranks 3] [--keep DIR]
"""

from __future__ import annotations

import argparse
import re
import tempfile
import time
from pathlib import Path

import numpy as np
import peers
from sklearn.model_selection import ShuffleSplit

import mpibench as mb


def timed(label: str, rows: list, function: object) -> object:
    start = time.perf_counter()
    value = function()
    rows.append((label, time.perf_counter() - start))
    print(f"{label}: {rows[-1][1]:.1f} s", flush=True)
    return value


def run(project: Path, ranks: int) -> str:
    return peers.mpibench_run(project, ranks, "--no-isolate", "--progress-every", "30")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--splits-per-task", type=int, default=10_000)
    parser.add_argument("--ranks", type=int, default=3)
    parser.add_argument("--keep", type=Path, default=None, help="project folder to keep")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    tasks = [mb.Task(f"t{i}", X=rng.normal(size=(20, 2)), y=rng.normal(size=20))
             for i in range(10)]
    learners = {f"noop{i}": mb.NoOpLearner() for i in range(10)}
    cv = ShuffleSplit(args.splits_per_task, train_size=5, test_size=2)
    rows: list = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.keep or Path(tmp)
        grid = mb.Grid(tasks, learners, resamplings=[cv], scoring={"zero": mb.zero_score})
        project = timed("create_project", rows,
                        lambda: mb.create_project(folder / "million", grid))
        log = timed(f"run (mpiexec -n {args.ranks}, start-up and consolidation included)",
                    rows, lambda: run(project, args.ranks))
        results = timed("read_results", rows, lambda: mb.read_results(project))
        makespan = results["end_time"].max() - results["start_time"].min()
        ranks = mb.read_ranks(project)
        again = timed("second run (all done: journal read back, nothing to run)", rows,
                      lambda: run(project, args.ranks))
        journal = (project / "results.journal").stat().st_size
        h5 = (project / "results.h5").stat().st_size
    print(f"\n{len(results)} splits, all ok: {bool((results['status'] == 'ok').all())}; "
          f"makespan {makespan:.1f} s ({makespan / len(results) * 1e6:.1f} us per split)")
    print(f"rank 0 peak memory (/ranks, before the last consolidation): "
          f"{ranks['max_rss_bytes'].iloc[0] / 2**20:.0f} MB; workers "
          f"{ranks['max_rss_bytes'].iloc[1:].max() / 2**20:.0f} MB")
    for text, label in ((log, "run"), (again, "second run")):
        found = re.search(r"rank 0: .*?\)", text)
        print(f"{label}: {found.group(0) if found else '(no rank 0 line)'}")
    print(f"results.journal {journal / 2**20:.0f} MB, results.h5 {h5 / 2**20:.0f} MB")
    print("| phase | seconds |\n|---|---:|")
    for label, seconds in rows:
        print(f"| {label} | {seconds:.1f} |")


if __name__ == "__main__":
    main()
