"""Per-split dispatch cost on no-op splits: mpibench against simple MPI baselines.

All in one run, under the same `mpiexec -n P`: (1) mpibench (`--no-isolate`, no-op
DebugLearner splits; per split = makespan / splits, from results.h5 start/end times,
start-up excluded); (2) a minimal mpi4py send/recv dispatcher (worker asks, rank 0 sends
an id); (3) mpi4py.futures MPIPoolExecutor.map, chunksize 1. Times are microseconds of
makespan per split (lower is better); with P ranks on fewer cores only ratios count.

Usage: python benchmarks/dispatch_overhead.py [--ranks 3] [--splits 2000]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from sklearn.model_selection import ShuffleSplit

import mpibench as mb

BIN = Path(sys.executable).parent

SENDRECV = r'''
import sys, time
from mpi4py import MPI
comm, n = MPI.COMM_WORLD, int(sys.argv[1])
if comm.rank == 0:
    status, next_id, active = MPI.Status(), 0, comm.size - 1
    start = time.perf_counter()
    while active:
        comm.recv(source=MPI.ANY_SOURCE, tag=1, status=status)
        if next_id < n:
            comm.send(next_id, dest=status.Get_source(), tag=2); next_id += 1
        else:
            comm.send(None, dest=status.Get_source(), tag=2); active -= 1
    print((time.perf_counter() - start) / n * 1e6)
else:
    while comm.sendrecv(comm.rank, dest=0, sendtag=1, source=0, recvtag=2) is not None:
        pass
'''

FUTURES = r'''
import sys, time
from mpi4py.futures import MPICommExecutor
def noop(i):
    return i
n, chunk = int(sys.argv[1]), int(sys.argv[2])
with MPICommExecutor() as pool:
    if pool is not None:
        start = time.perf_counter()
        list(pool.map(noop, range(n), chunksize=chunk))
        print((time.perf_counter() - start) / n * 1e6)
'''


def mpiexec(ranks: int, *args: str) -> str:
    done = subprocess.run([str(BIN / "mpiexec"), "-n", str(ranks), *args], check=True,
                          capture_output=True, text=True, timeout=600)
    return done.stdout.strip()


def script(folder: Path, name: str, text: str) -> str:
    path = folder / name
    path.write_text(text)
    return str(path)


def mpibench_us(folder: Path, ranks: int, n_splits: int, chunk: int) -> float:
    rng = np.random.default_rng(0)
    task = mb.Task("t", X=rng.normal(size=(50, 2)), y=rng.normal(size=50))
    grid = mb.Grid([task], {"noop": mb.DebugLearner()},
                   resamplings=[ShuffleSplit(n_splits, test_size=0.2)], scoring=["mae"])
    project = mb.create_project(folder / f"p{chunk}", grid)
    mpiexec(ranks, sys.executable, "-m", "mpibench", "run", str(project), "--no-isolate",
            "--chunk-size", str(chunk), "--progress-every", "0")
    results = mb.read_results(project)
    makespan = results["end_time"].max() - results["start_time"].min()
    return makespan / n_splits * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ranks", type=int, default=3)
    parser.add_argument("--splits", type=int, default=2000)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        started = time.perf_counter()
        rows.append(("mpibench --no-isolate, chunk 1", mpibench_us(folder, args.ranks,
                                                                    args.splits, 1)))
        rows.append(("mpibench --no-isolate, chunk 16", mpibench_us(folder, args.ranks,
                                                                     args.splits, 16)))
        rows.append(("minimal send/recv dispatcher", float(mpiexec(
            args.ranks, sys.executable, script(folder, "sr.py", SENDRECV), str(args.splits)))))
        for chunk in (1, 16):
            rows.append((f"mpi4py.futures MPICommExecutor, chunksize {chunk}", float(mpiexec(
                args.ranks, sys.executable, script(folder, "fu.py", FUTURES), str(args.splits),
                str(chunk)))))
    print(f"no-op splits: {args.splits}, mpiexec -n {args.ranks} "
          f"({time.perf_counter() - started:.0f} s in all)")
    print(f"{'system':50s} {'us/split':>9s}")
    for name, value in rows:
        print(f"{name:50s} {value:9.1f}")


if __name__ == "__main__":
    main()
