"""Rank 0's CPU per worker message, measured in one process (no MPI, no other process).

What bounds chunk-size-1 dispatch on a node where rank 0 has a core of its own: each
split then costs rank 0 one request (unpickle, hand-out, journal, bookkeeping) and one
reply (pickle). This drives a real ``Dispatcher`` on a real project (``grid.h5``,
journal on disk) with the requests two workers would send, each carrying the result
of the one split it was given, and times the phases. On an oversubscribed machine the
end-to-end figure of dispatch_overhead.py adds waiting for a core; this one does not.

Usage: python benchmarks/dispatcher_message.py [--splits 20000] [--chunk 1] [--repeat 5]
"""

from __future__ import annotations

import argparse
import pickle
import tempfile
import time
from pathlib import Path

import numpy as np
import peers

from mpibench.engine.dispatcher import Dispatcher
from mpibench.engine.options import RunOptions
from mpibench.engine.protocol import WorkRequest, unpack_assignments
from mpibench.store.batch import EncodedResults
from mpibench.store.paths import ProjectPaths
from mpibench.store.records import RankStats, SplitResult

PHASES = ("unpickle the request", "hand out the next chunk", "pickle the reply",
          "journal and keep the results, tick")


def finished(job: object) -> SplitResult:
    """What a worker reports for a no-op split."""
    now = time.time()
    return SplitResult(job.job_id, "ok", "", (0.0,), 1, "node1", 7, now, now + 1e-5, 1e-6,
                       1e-6, 1e-6, 1 << 27, 1, job.attempt)


def serve_request(dispatcher: Dispatcher, wire: bytes) -> tuple[bytes, tuple]:
    """Rank 0's work for one pickled request, as ``Dispatcher.serve`` does it: the
    pickled reply, and ``time.perf_counter()`` at the start and after each of ``PHASES``."""
    t0 = time.perf_counter()
    message = pickle.loads(wire)  # noqa: S301 (bytes made by this benchmark)
    arrived = WorkRequest.from_wire(message, EncodedResults.from_wire)
    t1 = time.perf_counter()
    with dispatcher.store.journal.one_write():
        reply = dispatcher.handle(arrived)
        t2 = time.perf_counter()
        reply_wire = pickle.dumps(reply, protocol=5)
        t3 = time.perf_counter()
        dispatcher.keep(arrived.rank, arrived.results)
    dispatcher.tick()
    return reply_wire, (t0, t1, t2, t3, time.perf_counter())


def open_dispatcher(project: Path, chunk: int | str, n_ranks: int = 3) -> Dispatcher:
    """A real rank-0 dispatcher on ``project`` (no MPI: requests are fed by hand)."""
    return Dispatcher(
        ProjectPaths(project), n_ranks,
        RunOptions(order="lpt", chunk_size=chunk, checkpoint_every=1e9, progress_every=0.0))


def measure(project: Path, n_messages: int, chunk: int) -> np.ndarray:
    """Seconds spent in each of ``PHASES``, summed over ``n_messages`` requests."""
    dispatcher = open_dispatcher(project, chunk)
    stats = RankStats(1, "node1", 7, time.time())
    held = {rank: unpack_assignments(dispatcher.next_assignments(rank)) for rank in (1, 2)}
    spent = np.zeros(len(PHASES))
    try:
        for i in range(n_messages):
            rank = 1 + i % 2
            request = WorkRequest(rank, EncodedResults([finished(j) for j in held[rank]]),
                                  stats, busy=True)
            reply_wire, times = serve_request(
                dispatcher, pickle.dumps(request.to_wire(), protocol=5))
            spent += np.diff(times)
            reply = pickle.loads(reply_wire)  # noqa: S301 (made by serve_request)
            held[rank] = [] if reply is None else unpack_assignments(reply)
    finally:
        dispatcher.close()
    return spent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--splits", type=int, default=20000)
    parser.add_argument("--chunk", type=int, default=1, help="splits per message")
    parser.add_argument("--repeat", type=int, default=5,
                        help="measurements (a fresh project each); the median is shown")
    args = parser.parse_args()
    n_messages = args.splits // args.chunk
    runs = []
    for _ in range(args.repeat):
        with tempfile.TemporaryDirectory(prefix="mpibench-bench-") as tmp:
            project = peers.sleep_project(Path(tmp), np.zeros(args.splits + 4 * args.chunk))
            runs.append(measure(project, n_messages, args.chunk) / n_messages * 1e6)
    runs = np.array(runs)
    print(f"rank 0, {n_messages} messages of {args.chunk} split(s), no-op results; "
          f"median (range) of {args.repeat} runs\n")
    print("| phase | us per message |\n|---|---:|")
    for phase, values in zip([*PHASES, "total"], [*runs.T, runs.sum(axis=1)], strict=True):
        print(f"| {phase} | {np.median(values):.1f} ({values.min():.1f}-{values.max():.1f}) |")
    total = runs.sum(axis=1)
    print(f"\nper split: {np.median(total) / args.chunk:.1f} us")


if __name__ == "__main__":
    main()
