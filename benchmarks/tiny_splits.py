"""Tiny real splits: a mean predictor scored by rmse, many times.

A mean predictor on 100 train rows and 25 test rows (``ShuffleSplit``), ``rmse``:
mpibench's ``DebugLearner()`` (the mean, no validation) and scikit-learn's
``DummyRegressor`` (whose fit validates its input and parameters: about 150 us);
``mpiexec -n 3 mpibench run`` (two workers), ``--no-isolate`` and default mode. Reports
the makespan per split (first start to last end in ``results.h5``, over splits) and
the median time of one split's stages (fit, predict, score).

Usage: python benchmarks/tiny_splits.py [--splits 20000] [--ranks 3] [--repeat 3]
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import numpy as np
import peers
from sklearn.dummy import DummyRegressor
from sklearn.model_selection import ShuffleSplit

import mpibench as mb

LEARNERS = {"DebugLearner()": mb.DebugLearner(), "DummyRegressor()": DummyRegressor()}


def project(folder: Path, n_splits: int, learner: str) -> Path:
    rng = np.random.default_rng(0)
    task = mb.Task("t", X=rng.normal(size=(125, 3)), y=rng.normal(size=125))
    grid = mb.Grid([task], {"mean": LEARNERS[learner]},
                   resamplings=[ShuffleSplit(n_splits, train_size=100, test_size=25)],
                   scoring=["rmse"])
    return mb.create_project(folder / learner.strip("()"), grid)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--splits", type=int, default=20000)
    parser.add_argument("--ranks", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    modes = {"--no-isolate": ("--no-isolate",), "default (isolated)": ()}
    cases = [(learner, mode) for learner in LEARNERS for mode in modes]
    spans: dict[tuple, list[float]] = {case: [] for case in cases}
    stages: dict[tuple, tuple[float, float, float]] = {}
    with peers.scratch() as tmp:
        paths = {learner: project(Path(tmp), args.splits, learner) for learner in LEARNERS}
        for _ in range(args.repeat):
            for learner, mode in cases:
                peers.mpibench_run(paths[learner], args.ranks, "--progress-every", "0",
                                   *modes[mode], fresh=True)
                done = mb.read_results(paths[learner])
                spans[learner, mode].append(
                    (done["end_time"].max() - done["start_time"].min()) / len(done))
                stages[learner, mode] = tuple(float(done[c].median()) for c in (
                    "fit_seconds", "predict_seconds", "score_seconds"))
    print(f"{args.splits} splits of a mean predictor (100 train rows, rmse), mpiexec -n "
          f"{args.ranks}; median of {args.repeat} (range)\n")
    print("| learner | mode | makespan per split (us) | median fit / predict / score (us) |")
    print("|---|---|---|---|")
    for (learner, mode), values in spans.items():
        fit, predict, score = (1e6 * s for s in stages[learner, mode])
        print(f"| {learner} | {mode} | {statistics.median(values) * 1e6:.1f} "
              f"({min(values) * 1e6:.1f}-{max(values) * 1e6:.1f}) | "
              f"{fit:.1f} / {predict:.1f} / {score:.1f} |")


if __name__ == "__main__":
    main()
