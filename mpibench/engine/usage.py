"""What one split used: CPU seconds, peak memory and, where it used PyTorch's CUDA, GPU
memory and GPU seconds, measured in the process that runs it.

- ``cpu_seconds``: user + system time of the process (all its threads) and of its
  children it waited for, before and after the split.
- ``max_rss_bytes``: the peak resident memory during this split. On Linux the process's
  high-water mark is reset before each split (``/proc/self/clear_refs``, value 5) and
  read after it (``getrusage``); elsewhere, or where that file cannot be written, it is
  the process's peak so far (its lifetime's, as before). Children are not included.
- ``gpu_max_memory_bytes`` and ``gpu_seconds``: only when the process has initialised
  CUDA through PyTorch by the end of the split (0 otherwise): PyTorch's peak allocated
  memory during the split (its peak statistics are reset before the split when CUDA was
  already initialised), and the split's wall-clock seconds (the GPU was held, not
  necessarily busy, for that long).

The meter costs a few microseconds per split (two CPU clock reads, three ``getrusage``
and one write to an open ``clear_refs``; measured in BENCHMARKS.md, issue 26).
"""

from __future__ import annotations

import os
import resource
import sys
import time
from typing import Any, NamedTuple

from .procs import kernel_peak_rss_bytes, note_peak

CLEAR_REFS = "/proc/self/clear_refs"
_RESET_PEAK = b"5"
"""What ``clear_refs`` takes to reset the peak resident memory (Linux >= 4.0)."""


class SplitUsage(NamedTuple):
    """What a split used (see the module's text)."""

    cpu_seconds: float = 0.0
    max_rss_bytes: int = 0
    gpu_max_memory_bytes: int = 0
    gpu_seconds: float = 0.0


def _cpu_seconds() -> float:
    """CPU seconds of this process (every thread; nanosecond clock) and of its children
    it waited for (microseconds; ``os.times`` counts in 10 ms ticks)."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


class UsageMeter:
    """Measures splits one after another in this process.

    Examples
    --------
    >>> meter = UsageMeter()
    >>> meter.begin()
    >>> total = sum(i * i for i in range(100_000))
    >>> used = meter.end(wall_seconds=0.01)
    >>> used.cpu_seconds >= 0 and used.max_rss_bytes > 0
    True
    """

    def __init__(self) -> None:
        self._pid = -1
        self._clear_refs: int | None = None
        self._cpu_at_start = 0.0

    def _reset_peak(self) -> None:
        """Reset this process's peak resident memory where that can be done (the
        descriptor is opened again after a fork: ``/proc/self`` was the parent)."""
        if self._pid != os.getpid():
            self._pid = os.getpid()
            try:
                self._clear_refs = os.open(CLEAR_REFS, os.O_WRONLY | os.O_CLOEXEC)
            except OSError:
                self._clear_refs = None
        if self._clear_refs is not None:
            try:
                os.write(self._clear_refs, _RESET_PEAK)
            except OSError:
                self._clear_refs = None

    def begin(self) -> None:
        """Before a split: note the CPU time, reset the peaks."""
        self._reset_peak()
        cuda = _initialised_cuda()
        if cuda is not None:
            cuda.reset_peak_memory_stats()
        self._cpu_at_start = _cpu_seconds()

    def end(self, wall_seconds: float) -> SplitUsage:
        """After the split (``wall_seconds`` long): what it used."""
        cpu = _cpu_seconds() - self._cpu_at_start
        peak = kernel_peak_rss_bytes()
        note_peak(peak)  # (the process's own peak, for its rank's row)
        cuda = _initialised_cuda()
        if cuda is None:
            return SplitUsage(cpu, peak)
        return SplitUsage(cpu, peak, int(cuda.max_memory_allocated()), wall_seconds)


def _initialised_cuda() -> Any:
    """``torch.cuda`` when this process imported PyTorch and initialised CUDA; None
    otherwise (nothing is imported or initialised here)."""
    torch = sys.modules.get("torch")
    cuda = getattr(torch, "cuda", None)
    if cuda is None:
        return None
    try:
        return cuda if cuda.is_initialized() else None
    except Exception:  # (a half-imported or stubbed torch)
        return None
