"""A least-recently-used cache of task data bounded by bytes, one per executor.

A grid of a thousand data sets must neither fill an executor's memory nor load a
task more than once while it fits: each task's arrays (and each split index) enter
when a split first needs them and leave, least recently used first, once the cache
holds more than ``MPIBENCH_CACHE_BYTES`` (default ``CACHE_BYTES``). Memory-mapped
arrays count too (their pages are the node's page cache, shared, and come back in
microseconds); arrays read into the process (pickled frames, text targets,
``MPIBENCH_SHARE_DATA=0``) are what the bound protects.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from ..tuning import CACHE_BYTES
from .config import env_int


def nbytes(value: Any) -> int:
    """Bytes held by arrays, frames and the tuples, lists and objects holding them."""
    if isinstance(value, np.ndarray):
        return int(value.nbytes)
    if hasattr(value, "memory_usage"):  # a DataFrame or Series
        return int(value.memory_usage(index=False, deep=False).sum())
    if isinstance(value, tuple | list):
        return sum(nbytes(v) for v in value)
    if hasattr(value, "__dict__"):
        return sum(nbytes(v) for v in vars(value).values())
    return 0


class ByteCache:
    """``cache.get(key, load)``: the value, loaded by ``load()`` on a miss.

    Parameters
    ----------
    limit : int, optional
        Bytes kept (default: ``MPIBENCH_CACHE_BYTES``, else ``CACHE_BYTES``). The value
        just loaded always stays, however large.

    Examples
    --------
    >>> cache = ByteCache(limit=16)
    >>> a = cache.get("a", lambda: np.zeros(1))   # 8 bytes
    >>> b = cache.get("b", lambda: np.zeros(1))
    >>> c = cache.get("c", lambda: np.zeros(1))   # 24 > 16: "a" leaves
    >>> list(cache), cache.loads
    (['b', 'c'], 3)
    """

    def __init__(self, limit: int | None = None) -> None:
        self.limit = limit if limit is not None else (
            env_int("MPIBENCH_CACHE_BYTES", CACHE_BYTES) or CACHE_BYTES)
        self._entries: OrderedDict[Any, tuple[Any, int]] = OrderedDict()
        self.bytes = 0
        self.loads = 0
        """Misses so far (each a load)."""

    def __iter__(self) -> Iterator[Any]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: Any, load: Callable[[], Any]) -> Any:
        """The cached value of ``key``, else ``load()`` (kept, evicting the least
        recently used entries beyond the byte limit)."""
        entry = self._entries.get(key)
        if entry is not None:
            self._entries.move_to_end(key)
            return entry[0]
        value = load()
        self.loads += 1
        size = nbytes(value)
        self._entries[key] = (value, size)
        self.bytes += size
        while self.bytes > self.limit and len(self._entries) > 1:
            _, (_, freed) = self._entries.popitem(last=False)
            self.bytes -= freed
        return value
