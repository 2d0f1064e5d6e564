"""Which splits go next, and how many at once: a pure-Python state machine (no mpi4py).

The dispatcher reports events ("rank r wants work", "these jobs finished") and the
scheduler answers with job ids. Every event costs amortised O(log learners) plus O(1)
per split handed out, whatever the number of tasks: no scan over tasks, learners or
jobs per request.

Ordering: ``lpt`` (longest expected first) keeps one queue of pending splits per
(priority, learner), sorted by size (train rows x features), and serves the queue
whose head is the most expensive: the learner's rate (seconds per unit of size, from
:class:`~mpibench.engine.costs.CostModel`) x the head's size. Queues sit in two heaps:
learners with a finished split by that cost, and the first wave, learners with none,
by size (they rank above the known ones: ``UNKNOWN_FACTOR`` x the highest known rate;
equal sizes taken in turn). A learner is learned from one split on any task, so a
grid of a thousand data sets needs one first-wave split per learner, not one per
(task, learner). ``grid`` keeps job id order, ``random`` shuffles. A user
``priority`` (higher first) comes before any of them.

Chunking: ``chunk_size="auto"`` hands out one split until the cost model knows the
learner, then about ``CHUNK_SECONDS`` of expected work per message, never more than
``1 / (GUIDED * workers)`` of what is pending (guided self-scheduling: chunks shrink
as the run ends), so no-op splits go out by the hundred and long ones one at a time.
Under ``lpt`` a chunk stops before a split smaller than the head of the next queue.

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

Time limit: near the end of a job the dispatcher asks :meth:`Scheduler.next_fitting`
for the longest pending split (of a learner it knows) expected to finish in the time
left, found per queue by binary search on its sizes.
"""

from __future__ import annotations

import heapq
import math
import time
from collections import deque
from itertools import count
from typing import Any

import numpy as np

from ..tuning import CHUNK_SECONDS, FEW_SPLITS, GUIDED, MAX_CHUNK, SOLO_SERIAL_SECONDS
from .costs import CostModel, as_cost_model
from .queues import JobQueue

__all__ = ["CostModel", "Scheduler"]


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
        ids = np.asarray(job_ids, dtype=np.int64)
        self.model = as_cost_model(ids, costs)
        self.order, self.chunk_size, self.n_workers = order, chunk_size, max(1, n_workers)
        self.n_total = self._n_pending = len(ids)
        prio = np.zeros(len(ids)) if priority is None else np.asarray(priority, float)[ids]
        alone = np.isin(ids, np.asarray([] if solo is None else solo, dtype=np.int64))
        cost = self._costs(ids[alone])
        first = np.lexsort((ids[alone], -cost, -prio[alone]))
        self._solo = deque(ids[alone][first].tolist())
        self._solo_out: set[int] = set()
        self._held: dict[int, dict[int, float]] = {}
        """Per rank: job id -> time (``time.monotonic()``) it was handed out, in order."""
        self.n_done = 0
        self._by_learner = order == "lpt" and isinstance(costs, CostModel)
        model = self.model
        self._pending_size = np.zeros(model.n_learners)
        """Size of the pending jobs of each learner."""
        self._pending_pair_size = np.zeros(len(model.pair_learner))
        """Size of the pending jobs of each (task, learner) pair."""
        self._count(ids, +1)
        self._seq = count()
        self._queues: list[JobQueue] = []
        self._front: deque[JobQueue] = deque()  # released jobs: they go out first again
        self._known_heap: list[tuple] = []
        self._unknown_heap: list[tuple] = []
        self._rate_used = model.rates()
        self._was_known = model.known_learners()
        """Learners known to the heaps and the pending cost (the model may know more)."""
        self._log_position = len(model.changes)
        self._queues_of: dict[int, list[int]] = {}
        for queue in self._make_queues(ids[~alone], prio[~alone], seed):
            queue.index = len(self._queues)
            self._queues_of.setdefault(queue.learner, []).append(queue.index)
            self._queues.append(queue)
            self._push(queue.index)
        self._pending_known = 0.0  # sum of rate x pending size over known learners ...
        self._pending_unknown = 0.0  # ... and pending size of the unknown ones
        self._refresh_pending()

    # -- what is pending --------------------------------------------------------------

    def _count(self, jobs: np.ndarray | list[int], sign: int) -> None:
        """Add (``sign`` +1) or remove (-1) jobs from the pending sizes."""
        model = self.model
        if len(jobs) <= FEW_SPLITS:
            for job in jobs:
                size = sign * float(model.size[job])
                self._pending_size[model.learner[job]] += size
                self._pending_pair_size[model.pair[job]] += size
            return
        jobs = np.asarray(jobs, dtype=np.int64)
        sizes = sign * model.size[jobs]
        np.add.at(self._pending_size, model.learner[jobs], sizes)
        np.add.at(self._pending_pair_size, model.pair[jobs], sizes)

    def _refresh_pending(self) -> None:
        """Recompute the pending cost's two sums from scratch (O(learners))."""
        self._sync()
        known = self._was_known
        self._rate_used = self.model.rates()
        self._pending_known = float(np.dot(self._rate_used[known], self._pending_size[known]))
        self._pending_unknown = float(self._pending_size[~known].sum())

    def _rate(self, learner: int) -> float:
        """Cost per unit of size of ``learner`` (1 for every learner while nothing is
        known)."""
        return self.model.rate(learner) if self.model.known else 1.0

    def _costs(self, jobs: np.ndarray) -> np.ndarray:
        """Expected relative cost of ``jobs`` (sizes while nothing is known)."""
        if not self.model.known:
            return self.model.size[jobs]
        return self.model.rates()[self.model.learner[jobs]] * self.model.size[jobs]

    def _job_cost(self, job_id: int) -> float:
        return self._rate(int(self.model.learner[job_id])) * float(self.model.size[job_id])

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

    def holds(self, rank: int) -> bool:
        """True while ``rank`` holds jobs it has not completed."""
        return bool(self._held.get(rank))

    def oldest_held(self, rank: int) -> tuple[int, float] | None:
        """The job ``rank`` was given first among those it holds (the one it runs, as
        chunks run in order) and when it was handed out (``time.monotonic()``)."""
        held = self._held.get(rank)
        if not held:
            return None
        job = next(iter(held))
        return job, held[job]

    @property
    def n_in_flight(self) -> int:
        """Jobs handed out and not completed, over all ranks."""
        return sum(len(held) for held in self._held.values())

    def unknown_pending(self) -> bool:
        """True while a pending job's learner has no finished split (the first wave)."""
        self._sync()
        return bool((self._pending_size[~self._was_known] > 0).any())

    def pending_cost(self) -> float:
        """Expected cost of every pending job, in :meth:`head_cost`'s units (O(1))."""
        self._sync()
        if not self.model.known:
            return float(self._pending_size.sum())
        return max(self._pending_known + self._pending_unknown * self.model.rate_pooled(), 0.0)

    def pending_seconds(self) -> float:
        """Expected seconds of every pending job, each at its (task, learner) pair's
        rate where that pair has finished splits (O(pairs): for the estimate of the
        time left, not for every request)."""
        return float(np.dot(self.model.pair_rates(), np.maximum(self._pending_pair_size, 0)))

    def head_cost(self) -> float:
        """Expected cost of the job that would go out next (0 when none)."""
        upcoming = self.peek()
        return 0.0 if upcoming is None else self._job_cost(upcoming)

    # -- the two heaps ----------------------------------------------------------------

    def _push(self, index: int) -> None:
        """(Re)enter queue ``index`` in its heap under its current head and rate."""
        queue = self._queues[index]
        if not len(queue):
            return
        if self._by_learner and self._was_known[queue.learner]:
            key = -self.model.rate(queue.learner) * queue.head_size
            heapq.heappush(self._known_heap, (-queue.priority, key, next(self._seq), index,
                                              queue.version))
        else:  # the first wave, or one queue per priority (grid, random, fixed costs)
            key = -queue.head_size if self._by_learner else 0.0
            heapq.heappush(self._unknown_heap, (-queue.priority, min(queue.taken, 1), key,
                                                queue.taken, next(self._seq), index,
                                                queue.version))
        if len(self._known_heap) + len(self._unknown_heap) > 4 * len(self._queues) + 64:
            self._rebuild()

    def _rebuild(self) -> None:
        """Drop stale heap entries (bounded memory: entries are pushed on every change)."""
        self._known_heap, self._unknown_heap = [], []
        for index, queue in enumerate(self._queues):
            queue.version += 1
            if len(queue):
                self._push(index)

    def _sync(self) -> None:
        """Take in what the cost model learned since the last call: learners whose rate
        moved are re-entered in the heaps, and the pending cost follows (O(1) per
        learner that learned)."""
        model = self.model
        if len(model.changes) == self._log_position:
            return
        changed = set(model.changes[self._log_position:])
        self._log_position = len(model.changes)
        for learner in changed:
            new = model.rate(learner)
            size = self._pending_size[learner]
            if self._was_known[learner]:
                self._pending_known += (new - self._rate_used[learner]) * size
            else:
                self._was_known[learner] = True
                self._pending_unknown -= size
                self._pending_known += new * size
            self._rate_used[learner] = new
            for index in self._queues_of.get(learner, ()):
                self._queues[index].version += 1
                self._push(index)

    def _top(self, heap: list[tuple]) -> tuple | None:
        """The heap's best live entry (stale ones dropped), or None."""
        while heap:
            entry = heap[0]
            queue = self._queues[entry[-2]]
            if entry[-1] == queue.version and len(queue):
                return entry
            heapq.heappop(heap)
        return None

    def _ranked(self) -> list[tuple[tuple, JobQueue, list]]:
        """The best live queue of each heap, best first, as ``((-priority, -cost,
        tier), queue, heap)`` in one cost unit (unknown learners at ``ranking_rate``,
        and first on ties)."""
        self._sync()
        out = []
        known = self._top(self._known_heap)
        if known is not None:
            out.append(((known[0], known[1], 1), self._queues[known[-2]], self._known_heap))
        unknown = self._top(self._unknown_heap)
        if unknown is not None:
            queue = self._queues[unknown[-2]]
            factor = self.model.ranking_rate(queue.learner) if self._by_learner else 1.0
            # every unknown learner's first split before any one's second (the first
            # wave), then by size; all of them above the known ones of equal cost
            cost = -math.inf if unknown[1] == 0 else unknown[2] * factor
            out.append(((unknown[0], cost, 0), queue, self._unknown_heap))
        out.sort(key=lambda entry: entry[0])
        return out

    def _make_queues(self, ids: np.ndarray, prio: np.ndarray, seed: int) -> list[JobQueue]:
        if self.order == "random":
            shuffle = np.random.default_rng(seed).permutation(len(ids))
            ids, prio = ids[shuffle], prio[shuffle]
        elif self.order == "grid":
            ascending = np.argsort(ids, kind="stable")
            ids, prio = ids[ascending], prio[ascending]
        sizes = self.model.size[ids]
        if self.order == "lpt":  # most expensive first, then job id
            keep = np.lexsort((ids, -sizes, -prio))
            ids, prio, sizes = ids[keep], prio[keep], sizes[keep]
        else:
            keep = np.argsort(-prio, kind="stable")
            ids, prio, sizes = ids[keep], prio[keep], sizes[keep]
        learners = self.model.learner[ids] if self._by_learner else np.zeros(len(ids), np.int64)
        queues = []
        # one pass: group by (priority, learner), keeping the order within each group
        group = np.lexsort((learners, -prio))
        bounds = np.flatnonzero(np.diff(prio[group]) != 0) + 1
        bounds = np.union1d(bounds, np.flatnonzero(np.diff(learners[group]) != 0) + 1)
        for part in np.split(group, bounds) if len(group) else []:
            part = np.sort(part)  # dispatch order within the group
            queues.append(JobQueue(float(prio[part[0]]), int(learners[part[0]]), ids[part],
                                 sizes[part]))
        return queues

    # -- handing out ------------------------------------------------------------------

    def peek(self) -> int | None:
        """The job id that would go out next, or None."""
        if self._solo:
            return self._solo[0]
        if self._front:
            queue = self._front[0]
            return int(queue.ids[queue.head])
        ranked = self._ranked()
        if not ranked:
            return None
        queue = ranked[0][1]
        return int(queue.ids[queue.head])

    def _size(self, queue: JobQueue) -> int:
        """Jobs in the next chunk (one while nothing is known of the head's learner)."""
        if self.chunk_size != "auto":
            return int(self.chunk_size)
        head = int(queue.ids[queue.head])
        if not self.model.knows(int(self.model.learner[head])):
            return 1
        by_time = int(CHUNK_SECONDS / max(self.model.expected(head), 1e-9) + 1e-6)
        guided = math.ceil(self._n_pending / (GUIDED * self.n_workers))
        return max(1, min(by_time, guided, MAX_CHUNK))

    def next_chunk(self, rank: int) -> list[int]:
        """Job ids for ``rank`` (empty when none can go out now): a ``solo`` job alone
        while any is pending."""
        if self._solo and self._solo_may_go():
            chunk = [self._solo.popleft()]
            self._solo_out.add(chunk[0])
        elif self._front:
            queue = self._front[0]
            chunk = queue.take(self._size(queue)).tolist()
            if not len(queue):
                self._front.popleft()
        else:
            chunk = self._next_queued()
        return self._handed_out(rank, chunk)

    def _handed_out(self, rank: int, chunk: list[int]) -> list[int]:
        """Count ``chunk`` out of the pending jobs and into what ``rank`` holds."""
        self._n_pending -= len(chunk)
        self._took(chunk)
        now = time.monotonic()
        held = self._held.setdefault(rank, {})
        for job in chunk:
            held[job] = now
        return chunk

    def next_fitting(self, rank: int, seconds: float) -> list[int]:
        """The longest pending job of a known learner expected to take at most
        ``seconds``, handed out to ``rank`` (``[]``: none; only in ``lpt`` order, whose
        queues run longest first). What fills the time left before a job's end."""
        if not self._by_learner:
            return []
        best: tuple[JobQueue, int] | None = None
        best_cost = -1.0
        for queue in self._queues:
            if not len(queue) or not self.model.knows(queue.learner):
                continue
            position = self._fitting(queue, seconds)
            if position is not None:
                cost = self.model.expected(int(queue.ids[position]))
                if cost > best_cost:
                    best, best_cost = (queue, position), cost
        if best is None:
            return []
        queue, position = best
        chunk = [queue.take_at(position)]
        self._push(queue.index)
        return self._handed_out(rank, chunk)

    def _fitting(self, queue: JobQueue, seconds: float, scan: int = 32) -> int | None:
        """The first position of ``queue`` (sizes descending) whose job is expected to
        take at most ``seconds``: found by the learner's rate, checked by the job's own
        expectation (its task's rate may differ) over the next ``scan`` jobs."""
        rate = max(self.model.rate(queue.learner), 1e-300)
        start = queue.head + int(np.searchsorted(-queue.sizes[queue.head:], -seconds / rate,
                                                 side="left"))
        for position in range(start, min(start + scan, len(queue.ids))):
            if self.model.expected(int(queue.ids[position])) <= seconds:
                return position
        return None

    def _took(self, chunk: list[int]) -> None:
        """Pending sizes and cost after ``chunk`` went out."""
        if not chunk:
            return
        model = self.model
        self._count(chunk, -1)
        if len(chunk) <= FEW_SPLITS:
            for job in chunk:
                learner = model.learner[job]
                if self._was_known[learner]:
                    self._pending_known -= self._rate_used[learner] * model.size[job]
                else:
                    self._pending_unknown -= model.size[job]
            return
        jobs = np.asarray(chunk, dtype=np.int64)
        learners = model.learner[jobs]
        known = self._was_known[learners]
        sizes = model.size[jobs]
        self._pending_known -= float(np.dot(self._rate_used[learners[known]], sizes[known]))
        self._pending_unknown -= float(sizes[~known].sum())

    def _solo_may_go(self) -> bool:
        """May the next suspect go out now (see the module docstring)?"""
        if not self._solo_out or not self.model.known:
            return True
        return self.model.expected(self._solo[0]) >= SOLO_SERIAL_SECONDS

    def _next_queued(self) -> list[int]:
        ranked = self._ranked()
        if not ranked:
            return []
        best_key, queue, heap = ranked[0]
        heapq.heappop(heap)  # (its live entry is the top of its heap)
        size = self._size(queue)
        runner = self._ranked()
        if runner and self._by_learner and runner[0][0][0] == best_key[0]:
            runner_up = -runner[0][0][1]  # stop before a longer split of another learner
            if runner_up > 0:
                rate = self.model.ranking_rate(queue.learner)
                size = min(size, max(1, queue.count_at_least(runner_up / max(rate, 1e-300))))
        chunk = queue.take(size)
        self._push(queue.index)
        return chunk.tolist()

    def release(self, rank: int, job_ids: list[int]) -> None:
        """Take back jobs ``rank`` was given and did not start: they go out first again."""
        held = self._held.get(rank, {})
        returned = [j for j in job_ids if j in held]
        for job in returned:
            del held[job]
        self._solo_out.difference_update(returned)
        back = np.asarray(returned, dtype=np.int64)
        if len(back):
            self._count(back, +1)
            self._refresh_pending()
            self._front.append(JobQueue(0.0, int(self.model.learner[back[0]]), back,
                                      self.model.size[back]))
            self._n_pending += len(back)

    def complete(self, rank: int, job_ids: list[int]) -> None:
        """Record that ``rank`` finished ``job_ids`` (unknown ids are ignored)."""
        held = self._held.get(rank)
        if not held:
            return
        before = len(held)
        for job in job_ids:
            held.pop(job, None)
        if self._solo_out:
            self._solo_out.difference_update(job_ids)
        self.n_done += before - len(held)
