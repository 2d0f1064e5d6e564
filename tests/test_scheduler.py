"""The scheduler is pure Python: tested in-process, and proven free of mpi4py."""

from __future__ import annotations

import subprocess
import sys
import time

import numpy as np
import pytest

from mpibench import MpibenchError
from mpibench.engine.scheduler import CostModel, Scheduler
from mpibench.store.batch import ResultBatch, ResultColumns
from mpibench.store.records import SplitResult


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
    """Checked once, by the run's options (the scheduler trusts what it is given)."""
    from mpibench.engine.options import RunOptions

    with pytest.raises(MpibenchError, match=message):
        RunOptions(**kwargs)


def test_scheduler_and_pure_modules_do_not_import_mpi4py():
    code = (
        "import sys; sys.modules['mpi4py'] = None\n"
        "import mpibench, mpibench.engine.scheduler, mpibench.grid, mpibench.splitters\n"
        "import mpibench.store.storage, mpibench.store.reading, mpibench.engine.protocol, "
        "mpibench.project\n"
        "s = mpibench.engine.scheduler.Scheduler([1, 2], costs=[1, 5])\n"
        "assert s.next_chunk(0) == [2]\n"
        "print('ok')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


def learned_model(rates: dict[int, float], learner, n_train):
    model = CostModel(np.asarray(learner), np.asarray(n_train))
    for learner_i, rate in rates.items():
        model.learn(learner_i, seconds=rate * 100, size=100)
    return model


def test_lpt_ranks_by_train_rows_times_the_learned_rate():
    # learner 0: 100 rows at 1 ms/row = 0.1 s; learner 1: 10 rows at 1 s/row = 10 s
    model = learned_model({0: 1e-3, 1: 1.0}, [0, 0, 1, 1], [100, 50, 10, 5])
    assert drain(Scheduler(range(4), model), [1]) == [2, 3, 0, 1]
    # before anything is learned: the first wave (the largest split of each learner),
    # then train rows (the drain learns nothing)
    assert drain(Scheduler(range(4), CostModel(np.array([0, 0, 1, 1]),
                                               np.array([100, 50, 10, 5]))), [1]) == [0, 2, 1, 3]


def simulate(scheduler, durations, n_workers):
    """Event simulation of ``n_workers`` asking for one split at a time; the cost model
    learns each split as it ends. Returns the makespan (seconds) and the start order."""
    clock, started, running = 0.0, [], {}  # rank -> (end, job)
    while True:
        for rank in range(1, n_workers + 1):
            if rank not in running:
                chunk = scheduler.next_chunk(rank)
                if chunk:
                    started.extend(chunk)
                    running[rank] = (clock + sum(durations[j] for j in chunk), chunk)
        if not running:
            return clock, started
        rank = min(running, key=lambda r: running[r][0])
        clock, chunk = running.pop(rank)
        scheduler.complete(rank, chunk)
        scheduler.model.add_columns(chunk, ["ok"] * len(chunk),
                                    [durations[j] for j in chunk])


def worst_grid(n_learners=8):
    """7 learners of 0.25 s then one of 3.0 s, KFold(4): job ids in grid order."""
    learner = np.repeat(np.arange(n_learners), 4)
    durations = np.where(learner == n_learners - 1, 3.0, 0.25)
    return learner, durations


def test_the_first_wave_samples_every_learner_and_learns_the_expensive_one_first():
    learner, durations = worst_grid()
    model = CostModel(learner, np.full(32, 100), task_of_job=np.zeros(32, int))
    makespan, started = simulate(Scheduler(range(32), model, chunk_size="auto",
                                           n_workers=8), durations, 8)
    assert sorted(learner[started[:8]]) == list(range(8))  # one split of each learner
    ideal = max(durations.sum() / 8, durations.max())
    assert ideal / makespan >= 0.80, (makespan, started)
    # the 3 s learner's other splits go out before any learner's third split
    last_long = max(started.index(j) for j in np.flatnonzero(learner == 7))
    thirds = [started.index(j) for j in np.flatnonzero(learner < 7)
              if list(learner[started[:started.index(j) + 1]]).count(learner[j]) == 3]
    assert last_long < min(thirds)


def test_a_cost_model_seeded_beforehand_gives_lpt_from_the_start():
    learner, durations = worst_grid()
    model = CostModel(learner, np.full(32, 100))
    for i in range(8):  # as from a --test run: one split of each learner, on fewer rows
        model.learn(i, seconds=float(durations[learner == i][0]), size=10.0)
    scheduler = Scheduler(range(32), model, chunk_size="auto", n_workers=8)
    makespan, started = simulate(scheduler, durations, 8)
    assert set(started[:4]) == set(np.flatnonzero(learner == 7))
    assert max(durations.sum() / 8, durations.max()) / makespan >= 0.90


def test_the_first_wave_is_one_split_per_learner_and_respects_priority():
    # 2 tasks x 2 learners, 3 splits each; learner 1 of task 1 has a higher priority
    task = np.repeat([0, 1], 6)
    learner = np.tile(np.repeat([0, 1], 3), 2)
    rows = np.tile([5, 7, 6], 4)
    priority = np.where((task == 1) & (learner == 1), 1.0, 0.0)
    model = CostModel(learner, rows, task_of_job=task)
    s = Scheduler(range(12), model, priority=priority)
    first = [s.next_chunk(1)[0] for _ in range(3 + 2)]
    assert first[:3] == [10, 11, 9]  # the higher priority first, largest split first
    assert {learner[j] for j in first[3:5]} == {0, 1}  # then one split of each learner
    assert all(rows[j] == 7 for j in first[3:5])  # ... its largest
    known = CostModel(learner, rows, task_of_job=task)
    known.learn(0, 1.0, 10.0)
    known.learn(1, 1.0, 10.0)
    assert sorted(drain(Scheduler(range(12), known), [1])[:4]) == [1, 4, 7, 10]  # lpt


def test_a_thousand_tasks_need_one_first_wave_split_per_learner():
    # 1000 tasks x 3 learners x 5 splits: after one split of each learner the rest goes
    # out in large chunks (no first-wave split per (task, learner))
    n_tasks, n_learners, n_splits = 1000, 3, 5
    task = np.repeat(np.arange(n_tasks), n_learners * n_splits)
    learner = np.tile(np.repeat(np.arange(n_learners), n_splits), n_tasks)
    model = CostModel(learner, np.full(len(task), 30), task_of_job=task,
                      n_features_of_task=np.full(n_tasks, 3))
    s = Scheduler(range(len(task)), model, chunk_size="auto", n_workers=2)
    first = [s.next_chunk(1) for _ in range(n_learners)]
    assert [len(c) for c in first] == [1] * n_learners
    assert sorted(learner[c[0]] for c in first) == list(range(n_learners))
    for chunk in first:
        s.complete(1, chunk)
        model.add_columns(chunk, ["ok"], [1e-5])  # 10 us splits
    messages, handed = 0, 3
    while chunk := s.next_chunk(1):
        messages += 1
        handed += len(chunk)
        s.complete(1, chunk)
    assert handed == len(task) and s.finished
    assert messages < 100, messages


def test_the_cost_model_carries_a_learner_across_tasks_and_learns_each_pair():
    # task 0: 10 rows x 2 features; task 1: 100 rows x 4 features; one learner
    task = np.array([0, 0, 1, 1])
    model = CostModel(np.zeros(4, int), np.array([10, 10, 100, 100]), task_of_job=task,
                      n_features_of_task=np.array([2, 4]))
    model.add_columns([0], ["ok"], [0.5])
    assert model.expected(1) == pytest.approx(0.5)
    assert model.expected(2) == pytest.approx(0.5 * 20)  # 20 x the rows x features
    model.add_columns([2], ["ok"], [2.0])  # task 1 turns out cheaper per row x feature
    assert model.expected(3) == pytest.approx(2.0)  # the pair's own rate
    assert model.expected(1) == pytest.approx(0.5)  # task 0 keeps its own
    assert model.rate(0) == pytest.approx(2.5 / (20 + 400))  # the learner's, pooled
    assert model.expected_many(np.array([1, 3])) == pytest.approx([0.5, 2.0])


def test_rates_learned_during_the_run_reorder_what_is_pending():
    model = CostModel(np.array([0, 0, 0, 1, 1, 1]), np.array([30, 20, 10, 3, 2, 1]))
    s = Scheduler(range(6), model)
    first = s.next_chunk(1)
    assert first == [0]  # most rows first while nothing is known
    model.add_columns(np.array([0]), np.array(["ok"], dtype=object), np.array([0.3]))
    model.learn(1, seconds=30.0, size=3)  # learner 1 turns out to take 10 s per row
    assert s.next_chunk(1) == [3]


def test_priority_comes_before_the_order():
    s = Scheduler(range(4), costs=[9, 8, 1, 2], priority=[0, 0, 1, 1])
    assert drain(s, [1]) == [3, 2, 0, 1]


def test_auto_chunks_grow_for_tiny_splits_shrink_at_the_end_and_stay_1_for_long_ones():
    tiny = CostModel(np.zeros(10_000, dtype=int), np.ones(10_000))
    s = Scheduler(range(10_000), tiny, chunk_size="auto", n_workers=2)
    assert len(s.next_chunk(1)) == 1  # nothing known yet
    tiny.learn(0, seconds=1e-5, size=1)  # 10 us splits
    sizes = []
    while chunk := s.next_chunk(1):
        sizes.append(len(chunk))
    assert sizes[0] == 1000  # 10 ms of expected work
    assert sizes == sorted(sizes, reverse=True) and sizes[-1] == 1  # guided: shrinking
    assert sum(sizes) == 9_999
    slow = CostModel(np.zeros(50, dtype=int), np.ones(50))
    slow.learn(0, seconds=0.02, size=1)  # 20 ms splits go one at a time
    s = Scheduler(range(50), slow, chunk_size="auto", n_workers=8)
    assert {len(s.next_chunk(1)) for _ in range(50)} == {1}


def test_a_chunk_does_not_overtake_a_longer_split_of_another_learner():
    model = learned_model({0: 1.0, 1: 1.0}, [0] * 4 + [1], [10, 9, 2, 1, 5])
    s = Scheduler(range(5), model, chunk_size=10)
    assert s.next_chunk(1) == [0, 1]  # the 5-row split of learner 1 goes before 2 rows
    assert s.next_chunk(1) == [4]


def test_result_batches_round_trip_and_join():
    rows = [SplitResult(j, "ok" if j % 2 else "error", "", (j / 2, 1.0), 1, "h", 7, 1.0, 2.0,
                        0.5, 0.25, 0.125, 1024, 1) for j in range(5)]
    columns = ResultColumns(n_scores=2)
    columns.MERGE = 2  # join every second append
    columns.extend(rows[:1])
    for part in (rows[1:2], rows[2:3], []):
        columns.append(ResultBatch.from_rows(part))
    columns.extend(rows[3:])
    joined = columns.joined()
    assert len(columns) == 5 and joined.job_ids.tolist() == [0, 1, 2, 3, 4]
    assert joined.results() == rows
    assert joined.columns["scores"].shape == (5, 2)
    assert columns.joined(3).job_ids.tolist() == [3, 4]
    assert joined.select(joined.status == "ok").job_ids.tolist() == [1, 3]


def test_worker_encoded_records_read_back_to_the_same_results(tmp_path):
    import json
    import pickle
    import random

    from mpibench.store.batch import EncodedResults, batch_from_columns_record
    from mpibench.store.journal import JournalWriter, read_journal

    rng = random.Random(0)
    now = time.time()
    rows = []
    for j in range(90):
        start = now + rng.random() * 1e4
        rows.append(SplitResult(
            j, rng.choice(["ok", "error"]), rng.choice(["", 'bad "x"\n', "ü"]),
            (rng.random(), 0.5), 1 + j % 3, "h", 7, start, start + rng.random(),
            rng.randrange(10**10) / 1e9, rng.randrange(10**6) / 1e9, 0.0, 1024 * j, 1,
            1 + j % 2, j % 5 == 0))
    small, many = EncodedResults(rows[:3]), EncodedResults(rows)
    assert small.rows is not None and small.record.startswith(b'{"t": "r", "rows": ')
    assert many.rows is None and len(many) == 90 and many.results() == rows
    columns = json.loads(many.record)["cols"]
    assert columns["host"] == "h" and columns["scores"][1] == 0.5  # shared values once
    assert len(columns["job_id"]) == 90 and all(isinstance(v, int) for v in columns["end_time"])
    path = tmp_path / "encoded.journal"
    writer = JournalWriter(path, {"fingerprint": "f", "parts": {}, "created": 0.0})
    writer.append_results(small)
    writer.append_results(many)
    writer.append_results(rows[3:5])  # result objects: encoded by the writer
    writer.close()
    assert read_journal(path, {}).results == rows[:3] + rows + rows[3:5]  # float-exact
    failed = EncodedResults([rows[0]._replace(scores=(float("nan"), 0.5))] * 70)
    scores = batch_from_columns_record(json.loads(failed.record)).columns["scores"]
    assert np.isnan(scores[:, 0]).all() and (scores[:, 1] == 0.5).all()
    ids, status, seconds = many.summary()
    assert ids.tolist() == list(range(90)) and status.tolist() == [r.status for r in rows]
    assert seconds.tolist() == [r.end_time - r.start_time for r in rows]
    assert list(small.summary()) == \
        [[0, 1, 2], [r.status for r in rows[:3]], [r.end_time - r.start_time for r in rows[:3]]]
    assert many.job_ids() == list(range(90)) and small.job_ids() == [0, 1, 2]
    for packet in (small, many):  # what travels between ranks arrives the same
        wire = pickle.loads(pickle.dumps(packet.to_wire()))
        arrived = EncodedResults.from_wire(wire)
        assert arrived.record == packet.record and arrived.results() == packet.results()
        assert [list(a) for a in arrived.summary()] == [list(a) for a in packet.summary()]


def test_released_jobs_go_out_first_again_and_are_not_done():
    s = Scheduler(range(6), costs=[6, 5, 4, 3, 2, 1], chunk_size=3)
    assert s.next_chunk(1) == [0, 1, 2]
    s.complete(1, [0])
    s.release(1, [1, 2, 99])  # 99 was never given to rank 1: ignored
    assert s.n_done == 1 and s.n_pending == 5 and s.in_flight(1) == []
    assert s.next_chunk(2) == [1, 2]
    assert drain(s, [2]) == [3, 4, 5] and s.finished is False
    s.complete(2, [1, 2])
    assert s.finished and s.n_done == 6


def test_suspects_go_out_alone_first_and_short_ones_one_at_a_time():
    model = CostModel(np.array([0] * 6 + [1] * 4), np.array([5, 9, 1, 1, 1, 1, 1, 1, 1, 1]))
    model.learn(0, seconds=0.5, size=1)  # 0.5 s per row (learner 1: pooled, the same)
    s = Scheduler(range(10), model, chunk_size=3, order="grid", solo=[0, 1, 7])
    assert s.n_pending == 10 and s.n_solo_pending == 3 and s.peek() == 1  # most rows first
    assert [s.next_chunk(1), s.next_chunk(2)] == [[1], [0]]  # 4.5 s and 2.5 s: at once
    assert s.next_chunk(3) == [2, 3, 4]  # suspect 7 (0.5 s) waits while others run
    s.complete(1, [1])
    assert s.next_chunk(1) == [5, 6, 8] and s.n_solo_pending == 1
    s.complete(2, [0])
    assert s.next_chunk(2) == [7] and s.n_solo_pending == 0  # alone now
    for rank, chunk in [(1, [5, 6, 8]), (3, [2, 3, 4]), (2, [7])]:
        s.complete(rank, chunk)
    assert s.next_chunk(1) == [9] and s.next_chunk(2) == []
    s.complete(1, [9])
    assert s.finished and s.n_done == 10


def test_suspects_of_unknown_cost_go_to_every_idle_rank():
    s = Scheduler(range(6), chunk_size="auto", solo=[3, 4])
    assert [s.next_chunk(1), s.next_chunk(2), s.next_chunk(3)] == [[3], [4], [0]]


def test_a_test_run_seeds_the_cost_model(tmp_path):
    from sklearn.model_selection import KFold

    import mpibench as mb
    from mpibench.engine.costs import learn_from_test_run
    from mpibench.store.paths import ProjectPaths

    rng = np.random.default_rng(0)
    task = mb.Task("t", X=rng.normal(size=(40, 2)), y=rng.normal(size=40))
    learners = {"quick": mb.DebugLearner(), "slow": mb.DebugLearner(sleep_fit=0.2)}
    path = mb.create_project(tmp_path / "p", mb.Grid([task], learners,
                                                     resamplings=[KFold(4)]))
    costs = CostModel(np.repeat([0, 1], 4), np.full(8, 30))
    assert learn_from_test_run(costs, ProjectPaths(path), ["quick", "slow"]) == 0
    assert mb.run(path, test=True, isolate=False, progress_every=0) == 0
    assert learn_from_test_run(costs, ProjectPaths(path), ["quick", "slow"]) == 2
    assert costs.knows(0) and costs.knows(1)
    assert costs.rate(1) > 3 * costs.rate(0)
    # the first wave is then plain lpt: the slow learner's splits first, no probes
    assert [int(costs.learner[j]) for j in drain(Scheduler(range(8), costs), [1])[:4]] == [1] * 4


def test_a_long_split_is_not_handed_to_a_busy_worker():
    from mpibench.engine.scheduler import CostModel, Scheduler

    # one 100-row split and forty 1-row ones: the long one is far more than a quarter
    # of the work left per worker, the short ones far less
    model = CostModel(np.zeros(41, dtype=int), np.array([100] + [1] * 40))
    s = Scheduler(range(41), model)
    assert s.head_cost() == 100 and s.pending_cost() == 140
    s.next_chunk(1)
    assert s.head_cost() == 1 and s.pending_cost() == 40


def test_near_a_time_limit_the_longest_split_that_fits_goes_out():
    # learner 0: 1 s per row; learner 1: 0.1 s per row; expected seconds per job below
    model = learned_model({0: 1.0, 1: 0.1}, [0, 0, 0, 1, 1, 1], [30, 20, 5, 90, 40, 10])
    s = Scheduler(range(6), model, chunk_size=1)  # expected: 30, 20, 5, 9, 4, 1 s
    assert s.next_fitting(1, 25.0) == [1]  # 20 s: the longest under 25 s (not 30)
    assert s.next_fitting(2, 8.0) == [2]  # 5 s beats 4 s and 1 s
    assert s.next_fitting(1, 0.5) == []  # nothing takes under half a second
    assert s.n_pending == 4 and s.in_flight(1) == [1] and s.in_flight(2) == [2]
    assert drain(s, [1]) == [0, 3, 4, 5]  # the rest in lpt order, none twice
    fixed = Scheduler(range(3), [3.0, 2.0, 1.0], order="grid")
    assert fixed.next_fitting(1, 100.0) == []  # only lpt with a cost model fills the tail
