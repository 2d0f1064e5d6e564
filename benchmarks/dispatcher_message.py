"""Rank 0's CPU per worker message, measured in one process (no MPI, no other process).

What bounds chunk-size-1 dispatch on a node where rank 0 has a core of its own: each
split then costs rank 0 one request (unpickle, hand-out, journal, bookkeeping) and one
reply (pickle). This drives a real ``Dispatcher`` on a real project (``grid.h5``,
journal on disk) with the requests two workers would send, each carrying the result
of the one split it was given, and times the phases. On an oversubscribed machine the
end-to-end figure of dispatch_overhead.py adds waiting for a core; this one does not.

Usage: python benchmarks/dispatcher_message.py [--splits 20000] [--chunk 1]
"""

from __future__ import annotations

import argparse
import pickle
import tempfile
import time
from pathlib import Path

import numpy as np
import peers

from mpibench.batch import EncodedResults
from mpibench.dispatcher import Dispatcher
from mpibench.paths import ProjectPaths
from mpibench.protocol import RankStats, SplitResult, WorkRequest, unpack_assignments

PHASES = ("unpickle the request", "hand out the next chunk", "pickle the reply",
          "journal and keep the results, tick")


def finished(job: object) -> SplitResult:
    """What a worker reports for a no-op split."""
    now = time.time()
    return SplitResult(job.job_id, "ok", "", (0.0,), 1, "node1", 7, now, now + 1e-5, 1e-6,
                       1e-6, 1e-6, 1 << 27, 1, job.attempt)


def measure(project: Path, n_messages: int, chunk: int) -> np.ndarray:
    """Seconds spent in each of ``PHASES``, summed over ``n_messages`` requests."""
    dispatcher = Dispatcher(
        ProjectPaths(project), 3, order="lpt", chunk_size=chunk, checkpoint_every=1e9,
        progress_every=0.0, grace=20.0, max_attempts=2, repair=False, mpi_library="-")
    stats = RankStats(1, "node1", 7, time.time())
    held = {rank: unpack_assignments(dispatcher.next_assignments(rank)) for rank in (1, 2)}
    spent = np.zeros(len(PHASES))
    try:
        for i in range(n_messages):
            rank = 1 + i % 2
            request = WorkRequest(rank, EncodedResults([finished(j) for j in held[rank]]),
                                  stats, busy=True)
            wire = pickle.dumps(request.to_wire(), protocol=5)
            t0 = time.perf_counter()
            message = pickle.loads(wire)  # noqa: S301 (bytes made two lines up)
            arrived = WorkRequest.from_wire(message, EncodedResults.from_wire)
            t1 = time.perf_counter()
            with dispatcher.store.journal.one_write():
                reply = dispatcher.handle(arrived)
                t2 = time.perf_counter()
                pickle.dumps(reply, protocol=5)
                t3 = time.perf_counter()
                dispatcher.keep(rank, arrived.results)
            dispatcher.tick()
            t4 = time.perf_counter()
            spent += (t1 - t0, t2 - t1, t3 - t2, t4 - t3)
            held[rank] = [] if reply is None else unpack_assignments(reply)
    finally:
        dispatcher.close()
    return spent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--splits", type=int, default=20000)
    parser.add_argument("--chunk", type=int, default=1, help="splits per message")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="mpibench-bench-") as tmp:
        project = peers.sleep_project(Path(tmp), np.zeros(args.splits + 4 * args.chunk))
        n_messages = args.splits // args.chunk
        spent = measure(project, n_messages, args.chunk)
    print(f"rank 0, {n_messages} messages of {args.chunk} split(s), no-op results\n")
    print("| phase | us per message |\n|---|---:|")
    for phase, seconds in zip(PHASES, spent, strict=True):
        print(f"| {phase} | {seconds / n_messages * 1e6:.1f} |")
    print(f"| total | {spent.sum() / n_messages * 1e6:.1f} |")
    print(f"\nper split: {spent.sum() / args.splits * 1e6:.1f} us")


if __name__ == "__main__":
    main()
