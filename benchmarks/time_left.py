"""How good is the time left that the progress line and ``mpibench status`` show?

A heterogeneous grid: ``--tasks`` tasks of 200 to 4000 rows and 1 to 20 features,
three ``DebugLearner(sleep_per_row=...)`` learners whose fit time grows with the rows
only (2, 10 and 40 us per row: the cost model's first guess, rows x features, is off
across tasks until each (task, learner) pair has run), KFold(5); ``mpiexec -n 3
mpibench run`` in the default mode. While it runs, ``mb.project_status`` is read every
``--every`` seconds; afterwards each reading's estimate is compared with the time the
run really had left then (its last split's end minus the reading's time). Readings
once a tenth of the work (split-seconds) was done and while at least ``--min-left``
seconds remained count; the table gives the relative error, and beside it the naive
estimate the progress line printed before (elapsed / splits done x splits left).

Usage: python benchmarks/time_left.py [--tasks 80] [--every 0.5] [--min-left 2]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import peers
from sklearn.model_selection import KFold

import mpibench as mb


def project(folder: Path, n_tasks: int) -> Path:
    rng = np.random.default_rng(0)
    tasks = []
    for i in range(n_tasks):
        rows, features = int(rng.integers(200, 4000)), int(rng.integers(1, 21))
        tasks.append(mb.Task(f"t{i}", X=rng.normal(size=(rows, features)),
                             y=rng.normal(size=rows)))
    learners = {f"sleep{int(rate * 1e6)}us": mb.DebugLearner(sleep_per_row=rate)
                for rate in (2e-6, 10e-6, 40e-6)}
    return mb.create_project(folder / "p", mb.Grid(tasks, learners, resamplings=[KFold(5)],
                                                   scoring=["rmse"]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=80)
    parser.add_argument("--every", type=float, default=0.5)
    parser.add_argument("--min-left", type=float, default=2.0)
    parser.add_argument("--show", action="store_true", help="print every reading")
    args = parser.parse_args()
    with peers.scratch() as tmp:
        path = project(Path(tmp), args.tasks)
        command = [str(peers.BIN / "mpiexec"), "-n", "3", sys.executable, "-m", "mpibench",
                   "run", str(path), "--progress-every", "0"]
        readings = []
        with subprocess.Popen(command, stderr=subprocess.DEVNULL) as proc:
            started = time.time()
            while proc.poll() is None:
                status = mb.project_status(path)
                readings.append((time.time(), status.eta_seconds, status.n_done))
                time.sleep(args.every)
        results = mb.read_results(path)
    end = float(results["end_time"].max())
    first = float(results["start_time"].min())
    durations = (results["end_time"] - results["start_time"]).to_numpy()
    ends = np.sort(results["end_time"].to_numpy())
    work_done = np.cumsum(durations[np.argsort(results["end_time"].to_numpy())])
    errors, naive = [], []
    for at, eta, n_done in readings:
        truth = end - at
        done = work_done[np.searchsorted(ends, at, side="right") - 1] if at >= ends[0] else 0
        if done < 0.1 * durations.sum() or truth < args.min_left or eta != eta:
            continue
        errors.append(abs(eta - truth) / truth)
        if args.show:
            print(f"work done {done / durations.sum():.0%}: estimate {eta:.1f} s, truth "
                  f"{truth:.1f} s ({errors[-1]:.0%})")
        if n_done:
            guess = (at - started) / n_done * (len(results) - n_done)
            naive.append(abs(guess - truth) / truth)
    print(f"{len(results)} splits, {durations.sum():.0f} split-seconds on 2 workers, "
          f"makespan {end - first:.1f} s; {len(errors)} readings every {args.every:g} s "
          f"after a tenth of the work and with >= {args.min_left:g} s left\n")
    print("| estimate | median relative error | 90th percentile | max |\n|---|---|---|---|")
    for name, values in (("one estimate (progress line and status)", errors),
                         ("before: elapsed / done x left", naive)):
        if values:
            print(f"| {name} | {statistics.median(values):.1%} | "
                  f"{np.percentile(values, 90):.1%} | {max(values):.1%} |")


if __name__ == "__main__":
    main()
