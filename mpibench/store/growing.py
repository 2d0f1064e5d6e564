"""Growing a project: a grid that adds tasks, learners, resamplings or splits keeps
every result whose job is unchanged.

A job is known by its content, not by its position in the grid: its key hashes its
task (name, kind, data and roles), its learner (name, class, parameters) and its split
(resampling name, metadata, train and test rows). Job ids are stable: jobs already in
the project keep theirs (so their results, seeds and journal records stay valid) and
new jobs get the next ids. A job of the project that the new grid lacks means that
something changed or was removed: refused, naming what.
"""

from __future__ import annotations

import hashlib
import json
import pickle
from typing import Any

import numpy as np
import pandas as pd

from ..errors import MpibenchError


def _digest(*parts: bytes) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(np.int64(len(part)).tobytes() + part)
    return digest.hexdigest()[:32]


def array_bytes(values: Any) -> bytes:
    """The bytes a task's array, Series or DataFrame is hashed by (None included), for
    the project fingerprint and job keys alike."""
    if values is None:
        return b"<none>"
    if isinstance(values, pd.DataFrame | pd.Series):
        columns = [str(c) for c in getattr(values, "columns", [])]
        return pickle.dumps(columns) + pd.util.hash_pandas_object(
            values, index=False).to_numpy().tobytes()
    array = np.asarray(values)
    if array.dtype.kind in "fiub":
        return (str(array.dtype) + str(array.shape)).encode() + np.ascontiguousarray(
            array).tobytes()
    return pickle.dumps([str(v) for v in array.ravel()])


def name_digests(grid: Any) -> dict[str, str]:
    """``{"task NAME": digest, "learner NAME": digest, "resampling NAME/TASK": digest}``:
    what each named part of the grid holds, to say what changed."""
    out = {}
    for task in grid.tasks:
        out[f"task {task.name}"] = _digest(task.name.encode(), task.kind.encode(), *(
            array_bytes(v) for v in (task.X, task.y, task.subset, task.groups,
                                      task.stratum, task.fold)))
    for name, estimator in grid.learners.items():
        params = sorted((k, repr(v)) for k, v in estimator.get_params(deep=True).items())
        out[f"learner {name}"] = _digest(
            repr((name, type(estimator).__qualname__, params)).encode())
    names = list(grid.resamplings)
    for (task_i, res_i), split_set in sorted(grid._split_sets.items()):
        keys = [_split_key(split_set, k) for k in range(len(split_set.train))]
        out[f"resampling {names[res_i]} on task {grid.tasks[task_i].name}"] = _digest(
            *(k.encode() for k in keys))
    return out


def _split_key(split_set: Any, k: int) -> str:
    meta = split_set.meta.iloc[k].drop(labels=["iteration"], errors="ignore")
    return _digest(json.dumps({str(c): str(v) for c, v in meta.items()}).encode(),
                   split_set.train[k].astype(np.int64).tobytes(), b"|",
                   split_set.test[k].astype(np.int64).tobytes())


def job_keys(grid: Any, jobs: pd.DataFrame) -> np.ndarray:
    """The content key of every job of ``jobs`` (a job table of ``grid``)."""
    digests = name_digests(grid)
    task_keys = [digests[f"task {t.name}"] for t in grid.tasks]
    learner_keys = [digests[f"learner {n}"] for n in grid.learners]
    resampling_names = list(grid.resamplings)
    split_keys: dict[tuple[int, int, int], str] = {}
    keys = []
    for task_i, learner_i, res_i, split_i in jobs[
            ["task_i", "learner_i", "resampling_i", "split_i"]].itertuples(index=False):
        where = (task_i, res_i, split_i)
        if where not in split_keys:
            split_keys[where] = _split_key(grid._split_sets[(task_i, res_i)], split_i)
        keys.append(_digest(task_keys[task_i].encode(), learner_keys[learner_i].encode(),
                            resampling_names[res_i].encode(), split_keys[where].encode()))
    return np.array(keys, dtype=object)


def merge_jobs(old: pd.DataFrame, new: pd.DataFrame, old_digests: dict,
               new_digests: dict) -> tuple[pd.DataFrame, int]:
    """The grown job table: ``new``'s rows, old jobs with their old ids, new jobs after
    them (in ``new``'s order), sorted by id. Returns it and the number of new jobs.

    Raises
    ------
    MpibenchError
        A job of ``old`` is not in ``new``: one line naming what changed or went.
    """
    old_ids = dict(zip(old["job_key"], old["job_id"], strict=True))
    missing = set(old_ids) - set(new["job_key"])
    if missing:
        raise MpibenchError(_what_changed(old, missing, old_digests, new_digests))
    known = new["job_key"].map(old_ids)
    n_new = int(known.isna().sum())
    ids = known.to_numpy(dtype=np.float64, copy=True)
    ids[np.isnan(ids)] = np.arange(len(old), len(old) + n_new)
    merged = new.assign(job_id=ids.astype(np.int64)).sort_values("job_id", ignore_index=True)
    if not np.array_equal(merged["job_id"].to_numpy(), np.arange(len(merged))):
        raise MpibenchError("The grid holds the same job twice (two identical learners "
                            "or splits under one name); make each job distinct.")
    return merged, n_new


def _what_changed(old: pd.DataFrame, missing: set, old_digests: dict,
                  new_digests: dict) -> str:
    rows = old[old["job_key"].isin(missing)]
    changed = [name for name, digest in old_digests.items()
               if name in new_digests and new_digests[name] != digest]
    gone = [name for name in old_digests if name not in new_digests]
    what = "; ".join(filter(None, [
        f"changed: {', '.join(changed)}" if changed else "",
        f"no longer in the grid: {', '.join(gone)}" if gone else ""])) or "jobs differ"
    return (f"The grid changes {len(rows)} job(s) the project already holds ({what}). "
            "A project only grows (new tasks, learners, resamplings or splits); create "
            "a grid with changed jobs in a new folder. Nothing was modified.")
