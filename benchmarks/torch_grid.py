"""The PyTorch example's SOAK grid, cold start to finish, against a joblib script.

``examples/torch_mlp.py``'s grid (2 tasks x {torch MLP, RidgeCV, tree} x SOAK 3 folds:
108 splits, 300 rows) run three ways, each one whole command from a cold interpreter:

- ``mpiexec -n R python grid.py proj isolate``: build the grid, ``mb.run(grid, folder)``
  (default mode: every split in its own forked process);
- the same with ``isolate=False``;
- ``python joblib_grid.py``: what a user writes instead: the same train/test index sets
  (from ``SameOtherSizesCV.split``), one ``joblib.Parallel(n_jobs=R-1)`` over every
  (task, learner, split), fit/predict/rmse, a DataFrame at the end (no file, no resume).

Systems take turns; median (range). On a machine with a GPU the network trains on it
(``device="auto"``) in all three.

Usage: python benchmarks/torch_grid.py [--ranks 3] [--repeat 3]
"""

from __future__ import annotations

import argparse
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

import peers

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

MPIBENCH = '''
import sys
sys.path.insert(0, sys.argv[3])
import os
os.environ["PYTHONPATH"] = sys.argv[3]
import mpibench as mb
from torch_mlp import soak_grid
sys.exit(mb.run(soak_grid(False), sys.argv[1], progress_every=0,
                isolate=sys.argv[2] == "isolate"))
'''

JOBLIB = '''
import sys
sys.path.insert(0, sys.argv[2])
import os
os.environ["PYTHONPATH"] = sys.argv[2]
import numpy as np
import pandas as pd
from joblib import Parallel, delayed
from sklearn.base import clone
from torch_mlp import soak_grid

def fit_score(task, name, learner, split):
    train, test = split
    model = clone(learner).set_params(**{k: 0 for k in learner.get_params()
                                         if k == "random_state"})
    X, y = np.asarray(task.X, dtype=float), np.asarray(task.y, dtype=float)
    model.fit(X[train], y[train])
    error = model.predict(X[test]) - y[test]
    return task.name, name, float(np.sqrt(np.mean(np.asarray(error) ** 2)))

grid = soak_grid(False)
splitter = next(iter(grid.resamplings.values()))
jobs = [(task, name, learner, (train, test))
        for task in grid.tasks for name, learner in grid.learners.items()
        for train, test in splitter.split(task.X, task.y, groups=task.groups,
                                          subset=task.subset)]
rows = Parallel(n_jobs=int(sys.argv[1]))(delayed(fit_score)(*job) for job in jobs)
print(pd.DataFrame(rows, columns=["task", "learner", "rmse"]).groupby("learner").size())
'''


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ranks", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    workers = args.ranks - 1
    with peers.scratch() as tmp:
        folder = Path(tmp)
        (folder / "grid.py").write_text(MPIBENCH)
        (folder / "joblib_grid.py").write_text(JOBLIB)
        mpiexec = [str(peers.BIN / "mpiexec"), "-n", str(args.ranks), sys.executable]
        commands = {
            "mpibench default (isolated)": [*mpiexec, "grid.py", "proj", "isolate",
                                            str(EXAMPLES)],
            "mpibench --no-isolate": [*mpiexec, "grid.py", "proj", "no", str(EXAMPLES)],
            f"joblib.Parallel(n_jobs={workers}) over every split": [
                sys.executable, "joblib_grid.py", str(workers), str(EXAMPLES)],
        }

        def fresh_run(command: list[str]) -> Callable[[], float]:
            return lambda: shutil.rmtree(folder / "proj", ignore_errors=True) or peers.timed(
                command, cwd=folder)

        walls = peers.take_turns({name: fresh_run(command)
                                  for name, command in commands.items()}, args.repeat)
    print(f"examples/torch_mlp.py's SOAK grid, 108 splits, {workers} workers: total wall "
          f"from a cold interpreter, median of {args.repeat} (range)\n")
    peers.print_walls(walls)


if __name__ == "__main__":
    main()
