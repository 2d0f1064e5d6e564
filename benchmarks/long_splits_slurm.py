"""Splits longer than a job's time: a PyTorch grid under a 2-minute SLURM limit, with
and without checkpoints (issue 25).

``examples/torch_mlp.py``'s network (784 -> 512 -> 256 -> 1, Adam, batches of 64) on
MNIST-shaped data (scikit-learn's 8x8 digits upsampled to 28x28 with noise, three
noisy copies: 5391 rows x 784 features, the digit as target; nothing downloaded), 4
folds, so each split trains on about 4000 rows for ``--epochs`` epochs (about 60-90 s
on one core of the 2-core VM). Each grid goes through ``mpibench sbatch --submit`` on
the local SLURM (``jobs/slurm-test-cluster.sh``) with ``--time 00:02:00``: the job ends
early (exit 3) and resubmits itself until the grid is done or ``--max-submissions``
jobs were used. The two chains run one after the other (never side by side: they
would share the 2 cores).

- ``checkpoints``: the network saves its state every ``--checkpoint-every`` seconds
  (and when the run stops) and resumes from it;
- ``none``: the same network without saves (a split starts over in every job).

Every epoch the network runs appends ``random_state epoch seconds`` to a log; work
lost = seconds of every epoch run - seconds of the epochs the results needed (the last
run of each epoch of a finished split; an unfinished split needed none yet).

Usage: python benchmarks/long_splits_slurm.py [--epochs 330] [--max-submissions 6]
       [--checkpoint-every 10] [--only checkpoints|none]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
sys.path.insert(0, str(EXAMPLES))


def mnist_shaped(copies: int = 3, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Digits upsampled to 28x28 (bilinear), plus Gaussian noise: rows x 784."""
    import torch
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = torch.from_numpy(digits.images.astype(np.float32))[:, None]
    big = torch.nn.functional.interpolate(images, size=(28, 28), mode="bilinear")
    X = big.reshape(len(images), -1).numpy()
    rng = np.random.default_rng(seed)
    X = np.concatenate([X + rng.normal(0, 0.5, X.shape).astype(np.float32)
                        for _ in range(copies)])
    return X, np.tile(digits.target, copies).astype(float)


def make_project(folder: Path, epochs: int, checkpoints: bool,
                 checkpoint_every: float) -> Path:
    from sklearn.model_selection import KFold
    from torch_mlp import TorchMLPRegressor

    import mpibench as mb

    X, y = mnist_shaped()
    network = TorchMLPRegressor(hidden=(512, 256), epochs=epochs, device="auto",
                                checkpoints=checkpoints, checkpoint_every=checkpoint_every,
                                epoch_log=str(folder.absolute() / "epochs.log"))
    grid = mb.Grid([mb.Task("digits784", X=X, y=y)], {"net": network},
                   resamplings=[KFold(4, shuffle=True, random_state=0)],
                   scoring=["rmse"],
                   learner_options={"net": {"checkpoints": True}} if checkpoints else None)
    return mb.create_project(folder, grid)


def run_chain(project: Path, max_submissions: int, limit_seconds: float) -> dict:
    """Submit the project's batch script and wait until its chain of jobs has ended."""
    name = f"mpibench-{project.name}"
    started = time.monotonic()
    subprocess.run([sys.executable, "-m", "mpibench", "sbatch", str(project), "--ntasks",
                    "3", "--time", "00:02:00", "--signal-seconds", "30", "--grace", "5",
                    "--max-submissions", str(max_submissions), "--submit"], check=True)
    while time.monotonic() - started < limit_seconds:
        queue = subprocess.run(["squeue", "-h", "-n", name], capture_output=True,
                               text=True, timeout=30).stdout
        if not queue.strip():
            break
        time.sleep(5)
    else:
        subprocess.run(["scancel", "-n", name], timeout=30)
        raise SystemExit(f"{project}: chain still running after {limit_seconds:.0f} s")
    return {"wall_seconds": time.monotonic() - started,
            "jobs": len(list(project.glob("slurm-*.out")))}


def work_lost(project: Path) -> dict:
    """Epoch seconds run, needed and lost, from the network's epoch log: a finished
    split needed the last run of each of its epochs (the one its model went on from);
    every other epoch run, and every epoch of an unfinished split, was lost."""
    import mpibench as mb

    log = [line.split() for line in (project / "epochs.log").read_text().splitlines()]
    results = mb.read_results(project) if (project / "results.h5").exists() else None
    done = set() if results is None else set(
        results.loc[results["status"] == "ok", "random_state"].astype(str))
    last: dict[tuple[str, str], float] = {}
    for seed, epoch, seconds in log:
        last[seed, epoch] = float(seconds)  # (a later run of an epoch replaces it)
    ran = sum(float(seconds) for _, _, seconds in log)
    needed = sum(s for (seed, _), s in last.items() if seed in done)
    per_split = [sum(s for (seed, _), s in last.items() if seed == d) for d in done]
    return {"splits_done": len(done), "epoch_seconds_run": round(ran, 1),
            "epoch_seconds_needed": round(needed, 1),
            "lost_seconds_per_split": round((ran - needed) / 4, 1),
            "median_epoch_seconds_per_split": round(float(np.median(per_split)), 1)
            if per_split else None,
            "median_fit_seconds": None if results is None or not done else round(float(
                results.loc[results["status"] == "ok", "fit_seconds"].median()), 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=330)
    parser.add_argument("--max-submissions", type=int, default=6)
    parser.add_argument("--checkpoint-every", type=float, default=10.0,
                        help="seconds between the network's saves (0: every epoch)")
    parser.add_argument("--only", choices=("checkpoints", "none"))
    parser.add_argument("--folder", default="long-splits-benchmark",
                        help="where the two projects go (replaced)")
    args = parser.parse_args()
    import os
    import shutil

    os.environ["PYTHONPATH"] = os.pathsep.join(  # the example's module, in every job
        p for p in (str(EXAMPLES), os.environ.get("PYTHONPATH")) if p)
    root = Path(args.folder)
    shutil.rmtree(root, ignore_errors=True)
    for mode in ("checkpoints", "none"):
        if args.only not in (None, mode):
            continue
        project = make_project(root / mode, args.epochs, mode == "checkpoints",
                               args.checkpoint_every)
        row = {"mode": mode, **run_chain(project, args.max_submissions,
                                         limit_seconds=args.max_submissions * 180 + 120)}
        row.update(work_lost(project))
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
