"""Every tuning constant of mpibench, each with the benchmark that set it.

A value here trades one cost against another (CPU against latency, messages against
balance, safety against speed). Change one only with its benchmark run before and
after on the same machine, and update ``BENCHMARKS.md``. Values that are response
times or safety margins rather than speed figures say so. Times are seconds, sizes
bytes. (Benchmarks are ``benchmarks/NAME.py``; "(b)" etc. name sections of
``BENCHMARKS.md``.)
"""

from __future__ import annotations

# -- waiting for a message (engine.polling) -------------------------------------------
# Set by idle_cpu.py (CPU a waiting rank burns) against dispatch_overhead.py (makespan
# per no-op split, which the wake-up latency adds to): "Idle CPU" and (a).

MIN_SLEEP = 1e-6
"""First back-off sleep."""
WORKER_MAX_SLEEP = 2e-3
"""Longest back-off sleep of a worker (its reply is due at once). idle_cpu.py: a
waiting worker costs 2.9% of a core (1 ms cost 5.0%)."""
DISPATCHER_MAX_SLEEP = 2.5e-4
"""Longest back-off sleep of rank 0 while requests come often (dispatch_overhead.py,
chunk 1: longer caps added their wake-up latency to every split)."""
DISPATCHER_SLOW_SLEEP = 1e-2
"""Longest back-off sleep of rank 0 while requests come seconds apart (idle_cpu.py:
rank 0 then costs 0.8% of a core, against 99.99% in a blocking receive)."""
SPIN = 1e-3
"""Rank 0 yields instead of sleeping, for up to twice the average gap, while requests
come faster than this on average (dispatch_overhead.py, chunk 1)."""
WORKER_SPIN = 2 * DISPATCHER_MAX_SLEEP
"""A worker yields this long before sleeping: its reply is due at once."""
MAX_WORKER_SPIN = 5e-3
"""A worker waiting for a reply yields for ``ASK_LEAD`` round trips, at least
``WORKER_SPIN`` and at most this long (dispatch_overhead.py, chunk 1)."""
GAP_FRACTION = 3.0
"""Rank 0's back-off cap is the average gap between requests (or the time waited so
far) over this, its first sleep a quarter of the cap: workers ask ahead by two round
trips, so a later wake-up is hidden, and each sleep costs CPU (37-44 us on the 2-core
VM; idle_cpu.py)."""
COMES_BACK_MARGIN = 2e-3
"""Rank 0 polls at its fastest from this long before a worker told to ask again when
idle is expected back (load_balance.py: the tail of a run of long splits)."""

# -- asking ahead (engine.workerloop) ---------------------------------------------------
# Set by dispatch_overhead.py and cpu_per_split.py: (a), "Both sides, in one process".

PREFETCH_SECONDS = 1e-3
"""A worker asks for its next chunk when it starts the last split it holds, if its
previous split took this long ..."""
ASK_LEAD = 2.0
"""... and, whatever the split lengths, once the splits it has left are expected to
take less than this many round trips to rank 0 ..."""
MIN_LEAD = 1e-3
"""... or less than this long."""

BATCH_SECONDS = 1e-3
"""Isolated splits that take less than this on average go to the executor in batches
(one frame to the supervisor and one back per batch, one result frame per split)
..."""
BATCH_SPLITS = 256
"""... of at most this many splits, and about ``BATCH_WORK`` seconds of work (a chunk
from rank 0 holds about ``CHUNK_SECONDS``), between which a worker checks for stop
signals and asks ahead (many_tasks.py peers, 100,000 splits of ~50 us: one frame per
split cost 13.8 s, batches of 64 10.1 s; 64/5 ms against 256/10 ms and 1024/20 ms were
within this VM's noise)."""
BATCH_WORK = 1e-2

# -- what goes out in one message (engine.scheduler, engine.dispatcher) ----------------
# Set by dispatch_overhead.py (auto chunks against chunk 1: (a)), dispatcher_message.py
# (rank 0's cost per message) and load_balance.py (the tail: (b)).

CHUNK_SECONDS = 0.01
"""Expected seconds of work per message under automatic chunking: messages then cost
rank 0 about 1 us per split (dispatcher_message.py) while a chunk is short next to
the tail of a run (load_balance.py)."""
GUIDED = 2
"""A chunk is at most ``pending / (GUIDED * workers)`` splits (guided scheduling: the
chunks shrink as the run ends; load_balance.py)."""
MAX_CHUNK = 4096
"""Most splits per message (scale.py: a million splits)."""
PREFETCH_PENDING = 2
"""Busy workers get their next chunk ahead while this many splits per worker pend ..."""
PREFETCH_SHARE = 0.25
"""... and while the next split is at most this share of the work left per worker
(load_balance.py, bimodal: a long split held by a busy worker is started late)."""

# -- the cost model and the first wave (engine.scheduler, engine.dispatcher) -----------
# Set by first_wave.py ("First wave").

UNKNOWN_FACTOR = 2.0
"""Under ``lpt``, a learner with no finished split is ranked as if it cost this many
times the most expensive known learner (per train row)."""
SOLO_SERIAL_SECONDS = 1.0
"""A suspect (in flight when a run died) expected to be shorter than this runs while
no other suspect is in flight; longer ones wait for none (not a speed figure: it
bounds how long suspects run one at a time)."""
TEST_RUN_WEIGHT = 1e-3
"""Weight of a test run's splits in the cost model beside the run's own: they rank the
learners from the first split on, and the first real results outweigh them."""

# -- isolated executors (engine.supervisor, engine.worker, engine.isolation) -----------
# Set by isolation_cost.py ("Isolation cost per split") and startup.py ("Start-up").

POLL_SECONDS = 0.02
"""Interval of the supervisor's deadline and memory checks while a split with limits
runs (a response time: how late a timeout or a memory limit may act)."""
LIVENESS_SECONDS = 0.5
"""Without limits, how often the supervisor checks that a running executor is alive
(a process a learner forked may hold the result pipe open after it died)."""
INTERRUPT_POLL = 0.25
"""How often a worker looks for rank 0's interrupt while a split runs (a response
time, within the grace period's seconds)."""
RECYCLE_AFTER = 1000
"""Splits an executor runs before a fresh one replaces it: a bound on what a leaking
learner can hold; one fork per thousand splits is below the noise of
isolation_cost.py's per-split slope (0.01-0.06 ms)."""
RECYCLE_GROWTH = 1 << 30
"""Resident-memory growth since its first split that retires an executor (a safety
bound, not a speed figure)."""
RSS_CHECK_EVERY = 16
"""An executor's growth is read after every this many splits (a ``/proc`` read; with
it, cpu_per_split.py's no-op split stays within its noise)."""
PRELOAD_PAIRS = 64
"""The supervisor loads every task up front when the grid has at most this many
(task, resampling) pairs, else each executor loads what its splits need (startup.py,
shared_memory.py)."""
CACHE_BYTES = 1 << 30
"""Bytes of task data (and split indices) an executor keeps, least recently used
leaving first (``MPIBENCH_CACHE_BYTES``; not a speed figure: a bound on memory; a grid
of a thousand tasks loads each task once per executor while they fit, scale.py)."""

# -- message shapes (engine.dispatcher, store.batch, store.storage) ---------------------
# Set by dispatcher_message.py (rank 0's CPU per message, by phase).

SMALL_BLOCK = 64
"""A chunk of fewer assignments goes out as a list of rows, a longer one as one int64
array (one buffer to pickle)."""
SMALL_RESULTS = 64
"""Fewer results than this travel (and are journaled) as rows, more as columns."""
FEW_SPLITS = 8
"""Bookkeeping for at most this many splits (the scheduler's hand-out, the store's
hand-out record) goes one by one instead of through numpy fancy indexing (2.3 ->
0.4 us per one-split message; dispatcher_message.py)."""

# -- the journal and the files (store.journal, store.paths) ---------------------------
# Set by kill_resume.py (what a kill may cost) and dispatcher_message.py (the journal
# phase of a message).

COMMIT_RECORDS = 4096
"""Group commit: fsync after this many finished splits ..."""
COMMIT_SECONDS = 1.0
"""... or when the oldest unsynced record is this old: at most this much finished work
is redone after a power loss (kill_resume.py: a SIGKILL loses only the splits in
flight, since records reach the kernel at once)."""
WRITE_CHUNK = 1 << 22
"""Bytes per ``write`` call when a file image goes to disk."""
IN_MEMORY_LIMIT = 1 << 27
"""HDF5 files expected below this size are built in memory, then written in one go
(a failed write then leaves nothing half-written); larger ones are written to a
temporary file after a check that the disk has room, so that rank 0 does not hold a
second copy of a million results (scale.py: 1.2 GB with 1 GiB here, under 1 GB with
128 MiB). Not a speed figure."""

# -- response times and safety margins (no speed figure) ------------------------------

STOP_FILE_SECONDS = 0.5
"""How often rank 0 looks for ``PROJECT/stop.request``."""
HEARTBEAT_SECONDS = 2.0
"""How often rank 0 rewrites ``PROJECT/run.status`` (what ``mpibench status`` shows) ..."""
MIN_HEARTBEAT_SECONDS = 0.25
"""... and, in a run's first 20 seconds, every tenth of the time it has run, at least
this long apart: the estimate of the time left moves fast while the cost model learns
(time_left.py)."""
INTERRUPT_WAIT = 5.0
"""Seconds beyond ``kill_grace`` rank 0 waits for interrupted splits to come back
before it ends the job without them."""
END_MARGIN = 30
"""Seconds kept free before ``SLURM_JOB_END_TIME`` for the final commit and exit."""
ABORT_DELAY = 0.5
"""Seconds between printing a fatal error and ``MPI_Abort`` (the launcher forwards
stderr first)."""
ORPHAN_CHECK_SECONDS = 1.0
"""How often each rank of a multi-rank job checks that its launcher is still alive."""
OVERDUE_FACTOR = 5.0
"""A split running this many times longer than the cost model expects is named as
overdue by the progress line and ``mpibench status``, ..."""
OVERDUE_SECONDS = 10.0
"""... once it has run at least this long (rank 0 sees a chunk of short splits as one
running split until the chunk's results come back)."""
