"""Classification on a data set shipped with scikit-learn (iris), with plain K-fold CV.

Run: python examples/classification.py   (or under mpiexec -n 3)
"""

import tempfile
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
project = mb.create_project(Path(tempfile.mkdtemp()) / "iris", grid)
assert mb.run(project, progress_every=0) == 0
results = mb.read_results(project)
means = results.groupby("learner", observed=True)[["accuracy", "auc", "logloss"]].mean()
print(means.round(3))
assert means.loc["logreg", "accuracy"] > means.loc["majority", "accuracy"]
