"""The engine's message loop as one SPMD program, for the behaviour suite
(``test_message_loop.py``): every rank calls :func:`run_rank`, on threads of one
process (:class:`~mpibench.engine.transport.InProcessTransport`) or as a real MPI job::

    mpiexec -n 3 python tests/loop_behaviours.py PROJECT [--chunk-size N]
        [--stop-after RANK:RESULTS]

Rank 0 prints ``{"code": EXIT_CODE}`` and the job exits with that code.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from pathlib import Path

from mpibench.engine.options import RunOptions
from mpibench.engine.runner import RunContext, _start
from mpibench.engine.stopping import StopSignals
from mpibench.engine.transport import InProcessTransport, Transport, TransportAborted
from mpibench.store.paths import ProjectPaths


def stop_when_journaled(signals: StopSignals, journal: Path, count: int) -> None:
    """In a thread: once ``journal`` holds ``count`` results, act as if SIGUSR1 came."""

    def watch() -> None:
        while True:
            data = journal.read_bytes() if journal.exists() else b""
            if data.count(b'"t": "r"') + data.count(b'"t": "c"') >= count:
                signals.received = "SIGUSR1"
                return
            time.sleep(0.005)

    threading.Thread(target=watch, daemon=True).start()


def run_rank(transport: Transport, project: Path, options: RunOptions,
             stop_after: dict[int, int] | None = None) -> int:
    """One rank of a run of ``project`` (splits in-process: ``isolate=False``); rank R
    of ``stop_after`` behaves as if it received SIGUSR1 once ``stop_after[R]`` results
    are journaled."""
    context = RunContext(threads=1, signals=StopSignals())  # (handlers not installed)
    count = (stop_after or {}).get(transport.rank)
    if count is not None:
        stop_when_journaled(context.signals, project / "results.journal", count)
    return _start(transport, ProjectPaths(project), options, context)


def run_in_threads(n_ranks: int, project: Path, options: RunOptions,
                   stop_after: dict[int, int] | None = None,
                   timeout: float = 60.0) -> list[object]:
    """Each rank's exit code (or the exception it ended with), ranks as threads; a rank
    still running after ``timeout`` seconds fails (a hang)."""
    outcomes: list[object] = [None] * n_ranks

    def play(transport: InProcessTransport) -> None:
        try:
            outcomes[transport.rank] = run_rank(transport, project, options, stop_after)
        except BaseException as exc:
            outcomes[transport.rank] = exc

    threads = [threading.Thread(target=play, args=(t,), daemon=True,
                                name=f"rank-{t.rank}")
               for t in InProcessTransport.group(n_ranks)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout)
        assert not thread.is_alive(), f"{thread.name} still running after {timeout}s"
    return outcomes


def exit_code(outcome: object) -> int:
    """The exit code a rank's outcome stands for (an abort: its code)."""
    if isinstance(outcome, TransportAborted):
        return outcome.code
    if isinstance(outcome, BaseException):
        return int(getattr(outcome, "exit_code", 1))
    return int(outcome)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("project", type=Path)
    parser.add_argument("--chunk-size", default="auto")
    parser.add_argument("--stop-after", action="append", default=[])
    args = parser.parse_args()
    from mpi4py import MPI

    from mpibench.engine.transport import MPITransport

    chunk = args.chunk_size if args.chunk_size == "auto" else int(args.chunk_size)
    options = RunOptions(isolate=False, progress_every=0, chunk_size=chunk)
    stop_after = {int(r): int(n) for r, n in (spec.split(":") for spec in args.stop_after)}
    transport = MPITransport(MPI.COMM_WORLD)
    try:
        code = run_rank(transport, args.project, options, stop_after)
    except Exception as exc:  # a refusal: every rank ends with its code
        code = exit_code(exc)
    if transport.rank == 0:
        print(json.dumps({"code": code}), flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
