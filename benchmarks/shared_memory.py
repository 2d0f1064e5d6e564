"""(d) Memory per rank with a task of a few hundred MB: shared (memory-mapped) or copied.

One task X of ``--megabytes`` MB (float64), ShuffleSplit splits of 2% of the rows
(so every worker reads rows from all over X), DebugLearner(sleep_fit=0.2). The run
is sampled every 0.1 s from /proc: per process the peak RSS and peak unique memory
(USS: private pages), and the peak of the node total (sum of PSS: shared pages
divided among the processes mapping them). ``MPIBENCH_SHARE_DATA=0`` makes every
process read its own copy, as before.

Usage: python benchmarks/shared_memory.py [--workers 4] [--megabytes 300]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import peers
from sklearn.model_selection import ShuffleSplit

import mpibench as mb

MB = 2**20


def memory(pid: int) -> dict[str, int] | None:
    """Rss, Pss and private bytes of a process (None if it is gone)."""
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return None
    kib = {line.split(":")[0]: int(line.split()[1]) for line in text.splitlines()[1:]}
    return {"rss": kib["Rss"] * 1024, "pss": kib["Pss"] * 1024,
            "uss": (kib["Private_Clean"] + kib["Private_Dirty"]) * 1024}


def processes(marker: str) -> list[int]:
    """Pids whose command line mentions ``marker`` (ranks and isolation helpers)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                if marker in (entry / "cmdline").read_bytes().decode(errors="replace"):
                    found.append(int(entry.name))
            except OSError:
                pass
    return found


class Sampler(threading.Thread):
    """Samples the memory of matching processes until stopped."""

    def __init__(self, marker: str) -> None:
        super().__init__(daemon=True)
        self.marker, self.done = marker, threading.Event()
        self.peak: dict[int, dict[str, int]] = {}
        self.total_pss = 0

    def run(self) -> None:
        while not self.done.is_set():
            total = 0
            for pid in processes(self.marker):
                sample = memory(pid)
                if sample:
                    total += sample["pss"]
                    old = self.peak.setdefault(pid, sample)
                    self.peak[pid] = {k: max(old[k], sample[k]) for k in sample}
            self.total_pss = max(self.total_pss, total)
            time.sleep(0.1)


def measure(project: Path, workers: int, share: bool, isolate: bool) -> dict[str, float]:
    """Run the project once (fresh results) and return memory figures in MB."""
    sampler = Sampler(str(project))
    sampler.start()
    env = {**os.environ, "MPIBENCH_SHARE_DATA": "1" if share else "0"}
    peers.mpibench_run(project, workers + 1, "--progress-every", "0",
                       *([] if isolate else ["--no-isolate"]), fresh=True, env=env, timeout=900)
    sampler.done.set()
    sampler.join()
    peaks = list(sampler.peak.values())
    return {"max_rss": max(p["rss"] for p in peaks) / MB,
            "max_uss": max(p["uss"] for p in peaks) / MB,
            "node_pss": sampler.total_pss / MB, "processes": len(peaks)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--megabytes", type=int, default=300)
    parser.add_argument("--splits", type=int, default=24)
    args = parser.parse_args()
    n_rows = args.megabytes * MB // (30 * 8)
    rng = np.random.default_rng(0)
    task = mb.Task("big", X=rng.normal(size=(n_rows, 30)), y=rng.normal(size=n_rows))
    grid = mb.Grid([task], {"sleepy": mb.DebugLearner(sleep_fit=0.2)},
                   resamplings=[ShuffleSplit(args.splits, train_size=0.02, test_size=0.01)],
                   scoring=["mae"])
    print(f"X: {task.X.nbytes / MB:.0f} MB, {args.workers} workers, {args.splits} splits")
    print("| data | isolation | processes | peak RSS of one, MB | peak USS of one, MB "
          "| node total (sum of PSS), MB |\n|---|---|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as tmp:
        project = mb.create_project(Path(tmp) / "p", grid)
        for isolate in (False, True):
            for share in (False, True):
                m = measure(project, args.workers, share, isolate)
                print(f"| {'shared (mmap)' if share else 'copied per process'} | "
                      f"{'isolated' if isolate else '--no-isolate'} | {m['processes']} | "
                      f"{m['max_rss']:.0f} | {m['max_uss']:.0f} | {m['node_pss']:.0f} |",
                      flush=True)


if __name__ == "__main__":
    main()
