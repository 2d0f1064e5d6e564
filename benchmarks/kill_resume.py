"""Cost of a kill-and-resume cycle on the demo project.

Measures, in one run: a clean `mpiexec -n N mpibench run` of the demo; then a run that
is SIGKILLed (whole process group) once half of the splits are journaled, followed by
the resume. The cycle cost is (killed run + resume) - clean run.

Usage: python benchmarks/kill_resume.py [--ranks 4] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import mpibench as mb

BIN = Path(sys.executable).parent


def command(project: Path, ranks: int) -> list[str]:
    return [str(BIN / "mpiexec"), "-n", str(ranks), sys.executable, "-m", "mpibench", "run",
            str(project), "--progress-every", "0"]


def clean_run(project: Path, ranks: int) -> float:
    start = time.perf_counter()
    subprocess.run(command(project, ranks), check=True, capture_output=True)
    return time.perf_counter() - start


def result_records(journal: Path) -> int:
    """Records of finished splits in the journal so far (rows or columns records)."""
    data = journal.read_bytes() if journal.exists() else b""
    return data.count(b'"t": "r"') + data.count(b'"t": "c"')


def killed_then_resumed(project: Path, ranks: int, kill_at: int) -> tuple[float, float]:
    journal = project / "results.journal"
    start = time.perf_counter()
    proc = subprocess.Popen(command(project, ranks), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    while result_records(journal) < kill_at:
        time.sleep(0.002)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    killed = time.perf_counter() - start
    return killed, clean_run(project, ranks)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ranks", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.repeat):
            clean = clean_run(mb.create_demo(Path(tmp) / f"clean{i}"), args.ranks)
            project = mb.create_demo(Path(tmp) / f"killed{i}")
            killed, resumed = killed_then_resumed(project, args.ranks, kill_at=36)
            results = mb.read_results(project)
            assert len(results) == 72 and (results["status"] == "ok").all()
            rows.append((clean, killed, resumed))
    print(f"demo (72 splits), mpiexec -n {args.ranks}, {args.repeat} repeats (seconds):")
    print("clean_run  killed_at_36  resume  cycle_cost")
    for clean, killed, resumed in rows:
        print(f"{clean:9.2f}  {killed:12.2f}  {resumed:6.2f}  {killed + resumed - clean:10.2f}")


if __name__ == "__main__":
    main()
