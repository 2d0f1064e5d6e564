"""The ``--no-isolate`` executor: splits run in the worker rank's own process.

Cheaper per split than an isolated executor, but a crash, a hang or a memory blow-up of
a learner is the rank's: only ``os._exit`` and ``sys.exit`` are caught here (they fail
their split). Limits and interrupts need isolation.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Iterator

from ..store.records import SplitResult
from .protocol import Assignment
from .worker import SplitRunner, run_with_fallback


class LearnerExited(RuntimeError):
    """A learner called ``os._exit`` in a rank's own process (``--no-isolate``)."""


@contextlib.contextmanager
def exits_as_errors() -> Iterator[None]:
    """While it is open, ``os._exit`` called by this thread (a learner's code) raises
    :class:`LearnerExited` instead of ending the rank without a word (which ends the
    whole MPI job); other threads (the orphan check) still exit."""
    real_exit, thread = os._exit, threading.current_thread()

    def guarded(code: int) -> None:
        if threading.current_thread() is not thread:
            real_exit(code)
        raise LearnerExited(f"the learner called os._exit({code}), which would have ended "
                            "this rank and the job (with isolation, the default, only its "
                            "split's process ends)")

    os._exit = guarded  # type: ignore[assignment]
    try:
        yield
    finally:
        os._exit = real_exit


class InProcessExecutor:
    """Runs splits in the worker process itself (``--no-isolate``), with the fallback."""

    batches = False
    """One split costs what one of a batch costs here."""

    def __init__(self, runner: SplitRunner) -> None:
        self.runner = runner
        self.interrupt_check: Callable[[], bool] | None = None
        """Never asked: a split running in this process cannot be stopped."""

    def run(self, job: Assignment) -> SplitResult:
        """Run ``job``; on failure train the fallback (if any) for its scores."""
        with exits_as_errors():
            return run_with_fallback(self.runner.run, self.runner, job)

    def run_many(self, jobs: list[Assignment]) -> list[SplitResult]:
        """Run ``jobs`` one after the other."""
        return [self.run(job) for job in jobs]

    def ready(self) -> None:
        """Nothing to wait for: the runner loaded every learner as it was made."""

    def close(self) -> None:
        """Nothing to release."""
