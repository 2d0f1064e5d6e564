"""(5) A million splits over a thousand data sets: create, run, read, status, report.

1000 tasks (40 rows x 3 features) x 100 ``NoOpLearner``s x KFold(10) = 1,000,000 jobs
(``--tasks``, ``--learners``, ``--folds`` change the shape), scored by ``zero_score``.
Phases, each a command from a cold interpreter: ``create_project`` (then again with
the same grid, and with one learner more on a copy: the project grows); ``mpiexec -n 3
mpibench run`` (default mode: isolated; then the same with ``--no-isolate`` on a fresh
copy of the project), automatic chunks; a second run that finds everything done (the
journal read back); ``mb.read_results``; ``mpibench status``; ``mpibench results`` to
CSV, plain and ``--mlr3``; ``mpibench report``. Prints each phase's wall time and peak
memory (``ru_maxrss`` of the process; for the runs, rank 0's from ``/ranks``) and rank
0's CPU share of the run.

Usage: python benchmarks/scale.py [--tasks 1000] [--learners 100] [--folds 10]
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import peers

CREATE = '''
import sys
import numpy as np
from sklearn.model_selection import KFold
import mpibench as mb
n_tasks, n_learners, folds = (int(v) for v in sys.argv[2:5])
rng = np.random.default_rng(0)
tasks = [mb.Task(f"t{i}", X=rng.normal(size=(40, 3)), y=rng.normal(size=40))
         for i in range(n_tasks)]
learners = {f"noop{i}": mb.NoOpLearner() for i in range(n_learners)}
grid = mb.Grid(tasks, learners, resamplings=[KFold(folds)], scoring={"zero": mb.zero_score})
mb.create_project(sys.argv[1], grid)
'''

MEASURED = '''
import resource, sys, time
start = time.perf_counter()
{body}
print(f"{{time.perf_counter() - start}} {{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}}")
'''


def measured(body: str, *args: str) -> tuple[float, float]:
    """Seconds of ``body`` after the imports above it, and the process's peak MB."""
    done = subprocess.run([sys.executable, "-c", MEASURED.format(body=body), *args],
                          check=True, capture_output=True, text=True, timeout=3600)
    seconds, peak = done.stdout.split()[-2:]
    return float(seconds), float(peak) / 1024


def command(*args: str) -> tuple[float, float]:
    """Wall seconds of a whole command and its peak MB (GNU time)."""
    start = time.perf_counter()
    done = subprocess.run(["/usr/bin/time", "-f", "%M", *args], check=True,
                          capture_output=True, text=True, timeout=3600)
    return time.perf_counter() - start, float(done.stderr.strip().splitlines()[-1]) / 1024


def run(project: Path, *args: str) -> tuple[float, str]:
    start = time.perf_counter()
    log = peers.mpibench_run(project, 3, "--progress-every", "60", *args)
    return time.perf_counter() - start, log


def rank0(log: str) -> str:
    """Rank 0's CPU seconds, share of a core and peak memory, from the run's last line."""
    found = re.search(r"rank 0: ([\d.]+) s CPU in ([\d.]+) s, peak memory (\d+) MB", log)
    if not found:
        return "(no rank 0 line)"
    cpu, wall, peak = float(found.group(1)), float(found.group(2)), found.group(3)
    return f"rank 0: {cpu:.1f} s CPU, {100 * cpu / max(wall, 1e-9):.0f}% of a core; peak {peak} MB"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--learners", type=int, default=100)
    parser.add_argument("--folds", type=int, default=10)
    args = parser.parse_args()
    rows: list[tuple[str, float, str]] = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        project = folder / "million"
        (folder / "create.py").write_text(CREATE)
        seconds, peak = command(sys.executable, str(folder / "create.py"), str(project),
                                str(args.tasks), str(args.learners), str(args.folds))
        rows.append(("create_project (cold interpreter)", seconds, f"{peak:.0f} MB"))
        shutil.copytree(project, folder / "bare")
        shutil.copytree(project, folder / "grown")
        for label, where, learners in (("create_project again, the same grid", project,
                                        args.learners),
                                       ("create_project, one learner more (grows)",
                                        folder / "grown", args.learners + 1)):
            seconds, peak = command(sys.executable, str(folder / "create.py"), str(where),
                                    str(args.tasks), str(learners), str(args.folds))
            rows.append((f"{label} (cold interpreter)", seconds, f"{peak:.0f} MB"))
        shutil.rmtree(folder / "grown")
        for mode, where in (("default", project), ("--no-isolate", folder / "bare")):
            seconds, log = run(where, *([] if mode == "default" else [mode]))
            rows.append((f"run, {mode} (mpiexec -n 3, start-up and results.h5 included)",
                         seconds, rank0(log)))
        seconds, log = run(project)
        rows.append(("second run (all done: journal read back)", seconds, rank0(log)))
        seconds, peak = measured("import mpibench as mb\nframe = mb.read_results(sys.argv[1])",
                                 str(project))
        rows.append(("read_results (after import)", seconds, f"{peak:.0f} MB"))
        for label, extra in (("mpibench status", ["status", str(project)]),
                             ("mpibench results -o CSV", ["results", str(project), "-o",
                                                          str(folder / "r.csv")]),
                             ("mpibench results --mlr3 -o CSV", [
                                 "results", str(project), "--mlr3", "-o",
                                 str(folder / "m.csv")]),
                             ("mpibench report", ["report", str(project), "-o",
                                                  str(folder / "r.html")])):
            seconds, peak = command(sys.executable, "-m", "mpibench", *extra)
            rows.append((f"{label} (cold interpreter)", seconds, f"{peak:.0f} MB"))
        report = (folder / "r.html").stat().st_size
        journal = (project / "results.journal").stat().st_size
        sizes = (f"grid.h5 {(project / 'grid.h5').stat().st_size / 2**20:.0f} MB, "
                 f"results.journal {journal / 2**20:.0f} MB, results.h5 "
                 f"{(project / 'results.h5').stat().st_size / 2**20:.0f} MB, report "
                 f"{report / 2**20:.1f} MB")
    n = args.tasks * args.learners * args.folds
    print(f"{n:,} splits: {args.tasks} tasks x {args.learners} learners x KFold({args.folds})"
          f"; {sizes}\n")
    print("| phase | seconds | memory, CPU |\n|---|---:|---|")
    for label, seconds, note in rows:
        print(f"| {label} | {seconds:.1f} | {note} |")


if __name__ == "__main__":
    main()
