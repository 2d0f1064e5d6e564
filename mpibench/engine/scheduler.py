"""Which splits go next, and how many at once: a pure-Python state machine (no mpi4py).

The dispatcher reports events ("rank r wants work", "these jobs finished") and the
scheduler answers with job ids.

Ordering: ``lpt`` (longest expected first) ranks pending splits by train rows x a
per-learner rate (seconds per train row) that :class:`CostModel` learns from finished
splits, so the tail of a run is made of short splits. ``grid`` keeps job id order,
``random`` shuffles. A user ``priority`` (higher first) comes before any of them.

Chunking: ``chunk_size="auto"`` hands out one split until the cost model knows the
learner, then about ``CHUNK_SECONDS`` of expected work per message, never more than
``1 / (GUIDED * workers)`` of what is pending (guided self-scheduling: chunks shrink
as the run ends), so no-op splits go out by the hundred and long ones one at a time.

Suspects: ``solo`` jobs (handed out in a run that died) go out first, one per chunk;
the dispatcher gives them only to idle ranks, so a suspect in flight is running, not
queued behind other splits. One expected to take under ``SOLO_SERIAL_SECONDS`` waits
until no other suspect is in flight, so that a run that dies again blames the one split
that was running (tiny splits, which went out in chunks of hundreds); longer ones (or
any while nothing is known of their cost) go out to every idle rank at once, as
running them one after another could stretch the run by hours. While a short suspect
waits and nothing else is pending, :meth:`Scheduler.next_chunk` returns ``[]`` and the
dispatcher stops the idle worker that asked: the worker running the suspect in flight
takes the waiting ones after it.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Any

import numpy as np

from ..errors import invalid_parameter
from ..tuning import (
    CHUNK_SECONDS,
    FEW_SPLITS,
    GUIDED,
    MAX_CHUNK,
    SOLO_SERIAL_SECONDS,
    UNKNOWN_FACTOR,
)
from .options import ORDERS


class CostModel:
    """Expected seconds of a split: its train rows x seconds per row of its learner.

    The rate per learner is learned from finished splits (all learners pooled until a
    learner has its own).

    Parameters
    ----------
    learner_of_job, n_train_of_job : numpy.ndarray
        Learner index and train rows of every job, indexed by job id.

    Examples
    --------
    >>> import numpy as np
    >>> model = CostModel(np.array([0, 0, 1]), np.array([100, 50, 100]))
    >>> model.learn(0, seconds=2.0, rows=100); model.expected(1), model.expected(2)
    (1.0, 2.0)
    """

    def __init__(self, learner_of_job: np.ndarray, n_train_of_job: np.ndarray,
                 task_of_job: np.ndarray | None = None) -> None:
        self.learner = np.asarray(learner_of_job, dtype=np.int64)
        self.n_train = np.maximum(np.asarray(n_train_of_job, dtype=np.float64), 1.0)
        self.task = (np.zeros(len(self.learner), np.int64) if task_of_job is None
                     else np.asarray(task_of_job, dtype=np.int64))
        self._seconds: dict[int, float] = {}
        self._rows: dict[int, float] = {}

    @property
    def known(self) -> bool:
        """True once any split has finished."""
        return bool(self._rows)

    def learn(self, learner: int, seconds: float, rows: float) -> None:
        """Add ``seconds`` spent on ``rows`` train rows by ``learner``."""
        self._seconds[learner] = self._seconds.get(learner, 0.0) + seconds
        self._rows[learner] = self._rows.get(learner, 0.0) + rows

    def add_columns(self, job_ids: np.ndarray | list, status: np.ndarray | list,
                    seconds: np.ndarray | list) -> None:
        """Learn from finished splits: job ids, statuses and seconds of each, as arrays
        or (a few) lists (failed splits say nothing about cost)."""
        if len(job_ids) <= FEW_SPLITS:  # a message of a few splits: cheaper one by one
            for job, state, spent in zip(job_ids, status, seconds, strict=True):
                if state == "ok":
                    self.learn(int(self.learner[job]), float(spent),
                               float(self.n_train[job]))
            return
        ok = np.asarray(status, dtype=object) == "ok"
        jobs = np.asarray(job_ids, dtype=np.int64)[ok]
        seconds = np.asarray(seconds, dtype=np.float64)[ok]
        learners = self.learner[jobs]
        for learner in np.unique(learners).tolist():
            mine = learners == learner
            self.learn(learner, float(seconds[mine].sum()),
                       float(self.n_train[jobs[mine]].sum()))

    def knows(self, learner: int) -> bool:
        """True once a split of ``learner`` has finished."""
        return learner in self._rows

    def rate(self, learner: int) -> float:
        """Seconds per train row of ``learner`` (pooled if unknown; 0 if nothing is)."""
        if learner in self._rows:
            return self._seconds[learner] / self._rows[learner]
        if self._rows:
            return sum(self._seconds.values()) / sum(self._rows.values())
        return 0.0

    def expected(self, job_id: int) -> float:
        """Expected seconds for ``job_id`` (0 when nothing is known yet)."""
        return self.rate(int(self.learner[job_id])) * float(self.n_train[job_id])

    def ranking_rate(self, learner: int) -> float:
        """Cost per train row for ordering: a learner with no finished split ranks
        above every known one (``UNKNOWN_FACTOR`` x the highest known rate; 1 while
        nothing is known), so its splits start early and it is learned first."""
        if learner in self._rows:
            return self.rate(learner)
        if not self._rows:
            return 1.0
        return UNKNOWN_FACTOR * max(map(self.rate, self._rows))


class _Queue:
    """Pending jobs of one (priority, learner): ids in dispatch order, a head pointer."""

    def __init__(self, priority: float, learner: int, ids: np.ndarray,
                 rows: np.ndarray) -> None:
        self.priority, self.learner = priority, learner
        self.ids, self.rows, self.head = ids, rows, 0
        self._rows_after = np.concatenate([np.cumsum(rows[::-1])[::-1], [0.0]])

    @property
    def rows_left(self) -> float:
        """Train rows of the pending jobs."""
        return float(self._rows_after[self.head])

    def __len__(self) -> int:
        return len(self.ids) - self.head

    def take(self, k: int) -> np.ndarray:
        chunk = self.ids[self.head:self.head + k]
        self.head += len(chunk)
        return chunk

    def count_at_least(self, rows: float) -> int:
        """Pending jobs (from the head) with at least ``rows`` train rows."""
        descending = -self.rows[self.head:]
        return int(np.searchsorted(descending, -rows, side="right"))


class Scheduler:
    """Hands out pending job ids in chunks, tracks what each rank holds.

    Parameters
    ----------
    job_ids : array-like of int
        Jobs still to run.
    costs : CostModel or array-like of float, optional
        The cost model (indexed by job id; ``order="lpt"`` ranks by it), or fixed
        relative costs of ``job_ids`` (same length).
    priority : array-like of float, optional
        Per job id; higher goes first whatever the order.
    order : {"lpt", "grid", "random"}, default="lpt"
        Dispatch order within a priority.
    chunk_size : int or "auto", default=1
        Jobs per assignment; ``"auto"`` adapts it (see the module docstring).
    n_workers : int, default=1
        Ranks asking for work (for the guided bound of automatic chunks).
    seed : int, default=0
        Seed of ``order="random"``.
    solo : array-like of int, optional
        Jobs (among ``job_ids``) that go out first, one per chunk (higher priority,
        then longest expected first).

    Examples
    --------
    >>> s = Scheduler([0, 1, 2], costs=[1.0, 5.0, 3.0])
    >>> s.next_chunk(rank=1), s.next_chunk(rank=2)
    ([1], [2])
    >>> s.complete(1, [1]); s.n_done, s.n_pending, s.in_flight(2)
    (1, 1, [2])
    >>> s = Scheduler(range(6), chunk_size=3, order="grid", solo=[4])
    >>> s.next_chunk(rank=1), s.n_solo_pending, s.next_chunk(rank=1)
    ([4], 0, [0, 1, 2])
    """

    def __init__(
        self, job_ids: Any, costs: Any = None, *, priority: Any = None,
        order: str = "lpt", chunk_size: int | str = 1, n_workers: int = 1, seed: int = 0,
        solo: Any = None,
    ) -> None:
        if order not in ORDERS:
            raise invalid_parameter("run", "order", f"one of {ORDERS}", order)
        if chunk_size != "auto" and (isinstance(chunk_size, bool)
                                     or not isinstance(chunk_size, int) or chunk_size < 1):
            raise invalid_parameter("run", "chunk_size", "an int >= 1 or 'auto'", chunk_size)
        ids = np.asarray(job_ids, dtype=np.int64)
        self.model = _as_model(ids, costs)
        self.order, self.chunk_size, self.n_workers = order, chunk_size, max(1, n_workers)
        self.n_total = self._n_pending = len(ids)
        prio = np.zeros(len(ids)) if priority is None else np.asarray(priority, float)[ids]
        alone = np.isin(ids, np.asarray([] if solo is None else solo, dtype=np.int64))
        cost = [self._job_cost(job) for job in ids[alone].tolist()]
        first = np.lexsort((ids[alone], -np.asarray(cost), -prio[alone]))
        self._solo = deque(ids[alone][first].tolist())
        self._solo_out: set[int] = set()
        rest, rest_prio = ids[~alone], prio[~alone]
        probe = (self._probes(rest, rest_prio) if order == "lpt" and isinstance(costs, CostModel)
                 else np.zeros(len(rest), bool))
        self._probe_ids = rest[probe].tolist()
        self._probe_prio = rest_prio[probe].tolist()
        self._queues = self._make_queues(rest[~probe], rest_prio[~probe], seed)
        self._held: dict[int, set[int]] = {}
        self.n_done = 0

    def _probes(self, ids: np.ndarray, prio: np.ndarray) -> np.ndarray:
        """Mask of the first wave: for each (priority, task, learner) whose learner has
        no finished split, its job with the most train rows (lowest id on ties)."""
        model = self.model
        unknown = np.asarray([not model.knows(lr) for lr in range(
            int(model.learner.max(initial=-1)) + 1)], dtype=bool)
        if not unknown.any():
            return np.zeros(len(ids), bool)
        keys = np.column_stack([-prio, model.task[ids], model.learner[ids],
                                -model.n_train[ids], ids])
        order = np.lexsort(keys.T[::-1])
        first = np.ones(len(ids), bool)
        first[1:] = (np.diff(keys[order][:, :3], axis=0) != 0).any(axis=1)
        mask = np.zeros(len(ids), bool)
        mask[order[first]] = True
        return mask & unknown[model.learner[ids]]

    def _make_queues(self, ids: np.ndarray, prio: np.ndarray, seed: int) -> list[_Queue]:
        if self.order == "random":
            shuffle = np.random.default_rng(seed).permutation(len(ids))
            ids, prio = ids[shuffle], prio[shuffle]
        elif self.order == "grid":
            ascending = np.argsort(ids, kind="stable")
            ids, prio = ids[ascending], prio[ascending]
        by_learner = self.order == "lpt"
        learners = self.model.learner[ids] if by_learner else np.zeros(len(ids), np.int64)
        queues = []
        for p in np.unique(prio)[::-1].tolist():
            for learner in np.unique(learners[prio == p]).tolist():
                mine = ids[(prio == p) & (learners == learner)]
                rows = self.model.n_train[mine]
                if by_learner:
                    keep = np.lexsort((mine, -rows))  # most rows first, then job id
                    mine, rows = mine[keep], rows[keep]
                queues.append(_Queue(p, learner, mine, rows))
        return queues

    @property
    def n_pending(self) -> int:
        """Jobs not yet handed out."""
        return self._n_pending

    @property
    def n_solo_pending(self) -> int:
        """``solo`` jobs not yet handed out."""
        return len(self._solo)

    @property
    def finished(self) -> bool:
        """True when nothing is pending and nothing is in flight."""
        return not self._n_pending and self.n_in_flight == 0

    def in_flight(self, rank: int) -> list[int]:
        """Jobs handed to ``rank`` and not yet completed, sorted."""
        return sorted(self._held.get(rank, ()))

    @property
    def n_in_flight(self) -> int:
        """Jobs handed out and not completed, over all ranks."""
        return sum(len(held) for held in self._held.values())

    def _rate(self, learner: int) -> float:
        """Cost per train row of ``learner`` (1 for every learner while nothing is known)."""
        return self.model.rate(learner) if self.model.known else 1.0

    def _cost(self, queue: _Queue) -> float:
        """Expected relative cost of the queue's head (rows when nothing is known)."""
        return self._rate(queue.learner) * float(queue.rows[queue.head])

    def _rank_cost(self, learner: int, rows: float) -> float:
        """Cost for ordering of a split of ``learner`` on ``rows`` train rows (unknown
        learners first)."""
        return self.model.ranking_rate(learner) * float(rows)

    def _best(self) -> tuple[_Queue | None, float]:
        """The queue to serve next, and the best head cost among the others (queues
        leave ``_queues`` as they empty), in :meth:`CostModel.ranking_rate` units."""
        if len(self._queues) < 2:  # one learner, or none left: the common case
            return (self._queues[0] if self._queues else None), 0.0
        top = max(q.priority for q in self._queues)
        candidates = [q for q in self._queues if q.priority == top]
        if self.order != "lpt" or len(candidates) == 1:
            return candidates[0], 0.0
        costs = [self._rank_cost(q.learner, q.rows[q.head]) for q in candidates]
        known = self.model.knows
        # ties between unknown learners go round-robin (most splits pending first), so
        # that workers freed together do not all take more of the same unknown learner
        best = max(range(len(candidates)), key=lambda i: (
            costs[i], 0 if known(candidates[i].learner) else len(candidates[i])))
        others = costs[:best] + costs[best + 1:]
        return candidates[best], max(others)

    def _job_cost(self, job_id: int) -> float:
        return self._rate(int(self.model.learner[job_id])) * float(self.model.n_train[job_id])

    def head_cost(self) -> float:
        """Expected cost of the job that would go out next (0 when none)."""
        upcoming = self.peek()
        return 0.0 if upcoming is None else self._job_cost(upcoming)

    def pending_cost(self) -> float:
        """Expected cost of every pending job, in :meth:`head_cost`'s units."""
        queued = sum(self._rate(q.learner) * q.rows_left for q in self._queues)
        single = [*self._solo, *self._probe_ids]
        return queued + sum(map(self._job_cost, single)) if single else queued

    def peek(self) -> int | None:
        """The job id that would go out next, or None."""
        if self._solo:
            return self._solo[0]
        probe = self._next_probe()
        if probe is not None:
            return self._probe_ids[probe]
        queue, _ = self._best()
        return None if queue is None else int(queue.ids[queue.head])

    def _next_probe(self) -> int | None:
        """Index in the first wave of the probe to hand out next (highest priority,
        then highest ranking cost), or None when the queues come first."""
        if not self._probe_ids:
            return None
        top = max(self._probe_prio)
        if self._queues and max(q.priority for q in self._queues) > top:
            return None
        model = self.model
        costs = [self._rank_cost(int(model.learner[job]), model.n_train[job])
                 if prio == top else -1.0
                 for job, prio in zip(self._probe_ids, self._probe_prio, strict=True)]
        return int(np.argmax(costs))

    def _size(self, queue: _Queue) -> int:
        """Jobs in the next chunk (one while nothing is known of the queue's learner)."""
        if self.chunk_size != "auto":
            return int(self.chunk_size)
        if not self.model.knows(queue.learner):
            return 1
        by_time = int(CHUNK_SECONDS / max(self._cost(queue), 1e-9) + 1e-6)
        guided = math.ceil(self._n_pending / (GUIDED * self.n_workers))
        return max(1, min(by_time, guided, MAX_CHUNK))

    def next_chunk(self, rank: int) -> list[int]:
        """Job ids for ``rank`` (empty when none can go out now): a ``solo`` job alone
        while any is pending."""
        probe = None if self._solo else self._next_probe()
        if self._solo and self._solo_may_go():
            chunk = [self._solo.popleft()]
            self._solo_out.add(chunk[0])
        elif probe is not None:
            chunk = [self._probe_ids.pop(probe)]
            self._probe_prio.pop(probe)
        else:
            chunk = self._next_queued()
        self._n_pending -= len(chunk)
        self._held.setdefault(rank, set()).update(chunk)
        return chunk

    def _solo_may_go(self) -> bool:
        """May the next suspect go out now (see the module docstring)?"""
        if not self._solo_out or not self.model.known:
            return True
        return self.model.expected(self._solo[0]) >= SOLO_SERIAL_SECONDS

    def _next_queued(self) -> list[int]:
        queue, runner_up = self._best()
        if queue is None:
            return []
        size = self._size(queue)
        if runner_up > 0 and self.order == "lpt":
            rows = runner_up / max(self.model.ranking_rate(queue.learner), 1e-300)
            size = min(size, max(1, queue.count_at_least(rows)))
        chunk = queue.take(size).tolist()
        if not len(queue):
            self._queues.remove(queue)
        return chunk

    def release(self, rank: int, job_ids: list[int]) -> None:
        """Take back jobs ``rank`` was given and did not start: they go out first again."""
        held = self._held.get(rank, set())
        returned = [j for j in job_ids if j in held]
        held.difference_update(returned)
        self._solo_out.difference_update(returned)
        back = np.asarray(returned, dtype=np.int64)
        if len(back):
            top = max((q.priority for q in self._queues), default=0.0)
            learner = int(self.model.learner[back[0]])
            self._queues.insert(0, _Queue(top, learner, back, self.model.n_train[back]))
            self._n_pending += len(back)

    def complete(self, rank: int, job_ids: list[int]) -> None:
        """Record that ``rank`` finished ``job_ids`` (unknown ids are ignored)."""
        held = self._held.get(rank, set())
        before = len(held)
        held.difference_update(job_ids)
        if self._solo_out:
            self._solo_out.difference_update(job_ids)
        self.n_done += before - len(held)


def _as_model(ids: np.ndarray, costs: Any) -> CostModel:
    """A cost model from a CostModel, fixed costs per job (rows of one learner), or none."""
    if isinstance(costs, CostModel):
        return costs
    n = int(ids.max()) + 1 if len(ids) else 0
    model = CostModel(np.zeros(n, dtype=np.int64), np.ones(n))
    if costs is not None:
        model.n_train[ids] = np.asarray(costs, dtype=np.float64)
    return model
