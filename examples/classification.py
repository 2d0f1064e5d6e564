"""Classification on a data set shipped with scikit-learn (iris), with plain K-fold CV.

Run: python examples/classification.py [FOLDER]   (or: mpiexec -n 3 python ...)
The project goes to FOLDER (default ``iris`` in the current directory): every rank
must name the same folder, so it is never a fresh temporary one.
"""

import sys
from pathlib import Path

from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import mpibench as mb

X, y = load_iris(return_X_y=True, as_frame=True)
task = mb.Task("iris", X=X, y=y.map(dict(enumerate(["setosa", "versicolor", "virginica"]))))
grid = mb.Grid(
    [task],
    {"logreg": make_pipeline(StandardScaler(), LogisticRegression()),
     "majority": mb.DebugLearner()},
    resamplings=[StratifiedKFold(5, shuffle=True)],
    scoring=["accuracy", "auc", "logloss"],
    seed=3,
)
folder = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("iris")
code = mb.run(grid, folder, progress_every=0)  # rank 0 creates it, every rank runs it

from mpi4py import MPI  # noqa: E402 - MPI is running now; ask which rank this is

if MPI.COMM_WORLD.rank == 0:
    results = mb.read_results(folder)
    means = results.groupby("learner", observed=True)[["accuracy", "auc", "logloss"]].mean()
    print(means.round(3))
    assert means.loc["logreg", "accuracy"] > means.loc["majority", "accuracy"]
sys.exit(code)
