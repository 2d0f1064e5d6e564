"""What measuring a split's use costs (issue 26): ``UsageMeter.begin`` + ``end`` per
split, in a forked process as in an executor (median of several timings).

The end-to-end effect on no-op splits in the default mode is measured with
``benchmarks/ab_isolated.py --other <checkout before the change>``.

Usage: python benchmarks/usage_cost.py [--calls 100000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

from mpibench.engine.usage import UsageMeter


def per_call_us(calls: int) -> float:
    meter = UsageMeter()
    start = time.perf_counter()
    for _ in range(calls):
        meter.begin()
        meter.end(0.0)
    return (time.perf_counter() - start) / calls * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    reader, writer = os.pipe()
    pid = os.fork()
    if pid == 0:  # (an executor is a forked process too)
        timings = [per_call_us(args.calls) for _ in range(args.repeat)]
        os.write(writer, " ".join(f"{t:.3f}" for t in timings).encode())
        os._exit(0)
    os.close(writer)
    os.waitpid(pid, 0)
    timings = [float(t) for t in os.read(reader, 4096).split()]
    print(f"UsageMeter.begin + end: median {statistics.median(timings):.2f} us per split "
          f"(runs: {', '.join(f'{t:.2f}' for t in timings)})")


if __name__ == "__main__":
    main()
