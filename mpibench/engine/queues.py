"""A queue of pending jobs of one (priority, learner), as the scheduler keeps them."""

from __future__ import annotations

import numpy as np


class JobQueue:
    """Pending jobs of one (priority, learner): ids in dispatch order, a head pointer.

    ``version`` changes whenever the queue's place in a heap does (its head moved, its
    learner's rate changed): heap entries of an older version are stale.
    """

    def __init__(self, priority: float, learner: int, ids: np.ndarray,
                 sizes: np.ndarray) -> None:
        self.priority, self.learner = priority, learner
        self.ids, self.sizes, self.head = ids, sizes, 0
        self.version = self.taken = 0
        self.index = -1  # place in the scheduler's list of queues (-1: a released batch)

    def __len__(self) -> int:
        return len(self.ids) - self.head

    @property
    def head_size(self) -> float:
        return float(self.sizes[self.head])

    def take(self, k: int) -> np.ndarray:
        chunk = self.ids[self.head:self.head + k]
        self.head += len(chunk)
        self.version += 1
        self.taken += 1
        return chunk

    def take_at(self, position: int) -> int:
        """Take the job at ``position`` (the head, or one further down the queue)."""
        job = int(self.ids[position])
        if position == self.head:
            self.head += 1
        else:
            self.ids = np.delete(self.ids, position)
            self.sizes = np.delete(self.sizes, position)
        self.version += 1
        self.taken += 1
        return job

    def count_at_least(self, size: float) -> int:
        """Pending jobs (from the head) of at least ``size``."""
        descending = -self.sizes[self.head:]
        return int(np.searchsorted(descending, -size, side="right"))
