"""What a checkpoint inside a split costs, and what a stop or a kill loses with them.

``save``: median seconds of ``SplitCheckpoint.save`` (pickle, fsync, CRC-32, rename) of
a float64 state of ``--sizes`` MiB on this machine's disk, and that time as a share of
a minute (one checkpoint per minute).

``stop`` and ``kill``: 4 splits of ``Epochs(SlowEpoch(pause), epochs)`` (``pause``
seconds of CPU-free work per epoch, then one ``SGDRegressor.partial_fit``) under
``mpiexec -n 3 python -m mpibench run`` (default mode), with and without checkpoints:
an uninterrupted run; then a run stopped (``stop.request``) or SIGKILLed (the whole
launch) ``--after`` seconds in, and its resume. Reported: the split-seconds the ranks
spent (``busy_seconds`` of every worker, every run) against the uninterrupted run's,
and the largest ``fit_seconds`` of a resumed split against the uninterrupted split's
(the target: at most one epoch + 10 % more).

Usage: PYTHONPATH=benchmarks python benchmarks/checkpoint_cost.py [--sizes 1 100 1024]
       [--pause 1.0] [--epochs 8] [--after 5.5]
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.linear_model import SGDRegressor
from sklearn.model_selection import KFold

import mpibench as mb
from mpibench.checkpoint import SplitCheckpoint


class SlowEpoch(RegressorMixin, BaseEstimator):
    """``pause`` seconds of sleep, then ``SGDRegressor.partial_fit`` (one long epoch)."""

    def __init__(self, pause: float = 1.0, random_state: int | None = None) -> None:
        self.pause = pause
        self.random_state = random_state

    def partial_fit(self, X: np.ndarray, y: np.ndarray) -> SlowEpoch:
        time.sleep(self.pause)
        if not hasattr(self, "model_"):
            self.model_ = SGDRegressor(random_state=self.random_state)
        self.model_.partial_fit(X, y)
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self.model_.predict(X)


class NoCheckpoints(SlowEpoch):
    """The same epochs fitted in one ``fit``, without asking for a checkpoint."""

    def __init__(self, pause: float = 1.0, epochs: int = 8,
                 random_state: int | None = None) -> None:
        super().__init__(pause, random_state)
        self.epochs = epochs

    def fit(self, X: np.ndarray, y: np.ndarray) -> NoCheckpoints:
        for _ in range(self.epochs):
            self.partial_fit(X, y)
        return self


def save_cost(mebibytes: float, repeat: int = 3) -> float:
    """Median seconds of one save of a ``mebibytes`` MiB state."""
    state = np.random.default_rng(0).random(int(mebibytes * 2**20 / 8))
    times = []
    with tempfile.TemporaryDirectory(dir=".") as folder:
        checkpoint = SplitCheckpoint(Path(folder) / "1", stopping=lambda: False)
        for _ in range(repeat):
            start = time.perf_counter()
            checkpoint.save(state)
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def launch(project: Path) -> subprocess.Popen:
    mpiexec = str(Path(sys.executable).parent / "mpiexec")
    return subprocess.Popen([mpiexec, "-n", "3", sys.executable, "-m", "mpibench", "run",
                             str(project), "--progress-every", "0"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True, env=os.environ.copy())


def busy(project: Path) -> float:
    ranks = mb.read_ranks(project)
    return float(ranks.loc[ranks["rank"] > 0, "busy_seconds"].sum())


def cut_and_resume(project: Path, how: str, after: float) -> float:
    """Worker busy seconds of a run cut ``after`` seconds in (``how``) and its resume."""
    started = launch(project)
    time.sleep(after)
    if how == "stop":
        (project / "stop.request").write_text("benchmark\n")
    else:
        os.killpg(started.pid, signal.SIGKILL)
    started.communicate(timeout=120)
    time.sleep(1.0)  # (orphans of a killed launch end within a second)
    spent = busy(project) if how == "stop" else after * 2  # a kill writes no rank table
    done = launch(project)
    _, err = done.communicate(timeout=600)
    if done.returncode != 0:
        raise RuntimeError(err)
    return spent + busy(project)


def grid(learner: BaseEstimator) -> mb.Grid:
    rng = np.random.default_rng(1)
    X = rng.normal(size=(200, 3))
    task = mb.Task("t", X=X, y=X @ [1.0, -2.0, 0.5] + rng.normal(size=200) * 0.1)
    return mb.Grid([task], {"slow": learner}, [KFold(4)], scoring=["rmse"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=float, nargs="+", default=[1, 100, 1024])
    parser.add_argument("--pause", type=float, default=1.0)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--after", type=float, default=5.5)
    args = parser.parse_args()
    for size in args.sizes:
        seconds = save_cost(size)
        print(f"save {size:g} MiB: {seconds:.3f} s, {100 * seconds / 60:.2f} % of a minute")
    from checkpoint_cost import NoCheckpoints, SlowEpoch  # (the module's, not __main__'s)

    learners = {"checkpoints": mb.Epochs(SlowEpoch(args.pause), epochs=args.epochs),
                "none": NoCheckpoints(args.pause, args.epochs)}
    with tempfile.TemporaryDirectory() as folder:
        for name, learner in learners.items():
            whole = mb.create_project(Path(folder) / f"{name}-whole", grid(learner))
            done = launch(whole)
            done.communicate(timeout=600)
            base = busy(whole)
            split = mb.read_results(whole)["fit_seconds"].max()
            for how in ("stop", "kill"):
                cut = mb.create_project(Path(folder) / f"{name}-{how}", grid(learner))
                spent = cut_and_resume(cut, how, args.after)
                results = mb.read_results(cut).sort_values("job_id")
                equal = np.array_equal(results["rmse"],
                                       mb.read_results(whole).sort_values("job_id")["rmse"])
                print(f"{name:11s} {how}: split-seconds {spent:.1f} vs {base:.1f} "
                      f"uninterrupted ({100 * (spent / base - 1):+.0f} %); longest split "
                      f"fit_seconds {results['fit_seconds'].max():.2f} vs {split:.2f}; "
                      f"resumed {int((results['resumed_from'] > 0).sum())} of "
                      f"{len(results)}; scores equal: {equal}")


if __name__ == "__main__":
    main()
