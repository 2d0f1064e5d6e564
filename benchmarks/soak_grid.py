"""The seed system's kind of grid, cold start to finish: SOAK on three small data sets.

Three regression tasks of 80, 100 and 124 rows (``x ~ U(-2, 2)``, ``y = x^2 + e``),
subsets (2, 2 and 3 of them, whole groups of 2 rows), featureless and tree learners,
``SameOtherSizesCV(folds=3, sizes=0)``, rmse: 186 splits, two workers. Each system is
one whole command from a cold interpreter: ``mpiexec -n 3 python soak.py`` whose script
builds the grid and calls ``mb.run(grid, folder)`` (default mode and
``isolate=False``). The R package mlr3resampling ran a grid of this kind (192 splits,
``proj_*`` with future, 2 workers) in 4.4-5.6 s, median 4.5 s, on the same kind of
machine (issue 13); R is not installed here, so that figure is quoted, not rerun.

Usage: python benchmarks/soak_grid.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

import peers

SCRIPT = '''
import sys
import numpy as np
import pandas as pd
from sklearn.dummy import DummyRegressor
from sklearn.tree import DecisionTreeRegressor
import mpibench as mb

rng = np.random.default_rng(1)

def task(n, n_subsets):
    x = rng.uniform(-2, 2, n)
    groups = np.arange(n) // 2
    subset = np.array([f"s{g % n_subsets}" for g in groups])
    return mb.Task(f"n{n}", X=pd.DataFrame({"x": x}), y=x ** 2 + rng.normal(0, 0.5, n),
                   subset=subset, groups=groups)

grid = mb.Grid([task(80, 2), task(100, 2), task(124, 3)],
               {"featureless": DummyRegressor(), "rpart": DecisionTreeRegressor()},
               resamplings=[mb.SameOtherSizesCV(folds=3, sizes=0)], scoring=["rmse"])
sys.exit(mb.run(grid, sys.argv[1], progress_every=0, isolate=sys.argv[2] == "isolate"))
'''


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with peers.scratch() as tmp:
        folder = Path(tmp)
        (folder / "soak.py").write_text(SCRIPT)

        def one_launch(mode: str) -> Callable[[], float]:
            return lambda: shutil.rmtree(folder / "proj", ignore_errors=True) or peers.timed(
                [str(peers.BIN / "mpiexec"), "-n", "3", sys.executable, "soak.py", "proj",
                 mode], cwd=folder)

        walls = peers.take_turns({
            "mpibench default (isolated), one launch": one_launch("isolate"),
            "mpibench --no-isolate, one launch": one_launch("no")}, args.repeat)
    print(f"SOAK grid, 186 splits, mpiexec -n 3 python soak.py (grid, create, run): "
          f"total wall from a cold interpreter, median of {args.repeat} (range)\n")
    peers.print_walls(walls)
    print("| mlr3resampling (R, 192 splits; quoted from issue 13) | 4.5 (4.4-5.6) |")


if __name__ == "__main__":
    main()
