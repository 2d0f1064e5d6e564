"""Rank 0: hands out splits, journals results, stops cleanly, writes ``results.h5``."""

from __future__ import annotations

import contextlib
import gc
import json
import os
import socket
import sys
import time
from functools import partial
from typing import Any

import numpy as np

from .._version import __version__
from ..errors import MpibenchError, inject_fault
from ..formatting import overdue_line
from ..store.batch import EncodedResults
from ..store.lock import ProjectLock
from ..store.paths import ProjectPaths
from ..store.records import INTERRUPTED, RankStats, SplitResult
from ..tuning import (
    COMES_BACK_MARGIN,
    HEARTBEAT_SECONDS,
    MIN_HEARTBEAT_SECONDS,
    PREFETCH_PENDING,
    PREFETCH_SHARE,
    SMALL_BLOCK,
)
from .interfaces import SplitExecutor
from .opening import clear_stop_request, open_run
from .options import RunOptions, resolve_threads
from .placement import Placement
from .polling import DispatcherPolling
from .pools import PooledScheduler
from .procs import peak_rss_bytes
from .progress import Progress, log, summary
from .protocol import (
    ATTEMPT_FIELD,
    STOP,
    TAG_INTERRUPT,
    TAG_REPLY,
    TAG_REQUEST,
    WorkRequest,
    unpack_assignments,
)
from .provenance import run_facts
from .stopping import Deadline, RunStop, StopSignals
from .timeleft import RunClock, Running, TimeLeft
from .transport import Transport


class Dispatcher:
    """Rank 0's state for one run.

    Parameters
    ----------
    paths : ProjectPaths
        The project.
    n_ranks : int
        Size of the MPI job.
    options : RunOptions
        The run's options (checked).
    signals : StopSignals, optional
        The stop signal handlers ``run`` installed (default: handlers that are not
        installed, so only the stop file stops the run).
    mpi_library : str
        The MPI library's name, recorded in ``results.h5``.
    test_source : path, optional
        In test mode, the project the test sub-project was made from.
    """

    def __init__(self, paths: ProjectPaths, n_ranks: int, options: RunOptions | None = None,
                 *, signals: StopSignals | None = None, mpi_library: str = "-",
                 test_source: Any = None, launch: dict | None = None,
                 threads: int = 1) -> None:
        if not paths.grid.exists():
            raise MpibenchError(
                f"No project at {paths.root} (missing {paths.grid.name}). Create it with "
                "mpibench.create_project() or `mpibench demo PROJECT`."
            )
        self.paths, self.n_ranks = paths, n_ranks
        self.options = options if options is not None else RunOptions()
        self.mpi_library, self.test_source = mpi_library, test_source
        self._launch, self._threads = launch, threads
        self.signals = signals or StopSignals()
        paths.refuse_links()
        self.lock = ProjectLock(paths.lock)
        self.lock.acquire()
        try:
            self._load()
        except BaseException:
            self.lock.release()
            raise

    def _load(self) -> None:
        self.ranks = {0: RankStats(0, socket.gethostname(), os.getpid(), time.time())}
        self._cpu_at_start = time.process_time()
        clear_stop_request(self.paths)
        opened = open_run(self.paths, self.options, self.n_ranks, self.ranks[0],
                          self.test_source)
        self.store, self.n_total, self.costs = opened.store, opened.n_total, opened.costs
        self._assignment_rows = opened.assignment_rows
        self.scheduler, self.gpu_learners = opened.scheduler, opened.gpu_learners
        self.n_todo = opened.n_todo
        """Splits this run has to run (0: no pickled code of grid.h5 is loaded)."""
        self.run_key = self.ranks[0].start_time
        """This run among the project's runs: rank 0's start time (Unix seconds)."""
        self.run_number = self.store.begin_run(self.run_key, run_facts(
            self._launch, n_ranks=self.n_ranks, threads=self._threads,
            mpi_library=self.mpi_library, start_time=self.run_key))
        """This run's number (1, 2, ...), recorded with each of its splits."""
        deadline = Deadline(None if self.options.time_left is None
                            else time.time() + self.options.time_left)
        self.stop = RunStop(self.signals, self.paths.stop_request, grace=self.options.grace,
                            kill_grace=self.options.kill_grace, deadline=deadline,
                            marker=self.paths.stopping)
        self._checkpointing = opened.checkpointing
        self.core_seconds_saved = 0.0
        """Core-seconds workers did not spend on splits that could not finish before
        the time limit (they stopped instead)."""
        self.time_limit_note = ""
        """Why the run ended early without a stop: no pending split could finish."""
        self.progress = Progress(self.n_todo, self.n_total, self.options.progress_every)
        self._failed_before = opened.n_failed_before
        self._last_heartbeat = 0.0
        self.transport: Transport | None = None
        self._last_checkpoint = time.monotonic()
        self._learned_early = False
        self.clock = RunClock()
        """Hand-outs, finished split-seconds, workers last heard: for the time left."""
        self.time_left = TimeLeft(None)
        """The latest estimate of the time left (see :meth:`estimate_time_left`)."""
        self.comes_back: dict[int, float] = {}
        """perf_counter() time at which each worker told ``[]`` is expected back."""

    def place(self, placements: list[Placement], nodes: list[dict] | None = None) -> None:
        """Learn where every rank runs (index = rank), and each node's hardware
        (``nodes``, for the ``/runs`` table); GPU learners go to GPU ranks.

        Raises :class:`MpibenchError` when the grid has GPU learners with splits to run
        and no rank that runs splits has a GPU.
        """
        self.ranks[0].host, self.ranks[0].gpu = placements[0].node, placements[0].gpu
        if nodes:
            self.store.update_run(self.run_key, nodes=json.dumps(nodes))
        if not isinstance(self.scheduler, PooledScheduler):
            return
        self.scheduler.gpu_ranks = {p.rank for p in placements if p.has_gpu}
        if not self.scheduler.gpu_ranks and self.scheduler.gpu.n_pending:
            raise MpibenchError(
                f"learner_options mark {self.gpu_learners} as needing a GPU (gpu=True) "
                "and no rank of this job has one (CUDA_VISIBLE_DEVICES empty, no "
                "/dev/nvidia*): run on GPU nodes (mpibench sbatch --gpus-per-task 1), "
                "or set their gpu option to False to run them on CPUs.")

    def assignments(self, job_ids: list[int]) -> np.ndarray | list:
        """Everything a worker needs to run ``job_ids`` (and journal the hand-out): one
        row of :class:`~mpibench.engine.protocol.Assignment` fields per split (int64; a list of
        lists for a few)."""
        if len(job_ids) < SMALL_BLOCK:  # plain Python costs less for a few
            self.store.mark_started(job_ids)
            table, started = self._assignment_rows, self.store.started
            rows = [table[job].tolist() for job in job_ids]
            for row in rows:
                row[ATTEMPT_FIELD] = started.item(row[0])
            return rows
        ids = np.asarray(job_ids, dtype=np.int64)
        self.store.mark_started(ids)
        block = self._assignment_rows[ids]
        block[:, ATTEMPT_FIELD] = self.store.started[ids]
        return block

    def record(self, rank: int, results: list[SplitResult]) -> None:
        """Mark finished splits done, then :meth:`keep` them."""
        packet = EncodedResults(results)
        self.scheduler.complete(rank, packet.job_ids())
        self.keep(rank, packet)

    def keep(self, rank: int, results: EncodedResults | None) -> None:
        """Journal finished splits and update counters.

        A split stopped from outside (status ``interrupted``: the job is ending) is not a
        result: it leaves no record and runs again on resume.
        """
        if results is None or not len(results):
            return
        job_ids, status, seconds = results.summary()
        if INTERRUPTED in status:
            stopped = [r.job_id for r in results.results() if r.status == INTERRUPTED]
            self.store.mark_returned(np.asarray(stopped, dtype=np.int64))  # not an attempt
            log(f"{len(stopped)} split(s) interrupted on rank {rank}; they run again on "
                "resume")
            results = EncodedResults([r for r in results.results()
                                      if r.status != INTERRUPTED])
            job_ids, status, seconds = results.summary()
        self.store.add(results)
        self.progress.add(status)
        self.clock.finished(float(seconds.sum() if isinstance(seconds, np.ndarray)
                                  else sum(seconds)))
        if not self._learned_early:
            self.costs.add_columns(job_ids, status, seconds)
        self._learned_early = False

    def _learn_early(self, results: EncodedResults | None) -> None:
        """While a learner is unknown, learn from a request's results before replying
        (else after: the reply goes out first), so its own finished learner counts."""
        if results is None or not len(results) or not self.costs.n_unknown:
            return
        self.costs.add_columns(*results.summary())
        self._learned_early = True

    def next_assignments(self, rank: int, busy: bool = False) -> np.ndarray | list | None:
        """The next chunk for ``rank``, ``[]`` (ask again when idle) or ``STOP``.

        A busy worker (still running a split) gets a chunk ahead only while no suspect
        (see :meth:`_suspects`) is pending, the next split's learner is known, at least
        ``PREFETCH_PENDING`` x workers splits are pending and the next split is short
        next to the work left per worker (``PREFETCH_SHARE``): otherwise it could hold
        a long split an idle worker would start sooner.
        """
        if self.stop.reason is not None:
            return STOP
        deadline = self.stop.deadline
        if deadline.end_time is not None:
            upcoming = self.scheduler.peek()
            if (upcoming is not None and not deadline.allows(self.costs.expected(upcoming))
                    and not self._checkpointing[int(self.costs.learner[upcoming])]):
                return self._fill_the_tail(rank, busy)
        if busy and not self._may_prefetch():
            if self.costs.known:  # else nothing says when: poll as usual
                expected = self.costs.expected_many(self.scheduler.in_flight(rank)).sum()
                self.comes_back[rank] = time.perf_counter() + float(expected)
            return []
        chunk = self.scheduler.next_chunk(rank)
        if chunk:
            self.clock.handed_out()
        return self.assignments(chunk) if chunk else STOP

    def _fill_the_tail(self, rank: int, busy: bool) -> np.ndarray | list | None:
        """Near the time limit: the longest pending split that can still finish, or
        (none fits) ``STOP`` for this worker, whose time to the limit is saved."""
        if busy:
            return []  # (asks again when idle)
        left = max(self.stop.deadline.seconds_left(), 0.0)
        chunk = self.scheduler.next_fitting(rank, left)
        if chunk:
            self.clock.handed_out()
            return self.assignments(chunk)
        cores = resolve_threads(self.options.threads)
        self.core_seconds_saved += left * cores
        self.time_limit_note = "no pending split can finish before the time limit"
        log(f"rank {rank}: no pending split can finish in the {left:.0f} s left before the "
            f"time limit; it stops (saving {left * cores / 3600:.2f} core-hours)")
        return STOP

    def _may_prefetch(self) -> bool:
        workers = max(self.n_ranks - 1, 1)
        if self.scheduler.n_solo_pending or self.scheduler.n_pending < PREFETCH_PENDING * workers:
            return False  # a suspect goes to an idle worker only
        upcoming = self.scheduler.peek()
        if upcoming is not None and not self.costs.knows(int(self.costs.learner[upcoming])):
            return False  # a learner not yet learned: decide when more is known
        share = self.scheduler.pending_cost() / workers
        return self.scheduler.head_cost() <= PREFETCH_SHARE * share

    def handle(self, request: WorkRequest) -> np.ndarray | list | None:
        """The reply to one worker request (its results are kept by :meth:`keep`)."""
        self.comes_back.pop(request.rank, None)
        self.clock.heard_from(request.rank)
        if request.results is not None:
            self.scheduler.complete(request.rank, request.results.job_ids())
        if request.returned:
            self.scheduler.release(request.rank, request.returned)
            self.store.mark_returned(np.asarray(request.returned, dtype=np.int64))
            self.begin_stop(f"rank {request.rank} received a stop signal")
        if request.stats is not None:
            self.ranks[request.rank] = request.stats
        self._learn_early(request.results)
        return self.next_assignments(request.rank, request.busy)

    @property
    def stop_reason(self) -> str | None:
        """Why the run is stopping (None: it is not)."""
        return self.stop.reason

    def begin_stop(self, reason: str) -> None:
        """Stop handing out splits; the ones in flight get ``grace`` seconds."""
        if self.stop.begin(reason):
            log(f"{reason}: starting no new splits; waiting up to "
                f"{self.options.grace:g}s for {self.scheduler.n_in_flight} in flight")

    def tick(self) -> None:
        """Periodic duties: stop requests, group commit, progress line, checkpoint."""
        if self.stop.reason is None:
            reason = self.stop.poll()
            if reason:
                self.begin_stop(reason)
        if self.store.journal.commit_due:
            self.store.journal.commit_in_background()
        # the first estimate goes out as soon as the cost model can make one
        self.heartbeat(force=self.time_left.seconds is None and self.costs.known)
        self.progress.maybe_print(self.time_left, self._overdue_text())
        if time.monotonic() - self._last_checkpoint >= self.options.checkpoint_every:
            self.checkpoint(complete=False)
        if self.stop.reason is not None and self.scheduler.n_in_flight:
            self._end_grace()

    def heartbeat(self, force: bool = False) -> None:
        """Rewrite ``run.status`` (every ``HEARTBEAT_SECONDS``; in the run's first
        seconds, while the cost model learns fast, every tenth of the time run, at
        least ``MIN_HEARTBEAT_SECONDS``): who runs, when it last wrote, done / failed /
        in flight / pending, the estimate of the time left (seconds; null while no
        learner is known) and the overdue splits. Best effort: a failed write is skipped
        (the journal's would end the run)."""
        now = time.time()
        interval = min(HEARTBEAT_SECONDS, max(MIN_HEARTBEAT_SECONDS,
                                              (time.monotonic() - self.progress.start) / 10))
        if not force and now - self._last_heartbeat < interval:
            return
        self._last_heartbeat = now
        self.time_left = self.estimate_time_left()
        state = {**self.lock.info, "updated": now, "n_ranks": self.n_ranks,
                 "n_total": self.n_total,
                 "n_done": self.progress.n_before + self.progress.done,
                 "n_failed": self._failed_before + self.progress.errors,
                 "n_in_flight": self.scheduler.n_in_flight,
                 "n_pending": self.scheduler.n_pending,
                 "eta_seconds": self.time_left.seconds, "stopping": self.stop_reason,
                 "core_hours_saved": round(self.core_seconds_saved / 3600, 3),
                 "overdue": [self._describe(r) for r in self.time_left.overdue]}
        tmp = self.paths.temporary(self.paths.heartbeat)
        try:
            tmp.write_text(json.dumps(state) + "\n")
            tmp.replace(self.paths.heartbeat)
        except OSError:
            tmp.unlink(missing_ok=True)

    def estimate_time_left(self) -> TimeLeft:
        """The time this run has left (see :mod:`mpibench.engine.timeleft`)."""
        return self.clock.time_left(self.scheduler, self.costs, self.n_ranks,
                                    2 * MIN_HEARTBEAT_SECONDS)

    def _overdue_text(self) -> str:
        """The most overdue split for the progress line ('' when none)."""
        if not self.time_left.overdue:
            return ""
        more = len(self.time_left.overdue) - 1
        return (overdue_line(self._describe(self.time_left.overdue[0]))
                + (f" and {more} more" if more else ""))

    def _describe(self, running: Running) -> dict:
        """An overdue split, JSON-ready: job id, task, learner, rank, seconds."""
        row = self.store.jobs.iloc[running.job_id]
        return {"job_id": running.job_id, "task": str(row["task"]),
                "learner": str(row["learner"]), "rank": running.rank,
                "running_seconds": round(running.running_seconds, 1),
                "expected_seconds": round(running.expected_seconds, 3)}

    def _end_grace(self) -> None:
        """When the grace period is over, interrupt the splits still running (each is
        ``interrupted``: no attempt counted, runs again on resume); see
        :meth:`RunStop.interrupt_due`."""
        if not self.stop.interrupt_due():
            return
        log(f"{self.scheduler.n_in_flight} split(s) still running after the grace "
            f"period; interrupting them (they run again on resume)")
        if self.transport is not None:  # (none when serial)
            for rank in range(1, self.n_ranks):
                if self.scheduler.in_flight(rank):
                    self.transport.send(None, rank, TAG_INTERRUPT)

    def give_back_in_flight(self) -> int:
        """Hand back every split still in flight as not started (the job ends without
        them: no attempt counted); returns how many."""
        stuck = [j for r in range(self.n_ranks) for j in self.scheduler.in_flight(r)]
        if stuck:
            self.store.mark_returned(np.asarray(stuck, dtype=np.int64))
        return len(stuck)

    def checkpoint(self, complete: bool, exit_code: int | None = None) -> None:
        """Commit the journal and rewrite ``results.h5`` atomically (``exit_code``:
        the run's, at its end)."""
        self._last_checkpoint = time.monotonic()
        me = self.ranks[0]
        me.end_time, me.cpu_seconds, me.max_rss_bytes = (
            time.time(), time.process_time() - self._cpu_at_start, peak_rss_bytes())
        ended = {} if exit_code is None else {"exit_code": exit_code}
        self.store.update_run(self.run_key, end_time=me.end_time, **ended)
        self.store.write(sorted(self.ranks.values(), key=lambda r: r.rank), {
            "complete": complete, "mpibench_version": __version__,
            "mpi_library": self.mpi_library, "n_ranks": self.n_ranks,
        }, run=self.run_key)

    def serve(self, transport: Transport) -> None:
        """Answer worker requests until every worker was told to stop and holds nothing.

        A worker told "ask again when idle" (``[]``) will wait for its next reply, so
        from shortly before it is expected back (its splits' expected seconds, from the
        cost model) rank 0 polls at its fastest.
        """
        active = set(range(1, transport.size))
        self.transport = transport
        polling = DispatcherPolling()
        gc.freeze()  # a full collection would walk the job table: tens of ms of silence
        while active:
            due = min(self.comes_back.values(), default=float("inf")) - COMES_BACK_MARGIN
            message, source = transport.receive(None, TAG_REQUEST,
                                                partial(polling.backoff, due), self.tick)
            polling.arrived()
            if self.answer(message, source, transport):
                active.discard(source)

    def answer(self, message: tuple, source: int, transport: Transport) -> bool:
        """Serve one request as it came off the wire: reply, keep its results, do the
        periodic duties. True when ``source`` was told to stop and holds nothing."""
        request = WorkRequest.from_wire(message, EncodedResults.from_wire)
        with self.store.journal.one_write():
            reply = self.handle(request)
            transport.send(reply, source, TAG_REPLY)  # the worker goes on at once ...
            self.keep(request.rank, request.results)  # ... while its results are kept
        inject_fault("dispatcher", 0)
        self.tick()
        return reply is STOP and not self.scheduler.holds(source)

    def run_serially(self, executor: SplitExecutor | None) -> None:
        """One process: run every split here, in dispatch order, until done or stopped
        (``executor`` is None only when there is nothing to run)."""
        stats = self.ranks[0]
        while True:
            self.tick()
            chunk = self.next_assignments(0)
            if chunk is STOP:
                return
            assert executor is not None
            results = [executor.run(job) for job in unpack_assignments(chunk)]
            stats.n_splits += len(results)
            stats.busy_seconds += sum(r.end_time - r.start_time for r in results)
            self.record(0, results)

    def finish(self) -> int:
        """Final commit, consolidation and summary; 0 if complete, 3 if resumable."""
        n_done = len(self.store.done_ids())  # (unique already)
        complete = n_done == self.n_total
        self.checkpoint(complete=complete, exit_code=0 if complete else 3)
        self.store.close()
        wall = time.monotonic() - self.progress.start
        ranks = sorted(self.ranks.values(), key=lambda r: r.rank)
        print(summary(self.store.new_results(), ranks, self.n_total, n_done, wall),
              file=sys.stderr, flush=True)
        me = self.ranks[0]
        cpu = time.process_time() - self._cpu_at_start
        log(f"results: {self.paths.results} (rank 0: {cpu:.1f} s CPU in "
            f"{time.time() - me.start_time:.1f} s, peak memory {peak_rss_bytes() / 2**20:.0f} MB)")
        if self.stop_reason:
            with contextlib.suppress(MpibenchError):
                self.paths.remove_stop_request()  # honoured (if there is one)
        if self.core_seconds_saved:
            log(f"time limit: workers stopped {self.core_seconds_saved / 3600:.2f} "
                "core-hours early instead of starting splits that could not finish")
        if not complete:
            reason = self.stop_reason or self.time_limit_note or "unfinished splits"
            log(f"stopped early ({reason}); "
                f"{self.n_total - n_done} split(s) left. Rerun the same command to resume.")
        return 0 if complete else 3

    def close(self) -> None:
        """Remove the heartbeat and release the lock (always, even after a failure)."""
        if self.lock.held:
            self.paths.heartbeat.unlink(missing_ok=True)
            with contextlib.suppress(OSError):
                self.paths.stopping.unlink(missing_ok=True)
        self.lock.release()
