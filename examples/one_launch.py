"""One script, one launch: build the grid and run it in the same program.

Run: mpiexec -n 4 python examples/one_launch.py [FOLDER]   (or without mpiexec: serially;
FOLDER defaults to ``linear`` in the current directory)

Every rank runs this script and builds the same grid; in ``mb.run(grid, folder)`` rank 0
creates the project (or checks that the one already there is this grid, and resumes
it) while the other ranks wait, then all of them run it. Each rank starts one Python
interpreter in all, instead of one to create the project and another to run it.
"""

import sys
from pathlib import Path

import numpy as np
from sklearn.linear_model import Ridge
from sklearn.model_selection import KFold
from sklearn.tree import DecisionTreeRegressor

import mpibench as mb

rng = np.random.default_rng(0)
X = rng.normal(size=(300, 5))
y = X @ rng.normal(size=5) + rng.normal(0, 0.1, 300)
grid = mb.Grid([mb.Task("linear", X=X, y=y)],
               {"ridge": Ridge(), "tree": DecisionTreeRegressor(max_depth=4)},
               resamplings=[KFold(5, shuffle=True)], scoring=["rmse", "r2"])

folder = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("linear")  # the same on every rank
code = mb.run(grid, folder, progress_every=0)  # 0 on every rank when every split is done

from mpi4py import MPI  # noqa: E402 - MPI is running now; ask which rank this is

if MPI.COMM_WORLD.rank == 0:
    results = mb.read_results(folder)
    print(results.groupby("learner", observed=True)[["rmse", "r2"]].mean().round(3))
    assert results.loc[results["learner"] == "ridge", "r2"].min() > 0.99
sys.exit(code)
