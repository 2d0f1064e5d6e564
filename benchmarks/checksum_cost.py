"""What checking ``grid.h5`` against its checksums costs as a run opens the project.

One task of ``--gigabytes`` of float64 features (rows x 256 columns), a mean predictor,
KFold(2). Times ``create_project`` (which stamps a CRC-32 on every dataset), the check
alone (``verify_checksums``, cold and warm page cache not controlled: the file was just
written) and the start of a ``--no-isolate`` run with nothing to run besides the check.

Usage: python benchmarks/checksum_cost.py [--gigabytes 1.0] [--repeat 3]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from sklearn.model_selection import KFold

import mpibench as mb
from mpibench.store.checksums import verify_checksums


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gigabytes", type=float, default=1.0)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    n_rows = int(args.gigabytes * 2**30 / 8 / 256)
    X = np.random.default_rng(0).random((n_rows, 256))
    task = mb.Task("big", X=X, y=X[:, 0].copy())
    grid = mb.Grid([task], {"mean": mb.DebugLearner()}, [KFold(2)], scoring=["rmse"])
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        project = mb.create_project(Path(folder) / "p", grid)
        create = time.perf_counter() - start
        size = (project / "grid.h5").stat().st_size
        checks = []
        for _ in range(args.repeat):
            start = time.perf_counter()
            verify_checksums(project / "grid.h5", "")
            checks.append(time.perf_counter() - start)
    median = statistics.median(checks)
    print(f"grid.h5 {size / 2**30:.2f} GiB; create_project {create:.1f} s; "
          f"verify_checksums median {median:.2f} s ({min(checks):.2f}-{max(checks):.2f}), "
          f"{size / 2**30 / median:.1f} GiB/s")


if __name__ == "__main__":
    main()
