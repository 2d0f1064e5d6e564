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


def _framed(part: bytes) -> bytes:
    """A part as :func:`_digest` frames it: its length (int64), then its bytes."""
    return np.int64(len(part)).tobytes() + part


class GridDigests:
    """What each named part of a grid holds, and the content key of every split.

    Attributes
    ----------
    names : dict
        ``{"task NAME": digest, "learner NAME": digest, "resampling NAME on task
        TASK": digest}``, to say what changed.
    splits : dict
        ``{(task_i, resampling_i): [split key, ...]}``.
    """

    def __init__(self, grid: Any) -> None:
        self.names: dict[str, str] = {}
        for task in grid.tasks:
            self.names[f"task {task.name}"] = _digest(
                task.name.encode(), task.kind.encode(),
                *(array_bytes(v) for v in (task.X, task.y, task.subset, task.groups,
                                           task.stratum, task.fold)))
        for name, estimator in grid.learners.items():
            params = sorted((k, repr(v)) for k, v in estimator.get_params(deep=True).items())
            self.names[f"learner {name}"] = _digest(
                repr((name, type(estimator).__qualname__, params)).encode())
        resampling_names = list(grid.resamplings)
        self.splits: dict[tuple[int, int], list[str]] = {}
        for (task_i, res_i), split_set in sorted(grid._split_sets.items()):
            keys = split_keys(split_set)
            self.splits[(task_i, res_i)] = keys
            where = f"resampling {resampling_names[res_i]} on task {grid.tasks[task_i].name}"
            self.names[where] = _digest(*(k.encode() for k in keys))


def name_digests(grid: Any) -> dict[str, str]:
    """``{"task NAME": digest, "learner NAME": digest, "resampling NAME/TASK": digest}``:
    what each named part of the grid holds, to say what changed."""
    return GridDigests(grid).names


def split_keys(split_set: Any) -> list[str]:
    """The content key of every split of one (task, resampling): its metadata (all but
    ``iteration``) and its train and test rows."""
    names = [name for name in split_set.columns if name != "iteration"]
    texts = [[str(v) for v in np.asarray(split_set.columns[name]).tolist()]
             if isinstance(split_set.columns[name], np.ndarray)
             else [str(v) for v in split_set.columns[name]] for name in names]
    return [_digest(json.dumps(dict(zip(names, row, strict=True))).encode(),
                    train.astype(np.int64).tobytes(), b"|", test.astype(np.int64).tobytes())
            for row, train, test in zip(zip(*texts, strict=True), split_set.train,
                                        split_set.test, strict=True)]


def job_keys(grid: Any, jobs: pd.DataFrame, digests: GridDigests | None = None
             ) -> np.ndarray:
    """The content key of every job of ``jobs`` (a job table of ``grid``), as 32 ASCII
    bytes each: a digest of its task's, learner's and split's keys and its resampling's
    name (one hash per job, no other per-job work)."""
    digests = digests or GridDigests(grid)
    tasks = [_framed(digests.names[f"task {t.name}"].encode()) for t in grid.tasks]
    learners = [_framed(digests.names[f"learner {n}"].encode()) for n in grid.learners]
    resamplings = [_framed(name.encode()) for name in grid.resamplings]
    splits = {key: [_framed(k.encode()) for k in keys]
              for key, keys in digests.splits.items()}
    sha256 = hashlib.sha256
    columns = (jobs[c].to_numpy().tolist() for c in
               ("task_i", "learner_i", "resampling_i", "split_i"))
    keys = [sha256(tasks[t] + learners[lr] + resamplings[r] + splits[(t, r)][k]
                   ).hexdigest()[:32] for t, lr, r, k in zip(*columns, strict=True)]
    return np.asarray(keys, dtype="S32")


def merge_jobs(old: pd.DataFrame, new: pd.DataFrame, old_digests: dict,
               new_digests: dict) -> tuple[pd.DataFrame, int]:
    """The grown job table: ``new``'s rows, old jobs with their old ids, new jobs after
    them (in ``new``'s order), sorted by id. Returns it and the number of new jobs.

    Raises
    ------
    MpibenchError
        A job of ``old`` is not in ``new``: one line naming what changed or went.
    """
    old_keys = np.asarray(old["job_key"].to_numpy(), dtype="S32")  # (text in older files)
    old_ids = dict(zip(old_keys.tolist(), old["job_id"].tolist(), strict=True))
    missing = set(old_ids) - set(np.asarray(new["job_key"].to_numpy(), dtype="S32").tolist())
    if missing:
        raise MpibenchError(_what_changed(len(missing), old_digests, new_digests))
    known = new["job_key"].map(old_ids)
    n_new = int(known.isna().sum())
    ids = known.to_numpy(dtype=np.float64, copy=True)
    ids[np.isnan(ids)] = np.arange(len(old), len(old) + n_new)
    merged = new.assign(job_id=ids.astype(np.int64)).sort_values("job_id", ignore_index=True)
    if not np.array_equal(merged["job_id"].to_numpy(), np.arange(len(merged))):
        raise MpibenchError("The grid holds the same job twice (two identical learners "
                            "or splits under one name); make each job distinct.")
    return merged, n_new


def _what_changed(n_missing: int, old_digests: dict, new_digests: dict) -> str:
    changed = [name for name, digest in old_digests.items()
               if name in new_digests and new_digests[name] != digest]
    gone = [name for name in old_digests if name not in new_digests]
    what = "; ".join(filter(None, [
        f"changed: {', '.join(changed)}" if changed else "",
        f"no longer in the grid: {', '.join(gone)}" if gone else ""])) or "jobs differ"
    return (f"The grid changes {n_missing} job(s) the project already holds ({what}). "
            "A project only grows (new tasks, learners, resamplings or splits); create "
            "a grid with changed jobs in a new folder. Nothing was modified.")


def write_keys(h5: Any, grid: Any, digests: GridDigests) -> None:
    """``/keys``: the content key of every task, learner and split (and the resampling
    names), from which a job's identity follows; growing the project maps jobs by these
    parts, with no per-job hashing."""
    keys = h5.create_group("keys")
    keys.create_dataset("task", data=np.asarray(
        [digests.names[f"task {t.name}"] for t in grid.tasks], dtype="S32"))
    keys.create_dataset("learner", data=np.asarray(
        [digests.names[f"learner {n}"] for n in grid.learners], dtype="S32"))
    keys.create_dataset("resampling", data=np.asarray(list(grid.resamplings), dtype=object),
                        dtype=h5py_string())
    pairs = sorted(digests.splits)
    starts = np.cumsum([0] + [len(digests.splits[p]) for p in pairs])[:-1]
    keys.create_dataset("split_pairs", data=np.asarray(
        [[t, r, s] for (t, r), s in zip(pairs, starts.tolist(), strict=True)],
        dtype=np.int64).reshape(-1, 3))
    keys.create_dataset("split", data=np.asarray(
        [k for p in pairs for k in digests.splits[p]], dtype="S32"))


def h5py_string() -> Any:
    import h5py

    return h5py.string_dtype()


class PartKeys:
    """The part keys of a grid: task, learner, resampling name and split keys, indexed
    as its job table indexes them."""

    def __init__(self, tasks: list[bytes], learners: list[bytes], resamplings: list[str],
                 splits: dict[tuple[int, int], list[bytes]]) -> None:
        self.tasks, self.learners, self.resamplings = tasks, learners, resamplings
        self.splits = splits

    @classmethod
    def of_grid(cls, grid: Any, digests: GridDigests) -> PartKeys:
        return cls([digests.names[f"task {t.name}"].encode() for t in grid.tasks],
                   [digests.names[f"learner {n}"].encode() for n in grid.learners],
                   list(grid.resamplings),
                   {p: [k.encode() for k in keys] for p, keys in digests.splits.items()})

    @classmethod
    def stored(cls, keys: Any) -> PartKeys:
        """From the ``/keys`` group of a ``grid.h5``."""
        flat = keys["split"][()].tolist()
        pairs = keys["split_pairs"][()].tolist()
        ends = [s for _, _, s in pairs[1:]] + [len(flat)]
        return cls(keys["task"][()].tolist(), keys["learner"][()].tolist(),
                   [str(n) for n in keys["resampling"].asstr()[()]],
                   {(t, r): flat[s:e] for (t, r, s), e in zip(pairs, ends, strict=True)})


def merge_by_parts(old: pd.DataFrame, old_keys: PartKeys, new: pd.DataFrame,
                   new_keys: PartKeys, old_digests: dict, new_digests: dict
                   ) -> tuple[pd.DataFrame, int]:
    """:func:`merge_jobs` by part keys: each job of ``new`` is mapped to the job of
    ``old`` with the same task, learner, resampling name and split content (O(jobs) in
    numpy; only the parts are compared one by one).

    Raises
    ------
    MpibenchError
        A job of ``old`` is not in ``new`` (one line naming what changed or went), or
        two jobs of ``new`` are one job of ``old``.
    """
    def index_map(new_parts: list, old_parts: list) -> np.ndarray:
        where = {key: i for i, key in enumerate(old_parts)}
        return np.asarray([where.get(key, -1) for key in new_parts], dtype=np.int64)

    tasks = index_map(new_keys.tasks, old_keys.tasks)
    learners = index_map(new_keys.learners, old_keys.learners)
    resamplings = index_map(new_keys.resamplings, old_keys.resamplings)
    old_split = {(t, r, key): s for (t, r), keys in old_keys.splits.items()
                 for s, key in enumerate(keys)}
    n_res = max(len(new_keys.resamplings), 1)
    first = np.zeros(len(new_keys.tasks) * n_res + 1, dtype=np.int64)
    flat: list[int] = []
    for (t, r), keys in sorted(new_keys.splits.items()):
        first[t * n_res + r] = len(flat)
        flat += [old_split.get((int(tasks[t]), int(resamplings[r]), key), -1) for key in keys]
    columns = [new[c].to_numpy() for c in ("task_i", "learner_i", "resampling_i", "split_i")]
    mapped = np.column_stack([
        tasks[columns[0]], learners[columns[1]], resamplings[columns[2]],
        np.asarray([*flat, -1], dtype=np.int64)[first[columns[0] * n_res + columns[2]]
                                                + columns[3]]])
    valid = (mapped >= 0).all(axis=1)
    shape = [len(old_keys.tasks), len(old_keys.learners), len(old_keys.resamplings),
             int(old["split_i"].max()) + 1 if len(old) else 1]
    old_codes = np.ravel_multi_index(tuple(old[c].to_numpy() for c in (
        "task_i", "learner_i", "resampling_i", "split_i")), shape)
    order = np.argsort(old_codes)
    codes = np.full(len(new), -1, dtype=np.int64)
    codes[valid] = np.ravel_multi_index(tuple(mapped[valid].T), shape)
    at = np.clip(np.searchsorted(old_codes[order], codes), 0, max(len(old) - 1, 0))
    found = valid & (old_codes[order][at] == codes) if len(old) else np.zeros(len(new), bool)
    ids = np.full(len(new), -1, dtype=np.int64)
    ids[found] = old["job_id"].to_numpy()[order][at[found]]
    hits = np.bincount(ids[found], minlength=len(old))
    if hits.max(initial=0) > 1:
        raise MpibenchError("The grid holds the same job twice (two identical learners "
                            "or splits under one name); make each job distinct.")
    if (hits == 0).any():
        raise MpibenchError(_what_changed(int((hits == 0).sum()), old_digests, new_digests))
    n_new = int((~found).sum())
    ids[~found] = np.arange(len(old), len(old) + n_new)
    merged = new.assign(job_id=ids).sort_values("job_id", ignore_index=True)
    return merged, n_new
