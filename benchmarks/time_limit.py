"""The tail of a job under a time limit: what gets done, what is lost, what is idle.

A grid of 10 long splits (``--long`` seconds each) and 10 short ones (``--short``) runs
under ``mpiexec -n 3 python -m mpibench run`` (default mode) with
``SLURM_JOB_END_TIME`` set ``--limit`` seconds after the launch and
``MPIBENCH_END_MARGIN=1``, with this tree's mpibench and, with ``--other``, an earlier
checkout's (put first on PYTHONPATH). Reported per side: exit code, wall seconds to the
exit, splits done (long / short), split-seconds done, splits interrupted (started but
not finished: lost work) and the worker-seconds from the exit to the limit (what the
job would have held idle, or spent on splits it could not finish).

Usage: python benchmarks/time_limit.py [--other /tmp/oldtree] [--limit 12] [--long 2]
       [--short 0.2]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from sklearn.model_selection import ShuffleSplit

import mpibench as mb


def one_run(project: Path, env: dict[str, str], limit: float) -> str:
    mpiexec = str(Path(sys.executable).parent / "mpiexec")
    start = time.time()
    env = {**env, "SLURM_JOB_END_TIME": str(int(start + limit)), "MPIBENCH_END_MARGIN": "1"}
    done = subprocess.run([mpiexec, "-n", "3", sys.executable, "-m", "mpibench", "run",
                           str(project), "--progress-every", "0"], capture_output=True,
                          text=True, env=env, timeout=limit + 120)
    wall = time.time() - start
    results = mb.read_results(project)
    counts = results["learner"].value_counts()
    seconds = float(results["fit_seconds"].sum())
    interrupted = sum(int(line.split("[mpibench] ")[1].split()[0])
                      for line in done.stderr.splitlines() if "interrupted on rank" in line)
    idle = max(int(start + limit) - (start + wall), 0.0) * 2
    return (f"exit {done.returncode}, {wall:.1f} s to the exit; done {counts.get('long', 0)} "
            f"long + {counts.get('short', 0)} short = {seconds:.1f} split-seconds; "
            f"{interrupted} interrupted; {idle:.1f} worker-seconds from the exit to the "
            "limit")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--other", type=Path)
    parser.add_argument("--limit", type=float, default=12.0)
    parser.add_argument("--long", type=float, default=2.0)
    parser.add_argument("--short", type=float, default=0.2)
    args = parser.parse_args()
    task = mb.Task("t", X=np.zeros((40, 1)), y=np.arange(40.0))
    grid = mb.Grid([task], {"long": mb.DebugLearner(sleep_fit=args.long),
                            "short": mb.DebugLearner(sleep_fit=args.short)},
                   [ShuffleSplit(10, random_state=0)], scoring=["rmse"])
    sides = {"this tree": dict(os.environ)}
    if args.other is not None:
        sides[str(args.other)] = {**os.environ, "PYTHONPATH": str(args.other)}
    for side, env in sides.items():
        with tempfile.TemporaryDirectory() as folder:
            project = mb.create_project(Path(folder) / "p", grid)
            print(f"{side}: {one_run(project, env, args.limit)}")


if __name__ == "__main__":
    main()
