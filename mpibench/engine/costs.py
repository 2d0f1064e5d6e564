"""Expected seconds of a split, learned as results arrive (pure Python, no mpi4py).

A split's *size* is its train rows x its task's feature columns. A learner's cost per
unit of size is learned from its finished splits on every task, so one finished split
of a learner orders and sizes the chunks of its splits on a thousand other data sets;
once a (task, learner) pair has finished splits of its own, its own rate replaces the
learner's for that pair (a task whose cost does not follow its size, a learner whose
cost does not follow the columns). Before a learner has finished anything, its splits
are predicted at the rate of all learners pooled.

Learning and predicting cost O(1) per split: rates are running sums in numpy arrays,
per learner and per (task, learner) pair, updated for a whole message of results at
once.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..store.paths import ProjectPaths
from ..tuning import FEW_SPLITS, TEST_RUN_WEIGHT, UNKNOWN_FACTOR


class CostModel:
    """Expected seconds of each job: its size x the rate of its (task, learner) pair,
    else of its learner, else of every learner pooled.

    Parameters
    ----------
    learner_of_job, n_train_of_job : numpy.ndarray
        Learner index and train rows of every job, indexed by job id.
    task_of_job : numpy.ndarray, optional
        Task index of every job (one task when omitted).
    n_features_of_task : numpy.ndarray, optional
        Feature columns of every task, indexed by task (1 each when omitted).

    Examples
    --------
    >>> import numpy as np
    >>> model = CostModel(np.array([0, 0, 1]), np.array([100, 50, 100]))
    >>> model.learn(0, seconds=2.0, size=100); model.expected(1), model.expected(2)
    (1.0, 2.0)
    """

    def __init__(self, learner_of_job: np.ndarray, n_train_of_job: np.ndarray,
                 task_of_job: np.ndarray | None = None,
                 n_features_of_task: np.ndarray | None = None) -> None:
        # copies: a column of a DataFrame would keep the frame's whole block alive
        self.learner = np.array(learner_of_job, dtype=np.int64)
        n_jobs = len(self.learner)
        self.task = (np.zeros(n_jobs, np.int64) if task_of_job is None
                     else np.array(task_of_job, dtype=np.int64))
        features = (np.ones(int(self.task.max(initial=-1)) + 1) if n_features_of_task is None
                    else np.maximum(np.asarray(n_features_of_task, dtype=np.float64), 1.0))
        self.size = np.maximum(np.asarray(n_train_of_job, dtype=np.float64), 1.0)
        if n_jobs:
            self.size = self.size * features[self.task]
        """Train rows x feature columns of each job (at least 1)."""
        n_learners = int(self.learner.max(initial=-1)) + 1
        pair_keys = self.task * max(n_learners, 1) + self.learner
        pairs, self.pair = np.unique(pair_keys, return_inverse=True)
        """Index of each job's (task, learner) pair."""
        self.pair = self.pair.reshape(-1).astype(np.int64)
        self.pair_learner = (pairs % max(n_learners, 1)).astype(np.int64)
        self.pair_features = features[pairs // max(n_learners, 1)] if len(pairs) else \
            np.zeros(0)
        """Feature columns of each pair's task."""
        self._learner_seconds = np.zeros(n_learners)
        self._learner_size = np.zeros(n_learners)
        self._pair_seconds = np.zeros(len(pairs))
        self._pair_size = np.zeros(len(pairs))
        self._total_seconds = self._total_size = 0.0
        self.n_known = 0
        """Learners with a finished split."""
        self.version = 0
        """Counts the updates: anything derived from the rates is stale when it moved."""
        self.changes: list[int] = []
        """The learners learned about, in order (a learner twice in a row once): a
        reader keeps its position in it to follow the rates that moved."""
        self._max_rate: tuple[int, float] = (-1, 0.0)

    @property
    def n_learners(self) -> int:
        """Learners of the grid."""
        return len(self._learner_size)

    @property
    def known(self) -> bool:
        """True once any split has finished."""
        return self._total_size > 0

    @property
    def n_unknown(self) -> int:
        """Learners with no finished split."""
        return self.n_learners - self.n_known

    def knows(self, learner: int) -> bool:
        """True once a split of ``learner`` has finished."""
        return bool(self._learner_size[learner] > 0)

    def learn(self, learner: int, seconds: float, size: float, pair: int | None = None
              ) -> None:
        """Add ``seconds`` spent on splits of ``learner`` of total ``size`` (train rows
        x features), and to its (task, learner) ``pair`` when given."""
        if not self._learner_size[learner] > 0 and size > 0:
            self.n_known += 1
        self._learner_seconds[learner] += seconds
        self._learner_size[learner] += size
        if pair is not None:
            self._pair_seconds[pair] += seconds
            self._pair_size[pair] += size
        self._total_seconds += seconds
        self._total_size += size
        self.version += 1
        if not self.changes or self.changes[-1] != learner:
            self.changes.append(learner)

    def add_columns(self, job_ids: np.ndarray | list, status: np.ndarray | list,
                    seconds: np.ndarray | list) -> np.ndarray:
        """Learn from finished splits: job ids, statuses and seconds of each, as arrays
        or (a few) lists (failed splits say nothing about cost). Returns the learners
        learned about."""
        if len(job_ids) <= FEW_SPLITS:  # a message of a few splits: cheaper one by one
            few: list[int] = []
            for job, state, spent in zip(job_ids, status, seconds, strict=True):
                if state == "ok":
                    learner = int(self.learner[job])
                    self.learn(learner, float(spent), float(self.size[job]),
                               int(self.pair[job]))
                    few.append(learner)
            return np.asarray(few, dtype=np.int64)
        ok = np.asarray(status, dtype=object) == "ok"
        jobs = np.asarray(job_ids, dtype=np.int64)[ok]
        if not len(jobs):
            return np.zeros(0, np.int64)
        spent = np.asarray(seconds, dtype=np.float64)[ok]
        sizes, learners, pairs = self.size[jobs], self.learner[jobs], self.pair[jobs]
        before = self._learner_size > 0
        np.add.at(self._learner_seconds, learners, spent)
        np.add.at(self._learner_size, learners, sizes)
        np.add.at(self._pair_seconds, pairs, spent)
        np.add.at(self._pair_size, pairs, sizes)
        self.n_known += int(np.count_nonzero((self._learner_size > 0) & ~before))
        self._total_seconds += float(spent.sum())
        self._total_size += float(sizes.sum())
        self.version += 1
        learned = np.unique(learners)
        self.changes.extend(learned.tolist())
        return learned

    def rate(self, learner: int) -> float:
        """Seconds per unit of size of ``learner`` (pooled if unknown; 0 if nothing is)."""
        if self._learner_size[learner] > 0:
            return float(self._learner_seconds[learner] / self._learner_size[learner])
        return self.rate_pooled()

    def rate_pooled(self) -> float:
        """Seconds per unit of size over every finished split (0 while none is)."""
        return self._total_seconds / self._total_size if self._total_size > 0 else 0.0

    def rates(self) -> np.ndarray:
        """:meth:`rate` of every learner, as one array."""
        known = self._learner_size > 0
        out = np.full(self.n_learners, self.rate_pooled())
        out[known] = self._learner_seconds[known] / self._learner_size[known]
        return out

    def pair_rates(self) -> np.ndarray:
        """Seconds per unit of size of every (task, learner) pair: its own once it has
        finished splits; else its learner's, with the learner's cost taken to grow as
        rows x features**b, ``b`` fitted over its known pairs (:meth:`feature_powers`).
        O(pairs): for the estimate of the time left, not for every request."""
        power = self.feature_powers()
        known = self._pair_size > 0
        scale = self.pair_features ** (power[self.pair_learner] - 1.0)  # size^b / size
        learner_size = np.bincount(self.pair_learner[known],
                                   weights=(self._pair_size * scale)[known],
                                   minlength=self.n_learners)
        with np.errstate(divide="ignore", invalid="ignore"):
            rates = np.where(learner_size > 0, np.bincount(
                self.pair_learner[known], weights=self._pair_seconds[known],
                minlength=self.n_learners) / learner_size, self.rate_pooled())
        out = rates[self.pair_learner] * scale
        out[known] = self._pair_seconds[known] / self._pair_size[known]
        return out

    def feature_powers(self) -> np.ndarray:
        """Per learner, how its cost per train row grows with the task's features: the
        slope ``b`` of log(seconds per row) on log(features) over its known pairs
        (between 0 and 2); while it has fewer than three pairs with different feature
        counts, the slope of every learner's pairs pooled (each about its own mean),
        and 1 (rows x features) while no learner has two.

        Examples
        --------
        >>> model = CostModel(np.zeros(3, int), np.full(3, 10), np.arange(3),
        ...                   n_features_of_task=np.array([1, 4, 16]))
        >>> for job in range(3): model.learn(0, 1.0, model.size[job], int(model.pair[job]))
        >>> model.feature_powers().round(6).tolist()  # 1 s per split whatever the features
        [0.0]
        """
        power = np.ones(self.n_learners)
        known = (self._pair_size > 0) & (self._pair_seconds > 0)
        if known.sum() < 3:
            return power
        x = np.log(self.pair_features[known])
        y = np.log(self._pair_seconds[known] / self._pair_size[known]
                   * self.pair_features[known])
        learner = self.pair_learner[known]
        sums = [np.bincount(learner, weights=w, minlength=self.n_learners)
                for w in (np.ones_like(x), x, y, x * x, x * y)]
        n, sx, sy, sxx, sxy = sums
        with np.errstate(divide="ignore", invalid="ignore"):
            centred_xx = np.where(n > 0, sxx - sx * sx / n, 0.0)
            centred_xy = np.where(n > 0, sxy - sx * sy / n, 0.0)
        # a learner too little known takes the slope of all learners pooled (each about
        # its own mean): cheap learners run last under lpt and are learned late
        if centred_xx.sum() > 1e-9:
            power[:] = np.clip(centred_xy.sum() / centred_xx.sum(), 0.0, 2.0)
        fitted = (n >= 3) & (centred_xx > 1e-9)
        power[fitted] = np.clip(centred_xy[fitted] / centred_xx[fitted], 0.0, 2.0)
        return power

    def expected(self, job_id: int) -> float:
        """Expected seconds for ``job_id`` (0 when nothing is known yet)."""
        pair = int(self.pair[job_id])
        if self._pair_size[pair] > 0:
            rate = float(self._pair_seconds[pair] / self._pair_size[pair])
        else:
            rate = self.rate(int(self.learner[job_id]))
        return rate * float(self.size[job_id])

    def expected_many(self, job_ids: np.ndarray | list[int],
                      pair_rates: np.ndarray | None = None) -> np.ndarray:
        """:meth:`expected` of many jobs at once (O(jobs)), or at ``pair_rates`` (from
        :meth:`pair_rates`) when given."""
        jobs = np.asarray(job_ids, dtype=np.int64)
        if pair_rates is not None:
            return pair_rates[self.pair[jobs]] * self.size[jobs]
        learners, pairs = self.learner[jobs], self.pair[jobs]
        learner_size, pair_size = self._learner_size[learners], self._pair_size[pairs]
        with np.errstate(divide="ignore", invalid="ignore"):
            rate = np.where(learner_size > 0, self._learner_seconds[learners] / learner_size,
                            self.rate_pooled())
            rate = np.where(pair_size > 0, self._pair_seconds[pairs] / pair_size, rate)
        return rate * self.size[jobs]

    def known_learners(self) -> np.ndarray:
        """Mask of the learners with a finished split."""
        return self._learner_size > 0

    def max_rate(self) -> float:
        """The highest rate among the known learners (0 when none is known)."""
        if self._max_rate[0] != self.version:
            known = self._learner_size > 0
            top = (float((self._learner_seconds[known] / self._learner_size[known]).max())
                   if known.any() else 0.0)
            self._max_rate = (self.version, top)
        return self._max_rate[1]

    def ranking_rate(self, learner: int) -> float:
        """Cost per unit of size for ordering: a learner with no finished split ranks
        above every known one (``UNKNOWN_FACTOR`` x the highest known rate; 1 while
        nothing is known), so its splits start early and it is learned first."""
        if self._learner_size[learner] > 0:
            return self.rate(learner)
        if not self.known:
            return 1.0
        return UNKNOWN_FACTOR * self.max_rate()


def learn_from_test_run(costs: CostModel, paths: ProjectPaths, learners: list[str],
                        n_features: dict[str, int] | None = None) -> int:
    """Seed ``costs`` with the project's ``--test`` run (one split of every task x
    learner on small data), if it has one; ``n_features`` gives the feature columns of
    each task by name (1 for those it lacks). Returns the splits learned from."""
    test = ProjectPaths(paths.root / "test")
    if not test.results.exists():
        return 0
    from ..store.reading import read_results  # (only when a test run exists)

    try:
        frame = read_results(test.root)
    except (OSError, KeyError, ValueError):  # a damaged test run: nothing to learn
        return 0
    index = {name: i for i, name in enumerate(learners)}
    ok = frame[(frame["status"] == "ok") & frame["learner"].isin(index)]
    seconds = ok["end_time"] - ok["start_time"]
    features = ok["task"].astype(str).map(n_features or {}).fillna(1.0)
    size = ok["n_train"].clip(lower=1) * features.clip(lower=1)
    for name, rows in ok.groupby("learner", observed=True):
        costs.learn(index[name], TEST_RUN_WEIGHT * float(seconds[rows.index].sum()),
                    TEST_RUN_WEIGHT * float(size[rows.index].sum()))
    return len(ok)


def as_cost_model(ids: np.ndarray, costs: Any) -> CostModel:
    """A cost model from a CostModel, fixed costs per job (sizes of one learner), or none."""
    if isinstance(costs, CostModel):
        return costs
    n = int(ids.max()) + 1 if len(ids) else 0
    model = CostModel(np.zeros(n, dtype=np.int64), np.ones(n))
    if costs is not None:
        model.size[ids] = np.asarray(costs, dtype=np.float64)
    return model
