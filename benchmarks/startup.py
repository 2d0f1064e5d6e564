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
from pathlib import Path

import peers

FLOOR = "import mpi4py.MPI, numpy, h5py, sklearn.tree, sklearn.dummy, sklearn.metrics"


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
                return peers.timed(command)
            command = [*mpiexec, "-genv", "PYTHONPATH", tree, sys.executable, "-m",
                       "mpibench", "run", str(demo), *extra]
            return peers.timed(command)

        systems = {
            f"import floor (-n {args.ranks})": lambda: peers.timed(
                [*mpiexec, sys.executable, "-c", FLOOR]),
            f"mpiexec -n {args.ranks} mpibench run demo": run_demo,
            f"mpiexec -n {args.ranks} mpibench run demo --no-isolate": lambda: run_demo(
                "--no-isolate"),
            "mpibench --help": lambda: peers.timed([*mpibench, "--help"]),
        }
        if args.other:
            systems[f"the same demo run with {args.other}"] = lambda: run_demo(
                tree=args.other)
        walls = peers.take_turns(systems, args.repeat)
    print(f"whole commands from a cold interpreter, median of {args.repeat} (range)\n")
    peers.print_walls(walls, header="| command | wall (s) |")
    floor = statistics.median(walls[f"import floor (-n {args.ranks})"])
    demo = statistics.median(walls[f"mpiexec -n {args.ranks} mpibench run demo"])
    print(f"\nthe demo run above the import floor: {demo - floor:+.2f} s")


if __name__ == "__main__":
    main()
