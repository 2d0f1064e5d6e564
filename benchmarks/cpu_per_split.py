"""CPU per no-op split on both sides of the protocol, measured in one process.

The real code on both sides: a real ``Worker`` (in-process ``SplitRunner``) runs its
loop, and each request it sends through the package's ``InProcessTransport`` (pickled,
as over MPI) is answered at once, in the same thread, by a real rank-0 ``Dispatcher``
on a real project (``Dispatcher.answer``, what ``Dispatcher.serve`` does with each
request it receives). Nothing waits for a core or polls, so the figures are CPU, not
scheduling: what bounds chunk-size-1 dispatch on a node where every rank has a core
(rank 0's share, and each worker's share divided by the number of workers), and what
automatic chunking leaves of it.

Usage: python benchmarks/cpu_per_split.py [--splits 20000] [--repeat 5] [--one-shape]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import peers
from dispatcher_message import open_dispatcher

from mpibench.engine.inprocess import InProcessExecutor
from mpibench.engine.protocol import TAG_REQUEST
from mpibench.engine.transport import InProcessTransport
from mpibench.engine.worker import SplitRunner
from mpibench.engine.workerloop import Worker
from mpibench.store.gridfile import GridFile


class AnsweredAtOnce(InProcessTransport):
    """A worker's transport whose requests rank 0 answers at once, in this thread."""

    def __init__(self, rank0: InProcessTransport, dispatcher: object) -> None:
        super().__init__(1, 2, rank0._mail)
        self.rank0, self.dispatcher, self.rank0_seconds = rank0, dispatcher, 0.0

    def send(self, message: object, dest: int, tag: int) -> None:
        super().send(message, dest, tag)
        start = time.perf_counter()
        request, source = self.rank0.receive(None, TAG_REQUEST)
        self.dispatcher.answer(request, source, self.rank0)
        self.rank0_seconds += time.perf_counter() - start


def measure(project: Path, chunk: int | str) -> tuple[float, float, float]:
    """Seconds of rank 0, of the worker's splits and of the rest of the worker."""
    rank0, _ = InProcessTransport.group(2)
    dispatcher = open_dispatcher(project, chunk, n_ranks=2)
    try:
        transport = AnsweredAtOnce(rank0, dispatcher)
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
    parser.add_argument("--one-shape", action="store_true",
                        help="send every chunk as an int64 array and every batch of "
                             "results as columns (no list form for a few)")
    args = parser.parse_args()
    if args.one_shape:
        import mpibench.engine.dispatcher
        from mpibench.store.batch import EncodedResults

        mpibench.engine.dispatcher.SMALL_BLOCK = 0
        EncodedResults.SMALL = 0
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
