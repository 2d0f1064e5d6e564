"""A CPU-bound scikit-learn grid, run by mpibench and by what users would write instead.

Six classifiers (logistic regression, tree, k-NN, SVC, random forest and gradient
boosting: fits of about 0.05 to 1 s) x KFold(8) on 1500 rows x 20 features: 48 splits.
Every system runs from a cold interpreter and is timed as a whole (imports, data,
project creation, fits, results), with P workers:

- mpibench, one launch: ``mpiexec -n P+1 python experiment.py``, where the script
  builds the grid and calls ``mb.run(grid, folder)`` (default mode, and
  ``isolate=False``);
- mpibench, two commands: ``python create.py`` then ``mpiexec -n P+1 mpibench run``;
- ``joblib.Parallel(n_jobs=P)`` over every (learner, fold) pair;
- a loop of ``cross_validate(learner, X, y, cv=KFold(8), n_jobs=P)`` over the learners.

Usage: python benchmarks/sklearn_grid.py [--workers 2] [--repeat 3]
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import peers

GRID = '''
import numpy as np
from sklearn.datasets import make_classification
from sklearn.ensemble import GradientBoostingClassifier, RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import KFold
from sklearn.neighbors import KNeighborsClassifier
from sklearn.svm import SVC
from sklearn.tree import DecisionTreeClassifier

X, y = make_classification(1500, 20, n_informative=10, random_state=0)
LEARNERS = {"logreg": LogisticRegression(max_iter=1000), "tree": DecisionTreeClassifier(),
            "knn": KNeighborsClassifier(), "svc": SVC(),
            "forest": RandomForestClassifier(100), "boosting": GradientBoostingClassifier()}
CV = KFold(8, shuffle=True, random_state=0)
'''

SCRIPTS = {
    "experiment.py": '''
import sys
import mpibench as mb
from grid import CV, LEARNERS, X, y
grid = mb.Grid([mb.Task("t", X=X, y=y)], LEARNERS, resamplings=[CV], scoring=["accuracy"])
sys.exit(mb.run(grid, sys.argv[1], progress_every=0, isolate=sys.argv[2] == "isolate"))
''',
    "create.py": '''
import sys
import mpibench as mb
from grid import CV, LEARNERS, X, y
grid = mb.Grid([mb.Task("t", X=X, y=y)], LEARNERS, resamplings=[CV], scoring=["accuracy"])
mb.create_project(sys.argv[1], grid)
''',
    "joblib_grid.py": '''
import sys
from joblib import Parallel, delayed
from sklearn.base import clone
from sklearn.metrics import accuracy_score
from grid import CV, LEARNERS, X, y

def split(learner, train, test):
    model = clone(learner).fit(X[train], y[train])
    return accuracy_score(y[test], model.predict(X[test]))

scores = Parallel(n_jobs=int(sys.argv[1]))(
    delayed(split)(learner, train, test) for learner in LEARNERS.values()
    for train, test in CV.split(X, y))
print(len(scores))
''',
    "cv_loop.py": '''
import sys
from sklearn.model_selection import cross_validate
from grid import CV, LEARNERS, X, y
for learner in LEARNERS.values():
    cross_validate(learner, X, y, cv=CV, scoring="accuracy", n_jobs=int(sys.argv[1]))
''',
}


def systems(workers: int, folder: Path) -> dict[str, object]:
    mpiexec = [str(peers.BIN / "mpiexec"), "-n", str(workers + 1)]
    python = sys.executable
    project = str(folder / "proj")

    def fresh() -> None:
        shutil.rmtree(project, ignore_errors=True)

    return {
        "mpibench default, one launch": lambda: fresh() or peers.timed(
            [*mpiexec, python, "experiment.py", project, "isolate"], cwd=folder),
        "mpibench default, two commands": lambda: fresh() or peers.timed(
            [python, "create.py", project],
            [*mpiexec, python, "-m", "mpibench", "run", project, "--progress-every", "0"],
            cwd=folder),
        "mpibench --no-isolate, one launch": lambda: fresh() or peers.timed(
            [*mpiexec, python, "experiment.py", project, "no"], cwd=folder),
        f"joblib.Parallel(n_jobs={workers}) over (learner, fold)": lambda: peers.timed(
            [python, "joblib_grid.py", str(workers)], cwd=folder),
        f"cross_validate(n_jobs={workers}) per learner": lambda: peers.timed(
            [python, "cv_loop.py", str(workers)], cwd=folder),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with peers.scripts_folder(GRID, SCRIPTS) as folder:
        walls = peers.take_turns(systems(args.workers, folder), args.repeat)
    print(f"6 classifiers x KFold(8), 1500 rows: 48 splits, P = {args.workers} workers; "
          f"total wall from a cold interpreter, median of {args.repeat} (range)\n")
    peers.print_walls(walls)


if __name__ == "__main__":
    main()
