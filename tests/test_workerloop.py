"""A worker rank's loop: when it asks rank 0 for its next chunk."""

from __future__ import annotations


def test_workers_ask_ahead_by_round_trips_and_for_long_last_splits():
    from mpibench.engine.workerloop import should_ask_ahead

    assert should_ask_ahead(1, 0, 0.0, 0.0, 0.0)  # the first split: length unknown
    assert not should_ask_ahead(2, 0, 0.0, 0.0, 0.0)  # nothing measured yet
    assert should_ask_ahead(1, 1, 5.0, 5.0, 0.0)  # long split: when starting the last
    assert not should_ask_ahead(2, 1, 5.0, 5.0, 0.0)  # ... not before
    # 20 ms splits, 35 ms round trips: 2 round trips = 3.5 splits ahead
    assert [should_ask_ahead(n, 9, 0.02, 0.02, 0.035) for n in (4, 3, 2)] == [False, True, True]
    # 10 us splits and a fast rank 0: at least 1 ms ahead (100 splits)
    assert not should_ask_ahead(101, 9, 1e-5, 1e-5, 1e-5)
    assert should_ask_ahead(99, 9, 1e-5, 1e-5, 1e-5)
