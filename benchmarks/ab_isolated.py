"""A/B of the default (isolated) path between two checkouts, runs interleaved.

Runs the same 20,000-split no-op project (``DebugLearner``, 100 train rows) under
``mpiexec -n 3 python -m mpibench run`` with this tree's mpibench and with the one at
``--other`` (a checkout of an earlier commit, put first on PYTHONPATH), taking turns,
and prints the makespan per split (first start to last end) of each run and each
side's median. Taking turns keeps a slow hour of a shared VM from landing on one side.

Usage: python benchmarks/ab_isolated.py --other /tmp/oldtree [--pairs 4] [--splits 20000]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from sklearn.model_selection import ShuffleSplit

import mpibench as mb

MEASURE = r'''
import sys
import mpibench as mb
r = mb.read_results(sys.argv[1])
print((r["end_time"].max() - r["start_time"].min()) / len(r) * 1e6)
'''


def one_run(path: Path, env: dict[str, str]) -> float:
    """Makespan per split (us) of a fresh run of ``path`` with ``env``'s mpibench."""
    mpiexec = str(Path(sys.executable).parent / "mpiexec")
    subprocess.run([mpiexec, "-n", "3", sys.executable, "-m", "mpibench", "run", str(path),
                    "--progress-every", "0"], check=True, capture_output=True, env=env)
    done = subprocess.run([sys.executable, "-c", MEASURE, str(path)], check=True,
                          capture_output=True, text=True, env=env)
    return float(done.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--other", required=True, type=Path)
    parser.add_argument("--pairs", type=int, default=4)
    parser.add_argument("--splits", type=int, default=20000)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    task = mb.Task("t", X=rng.normal(size=(125, 2)), y=rng.normal(size=125))
    grid = mb.Grid([task], {"d": mb.DebugLearner()},
                   resamplings=[ShuffleSplit(args.splits, test_size=0.2)])
    sides = {"this tree": dict(os.environ),
             str(args.other): {**os.environ, "PYTHONPATH": str(args.other)}}
    times: dict[str, list[float]] = {side: [] for side in sides}
    for _ in range(args.pairs):
        for side, env in sides.items():
            with tempfile.TemporaryDirectory(prefix="mpibench-ab-") as tmp:
                times[side].append(one_run(mb.create_project(Path(tmp) / "p", grid), env))
    for side, values in times.items():
        runs = ", ".join(f"{v:.1f}" for v in values)
        print(f"{side}: median {np.median(values):.1f} us per split ({runs})")


if __name__ == "__main__":
    main()
