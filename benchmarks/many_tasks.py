"""Many data sets: the grid's shape must not change the cost, and tiny splits over a
thousand tasks must run at least as fast as joblib over the same splits (issue 23).

Tasks of 40 rows x 3 features (regression), learners ``mb.DebugLearner()`` (a mean
predictor: about 10 us of fit), ``ShuffleSplit(train_size=30, test_size=10)``,
scored by rmse; every phase is a command from a cold interpreter.

``shape``: 20,000 splits as 1000 tasks x 10 learners x 2 splits against 10 tasks x 10
learners x 200 splits, the two shapes taking turns: ``create.py`` (the grid built and
``mb.create_project``), ``mpiexec -n 3 mpibench run`` (default mode, and
``--no-isolate``), ``mpibench report``; rank 0's CPU seconds from the run's last line.

``peers``: 100,000 splits as 1000 tasks x 10 learners x 10 splits, cold totals:
mpibench (``create.py`` then ``mpiexec -n 3 mpibench run``: 2 workers), one
``joblib.Parallel(n_jobs=2)`` over every (task, learner, split), and a loop of
``cross_validate(n_jobs=2)`` over the (task, learner) pairs.

Usage: python benchmarks/many_tasks.py shape [--repeat 3] [--tasks 1000] [--learners 10]
                                             [--splits 20000]
       python benchmarks/many_tasks.py peers [--repeat 1] [--tasks 1000] [--no-cv-loop]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import time
from pathlib import Path

import peers

import mpibench as mb

GRID = '''
import sys
import numpy as np
from sklearn.model_selection import ShuffleSplit
import mpibench as mb

N_TASKS, N_LEARNERS, N_SPLITS = (int(v) for v in sys.argv[-3:])
rng = np.random.default_rng(0)
DATA = [(rng.normal(size=(40, 3)), rng.normal(size=40)) for _ in range(N_TASKS)]
LEARNERS = {f"mean{i}": mb.DebugLearner() for i in range(N_LEARNERS)}
CV = ShuffleSplit(N_SPLITS, train_size=30, test_size=10, random_state=0)
'''

SCRIPTS = {
    "create.py": '''
import sys
import mpibench as mb
from grid import CV, DATA, LEARNERS
tasks = [mb.Task(f"t{i}", X=X, y=y) for i, (X, y) in enumerate(DATA)]
mb.create_project(sys.argv[1], mb.Grid(tasks, LEARNERS, resamplings=[CV], scoring=["rmse"]))
''',
    "joblib_grid.py": '''
import sys
from joblib import Parallel, delayed
from sklearn.base import clone
from mpibench.scorers import rmse
from grid import CV, DATA, LEARNERS

def split(learner, X, y, train, test):
    model = clone(learner).fit(X[train], y[train])
    return rmse(y[test], model.predict(X[test]))

scores = Parallel(n_jobs=2)(
    delayed(split)(learner, X, y, train, test) for X, y in DATA
    for learner in LEARNERS.values() for train, test in CV.split(X))
print(len(scores))
''',
    "cv_loop.py": '''
import sys
from sklearn.model_selection import cross_validate
from grid import CV, DATA, LEARNERS
n = 0
for X, y in DATA:
    for learner in LEARNERS.values():
        n += len(cross_validate(learner, X, y, cv=CV, scoring="neg_root_mean_squared_error",
                                n_jobs=2)["test_score"])
print(n)
''',
}


def command(folder: Path, script: str, *args: str, shape: tuple[int, int, int]) -> list:
    return [sys.executable, str(folder / script), *args, *map(str, shape)]


def run(project: Path, *args: str) -> tuple[float, float]:
    """Seconds of ``mpiexec -n 3 mpibench run PROJECT ARGS`` and rank 0's CPU seconds."""
    start = time.perf_counter()
    peers.mpibench_run(project, 3, "--progress-every", "0", *args)
    wall = time.perf_counter() - start
    ranks = mb.read_ranks(project)
    return wall, float(ranks.loc[ranks["rank"] == 0, "cpu_seconds"].iloc[-1])


def shape(folder: Path, repeat: int, many: int, learners: int, n_splits: int) -> None:
    shapes = {f"{tasks} tasks x {learners} learners x {n_splits // (tasks * learners)} splits":
              (tasks, learners, n_splits // (tasks * learners)) for tasks in (many, 10)}
    rows: dict[str, dict[str, list[float]]] = {name: {} for name in shapes}
    for _ in range(repeat):
        for name, grid_shape in shapes.items():
            for mode in ("default", "--no-isolate"):
                project = folder / "p"
                shutil.rmtree(project, ignore_errors=True)
                create = peers.timed(command(folder, "create.py", str(project),
                                             shape=grid_shape))
                wall, cpu = run(project, *([] if mode == "default" else [mode]))
                report = peers.timed([sys.executable, "-m", "mpibench", "report",
                                      str(project), "-o", str(folder / "r.html")])
                for key, value in (("create_project", create), (f"run, {mode}", wall),
                                   (f"rank 0 CPU us/split, {mode}", cpu / n_splits * 1e6),
                                   ("report", report)):
                    rows[name].setdefault(key, []).append(value)
    keys = list(next(iter(rows.values())))
    names = list(shapes)
    print(f"{n_splits:,} splits, median of {repeat} (range); seconds unless named\n")
    print(f"| phase | {' | '.join(names)} | ratio |\n|---|---|---|---|")
    for key in keys:
        medians = [statistics.median(rows[n][key]) for n in names]
        cells = [f"{statistics.median(rows[n][key]):.2f} ({min(rows[n][key]):.2f}-"
                 f"{max(rows[n][key]):.2f})" for n in names]
        print(f"| {key} | {' | '.join(cells)} | {medians[0] / medians[1]:.2f} |")


def compare_peers(folder: Path, repeat: int, n_tasks: int, cv_loop: bool = True) -> None:
    grid_shape = (n_tasks, 10, 10)
    n_splits = n_tasks * 100
    project = folder / "p"

    def mpibench_cold(*args: str) -> float:
        shutil.rmtree(project, ignore_errors=True)
        return peers.timed(command(folder, "create.py", str(project), shape=grid_shape),
                           [str(peers.BIN / "mpiexec"), "-n", "3", sys.executable, "-m",
                            "mpibench", "run", str(project), "--progress-every", "0", *args])

    systems = {
        "mpibench default (create + mpiexec -n 3 run)": mpibench_cold,
        "mpibench --no-isolate (create + mpiexec -n 3 run)":
            lambda: mpibench_cold("--no-isolate"),
        "joblib.Parallel(n_jobs=2) over (task, learner, split)": lambda: peers.timed(
            command(folder, "joblib_grid.py", shape=grid_shape)),
        "cross_validate(n_jobs=2) per (task, learner)": lambda: peers.timed(
            command(folder, "cv_loop.py", shape=grid_shape)),
    }
    if not cv_loop:  # (it takes minutes: measure it once)
        systems.popitem()
    walls = peers.take_turns(systems, repeat)
    print(f"{n_splits:,} splits ({n_tasks} tasks x 10 learners x 10 splits), 2 workers; "
          f"total wall from a cold interpreter, median of {repeat} (range)\n")
    print("| system | total wall (s) | splits per second |\n|---|---|---|")
    for name, values in walls.items():
        median = statistics.median(values)
        print(f"| {name} | {median:.1f} ({min(values):.1f}-{max(values):.1f}) | "
              f"{n_splits / median:,.0f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=("shape", "peers"))
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--tasks", type=int, default=1000,
                        help="tasks of the many-task grid (shape) or of the grid (peers)")
    parser.add_argument("--learners", type=int, default=10, help="(shape)")
    parser.add_argument("--splits", type=int, default=20_000, help="(shape)")
    parser.add_argument("--no-cv-loop", action="store_true",
                        help="(peers) leave out the cross_validate loop")
    args = parser.parse_args()
    with peers.scripts_folder(GRID, SCRIPTS) as folder:
        if args.what == "shape":
            shape(folder, args.repeat, args.tasks, args.learners, args.splits)
        else:
            compare_peers(folder, args.repeat, args.tasks, not args.no_cv_loop)


if __name__ == "__main__":
    main()
