"""CPU per no-op split on both sides of the protocol, measured in one process.

A real worker (``Worker`` with an in-process ``SplitRunner``) and a real rank-0
``Dispatcher`` on a real project take turns in one process: each request the worker
sends is pickled, served as ``Dispatcher.serve`` serves it (``serve_request`` of
dispatcher_message.py) and the pickled reply handed back. Nothing waits for a core,
so the figures are CPU, not scheduling: what bounds chunk-size-1 dispatch on a node
where every rank has a core (rank 0's share, and each worker's share divided by the
number of workers), and what automatic chunking leaves of it.

Usage: python benchmarks/cpu_per_split.py [--splits 20000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import pickle
import tempfile
import time
from pathlib import Path

import numpy as np
import peers
from dispatcher_message import open_dispatcher, serve_request

from mpibench.engine.worker import InProcessExecutor, SplitRunner
from mpibench.engine.workerloop import Worker
from mpibench.store.gridfile import GridFile


class LoopbackTransport:
    """The worker's side of the transport, served at once by a dispatcher in-process."""

    rank, size = 1, 2

    def __init__(self, dispatcher: object) -> None:
        self.dispatcher = dispatcher
        self.replies: list[bytes] = []
        self.rank0_seconds = 0.0

    def send(self, message: object, dest: int, tag: int) -> None:
        reply, times = serve_request(self.dispatcher, pickle.dumps(message, protocol=5))
        self.replies.append(reply)
        self.rank0_seconds += times[-1] - times[0]

    def has_message(self, source: int, tag: int) -> bool:
        return bool(self.replies)

    def receive(self, source: int, tag: int, spin: float | None = None) -> tuple:
        return pickle.loads(self.replies.pop(0)), 0  # noqa: S301 (made by serve_request)


def measure(project: Path, chunk: int | str) -> tuple[float, float, float]:
    """Seconds of rank 0, of the worker's splits and of the rest of the worker."""
    dispatcher = open_dispatcher(project, chunk, n_ranks=2)
    try:
        transport = LoopbackTransport(dispatcher)
        runner = SplitRunner(GridFile(project / "grid.h5"), 1, 1)
        worker = Worker(transport, InProcessExecutor(runner))
        start = time.perf_counter()
        worker.loop()
        total = time.perf_counter() - start
    finally:
        dispatcher.close()
    splits = worker.stats.busy_seconds
    return transport.rank0_seconds, splits, total - transport.rank0_seconds - splits


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--splits", type=int, default=20000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    print(f"{args.splits} no-op splits, one worker and rank 0 in one process; us per split, "
          f"median (range) of {args.repeat} runs\n")
    print("| chunk size | rank 0 | worker: the splits | worker: the rest | total |")
    print("|---|---:|---:|---:|---:|")
    for chunk in (1, "auto"):
        runs = []
        for _ in range(args.repeat):
            with tempfile.TemporaryDirectory(prefix="mpibench-bench-") as tmp:
                project = peers.sleep_project(Path(tmp), np.zeros(args.splits))
                runs.append(np.array(measure(project, chunk)) / args.splits * 1e6)
        runs = np.array(runs)
        cells = [f"{np.median(v):.1f} ({v.min():.1f}-{v.max():.1f})"
                 for v in [*runs.T, runs.sum(axis=1)]]
        print(f"| {chunk} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
