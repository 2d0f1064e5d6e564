"""(c) CPU a waiting rank burns: mpibench's polling transport against a blocking recv.

Under ``mpiexec -n 2``: for ``--seconds`` one rank waits for a message the other sends
late, (1) rank 1 as a worker waiting for its reply, (2) rank 0 as the dispatcher
waiting for a request, after requests 1 ms apart and (3) 1 s apart (its back-off cap
follows the gap), (4) rank 1 in a plain blocking ``comm.recv`` (MPICH spins). A line
also gives the CPU cost of one ``time.sleep`` on this machine, which sets the price
of each poll. Prints the waiting rank's CPU time as a
share of the wait, and how late it saw the message (wake-up latency).

Usage: python benchmarks/idle_cpu.py [--seconds 5]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

from mpibench import tuning

CODE = r'''
import sys, time
from mpi4py import MPI
from mpibench.engine.polling import DispatcherPolling, worker_backoff
from mpibench.engine.transport import MPITransport
comm, seconds = MPI.COMM_WORLD, float(sys.argv[1])
transport, polling = MPITransport(comm), DispatcherPolling()

def wait(receive):
    cpu, start = time.process_time(), time.time()
    sent_at, _ = receive()
    now = time.time()
    return (time.process_time() - cpu) / (now - start), now - sent_at

def late_send(dest, tag):
    time.sleep(seconds)
    comm.send(time.time(), dest=dest, tag=tag)

for case in ("worker", "dispatcher", "dispatcher_slow", "blocking"):
    waiter = 0 if case.startswith("dispatcher") else 1
    # the average gap between requests rank 0 has seen: 1 ms, or 1 s (long splits)
    polling.mean_gap = 1.0 if case == "dispatcher_slow" else 1e-3
    comm.Barrier()
    if comm.rank == waiter:
        if case == "blocking":
            share, late = wait(lambda: (comm.recv(source=1 - waiter, tag=7), 0))
        else:
            backoff = worker_backoff() if case == "worker" else polling.backoff()
            share, late = wait(lambda: transport.receive(1 - waiter, 7, backoff, lambda: None))
        print(f"{case} {100 * share:.2f} {late * 1e6:.0f}", flush=True)
    else:
        late_send(waiter, 7)
if comm.rank == 0:
    cpu = time.process_time()
    for _ in range(1000):
        time.sleep(2.5e-4)
    print(f"sleep {(time.process_time() - cpu) * 1e3:.1f} 0", flush=True)
'''

_FAST_CAP = max(tuning.DISPATCHER_MAX_SLEEP, 1e-3 / tuning.GAP_FRACTION)
LABELS = {
    "worker": f"worker waiting for its reply (back-off to {tuning.WORKER_MAX_SLEEP * 1e3:g} ms)",
    "dispatcher": "rank 0 waiting, requests ~1 ms apart so far "
                  f"(back-off to {_FAST_CAP * 1e6:.0f} us, then a third of the wait)",
    "dispatcher_slow": "rank 0 waiting, requests ~1 s apart so far "
                       f"(back-off to {tuning.DISPATCHER_SLOW_SLEEP * 1e3:g} ms)",
    "blocking": "blocking comm.recv (MPICH default)",
    "sleep": "(one time.sleep(250 us): CPU us per call, in the CPU column)",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "idle.py"
        script.write_text(CODE)
        done = subprocess.run([str(Path(sys.executable).parent / "mpiexec"), "-n", "2",
                               sys.executable, str(script), str(args.seconds)],
                              check=True, capture_output=True, text=True, timeout=600)
    print(f"| waiting rank ({args.seconds:g} s) | CPU, % of a core | wake-up latency, us |")
    print("|---|---:|---:|")
    for line in sorted(done.stdout.split("\n")):
        if line.strip():
            case, share, late = line.split()
            print(f"| {LABELS[case]} | {share} | {late} |")


if __name__ == "__main__":
    main()
