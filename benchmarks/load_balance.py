"""(b) Load balance on heterogeneous sleep workloads, and (c) rank 0's CPU, side by side.

Workloads (seeded, in a shuffled grid order that every system receives as is):
log-normal durations (mean 50 ms, sigma 1, 400 splits) and bimodal (90% 20 ms, 10%
1 s, 200 splits). Efficiency = max(sum / P, longest) / makespan (1.0 is perfect,
start-up excluded). mpibench's splits fit DebugLearner(sleep_per_row) on train sets
sized to the duration, so its cost model can rank them; the peers get the grid order.
Writes one timeline figure per workload and P to benchmarks/figures/.

A last run gives mpibench alone a longer log-normal workload (``--long`` splits at
the largest P), where start-up and the final ``results.h5`` weigh less in rank 0's
CPU share.

``--same-work``: every peer runs mpibench's own split ``i`` of the workload's project
(the same DebugLearner fit, ``PEER_SPLIT_PROJECT`` in peers.py) instead of a bare
``time.sleep``, so that only the scheduling differs. mpibench runs in its default mode
(isolated executors) and with ``--no-isolate``, side by side.

Usage: python benchmarks/load_balance.py [--workers 4 8] [--seed 0] [--long 2000]
       [--same-work]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import tempfile
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import peers

import mpibench as mb

FIGURES = Path(__file__).parent / "figures"


def workloads(seed: int) -> dict[str, np.ndarray]:
    """Split durations in seconds, in grid order."""
    rng = np.random.default_rng(seed)
    sigma = 1.0
    lognormal = rng.lognormal(np.log(0.05) - sigma**2 / 2, sigma, 400)
    bimodal = np.where(rng.random(200) < 0.1, 1.0, 0.02)
    return {"lognormal": lognormal, "bimodal": bimodal}


def systems() -> list[tuple[str, object]]:
    """(label, function(durations, workers, folder) -> timeline)."""
    return [
        ("mpibench default", peers.run_mpibench),
        ("mpibench --no-isolate", lambda d, w, f: peers.run_mpibench(d, w, f, "--no-isolate")),
        ("send/recv", peers.run_sendrecv),
        ("mpi4py.futures c1", peers.run_futures),
        ("mpi4py.futures c4", lambda d, w, f: peers.run_futures(d, w, f, 4)),
        ("static blocks", peers.run_static),
        ("file lock + CSV", peers.run_filelock),
        ("joblib loky", peers.run_joblib),
    ]


@contextlib.contextmanager
def same_work(wanted: bool, durations: np.ndarray):
    """With ``wanted``, peers run mpibench's split of a project of ``durations``."""
    if not wanted:
        yield
        return
    with tempfile.TemporaryDirectory(prefix="mpibench-bench-") as tmp:
        os.environ["PEER_SPLIT_PROJECT"] = str(peers.sleep_project(Path(tmp), durations))
        try:
            yield
        finally:
            del os.environ["PEER_SPLIT_PROJECT"]


def plot(timelines: dict[str, np.ndarray], title: str, path: Path) -> None:
    """One panel per system: a row per worker, a bar per split."""
    figure, axes = plt.subplots(len(timelines), 1, figsize=(8, 1.3 * len(timelines)),
                                sharex=True, squeeze=False)
    for ax, (label, timeline) in zip(axes[:, 0], timelines.items(), strict=True):
        t0 = timeline[:, 2].min()
        _, worker = np.unique(timeline[:, 1], return_inverse=True)
        ax.barh(worker, timeline[:, 3] - timeline[:, 2], left=timeline[:, 2] - t0,
                height=0.8, color="tab:blue", edgecolor="white", linewidth=0.3)
        ax.set_ylabel(label, rotation=0, ha="right", va="center", fontsize=8)
        ax.set_yticks([])
    axes[-1, 0].set_xlabel("seconds since the first split started")
    figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)


def rank0_cpu(folder: Path) -> str:
    """Rank 0's and the busiest worker's CPU share of the last mpibench run."""
    ranks = mb.read_ranks(folder / "p")
    share = ranks["cpu_seconds"] / (ranks["end_time"] - ranks["start_time"])
    return f"rank 0 {100 * share.iloc[0]:.1f}%, workers <= {100 * share.iloc[1:].max():.1f}%"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[4, 8])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--long", type=int, default=2000)
    parser.add_argument("--same-work", action="store_true")
    args = parser.parse_args()
    FIGURES.mkdir(exist_ok=True)
    started, cpu = time.perf_counter(), []
    chosen = systems()
    print("| workload | P | " + " | ".join(label for label, _ in chosen) + " |")
    print("|---|---:|" + "---:|" * len(chosen))
    for name, durations in workloads(args.seed).items():
        for workers in args.workers:
            timelines, cells = {}, []
            for label, run in chosen:
                mine = label.startswith("mpibench")
                with peers.scratch() as tmp, same_work(args.same_work and not mine, durations):
                    timelines[label] = run(durations, workers, Path(tmp))
                    if mine:
                        cpu.append(f"{name}, P={workers}, {label}: {rank0_cpu(Path(tmp))}")
                cells.append(f"{peers.efficiency(durations, workers, timelines[label]):.3f}")
            print(f"| {name} | {workers} | " + " | ".join(cells) + " |", flush=True)
            if args.same_work:
                continue
            plot(timelines, f"{name} workload, P = {workers} workers "
                            f"(ideal {max(durations.sum() / workers, durations.max()):.2f} s)",
                 FIGURES / f"timeline_{name}_P{workers}.png")
    if args.long:
        rng = np.random.default_rng(args.seed + 1)
        durations = rng.lognormal(np.log(0.05) - 0.5, 1.0, args.long)
        workers = max(args.workers)
        for mode in ((), ("--no-isolate",)):
            with peers.scratch() as tmp:
                timeline = peers.run_mpibench(durations, workers, Path(tmp), *mode)
                cpu.append(f"lognormal x {args.long} splits, P={workers}, "
                           f"{' '.join(mode) or 'default'}: {rank0_cpu(Path(tmp))} "
                           f"(efficiency {peers.efficiency(durations, workers, timeline):.3f})")
    print("\nCPU share over the run (cpu_seconds / wall, /ranks of results.h5):")
    print("\n".join(f"- {line}" for line in cpu))
    print(f"\n({time.perf_counter() - started:.0f} s in all; figures in {FIGURES})")


if __name__ == "__main__":
    main()
