"""The systems mpibench is measured against, and mpibench itself, on one workload.

A workload is an array of split durations in seconds (0 for no-op splits), in grid
order. Every system runs it with P workers and returns a timeline: one row per split
``(split, worker, start, end)`` in Unix seconds, start-up excluded.

- ``sendrecv``: rank 0 answers each request with the next index (mpi4py send/recv).
- ``futures``: mpi4py.futures MPICommExecutor.map, at a given chunksize.
- ``static``: each rank runs one fixed block of splits (like a job array).
- ``filelock``: P processes share a CSV table under an fcntl lock; each split locks,
  reads the whole table, marks a row started, writes it back, and again when done.
- ``joblib``: joblib.Parallel with the loky backend (default batching).
- ``mpibench``: a project whose split ``i`` trains DebugLearner(sleep_per_row) on a
  train set of ``durations[i] / RATE`` rows (fit time grows with the data, as a real
  learner's does), scored by zero_score (the peers score nothing either); no-op
  workloads use NoOpLearner.

With ``PEER_SPLIT_PROJECT=PROJECT`` in the environment a peer's split ``i`` is no
bare function call but the same work as mpibench's split ``i`` of that project
(mpibench's ``SplitRunner``: clone, seed, fit, predict, score, time), so that only
the dispatching differs. The peers keep the results where they were computed; they
do not collect or store them.
"""

from __future__ import annotations

import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

import mpibench as mb

BIN = Path(sys.executable).parent
RATE = 1e-5
"""Seconds of DebugLearner fit per train row in mpibench's sleep workloads."""

_TASK = r'''
import os, socket, time
_PROJECT = os.environ.get("PEER_SPLIT_PROJECT")
if _PROJECT:
    from mpibench.store.gridfile import GridFile
    from mpibench.engine.protocol import Assignment
    from mpibench.engine.worker import SplitRunner
    _RUNNER = SplitRunner(GridFile(os.path.join(_PROJECT, "grid.h5")), 0, 1)
def run_split(i, seconds):
    start = time.time()
    if _PROJECT:
        _RUNNER.run(Assignment(i, 0, 0, 0, i, i))
    elif seconds > 0:
        time.sleep(seconds)
    return start, time.time()
'''

SENDRECV = _TASK + r'''
import sys
import numpy as np
from mpi4py import MPI
comm = MPI.COMM_WORLD
durations = np.load(sys.argv[1]).tolist()
if comm.rank == 0:
    status, next_id, active = MPI.Status(), 0, comm.size - 1
    while active:
        comm.recv(source=MPI.ANY_SOURCE, tag=1, status=status)
        if next_id < len(durations):
            comm.send(next_id, dest=status.Get_source(), tag=2); next_id += 1
        else:
            comm.send(None, dest=status.Get_source(), tag=2); active -= 1
    rows = [r for part in comm.gather([], root=0) for r in part]
    np.save(sys.argv[2], np.array(rows))
else:
    rows = []
    while (i := comm.sendrecv(comm.rank, dest=0, sendtag=1, source=0, recvtag=2)) is not None:
        rows.append((i, comm.rank, *run_split(i, durations[i])))
    comm.gather(rows, root=0)
'''

FUTURES = _TASK + r'''
import sys
import numpy as np
from mpi4py import MPI
from mpi4py.futures import MPICommExecutor
def job(i, seconds):
    return (i, MPI.COMM_WORLD.rank, *run_split(i, seconds))
durations = np.load(sys.argv[1]).tolist()
with MPICommExecutor() as pool:
    if pool is not None:
        rows = list(pool.map(job, range(len(durations)), durations,
                             chunksize=int(sys.argv[3])))
        np.save(sys.argv[2], np.array(rows))
'''

STATIC = _TASK + r'''
import sys
import numpy as np
from mpi4py import MPI
comm = MPI.COMM_WORLD
durations = np.load(sys.argv[1]).tolist()
blocks = np.array_split(np.arange(len(durations)), comm.size)
comm.Barrier()
rows = [(i, comm.rank, *run_split(i, durations[i])) for i in blocks[comm.rank].tolist()]
parts = comm.gather(rows, root=0)
if comm.rank == 0:
    np.save(sys.argv[2], np.array([r for part in parts for r in part]))
'''

FILELOCK = _TASK + r'''
import csv, fcntl, sys
import numpy as np
table, lock, worker = sys.argv[1], sys.argv[2], int(sys.argv[3])
durations = np.load(sys.argv[4]).tolist()
def update(change):
    """Lock, read the whole table, change it, write it all back, unlock."""
    with open(lock, "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        with open(table, newline="") as f:
            rows = list(csv.DictReader(f))
        result = change(rows)
        with open(table, "w", newline="") as f:
            out = csv.DictWriter(f, fieldnames=list(rows[0]))
            out.writeheader(); out.writerows(rows)
        fcntl.flock(held, fcntl.LOCK_UN)
    return result
def claim(rows):
    for i, row in enumerate(rows):
        if row["status"] == "todo":
            row["status"] = "started"
            return i
    return None
while (i := update(claim)) is not None:
    start, end = run_split(i, durations[i])
    def finish(rows, i=i, start=start, end=end):
        rows[i].update(status="done", worker=str(worker), start=repr(start), end=repr(end))
    update(finish)
'''


def mpiexec(ranks: int, *args: str, timeout: float = 900) -> str:
    """Run ``args`` under ``mpiexec -n ranks``; stdout."""
    done = subprocess.run([str(BIN / "mpiexec"), "-n", str(ranks), *args], check=True,
                          capture_output=True, text=True, timeout=timeout)
    return done.stdout


def _script(folder: Path, name: str, text: str) -> str:
    path = folder / name
    path.write_text(text)
    return str(path)


def run_sendrecv(durations: np.ndarray, workers: int, folder: Path) -> np.ndarray:
    """Minimal mpi4py dispatcher: ``workers + 1`` ranks."""
    data, out = folder / "d.npy", folder / "sendrecv.npy"
    np.save(data, durations)
    mpiexec(workers + 1, sys.executable, _script(folder, "sr.py", SENDRECV), str(data),
            str(out))
    return np.load(out)


def run_futures(durations: np.ndarray, workers: int, folder: Path,
                chunksize: int = 1) -> np.ndarray:
    """mpi4py.futures MPICommExecutor.map: ``workers + 1`` ranks."""
    data, out = folder / "d.npy", folder / "futures.npy"
    np.save(data, durations)
    mpiexec(workers + 1, sys.executable, _script(folder, "fu.py", FUTURES), str(data),
            str(out), str(chunksize))
    return np.load(out)


def run_static(durations: np.ndarray, workers: int, folder: Path) -> np.ndarray:
    """One block of splits per rank, no communication: ``workers`` ranks."""
    data, out = folder / "d.npy", folder / "static.npy"
    np.save(data, durations)
    mpiexec(workers, sys.executable, _script(folder, "st.py", STATIC), str(data), str(out))
    return np.load(out)


def run_filelock(durations: np.ndarray, workers: int, folder: Path) -> np.ndarray:
    """``workers`` processes sharing a CSV table under a file lock."""
    data, table, lock = folder / "d.npy", folder / "table.csv", folder / "table.lock"
    np.save(data, durations)
    with open(table, "w") as f:
        f.write("split,status,worker,start,end\n")
        f.writelines(f"{i},todo,,,\n" for i in range(len(durations)))
    code = _script(folder, "fl.py", FILELOCK)
    procs = [subprocess.Popen([sys.executable, code, str(table), str(lock), str(w),
                               str(data)]) for w in range(workers)]
    for proc in procs:
        if proc.wait(timeout=900):
            raise RuntimeError("file-lock worker failed")
    import pandas as pd

    frame = pd.read_csv(table)
    return frame[["split", "worker", "start", "end"]].to_numpy(dtype=np.float64)


_JOBLIB_RUNNERS: dict = {}
"""One SplitRunner per project in each loky worker (loky reuses its workers)."""


def _joblib_job(i: int, seconds: float, project: str | None) -> tuple:
    import time

    if project and project not in _JOBLIB_RUNNERS:
        from mpibench.engine.worker import SplitRunner
        from mpibench.store.gridfile import GridFile

        _JOBLIB_RUNNERS[project] = SplitRunner(GridFile(Path(project) / "grid.h5"), 0, 1)
    start = time.time()
    if project:
        from mpibench.engine.protocol import Assignment

        _JOBLIB_RUNNERS[project].run(Assignment(i, 0, 0, 0, i, i))
    elif seconds > 0:
        time.sleep(seconds)
    return i, os.getpid(), start, time.time()


def run_joblib(durations: np.ndarray, workers: int, folder: Path) -> np.ndarray:
    """joblib.Parallel(loky); the pool is started before the clock (start-up excluded).

    ``PEER_SPLIT_PROJECT`` is read here and passed with each job: loky reuses worker
    processes started with an older environment.
    """
    from joblib import Parallel, delayed

    project = os.environ.get("PEER_SPLIT_PROJECT")
    with Parallel(n_jobs=workers, backend="loky") as parallel:
        parallel(delayed(_joblib_job)(i, 0.0, project) for i in range(workers))  # warm up
        rows = parallel(delayed(_joblib_job)(i, d, project)
                        for i, d in enumerate(durations.tolist()))
    rows = np.array(rows, dtype=np.float64)
    _, rows[:, 1] = np.unique(rows[:, 1], return_inverse=True)
    return rows


def sleep_project(folder: Path, durations: np.ndarray, name: str = "p") -> Path:
    """A project whose split ``i`` fits for about ``durations[i]`` seconds.

    No-op workloads (all zeros) use NoOpLearner and zero_score on one-row splits.
    """
    from sklearn.model_selection import check_cv

    noop = not np.any(durations)
    rows = np.maximum(np.round(durations / RATE).astype(np.int64), 1)
    n = int(rows.max()) + 1
    task = mb.Task("sleep", X=np.zeros((n, 1)), y=np.arange(n, dtype=np.float64))
    pairs = [(np.arange(r), np.array([n - 1])) for r in rows.tolist()]
    learner = mb.NoOpLearner() if noop else mb.DebugLearner(sleep_per_row=RATE)
    grid = mb.Grid([task], {"learner": learner}, resamplings={"planned": check_cv(pairs)},
                   scoring={"zero": mb.zero_score})
    return mb.create_project(folder / name, grid)


def mpibench_run(project: Path, ranks: int | None, *args: str, fresh: bool = False,
                 env: dict | None = None, timeout: float = 3600) -> str:
    """``[mpiexec -n ranks] python -m mpibench run PROJECT ARGS`` (``ranks=None``: one
    process); ``fresh`` deletes earlier results first. Returns stderr."""
    if fresh:
        for name in ("results.h5", "results.journal"):
            (project / name).unlink(missing_ok=True)
    command = [sys.executable, "-m", "mpibench", "run", str(project), *args]
    if ranks is not None:
        command = [str(BIN / "mpiexec"), "-n", str(ranks), *command]
    done = subprocess.run(command, check=True, capture_output=True, text=True,
                          timeout=timeout, env=env)
    return done.stderr


def run_mpibench(durations: np.ndarray, workers: int, folder: Path, *args: str,
                 name: str = "p") -> np.ndarray:
    """``mpiexec -n workers+1 mpibench run`` with ``args``; timeline from results.h5."""
    project = sleep_project(folder, durations, name)
    mpibench_run(project, workers + 1, "--progress-every", "0", *args)
    results = mb.read_results(project)
    return results[["job_id", "rank", "start_time", "end_time"]].to_numpy(dtype=np.float64)


def makespan(timeline: np.ndarray) -> float:
    """Seconds from the first split's start to the last split's end."""
    return float(timeline[:, 3].max() - timeline[:, 2].min())


def efficiency(durations: np.ndarray, workers: int, timeline: np.ndarray) -> float:
    """max(sum / P, longest) / makespan: 1.0 is a perfect schedule."""
    ideal = max(durations.sum() / workers, durations.max())
    return ideal / makespan(timeline)


def scratch() -> tempfile.TemporaryDirectory:
    """A temporary folder for one system's files."""
    return tempfile.TemporaryDirectory(prefix="mpibench-bench-")


@contextlib.contextmanager
def scripts_folder(grid: str, scripts: dict[str, str]) -> Iterator[Path]:
    """A temporary folder holding ``grid.py`` (the shared definitions) and the systems'
    scripts, each importing it."""
    with scratch() as tmp:
        folder = Path(tmp)
        (folder / "grid.py").write_text(grid)
        for name, text in scripts.items():
            (folder / name).write_text(text)
        yield folder


def timed(*commands: list[str], cwd: Path | None = None, timeout: float = 1800) -> float:
    """Seconds to run ``commands`` one after the other (each must succeed)."""
    start = time.perf_counter()
    for command in commands:
        subprocess.run(command, check=True, capture_output=True, cwd=cwd, timeout=timeout)
    return time.perf_counter() - start


def take_turns(runs: dict[str, Callable[[], float]], repeat: int) -> dict[str, list[float]]:
    """Each run's seconds, ``repeat`` times; the systems take turns, so that a drift of
    the machine hits them all alike."""
    walls: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeat):
        for name, run in runs.items():
            walls[name].append(run())
    return walls


def print_walls(walls: dict[str, list[float]], header: str = "| system | total wall (s) |"
                ) -> None:
    """A markdown table: each system's median seconds and (range)."""
    print(header)
    print("|---|---|")
    for name, values in walls.items():
        print(f"| {name} | {statistics.median(values):.2f} "
              f"({min(values):.2f}-{max(values):.2f}) |")
