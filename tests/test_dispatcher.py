"""Rank 0's dispatcher: priorities, chunks, asking ahead, suspects, learning learners early."""

from __future__ import annotations

import numpy as np
import pytest
from mpi_helpers import run_mpibench
from sklearn.model_selection import ShuffleSplit

import mpibench as mb
from mpibench.engine.protocol import ATTEMPT_FIELD
from mpibench.store.gridfile import GridFile


def noop_grid(n_splits: int = 300) -> mb.Grid:
    rng = np.random.default_rng(0)
    task = mb.Task("t", X=rng.normal(size=(40, 3)), y=rng.normal(size=40))
    return mb.Grid([task], {"noop": mb.NoOpLearner(), "debug": mb.DebugLearner()},
                   resamplings=[ShuffleSplit(n_splits, test_size=0.25)],
                   scoring={"zero": mb.zero_score})


def test_priority_column_and_its_validation(tmp_path):
    path = mb.create_project(tmp_path / "p", noop_grid(5),
                             priority=lambda jobs: jobs["learner"] == "debug")
    jobs = GridFile(path / "grid.h5").job_table()
    assert (jobs["priority"] == (jobs["learner"] == "debug")).all()
    with pytest.raises(mb.MpibenchError, match="priority must give one finite number per job"):
        mb.create_project(tmp_path / "q", noop_grid(5), priority=lambda jobs: [1.0, 2.0])


def test_priority_goes_first_in_a_serial_run(tmp_path):
    path = mb.create_project(tmp_path / "p", noop_grid(20),
                             priority=lambda jobs: jobs["learner"] == "debug")
    assert mb.run(path, progress_every=0, isolate=False) == 0
    order = mb.read_results(path).sort_values("start_time")["learner"].tolist()
    assert order == ["debug"] * 20 + ["noop"] * 20


@pytest.mark.mpi
def test_auto_chunks_under_mpiexec_batch_results_and_record_rank_costs(tmp_path):
    serial = mb.create_project(tmp_path / "serial", noop_grid())
    assert run_mpibench(None, "run", serial, "--no-isolate", "--chunk-size", "1"
                        ).returncode == 0
    path = mb.create_project(tmp_path / "p", noop_grid())
    done = run_mpibench(3, "run", path, "--no-isolate")
    assert done.returncode == 0, done.stderr
    results = mb.read_results(path)
    assert len(results) == 600 and (results["status"] == "ok").all()
    journal = (path / "results.journal").read_bytes()
    result_records = journal.count(b'"t": "r"') + journal.count(b'"t": "c"')
    assert result_records < 300  # chunks of many splits once the learners are known
    reference = mb.read_results(serial)
    assert results["job_id"].tolist() == reference["job_id"].tolist()
    assert results["zero"].tolist() == reference["zero"].tolist()
    ranks = mb.read_ranks(path)
    assert (ranks["max_rss_bytes"] > 10 * 2**20).all()
    assert (ranks["cpu_seconds"] > 0).all()
    assert (ranks["cpu_seconds"] < ranks["end_time"] - ranks["start_time"] + 1).all()
    assert "peak memory" in done.stderr


def test_bad_chunk_size_is_one_line_exit_2(tmp_path):
    path = mb.create_project(tmp_path / "p", noop_grid(2))
    done = run_mpibench(None, "run", path, "--chunk-size", "lots")
    assert done.returncode == 2
    assert "expected an int >= 1 or 'auto'" in done.stderr


def test_busy_workers_get_a_chunk_ahead_except_near_the_end(tmp_path):
    from mpibench.engine.dispatcher import Dispatcher
    from mpibench.engine.options import RunOptions
    from mpibench.engine.protocol import WorkRequest
    from mpibench.store.paths import ProjectPaths

    path = mb.create_project(tmp_path / "p", noop_grid(10))  # 20 equal jobs, 2 workers
    dispatcher = Dispatcher(ProjectPaths(path), 3, RunOptions(order="grid", chunk_size=1,
                            checkpoint_every=300, progress_every=0, grace=5,
                            crash_after=2))
    try:
        first = dispatcher.handle(WorkRequest(1))
        # nothing known of the learner yet: no chunk ahead, decide when it is learned
        assert dispatcher.handle(WorkRequest(1, busy=True)) == []
        dispatcher.costs.learn(0, seconds=1e-3, size=1.0)
        ahead = dispatcher.handle(WorkRequest(1, busy=True))
        assert len(first) == 1 and len(ahead) == 1  # plenty pending: one chunk ahead
        while dispatcher.scheduler.n_pending >= 4:
            assert len(dispatcher.handle(WorkRequest(2))) == 1
        assert dispatcher.handle(WorkRequest(2, busy=True)) == []  # the tail: ask when idle
        assert len(dispatcher.handle(WorkRequest(2))) == 1  # idle: gets one
        returned = dispatcher.handle(WorkRequest(2, returned=[int(ahead[0][0])]))
        assert returned is None and dispatcher.stop_reason == "rank 2 received a stop signal"
    finally:
        dispatcher.store.close()
        dispatcher.close()


def test_splits_in_flight_when_a_run_died_go_out_alone_to_idle_workers(tmp_path):
    from mpibench.engine.dispatcher import Dispatcher
    from mpibench.engine.options import RunOptions
    from mpibench.engine.protocol import WorkRequest
    from mpibench.store.paths import ProjectPaths

    path = mb.create_project(tmp_path / "p", noop_grid(10))  # 20 equal jobs, 2 workers

    def dispatcher_run(hand_outs: list[tuple[int, bool]]) -> tuple[Dispatcher, list]:
        """A run that hands out chunks for (rank, busy) requests, then dies."""
        dispatcher = Dispatcher(ProjectPaths(path), 3, RunOptions(order="grid", chunk_size=4,
                                checkpoint_every=300, progress_every=0, grace=5,
                                crash_after=2))
        try:
            return dispatcher, [dispatcher.handle(WorkRequest(rank, busy=busy))
                                for rank, busy in hand_outs]
        finally:
            dispatcher.store.close()
            dispatcher.close()

    _, first = dispatcher_run([(1, False), (2, False), (1, False)])
    queued = sorted(row[0] for chunk in first for row in chunk)
    assert len(queued) == 12  # three chunks of four: two running, ten only queued
    second, replies = dispatcher_run([(1, True), (1, False), (2, False)])
    assert second.scheduler.n_solo_pending == 10  # 12 suspects, two handed out
    assert replies[0] == []  # a busy worker gets no suspect ahead of its work
    alone = [chunk[0][0] for chunk in replies[1:]]
    assert [len(chunk) for chunk in replies[1:]] == [1, 1] and set(alone) <= set(queued)
    assert [chunk[0][ATTEMPT_FIELD] for chunk in replies[1:]] == [2, 2]  # second attempt
    third, replies = dispatcher_run([(1, False)] * 11)
    results = third.store.all_results()
    assert sorted(results.job_ids.tolist()) == sorted(alone)  # only these were blamed
    assert set(results.status.tolist()) == {"crash"}
    assert [len(chunk) for chunk in replies] == [1] * 10 + [4]  # then chunks again


def test_rank_0_learns_a_new_learner_from_the_request_before_replying(tmp_path):
    from mpibench.engine.dispatcher import Dispatcher
    from mpibench.engine.options import RunOptions
    from mpibench.engine.protocol import WorkRequest
    from mpibench.store.batch import EncodedResults
    from mpibench.store.paths import ProjectPaths
    from mpibench.store.records import SplitResult

    path = mb.create_project(tmp_path / "p", noop_grid(10))  # 2 learners x 10 splits
    dispatcher = Dispatcher(ProjectPaths(path), 3, RunOptions(order="lpt", chunk_size="auto",
                            checkpoint_every=300, progress_every=0, grace=5,
                            crash_after=2))
    try:
        first = [dispatcher.handle(WorkRequest(rank)) for rank in (1, 2)]
        jobs = [int(chunk[0][0]) for chunk in first]
        learners = {int(dispatcher.costs.learner[j]) for j in jobs}
        assert learners == {0, 1}  # the first wave: one split of each learner
        job = jobs[0]
        done = SplitResult(job, "ok", "", (0.0,), 1, "h", 1, 100.0, 100.5, 0.5, 0.0, 0.0,
                           0, 1)
        results = EncodedResults([done])
        learner = int(dispatcher.costs.learner[job])
        dispatcher.handle(WorkRequest(1, results))
        assert dispatcher.costs.knows(learner)  # learned before the reply was chosen
        dispatcher.keep(1, results)  # ... and not counted twice when kept
        assert dispatcher.costs.expected(job) == pytest.approx(0.5)
        assert dispatcher.costs._learner_seconds[learner] == pytest.approx(0.5)  # once
    finally:
        dispatcher.store.close()
        dispatcher.close()


def test_one_time_left_in_run_status_and_the_progress_line_names_an_overdue_split(tmp_path):
    import json

    from mpibench.analysis.status import project_status
    from mpibench.engine.dispatcher import Dispatcher
    from mpibench.engine.options import RunOptions
    from mpibench.engine.protocol import WorkRequest
    from mpibench.store.batch import EncodedResults
    from mpibench.store.paths import ProjectPaths
    from mpibench.store.records import SplitResult

    path = mb.create_project(tmp_path / "p", noop_grid(10))  # 2 learners x 10 splits
    dispatcher = Dispatcher(ProjectPaths(path), 3, RunOptions(chunk_size=1, progress_every=0))
    try:
        assert dispatcher.estimate_time_left().seconds is None  # nothing known yet
        first = [int(dispatcher.handle(WorkRequest(rank))[0][0]) for rank in (1, 2)]
        done = [SplitResult(j, "ok", "", (0.0,), 1, "h", 1, 100.0, 101.0, 1.0, 0.0, 0.0, 0, 1)
                for j in first]  # each split took 1 s
        dispatcher.handle(WorkRequest(1, EncodedResults(done[:1])))
        dispatcher.handle(WorkRequest(2, EncodedResults(done[1:])))
        dispatcher.keep(1, EncodedResults(done))
        left = dispatcher.estimate_time_left()
        # 18 splits of 1 s pending or running on 2 workers, idle so far: about 9 s
        assert 8.0 <= left.seconds <= 10.0 and not left.overdue
        held = dispatcher.scheduler.oldest_held(1)
        assert held is not None
        job = held[0]
        dispatcher.scheduler._held[1][job] -= 3600  # handed out an hour ago
        dispatcher.clock.heard[1] -= 3600  # ... and rank 1 silent since
        dispatcher.heartbeat(force=True)
        state = json.loads(ProjectPaths(path).heartbeat.read_text())
        assert state["eta_seconds"] == dispatcher.time_left.seconds
        assert [s["job_id"] for s in state["overdue"]] == [job]
        assert state["overdue"][0]["rank"] == 1 and state["overdue"][0]["running_seconds"] > 3000
        line = dispatcher.progress.line(dispatcher.time_left, dispatcher._overdue_text())
        assert f"overdue: job {job} (t, " in line and "remaining >=" in line
        text = project_status(path).format()
        assert f"overdue: job {job} (t, " in text and "ETA >=" in text
    finally:
        dispatcher.store.close()
        dispatcher.close()


def test_the_time_left_divides_work_by_the_parallelism_seen():
    from mpibench.engine.timeleft import Running, estimate

    # 100 s pending, 2 workers that ran 10 s of splits in 10 s of wall: 1 busy worker
    left = estimate(100.0, [], work_seconds=10.0, wall_seconds=10.0, n_workers=2)
    assert left.seconds == pytest.approx(100.0)
    left = estimate(0.0, [Running(1, 3, 2.0, 30.0)], 0.0, 2.0, 2)  # one long split left
    assert left.seconds == pytest.approx(28.0) and not left.overdue
    late = Running(1, 3, running_seconds=60.0, expected_seconds=10.0)
    assert late.overdue and not Running(1, 3, 9.0, 1.0).overdue  # (under 10 s: too soon)
    assert estimate(0.0, [late], 0.0, 60.0, 2).text().startswith(">=")
