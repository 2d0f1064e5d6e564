"""Create a project folder from a Grid: validate, fingerprint, write ``grid.h5``."""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ._version import __version__
from .errors import MpibenchError
from .grid import check_importable, derive_seeds
from .store.gridfile import GridFile, write_grid_file
from .store.growing import (
    GridDigests,
    PartKeys,
    array_bytes,
    job_keys,
    merge_by_parts,
    merge_jobs,
    write_keys,
)
from .store.journal import JournalWriter
from .store.lock import describe_holder, holder_alive, read_holder
from .store.paths import ProjectPaths
from .store.reading import FINGERPRINT_PARTS


def fingerprint_parts(grid: Any, jobs: pd.DataFrame,
                      digests: GridDigests | None = None) -> dict[str, str]:
    """SHA-256 of each part of a grid (and its job table) that decides its results:
    the tasks' data, the splits (each split's metadata and rows, and the job table's
    keys), the learners' parameters, the scorers and the seed.

    Returns
    -------
    dict
        ``{"data", "splits", "learners", "scorers", "seed"}`` -> hex digest.
    """
    digests = digests or GridDigests(grid)
    data = hashlib.sha256()
    for task in grid.tasks:
        data.update(digests.names[f"task {task.name}"].encode())
    splits = hashlib.sha256()
    keys = jobs[["task_i", "learner_i", "resampling_i", "split_i"]]
    splits.update(pd.util.hash_pandas_object(keys, index=False).to_numpy().tobytes())
    for key, split_keys in sorted(digests.splits.items()):
        splits.update(repr(key).encode() + "".join(split_keys).encode())
    return {"data": data.hexdigest(), "splits": splits.hexdigest(),
            "learners": _learner_part(grid), "scorers": _scorer_part(grid),
            "seed": _seed_part(grid)}


def _learner_part(grid: Any) -> str:
    learners = hashlib.sha256()
    for name, estimator in grid.learners.items():
        params = sorted((k, repr(v)) for k, v in estimator.get_params(deep=True).items())
        learners.update(repr((name, type(estimator).__qualname__, params)).encode())
    if grid.fallback is not None:
        learners.update(repr(("fallback", grid.fallback)).encode())
    return learners.hexdigest()


def _legacy_fingerprint_parts(grid: Any, jobs: pd.DataFrame) -> dict[str, str]:
    """The parts as versions before content keys computed them (for their projects)."""
    data = hashlib.sha256()
    for task in grid.tasks:
        data.update(task.name.encode() + task.kind.encode())
        for values in (task.X, task.y, task.subset, task.groups, task.stratum, task.fold):
            data.update(array_bytes(values))
    splits = hashlib.sha256()
    keys = jobs[["task_i", "learner_i", "resampling_i", "split_i"]]
    splits.update(pd.util.hash_pandas_object(keys, index=False).to_numpy().tobytes())
    for key, split_set in sorted(grid._split_sets.items()):
        splits.update(repr(key).encode())
        splits.update(pd.util.hash_pandas_object(split_set.meta, index=False).to_numpy().tobytes())
        for array in split_set.train + split_set.test:
            splits.update(np.int64(len(array)).tobytes() + array.astype(np.int64).tobytes())
    return {"data": data.hexdigest(), "splits": splits.hexdigest(),
            "learners": _learner_part(grid), "scorers": _scorer_part(grid),
            "seed": _seed_part(grid)}


def _spec_id(spec: Any) -> str:
    if isinstance(spec, str):
        return spec
    return f"{getattr(spec, '__module__', '')}.{getattr(spec, '__qualname__', repr(spec))}"


def combine_fingerprint(parts: dict[str, str]) -> str:
    """One digest over all parts."""
    return hashlib.sha256(repr(sorted(parts.items())).encode()).hexdigest()


def validate_jobs(grid: Any, jobs: pd.DataFrame) -> None:
    """Refuse splits that cannot be fitted: empty sets, a class missing from training.

    Raises
    ------
    MpibenchError
        One line naming the first problem (and how many more), with the fix.
    """
    problems = []
    for (task_i, res_i), split_set in sorted(grid._split_sets.items()):
        task = grid.tasks[task_i]
        codes = classes = None
        if task.kind == "classification":
            classes, codes = np.unique(task.y.astype(str), return_inverse=True)
        for k, (train, test) in enumerate(zip(split_set.train, split_set.test, strict=True)):
            if len(train) == 0:
                problems.append(_where(grid, task_i, res_i, k) + " has an empty train set")
            elif len(test) == 0:
                problems.append(_where(grid, task_i, res_i, k) + " has an empty test set")
            elif codes is not None and classes is not None:
                seen = np.bincount(codes[train], minlength=len(classes))
                if not seen.all():
                    shown = [str(c) for c in classes[seen == 0][:5]]
                    problems.append(f"{_where(grid, task_i, res_i, k)}: train set lacks "
                                    f"class(es) {shown}")
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise MpibenchError(
            f"{problems[0]}{more}. Use fewer folds or sizes, stratify by the target and "
            "subset (Task(stratum=...)), or drop tiny subsets."
        )


def _where(grid: Any, task_i: int, res_i: int, k: int) -> str:
    """Which split a problem is in, for a message."""
    where = (f"task {grid.tasks[task_i].name!r}, resampling {list(grid.resamplings)[res_i]!r}, "
             f"split {k + 1}")
    row = grid._split_sets[(task_i, res_i)].meta.iloc[k]
    if row["train_subsets"]:
        where += f" (test_subset={row['test_subset']}, train={row['train_subsets']})"
    return where


def _priority(priority: Any, jobs: pd.DataFrame) -> np.ndarray:
    values = np.asarray(priority(jobs) if callable(priority) else priority, dtype=np.float64)
    if values.shape != (len(jobs),) or not np.isfinite(values).all():
        raise MpibenchError(
            f"priority must give one finite number per job ({len(jobs)}); got shape "
            f"{values.shape}. Return e.g. jobs['n_train'] or a boolean column."
        )
    return values


def create_project(path: str | os.PathLike, grid: Any, *,
                   select_jobs: Any = None, priority: Any = None) -> Path:
    """Validate ``grid`` and write ``PATH/grid.h5``, ready for ``mpibench run PATH``.

    Calling it again with an identical grid is a no-op. A grid that adds tasks,
    learners, resamplings or splits grows the project: every job it already holds keeps
    its id and its result (jobs are known by content: task data, learner parameters,
    split rows), and only the new jobs run next time. A grid that changes or drops a
    job the project holds (other data, learner parameters, splits, scorers or seed) is
    refused, naming what changed, so nothing computed is ever overwritten.

    Parameters
    ----------
    path : str or os.PathLike
        Project folder (created if missing).
    grid : Grid
        The experiment.
    select_jobs : callable, optional
        ``f(job_table) -> job_table``: keep (and order) a subset of the jobs; job ids
        are renumbered in the order returned. Selected projects skip the split checks
        (a test run reports such splits as ``invalid`` instead).
    priority : callable, optional
        ``f(job_table) -> numbers``, one per job: higher runs first, before the
        ``--order`` of the run (e.g. ``lambda jobs: jobs["learner"] == "forest"``).
        Stored as the job table's ``priority`` column; not part of the fingerprint.

    Returns
    -------
    pathlib.Path
        The project folder.

    Raises
    ------
    MpibenchError
        Bad grid, a grid that changes jobs of the project at ``path``, or a run active
        on it while it would grow.
    """
    paths = ProjectPaths(path)
    if paths.root.exists() and not paths.root.is_dir():
        raise MpibenchError(f"{paths.root} is a file, not a project folder. Name a new "
                            "folder (or an existing project) instead.")
    check_importable(grid)
    jobs = grid.job_table()
    if select_jobs is None:
        validate_jobs(grid, jobs)
    else:
        jobs = select_jobs(jobs).reset_index(drop=True)
        jobs["job_id"] = np.arange(len(jobs))
        jobs["random_state"] = derive_seeds(grid.seed, jobs["job_id"].to_numpy())
    everything = GridDigests(grid)
    digests = everything.names
    if paths.grid.exists():
        jobs, changed = _grown(paths, grid, jobs, everything)
        if not changed:
            return paths.root  # the same grid (or one the project already holds)
    elif paths.root.exists() and any(_without_dead_temporaries(paths)):
        raise MpibenchError(
            f"{paths.root} exists, is not empty and holds no grid.h5. Choose a new "
            "project folder or empty this one."
        )
    if priority is not None:
        jobs["priority"] = _priority(priority, jobs)
    parts = fingerprint_parts(grid, jobs, everything)
    attrs = {
        "fingerprint": combine_fingerprint(parts), "n_jobs": len(jobs), "seed": grid.seed,
        "mpibench_version": __version__, "created": time.time(),
        "name_digests": json.dumps(digests),
        **{f"fingerprint_{k}": v for k, v in parts.items()},
    }
    if paths.grid.exists():
        _journal_growth(paths, parts, attrs["fingerprint"])
    paths.root.mkdir(parents=True, exist_ok=True)
    write_grid_file(paths.grid, grid, jobs, attrs,
                    extra=lambda h5: write_keys(h5, grid, everything))
    return paths.root


def _grown(paths: ProjectPaths, grid: Any, jobs: pd.DataFrame,
           everything: GridDigests) -> tuple[pd.DataFrame, bool]:
    """The job table of ``grid`` with the project's job ids kept (new jobs after them),
    and whether it adds anything; refuses a grid that changes what the project holds."""
    grid_file = GridFile(paths.grid)
    existing = grid_file.attrs()
    stored = grid_file.part_keys()
    old = grid_file.job_table(columns=[
        "job_id", "task_i", "learner_i", "resampling_i", "split_i",
        *(["job_key"] if stored is None and "job_key" in grid_file.job_columns() else [])])
    if stored is None and "job_key" not in old:
        parts = _legacy_fingerprint_parts(grid, jobs)
        if existing.get("fingerprint") == combine_fingerprint(parts):
            return jobs, False
        changed = [k for k in FINGERPRINT_PARTS if existing.get(f"fingerprint_{k}") != parts[k]]
        raise MpibenchError(
            f"{paths.root} already holds a different project (changed: {', '.join(changed)}"
            "), made by a version of mpibench that cannot grow it. Create the new grid in "
            "another folder; the existing results are kept.")
    for part, now in (("scorers", _scorer_part(grid)), ("seed", _seed_part(grid))):
        if existing.get(f"fingerprint_{part}") != now:
            raise MpibenchError(
                f"{paths.root} holds a project with other {part}: every result would "
                "change. Create this grid in another folder; the existing results are kept.")
    old_digests = json.loads(existing.get("name_digests", "{}"))
    if stored is not None:
        merged, n_new = merge_by_parts(old, stored, jobs, PartKeys.of_grid(grid, everything),
                                       old_digests, everything.names)
    else:  # a project that keeps a content key per job
        keyed = jobs.assign(job_key=job_keys(grid, jobs, everything))
        merged, n_new = merge_jobs(old, keyed, old_digests, everything.names)
        merged = merged.drop(columns="job_key")
    if n_new == 0:
        return merged, False
    holder = _live_run(paths)
    if holder:
        raise MpibenchError(f"A run is active on {paths.root} ({holder}): grow the project "
                            "when it has ended.")
    if paths.results.exists() and not (paths.journal.exists() and paths.journal.stat().st_size):
        raise MpibenchError(
            f"{paths.results} has no journal beside it: run `mpibench run {paths.root}` "
            "once (it rebuilds the journal), then grow the project.")
    merged["random_state"] = derive_seeds(grid.seed, merged["job_id"].to_numpy())
    return merged, True


def _journal_growth(paths: ProjectPaths, parts: dict, fingerprint: str) -> None:
    """Tell the journal (if any) the project's new fingerprint, before ``grid.h5`` is
    replaced (a crash between the two: create the project again with the same grid)."""
    if paths.journal.exists() and paths.journal.stat().st_size:
        writer = JournalWriter(paths.journal, {})
        writer.grew(parts, fingerprint)
        writer.close()


def _without_dead_temporaries(paths: ProjectPaths) -> list[Path]:
    """The entries of the project folder once temporary files of dead processes (left
    by a killed ``create_project``) are removed."""
    for leftover in paths.dead_temporaries():
        leftover.unlink(missing_ok=True)
    return list(paths.root.iterdir())


def _live_run(paths: ProjectPaths) -> str:
    """Who holds ``run.lock`` if that process may be alive ('' otherwise)."""
    holder = read_holder(paths.lock)
    if holder is None or holder_alive(holder) is False:
        return ""
    return describe_holder(holder)


def _scorer_part(grid: Any) -> str:
    return hashlib.sha256(repr([(s.name, s.kind, _spec_id(s.spec)) for s in grid.scorers])
                          .encode()).hexdigest()


def _seed_part(grid: Any) -> str:
    return hashlib.sha256(str(grid.seed).encode()).hexdigest()
