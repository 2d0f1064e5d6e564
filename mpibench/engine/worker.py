"""Run one split: load (and cache) the data, clone, seed, fit, predict, score, time."""

from __future__ import annotations

import contextlib
import functools
import json
import os
import socket
import time
import traceback
import warnings
from collections.abc import Callable
from pathlib import Path
from time import perf_counter_ns
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, clone
from sklearn.dummy import DummyClassifier, DummyRegressor

from ..checkpoint import CheckpointSlot
from ..errors import MpibenchError
from ..limits import learner_options_of
from ..scorers import bind_scorers, score_split
from ..store.gridfile import GridFile, SplitIndex
from ..store.paths import ProjectPaths
from ..store.predictions import PredictionWriter
from ..store.records import INTERRUPTED, OK, SplitResult, Status, failed_result
from ..tuning import PRELOAD_PAIRS
from .procs import peak_rss_bytes
from .protocol import Assignment
from .taskcache import ByteCache
from .usage import UsageMeter

WARNING_CHARS = 500
"""Characters of a split's first warning kept in the ``warning`` column."""


def unset_random_states(estimator: Any) -> list[str]:
    """Names of the ``random_state`` parameters (nested ones too) that are ``None``."""
    return [name for name, value in estimator.get_params(deep=True).items()
            if (name == "random_state" or name.endswith("__random_state")) and value is None]


def seed_estimator(estimator: Any, random_state: int,
                   names: list[str] | None = None) -> Any:
    """Set every unset ``random_state`` parameter (nested ones too) to ``random_state``.

    ``names`` (from :func:`unset_random_states` of an identical estimator) saves
    looking them up again.
    """
    names = unset_random_states(estimator) if names is None else names
    if names:
        estimator.set_params(**dict.fromkeys(names, random_state))
    return estimator


_SCALARS = (type(None), bool, int, float, str)
_CLONE_STATE = ("_metadata_request", "_skl_callbacks", "_sklearn_output_config")


class EstimatorFactory:
    """Fresh, seeded copies of one estimator: ``factory(random_state)``.

    The same as ``seed_estimator(clone(estimator), random_state)``. For the common
    case (scikit-learn's own cloning, every parameter a plain scalar, no metadata
    routing, output or callback settings) it calls the class with the parameters
    looked up once, which costs a few microseconds instead of ``clone``'s ~10.

    Parameters
    ----------
    estimator : estimator
        The unfitted prototype; it is never fitted itself.
    """

    def __init__(self, estimator: Any) -> None:
        self.estimator = estimator
        self.names = unset_random_states(estimator)
        params = estimator.get_params(deep=False)
        plain = (getattr(type(estimator), "__sklearn_clone__", None)
                 is BaseEstimator.__sklearn_clone__
                 and all(type(value) in _SCALARS for value in params.values())
                 and not any("__" in name for name in self.names)
                 and not any(hasattr(estimator, name) for name in _CLONE_STATE))
        self._params = params if plain else None

    def __call__(self, random_state: int) -> Any:
        """A fresh unfitted copy whose unset ``random_state`` parameters are seeded."""
        if self._params is None:
            return seed_estimator(clone(self.estimator), random_state, self.names)
        return type(self.estimator)(**{**self._params,
                                       **dict.fromkeys(self.names, random_state)})


def row_taker(X: Any) -> Callable[[np.ndarray], object]:
    """A function giving the rows ``index`` of ``X`` (a data frame, an array, a sparse
    matrix). For numpy arrays (and memory maps) it is ``X.take(index, axis=0)``: the
    same rows as ``X[index]``, three times faster for the few rows of small splits
    (0.5 against 1.5 us for 50 of 100 rows; timeit on the 2-core VM).

    Examples
    --------
    >>> row_taker(np.arange(6).reshape(3, 2))(np.array([2, 0])).tolist()
    [[4, 5], [0, 1]]
    """
    if isinstance(X, (pd.DataFrame, pd.Series)):
        return X.iloc.__getitem__
    if isinstance(X, np.ndarray):  # a memory map too: viewed as an array, as X[index] is
        return functools.partial(X.view(np.ndarray).take, axis=0)
    return X.__getitem__


def describe_error(exc: BaseException) -> str:
    """``Type: message (at innermost <- caller <- ...)``, on one line."""
    frames = traceback.extract_tb(exc.__traceback__)[-3:]
    where = " <- ".join(f"{f.name} ({f.filename.rsplit('/', 1)[-1]}:{f.lineno})"
                        for f in reversed(frames))
    message = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {message} (at {where})"


class SplitRunner:
    """Runs assignments on one rank, loading each task, learner and split set once.

    Parameters
    ----------
    grid_file : GridFile
        The project's ``grid.h5``.
    rank : int
        MPI rank (recorded per split).
    threads : int
        BLAS/OpenMP thread limit in effect (recorded per split).
    """

    def __init__(self, grid_file: GridFile, rank: int, threads: int,
                 fallback: Any = None, predictions: Path | None = None,
                 host: str | None = None, gpu: str = "",
                 project: ProjectPaths | None = None, run_number: int = 0) -> None:
        self.grid_file = grid_file
        self.run_number = run_number
        """The run's number (recorded per split; see ``mb.read_runs``)."""
        self._checkpoints = None if project is None else project.checkpoints
        """``PROJECT/checkpoints`` (None: splits get no checkpoint)."""
        self._stopping = None if project is None else project.stopping.exists
        """Is the run stopping? (``PROJECT/run.stopping`` exists.)"""
        self.rank = rank
        self.host = host or socket.gethostname()
        """The node's name (see :mod:`mpibench.engine.placement`)."""
        self.predictions = None if predictions is None else PredictionWriter(predictions, rank)
        """Where each split's predictions go (``--save-predictions``), or None."""
        self.record = self._unpickled("The grid's record function", grid_file.record)
        """The grid's ``record`` function, or None."""
        settings = self._unpickled("The grid's learner_options", grid_file.learner_options)
        self.learner_options = learner_options_of(settings, grid_file.names("learners"))
        """Per learner index: what the grid's ``learner_options`` set for it."""
        self.threads = threads
        self.fallback = fallback if fallback is not None else self._unpickled(
            "The grid's fallback", grid_file.fallback)
        self.gpu = gpu
        """The ``CUDA_VISIBLE_DEVICES`` its splits see (``""``: none)."""
        self.pid = os.getpid()
        self._data = ByteCache()
        """Task data and split indices, least recently used leaving first."""
        self._learners: dict[int, EstimatorFactory] = {}
        self._kinds: dict[int, str] = {}
        self.scorers = self._unpickled("The grid's scorers", grid_file.scorers)
        self._scoring = bind_scorers(self.scorers)
        self._needs_proba = any(s.kind == "proba" for s in self.scorers)
        self._meter = UsageMeter()
        """What each split uses: CPU time, peak memory, GPU memory."""
        self._no_scores = (float("nan"),) * len(self.scorers)
        self._traced: set[str] = set()
        """Error lines whose full traceback this process recorded (once each)."""

    def _task(self, task_i: int) -> tuple[np.ndarray, Callable]:
        """``y`` and a function taking rows of ``X`` (which holds ``X``; loaded once)."""
        y, take, _ = self._data.get(("task", task_i), lambda: self._load_task(task_i))
        return y, take

    def _load_task(self, task_i: int) -> tuple[np.ndarray, Callable, Any]:
        X, y = self.grid_file.task_data(task_i)
        return y, row_taker(X), X  # (X: for the cache's byte count)

    def _learner(self, learner_i: int) -> EstimatorFactory:
        """Fresh seeded copies of learner ``learner_i`` (loaded once)."""
        if learner_i not in self._learners:
            name = self.grid_file.names("learners")[learner_i]
            self._learners[learner_i] = EstimatorFactory(self._unpickled(
                f"Learner {name!r}", lambda: self.grid_file.learner(learner_i)))
        return self._learners[learner_i]

    def _unpickled(self, what: str, load: Callable[[], Any]) -> Any:
        """``load()``; an object that cannot be unpickled here is one
        :class:`LearnerNotLoadable` naming it, the cause and the fix."""
        try:
            return load()
        except Exception as exc:
            raise LearnerNotLoadable(what, self.rank, self.host, exc) from None

    def _split_index(self, task_i: int, resampling_i: int) -> SplitIndex:
        return self._data.get(("splits", task_i, resampling_i),
                              lambda: self.grid_file.split_index(task_i, resampling_i))

    def _kind(self, task_i: int) -> str:
        if task_i not in self._kinds:
            self._kinds[task_i] = self.grid_file.task_kind(task_i)
        return self._kinds[task_i]

    def preload(self, max_pairs: int = PRELOAD_PAIRS) -> bool:
        """Load every task's data and split index into the caches, if the grid has at
        most ``max_pairs`` (task, resampling) pairs; processes forked from this one
        then start with them (shared, copy-on-write). Returns True if it did."""
        self.grid_file.mapped()  # the layout table: read once, inherited by executors
        n_tasks = len(self.grid_file.names("tasks"))
        n_resamplings = len(self.grid_file.names("resamplings"))
        if n_tasks * n_resamplings > max_pairs:
            return False
        for task_i in range(n_tasks):
            self._task(task_i)
            self._kind(task_i)
            for resampling_i in range(n_resamplings):
                self._split_index(task_i, resampling_i)
        return True

    def warm_up(self) -> None:
        """Load every learner and run the grid's scorers once on tiny data (after
        :func:`warm_up_stack`): lazy imports and first-call caches are then paid here,
        in the process that forks the executors, not in any split's timings."""
        for learner_i in range(len(self.grid_file.names("learners"))):
            self._learner(learner_i)
        warm_up_stack(self._scoring)

    def fallback_for(self, job: Assignment) -> Any:
        """The fallback estimator for ``job`` (its learner's own, else the run's; a
        ``"featureless"`` one predicts the task's mean or prior), or None."""
        own = self.learner_options[job.learner_i]
        fallback = own.fallback if own.has_fallback else self.fallback
        if isinstance(fallback, str):
            return featureless(self._kind(job.task_i))
        return fallback

    def failure(self, job: Assignment, start: float, status: Status | str,
                message: str, max_rss_bytes: int | None = None) -> SplitResult:
        """A result for a split that produced no scores (``message``: why; the rank and
        host are columns of their own; ``max_rss_bytes``: its peak, where known)."""
        return failed_result(job.job_id, job.attempt, status, message,
                             n_scores=len(self.scorers), rank=self.rank, host=self.host,
                             pid=self.pid, start=start, threads=self.threads,
                             max_rss_bytes=peak_rss_bytes() if max_rss_bytes is None
                             else max_rss_bytes, gpu=self.gpu,
                             run=self.run_number)

    def _error_text(self, stage: str, exc: BaseException) -> str:
        """``in STAGE: Type: message (at innermost <- ...)``; the first time this process
        meets an error of that kind (that first line), the full traceback follows on
        the next lines."""
        line = f"in {stage}: {describe_error(exc)}"
        if line in self._traced:
            return line
        self._traced.add(line)
        return line + "\n" + "".join(traceback.format_exception(exc)).rstrip()

    def _invalid(self, task_i: int, y_train: np.ndarray) -> str:
        if len(y_train) == 0:
            return "empty train set"
        if self._kind(task_i) == "classification" and not (y_train != y_train[0]).any():
            return "a single class in the classification train set"
        return ""

    def run(self, job: Assignment, learner: Any = None) -> SplitResult:
        """Fit, predict and score one split; an exception becomes an ``error`` result.

        ``learner`` replaces the job's learner (used for fallbacks). Stages are timed
        in whole nanoseconds (``perf_counter_ns``), which the journal stores exactly.
        """
        start = time.time()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")  # every warning counts, none reaches stderr
            result = self._run(job, learner, start)
        if caught:
            first = caught[0]
            text = f"{first.category.__name__}: {first.message}".replace("\n", " ")
            result = result._replace(n_warnings=len(caught), warning=text[:WARNING_CHARS])
        return result

    def _save_predictions(self, job: Assignment, test: np.ndarray, estimator: Any,
                          X_test: Any, y_pred: Any, proba: Any) -> None:
        """Append one split's predictions (and class probabilities, if the learner
        gives them); outside the timed stages."""
        if (proba is None and self._kind(job.task_i) == "classification"
                and hasattr(estimator, "predict_proba")):
            proba = estimator.predict_proba(X_test)
        classes = getattr(estimator, "classes_", None) if proba is not None else None
        assert self.predictions is not None  # (called only when predictions are kept)
        self.predictions.write(job.job_id, job.attempt, test, np.asarray(y_pred), proba,
                               classes)

    def _run(self, job: Assignment, learner: Any, start: float) -> SplitResult:
        fit_ns = predict_ns = score_ns = 0
        scores, status, error, stage, extra = self._no_scores, OK, "", "fit", ""
        self._meter.begin()
        tick = perf_counter_ns()
        slot = (None if self._checkpoints is None or self._stopping is None
                or learner is not None  # (a fallback learner gets no checkpoint)
                else CheckpointSlot(self._checkpoints, job.job_id, self._stopping))
        try:
            y, take = self._task(job.task_i)
            index = self._split_index(job.task_i, job.resampling_i)
            train, test = index.train(job.split_i), index.test(job.split_i)
            y_train = y[train]
            problem = self._invalid(job.task_i, y_train)
            if problem:
                return self.failure(job, start, Status.INVALID, problem)
            estimator = (seed_estimator(clone(learner), job.random_state)
                         if learner is not None
                         else self._learner(job.learner_i)(job.random_state))
            np.random.seed(job.random_state)
            tick = perf_counter_ns()
            if slot is None:
                estimator.fit(take(train), y_train)
            else:
                with slot:
                    estimator.fit(take(train), y_train)
            stage, fit_ns = "predict", perf_counter_ns() - tick
            if slot is not None and slot.checkpoint is not None and slot.checkpoint.stop_seen:
                return self.failure(job, start, Status.INTERRUPTED, "saved its checkpoint "
                                    "and stopped: it resumes from there in the next run")
            X_test, y_test = take(test), y[test]
            tick = perf_counter_ns()
            y_pred = estimator.predict(X_test)
            proba = estimator.predict_proba(X_test) if self._needs_proba else None
            stage, predict_ns = "score", perf_counter_ns() - tick
            tick = perf_counter_ns()
            scores = score_split(self._scoring, estimator, X_test, y_test, y_pred, proba)
            score_ns = perf_counter_ns() - tick
            if self.predictions is not None and learner is None:
                stage = "saving predictions"
                self._save_predictions(job, test, estimator, X_test, y_pred, proba)
            if self.record is not None and learner is None:
                stage = "record"
                extra = record_json(self.record(estimator))
        except (Exception, SystemExit) as exc:  # (sys.exit in a learner ends the split)
            status = (Status.OOM if isinstance(exc, MemoryError) else Status.ERROR).value
            error = self._error_text(stage, exc)
            scores = self._no_scores
            elapsed = perf_counter_ns() - tick  # the failed stage's time to the failure
            if stage == "fit":
                fit_ns = elapsed
            elif stage == "predict":
                predict_ns = elapsed
            elif stage == "score":
                score_ns = elapsed
        end = time.time()
        used = self._meter.end(end - start)
        checkpoint = None if slot is None else slot.checkpoint
        if checkpoint is not None:  # the split has its result: its saves go
            checkpoint.remove()
            fit_ns += round(checkpoint.earlier_seconds * 1e9)
        return SplitResult(job.job_id, status, error, scores, self.rank, self.host,
                           self.pid, start, end, fit_ns / 1e9, predict_ns / 1e9,
                           score_ns / 1e9, used.max_rss_bytes, self.threads, job.attempt,
                           record=extra, gpu=self.gpu,
                           resumed_from=checkpoint.resumed_from if checkpoint else 0,
                           cpu_seconds=used.cpu_seconds,
                           gpu_max_memory_bytes=used.gpu_max_memory_bytes,
                           gpu_seconds=used.gpu_seconds, run=self.run_number)


def record_json(values: Any) -> str:
    """What a ``record`` function returned, as the JSON text of the ``record`` column:
    a dict whose numpy numbers become Python numbers and other non-scalars text.

    Examples
    --------
    >>> print(record_json({"alpha": np.float64(0.5), "params": {"depth": 3}}))
    {"alpha": 0.5, "params": "{\\"depth\\": 3}"}
    """
    if not isinstance(values, dict):
        raise TypeError(f"the record function must return a dict; it returned "
                        f"{type(values).__name__}")
    out = {}
    for key, value in values.items():
        if isinstance(value, np.generic):
            value = value.item()
        if value is not None and not isinstance(value, str | int | float | bool):
            value = json.dumps(value, default=str, sort_keys=True)
        out[str(key)] = value
    return json.dumps(out)


def warm_up_stack(scoring: list | None = None) -> None:
    """Fit, predict and score scikit-learn's featureless models on tiny data, with
    ``scoring`` (from :func:`~mpibench.scorers.bind_scorers`; default: every short-name
    scorer), so that input validation, lazy imports and first-call caches are loaded.

    Examples
    --------
    >>> warm_up_stack()
    """
    from ..scorers import PREDICTION_SCORERS

    if scoring is None:
        scoring = [("predict", function) for function in PREDICTION_SCORERS.values()]
    X = np.arange(16.0).reshape(8, 2)
    for model, y in ((DummyRegressor(), np.arange(8.0)), (DummyClassifier(), np.arange(8) % 2)):
        model.fit(X, y)
        y_pred, proba = model.predict(X), getattr(model, "predict_proba", None)
        proba = proba(X) if proba is not None else None
        for scorer in scoring:
            with contextlib.suppress(Exception):  # a scorer of the other kind of task
                score_split([scorer], model, X, y, y_pred, proba)


def run_with_fallback(run_split: Any, runner: SplitRunner, job: Assignment) -> SplitResult:
    """``run_split(job)``; if the split failed, its scores come from the fallback learner.

    The failed status and error are kept; ``fallback`` says whether the fallback
    produced the scores (as mlr3 records it). A split stopped from outside gets none.
    """
    return with_fallback(run_split(job), run_split, runner, job)


def with_fallback(result: SplitResult, run_split: Any, runner: SplitRunner,
                  job: Assignment) -> SplitResult:
    """``result`` of ``job``; if it failed, with the scores of the fallback learner
    (``run_split(job, learner=fallback)``), as :func:`run_with_fallback` gives."""
    failed = result.status not in (OK, INTERRUPTED)
    fallback = runner.fallback_for(job) if failed else None
    if fallback is not None:
        backup = run_split(job, learner=fallback)
        result = result._replace(scores=backup.scores, fallback=backup.status == OK)
    return result


def featureless(kind: str) -> Any:
    """The featureless baseline: training mean (regression) or class prior."""
    if kind == "regression":
        return DummyRegressor(strategy="mean")
    return DummyClassifier(strategy="prior")


class LearnerNotLoadable(MpibenchError):
    """A pickled learner (or scorer, fallback, record function) of ``grid.h5`` that
    cannot be loaded on a rank: the run ends before any split, exit code 2."""

    def __init__(self, what: str, rank: int, host: str, error: Exception) -> None:
        module = getattr(error, "name", None)
        if isinstance(error, ImportError) and module:
            fix = (f"Make module {module!r} importable where the ranks run: install it, "
                   "start `mpibench run` in the folder that holds it (its working directory "
                   "comes first on sys.path, as with python -m), or set PYTHONPATH.")
        elif isinstance(error, (ImportError, AttributeError)):
            fix = ("Its code is not where the project was created from: make that module "
                   "importable here (PYTHONPATH), or create the project again.")
        else:
            fix = ("Its pickle in grid.h5 is damaged or its code changed since the project "
                   "was created: create the project again from its script.")
        cause = " ".join(f"{type(error).__name__}: {error}".split())[:200]
        super().__init__(f"{what} cannot be loaded on rank {rank} ({host}): {cause}. {fix}")
