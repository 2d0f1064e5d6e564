"""What the start of a run pays to place its ranks (node, GPU, grid copy).

Times :func:`mpibench.engine.layout.exchange_placements` (the node communicator from
``Split_type(COMM_TYPE_SHARED)``, the memory-map probe of ``grid.h5``, one message to
rank 0 and one back per rank) 20 times after a barrier; prints rank 0's median and
maximum in milliseconds.

Usage: mpiexec -n 5 python benchmarks/placement_cost.py PROJECT/grid.h5
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

from mpi4py import MPI

from mpibench.engine.layout import exchange_placements
from mpibench.engine.transport import MPITransport


def main() -> None:
    transport = MPITransport(MPI.COMM_WORLD)
    seconds = []
    for _ in range(20):
        MPI.COMM_WORLD.Barrier()
        start = time.perf_counter()
        exchange_placements(transport, Path(sys.argv[1]))
        seconds.append(time.perf_counter() - start)
    if transport.rank == 0:
        print(f"{transport.size} ranks: exchange_placements median "
              f"{statistics.median(seconds) * 1e3:.2f} ms, max {max(seconds) * 1e3:.2f} ms")


if __name__ == "__main__":
    main()
