"""The scheduler is pure Python: tested in-process, and proven free of mpi4py."""

from __future__ import annotations

import subprocess
import sys

import pytest

from mpibench import MpibenchError
from mpibench.scheduler import Scheduler


def drain(scheduler, ranks):
    """Simulate workers asking in turn; returns the dispatch order."""
    order = []
    while True:
        progressed = False
        for rank in ranks:
            chunk = scheduler.next_chunk(rank)
            if chunk:
                order.extend(chunk)
                scheduler.complete(rank, chunk)
                progressed = True
        if not progressed:
            return order


def test_lpt_order_is_longest_first_and_stable():
    s = Scheduler([10, 11, 12, 13], costs=[1.0, 3.0, 3.0, 2.0], order="lpt")
    assert drain(s, [1]) == [11, 12, 13, 10]


def test_grid_order_and_random_order():
    assert drain(Scheduler([3, 1, 2], costs=[9, 1, 5], order="grid"), [1]) == [1, 2, 3]
    a = drain(Scheduler(range(50), order="random", seed=1), [1])
    b = drain(Scheduler(range(50), order="random", seed=1), [1])
    assert a == b and sorted(a) == list(range(50)) and a != list(range(50))


def test_every_job_dispatched_once_across_ranks_and_chunks():
    s = Scheduler(range(103), chunk_size=4)
    order = drain(s, [1, 2, 3])
    assert sorted(order) == list(range(103))
    assert s.finished and s.n_done == 103 and s.n_pending == 0


def test_in_flight_tracking():
    s = Scheduler(range(5), chunk_size=2, order="grid")
    assert s.next_chunk(1) == [0, 1]
    assert s.next_chunk(2) == [2, 3]
    assert s.in_flight(1) == [0, 1] and not s.finished
    s.complete(1, [0, 1, 99])  # an unknown id is ignored
    assert s.n_done == 2 and s.in_flight(1) == []
    assert s.next_chunk(1) == [4] and s.next_chunk(1) == []
    s.complete(2, [2, 3])
    s.complete(1, [4])
    assert s.finished


def test_empty_scheduler_is_finished():
    s = Scheduler([])
    assert s.next_chunk(1) == [] and s.finished


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"order": "fastest"}, "'order' parameter"),
    ({"chunk_size": 0}, "'chunk_size' parameter"),
])
def test_bad_parameters(kwargs, message):
    with pytest.raises(MpibenchError, match=message):
        Scheduler([1], **kwargs)


def test_scheduler_and_pure_modules_do_not_import_mpi4py():
    code = (
        "import sys; sys.modules['mpi4py'] = None\n"
        "import mpibench, mpibench.scheduler, mpibench.grid, mpibench.splitters\n"
        "import mpibench.storage, mpibench.protocol, mpibench.project\n"
        "s = mpibench.scheduler.Scheduler([1, 2], costs=[1, 5]); assert s.next_chunk(0) == [2]\n"
        "print('ok')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"
