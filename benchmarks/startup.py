"""Start-up: the README's first command against the import floor, and ``mpibench --help``.

- import floor: ``mpiexec -n N python -c "import mpi4py.MPI, numpy, h5py,
  sklearn.tree, sklearn.dummy, sklearn.metrics"`` (what any MPI program running the
  demo's learners pays);
- ``mpiexec -n N mpibench run DEMO`` on a fresh demo project (72 tiny splits), default
  mode and ``--no-isolate``;
- ``mpibench --help`` (one process).

Each is a whole command from a cold interpreter; systems take turns; median (range).

With ``--other CHECKOUT`` (an earlier commit's tree), the demo run of that tree
(``python -m mpibench`` with it first on PYTHONPATH) takes turns with this one's.

Usage: python benchmarks/startup.py [--ranks 3] [--repeat 5] [--other CHECKOUT]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import peers

FLOOR = "import mpi4py.MPI, numpy, h5py, sklearn.tree, sklearn.dummy, sklearn.metrics"


def timed(command: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True, timeout=600)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ranks", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--other", help="an earlier checkout to time the demo run with")
    args = parser.parse_args()
    mpiexec = [str(peers.BIN / "mpiexec"), "-n", str(args.ranks)]
    mpibench = [str(peers.BIN / "mpibench")]
    with peers.scratch() as tmp:
        demo = Path(tmp) / "demo"

        def run_demo(*extra: str, tree: str | None = None) -> float:
            shutil.rmtree(demo, ignore_errors=True)
            subprocess.run([*mpibench, "demo", str(demo)], check=True, capture_output=True)
            command = [*mpiexec, *mpibench, "run", str(demo), *extra]
            if tree is None:
                return timed(command)
            command = [*mpiexec, "-genv", "PYTHONPATH", tree, sys.executable, "-m",
                       "mpibench", "run", str(demo), *extra]
            return timed(command)

        systems = {
            f"import floor (-n {args.ranks})": lambda: timed(
                [*mpiexec, sys.executable, "-c", FLOOR]),
            f"mpiexec -n {args.ranks} mpibench run demo": run_demo,
            f"mpiexec -n {args.ranks} mpibench run demo --no-isolate": lambda: run_demo(
                "--no-isolate"),
            "mpibench --help": lambda: timed([*mpibench, "--help"]),
        }
        if args.other:
            systems[f"the same demo run with {args.other}"] = lambda: run_demo(
                tree=args.other)
        walls: dict[str, list[float]] = {name: [] for name in systems}
        for _ in range(args.repeat):
            for name, run in systems.items():
                walls[name].append(run())
    print(f"whole commands from a cold interpreter, median of {args.repeat} (range)\n")
    print("| command | wall (s) |")
    print("|---|---|")
    for name, values in walls.items():
        print(f"| {name} | {statistics.median(values):.2f} "
              f"({min(values):.2f}-{max(values):.2f}) |")
    floor = statistics.median(walls[f"import floor (-n {args.ranks})"])
    demo = statistics.median(walls[f"mpiexec -n {args.ranks} mpibench run demo"])
    print(f"\nthe demo run above the import floor: {demo - floor:+.2f} s")


if __name__ == "__main__":
    main()
