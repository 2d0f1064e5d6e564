"""Grid definition: tasks x learners x resamplings, expanded into one job per split."""

from __future__ import annotations

import io
import pickle
import warnings
from collections import Counter
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import clone

from .constraints import Rule, check, integer
from .epochs import Epochs
from .errors import MpibenchError, invalid_parameter
from .limits import FALLBACKS, LearnerOptions
from .scorers import CLASSIFICATION_SCORERS, REGRESSION_SCORERS, Scorer, resolve_scoring
from .seeds import derive_seed, derive_seeds, name_key
from .splitsets import META_COLUMNS, SplitSet, expand_splits
from .splitters import SameOtherSizesCV

KINDS = ("regression", "classification")


class Task:
    """A data set: features, target, and the columns that drive resampling.

    Parameters
    ----------
    name : str
        Unique task name.
    X : pandas.DataFrame or array-like of shape (n_rows, n_features)
        Features.
    y : array-like of shape (n_rows,)
        Target.
    subset, groups, stratum, fold : array-like of shape (n_rows,), optional
        SOAK subset, groups kept whole in a split, strata for fold balance (a DataFrame
        gives one stratum per combination), and a fixed fold id per row.
    kind : {"regression", "classification"}, optional
        Inferred when omitted: a float target is regression, anything else is
        classification.

    Examples
    --------
    >>> import numpy as np
    >>> Task("toy", X=np.zeros((4, 1)), y=np.array([0.0, 1.0, 2.0, 3.0])).kind
    'regression'
    """

    def __init__(
        self, name: str, X: Any, y: Any, *, subset: Any = None,
        groups: Any = None, stratum: Any = None, fold: Any = None,
        kind: str | None = None,
    ) -> None:
        if not isinstance(name, str) or not name:
            raise MpibenchError(f"A task name must be a non-empty string. Got {name!r} instead.")
        self.name = name
        for role, value in (("X", X), ("y", y)):
            if value is None or np.ndim(value) == 0:
                fix = ("the features, a 2-D array (rows x features)" if role == "X"
                       else "the target, one value per row of X")
                raise MpibenchError(f"Task {name!r}: {role} is {value!r}. Pass {fix}.")
        self.X = X if isinstance(X, pd.DataFrame) else np.asarray(X)
        if self.X.ndim != 2:
            raise MpibenchError(
                f"Task {name!r}: X must be 2-D (rows x features). Got shape {self.X.shape}; "
                "use X.reshape(-1, 1) for one feature."
            )
        self.y = np.asarray(y.to_numpy() if isinstance(y, pd.Series) else y)
        if len(self.X) != len(self.y):
            raise MpibenchError(
                f"Task {name!r}: len(X) = {len(self.X)} but len(y) = {len(self.y)}. "
                "Pass one target value per row of X."
            )
        self.kind = kind or ("regression" if self.y.dtype.kind == "f" else "classification")
        if self.kind not in KINDS:
            raise MpibenchError(f"Task {name!r}: kind must be one of {KINDS}. Got {kind!r}.")
        self._check_target()
        self.subset, self.groups, self.stratum, self.fold = subset, groups, stratum, fold
        for role in ("subset", "groups", "stratum", "fold"):
            column = getattr(self, role)
            if column is not None and len(column) != len(self.y):
                raise MpibenchError(
                    f"Task {name!r}: the {role!r} column has {len(column)} rows but X has "
                    f"{len(self.y)}. Pass one value per row."
                )

    def _check_target(self) -> None:
        if self.kind == "regression":
            if self.y.dtype.kind not in "fiub":
                raise MpibenchError(
                    f"Task {self.name!r}: a regression target must be numeric, got dtype "
                    f"{self.y.dtype}. Convert y, or pass kind='classification'."
                )
            bad = ~np.isfinite(self.y.astype(np.float64))
        else:
            bad = pd.isna(self.y)
        if bad.any():
            raise MpibenchError(
                f"Task {self.name!r}: y has {int(bad.sum())} NaN/inf values (first at row "
                f"{int(np.flatnonzero(bad)[0])}). Drop or impute those rows."
            )

    @property
    def n_rows(self) -> int:
        """Number of rows."""
        return len(self.y)

    def __repr__(self) -> str:
        return f"Task({self.name!r}, n_rows={self.n_rows}, kind={self.kind!r})"


def _named(items: Any, what: str) -> dict:
    if isinstance(items, dict):
        named = dict(items)
    else:
        named = {}
        for item in items:
            base = type(item).__name__
            name, k = base, 2
            while name in named:
                name, k = f"{base}_{k}", k + 1
            named[name] = item
    for name in named:
        if not isinstance(name, str) or not name:
            raise MpibenchError(f"{what} names must be non-empty strings. Got {name!r}.")
    if not named:
        raise MpibenchError(f"The grid has no {what.lower()}s. Give at least one.")
    return named


class Grid:
    """The experiment: every task x learner x resampling split.

    Parameters
    ----------
    tasks : list of Task
        Data sets (names must be unique).
    learners : dict or list of estimators
        scikit-learn compatible estimators, by name (a list is named by class).
    resamplings : list or dict, optional
        ``SameOtherSizesCV`` or any scikit-learn splitter; default
        ``[SameOtherSizesCV()]``.
    scoring : list, dict or str, optional
        Short names, scikit-learn scorer names or callables; default ``["rmse",
        "mae"]`` for regression and ``["accuracy"]`` for classification.
    seed : int, default=0
        Grid seed: fold assignment and each split's learner seed derive from it.
    fallback : "featureless" or estimator, optional
        Trained on a split whose learner failed (error, timeout, crash, oom), so the
        split still has scores (flagged in the ``fallback`` column), as in mlr3.
        ``"featureless"`` predicts the training mean (regression) or class prior.
    record : callable, optional
        ``f(fitted_estimator) -> dict`` of extra values to keep per split (e.g.
        ``lambda m: m.best_params_`` is not importable: define a module-level function
        returning ``{"alpha": m.best_params_["alpha"], "n_iter": m.n_iter_}``); each key
        becomes a column of :func:`~mpibench.read_results` (non-scalar values as JSON
        text). Not part of the fingerprint.
    learner_options : dict, optional
        Per-learner settings that override the run's: ``{"svm": {"timeout": 600,
        "memory_limit": 4 * 2**30, "fallback": "featureless"}}`` (seconds, bytes; a
        ``fallback`` of None turns it off for that learner); ``{"net": {"gpu": True}}``
        runs that learner's splits only on ranks whose splits see a GPU (see
        README, "Many nodes and GPUs"). Not part of the fingerprint.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.dummy import DummyRegressor
    >>> task = Task("toy", X=np.arange(12.0).reshape(-1, 1), y=np.arange(12.0))
    >>> Grid([task], {"mean": DummyRegressor()}).n_splits
    3
    """

    def __init__(
        self, tasks: list[Task], learners: Any, resamplings: Any = None,
        scoring: Any = None, *, seed: int = 0, fallback: Any = None,
        record: Any = None, learner_options: dict | None = None,
    ) -> None:
        self.tasks = _checked_tasks([tasks] if isinstance(tasks, Task) else tasks)
        self.learners = _checked_learners(learners)
        self.resamplings = _named(
            resamplings if resamplings is not None else [SameOtherSizesCV()], "Resampling"
        )
        self.scorers: list[Scorer] = resolve_scoring(
            scoring if scoring is not None else self._default_scoring()
        )
        self._check_scorer_kinds()
        check("Grid", {"seed": seed, "record": record}, GRID_RULES)
        self.seed = int(seed)
        if fallback is not None and fallback != "featureless":
            _check_learner("fallback", fallback)
        self.fallback = fallback
        self.record = record
        self.learner_options = _checked_learner_options(learner_options or {}, self.learners)
        """``{learner name: {option: value}}``, checked (see
        :class:`~mpibench.limits.LearnerOptions`)."""
        self._split_sets: dict[tuple[int, int], SplitSet] = {}

    def _default_scoring(self) -> list[str]:
        kinds = {t.kind for t in self.tasks}
        if kinds == {"regression"}:
            return ["rmse", "mae"]
        if kinds == {"classification"}:
            return ["accuracy"]
        raise MpibenchError(
            "The grid mixes regression and classification tasks: pass scoring=[...] "
            "with scorers valid for both, or make two grids."
        )

    def _check_scorer_kinds(self) -> None:
        for task in self.tasks:
            wrong = CLASSIFICATION_SCORERS if task.kind == "regression" else REGRESSION_SCORERS
            for scorer in self.scorers:
                if isinstance(scorer.spec, str) and scorer.spec in wrong:
                    raise MpibenchError(
                        f"Scorer {scorer.name!r} does not apply to {task.kind} task "
                        f"{task.name!r}. Use e.g. "
                        f"{'rmse' if task.kind == 'regression' else 'accuracy'}."
                    )

    def split_set(self, task_i: int, resampling_i: int) -> SplitSet:
        """Expand (and cache) the splits of one task and resampling."""
        key = (task_i, resampling_i)
        if key not in self._split_sets:
            task = self.tasks[task_i]
            name, cv = list(self.resamplings.items())[resampling_i]
            seed = derive_seed(self.seed, name_key(task.name), name_key(name))
            self._split_sets[key] = expand_splits(task, cv, seed)
        return self._split_sets[key]

    @property
    def n_splits(self) -> int:
        """Train/test splits to run: splits of every task x resampling, times learners
        (one job each)."""
        n_splits = sum(
            len(self.split_set(t, r))
            for t in range(len(self.tasks)) for r in range(len(self.resamplings))
        )
        return n_splits * len(self.learners)

    @property
    def n_jobs(self) -> int:
        """Deprecated name of :attr:`n_splits` (``n_jobs`` reads as parallelism)."""

        warnings.warn("Grid.n_jobs is now Grid.n_splits.", FutureWarning, stacklevel=2)
        return self.n_splits

    def job_table(self) -> pd.DataFrame:
        """One row per job (task x learner x resampling x split), ``job_id`` = row.

        Built in one pass over the splits of each (task, resampling) and then with
        numpy over the jobs, so a million jobs take about a second; the name columns
        are categorical.
        """
        learner_names, resampling_names = list(self.learners), list(self.resamplings)
        n_tasks, n_learners = len(self.tasks), len(learner_names)
        sets, task_of, resampling_of = [], [], []
        for task_i in range(n_tasks):
            for res_i in range(len(resampling_names)):
                sets.append(self.split_set(task_i, res_i))
                task_of.append(task_i)
                resampling_of.append(res_i)
        lengths = np.array([len(ss) for ss in sets], dtype=np.int64)
        splits = pd.DataFrame({name: _joined([ss.columns[name] for ss in sets], name)
                               for name in META_COLUMNS})
        split_i = np.arange(len(splits)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        split_task = np.repeat(task_of, lengths)
        per_task = np.bincount(split_task, minlength=n_tasks)  # splits of each task
        first_split = np.cumsum(per_task) - per_task
        jobs_per_task = per_task * n_learners
        task_of_job = np.repeat(np.arange(n_tasks), jobs_per_task)
        k = np.arange(int(jobs_per_task.sum())) - np.repeat(
            np.cumsum(jobs_per_task) - jobs_per_task, jobs_per_task)
        block = per_task[task_of_job]
        learner_of_job, row = k // block, first_split[task_of_job] + k % block
        resampling_of_job = np.repeat(resampling_of, lengths)[row]
        table = pd.DataFrame({
            "job_id": np.arange(len(row)), "task_i": task_of_job,
            "learner_i": learner_of_job, "resampling_i": resampling_of_job,
            "split_i": split_i[row],
            "task": pd.Categorical.from_codes(task_of_job, [t.name for t in self.tasks]),
            "learner": pd.Categorical.from_codes(learner_of_job, learner_names),
            "resampling": pd.Categorical.from_codes(resampling_of_job, resampling_names),
        })
        chosen = splits.take(row).reset_index(drop=True)
        for column in chosen.columns:
            table[column] = chosen[column]
        table["random_state"] = derive_seeds(self.seed, table["job_id"].to_numpy())
        return table


def _joined(parts: list[Any], name: str) -> Any:
    """One metadata column of many split sets: text columns as a categorical."""
    if name in ("test_subset", "train_subsets"):
        return pd.Categorical([str(v) for part in parts for v in part])
    return np.concatenate([np.asarray(part, dtype=np.int64) for part in parts])


GRID_RULES: dict[str, Rule] = {
    "seed": integer(0),
    "record": Rule(lambda v: v is None or callable(v),
                   "a function f(fitted_estimator) -> dict of scalars"),
}


def _checked_tasks(tasks: list[Task]) -> list[Task]:
    """At least one task, names unique."""
    duplicated = sorted(n for n, k in Counter(t.name for t in tasks).items() if k > 1)
    if duplicated:
        raise MpibenchError(f"Task names must be unique; {duplicated} repeat. Rename them.")
    if not tasks:
        raise MpibenchError("The grid has no tasks. Give at least one Task.")
    return list(tasks)


def _checked_learners(learners: Any) -> dict[str, Any]:
    """``{name: estimator}`` (a list is named by class, which must then be unique), each
    one clonable and picklable."""
    if isinstance(learners, list):
        learner_names = [type(est).__name__ for est in learners]
        repeated = sorted(n for n, k in Counter(learner_names).items() if k > 1)
        if repeated:
            raise MpibenchError(
                f"Learner names must be unique; {repeated} appear twice. Pass learners "
                "as a dict {name: estimator}."
            )
    named = _named(learners, "Learner")
    for name, estimator in named.items():
        _check_learner(name, estimator)
    return named


def _checked_learner_options(options: Any, learners: dict) -> dict:
    """``learner_options`` checked (known learners; options and values by
    :class:`~mpibench.limits.LearnerOptions`), as plain dicts."""
    if not isinstance(options, dict):
        raise invalid_parameter("Grid", "learner_options", "a dict {learner name: "
                                "{option: value}}", options)
    checked = {}
    for name, settings in options.items():
        if name not in learners:
            raise MpibenchError(f"learner_options names learner {name!r}, which the grid "
                                f"does not have; its learners are {list(learners)}.")
        parsed = LearnerOptions.from_mapping(name, settings)
        if parsed.fallback is not None and parsed.fallback not in FALLBACKS:
            _check_learner(f"{name} (fallback)", parsed.fallback)
        checked[name] = dict(settings)
    for name, estimator in learners.items():  # Epochs checkpoints: say so, unless told
        if isinstance(estimator, Epochs) and "checkpoints" not in checked.get(name, {}):
            checked[name] = {**checked.get(name, {}), "checkpoints": True}
    return checked


def _check_learner(name: str, estimator: Any) -> None:
    try:
        clone(estimator)
    except Exception as exc:
        raise MpibenchError(
            f"Learner {name!r} cannot be cloned with sklearn.base.clone ({exc}). "
            "Pass a scikit-learn compatible estimator (get_params/set_params)."
        ) from exc
    try:
        pickle.dumps(estimator)
    except Exception as exc:
        raise MpibenchError(
            f"Learner {name!r} cannot be pickled ({type(exc).__name__}: {exc}). Define its "
            "classes and functions at module level, not inside a function or lambda."
        ) from exc


SCRIPT_MODULES = ("__main__", "__mp_main__")


class _ReferenceRecorder(pickle.Unpickler):
    """Loads a pickle and records every class or function it names."""

    def __init__(self, data: bytes) -> None:
        super().__init__(io.BytesIO(data))
        self.references: list[tuple[str, str]] = []

    def find_class(self, module: str, name: str) -> Any:
        self.references.append((module, name))
        return super().find_class(module, name)


def script_references(obj: Any) -> list[str]:
    """Classes and functions that ``obj`` pickles by reference to the running script
    (``__main__``): a worker started by ``mpibench run`` cannot import them.

    Examples
    --------
    >>> from sklearn.linear_model import Ridge
    >>> script_references(Ridge())
    []
    """
    recorder = _ReferenceRecorder(pickle.dumps(obj, protocol=5))
    recorder.load()
    return sorted({name for module, name in recorder.references if module in SCRIPT_MODULES})


def check_importable(grid: Grid) -> None:
    """Refuse learners, the fallback and scorers that need the creating script's own
    classes or functions (with the fix: move them into an importable module)."""
    parts = [(f"Learner {name!r}", est) for name, est in grid.learners.items()]
    if grid.fallback is not None and grid.fallback != "featureless":
        parts.append(("The fallback learner", grid.fallback))
    if grid.record is not None:
        parts.append(("The record function", grid.record))
    parts += [(f"Scorer {scorer.name!r}", scorer) for scorer in grid.scorers]
    for what, obj in parts:
        names = script_references(obj)
        if names:
            listed = ", ".join(names)
            raise MpibenchError(
                f"{what} uses {listed}, defined in the script that creates the project "
                "(__main__); the processes of `mpibench run` cannot import it. Move "
                f"{listed} into an importable module (a .py file on PYTHONPATH or in an "
                "installed package) and import it from there.")
