"""The options of a run: defined, defaulted and checked once, for ``mpibench.run`` and
``mpibench run`` alike, before anything is touched."""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass, fields
from typing import Any

from ..constraints import Rule, check, either, flag, integer, number, one_of, violation
from ..errors import MpibenchError
from ..limits import (
    ESCALATE_RULE,
    FALLBACKS,
    LIMIT_RULES,
    LIMITS,
    SplitLimits,
    refuse_without_isolation,
)
from ..store.records import RECORDED
from .config import env_int

ORDERS = ("lpt", "grid", "random")
"""Dispatch orders: longest expected first, grid order, random."""
NEEDS_ISOLATION = (*LIMITS, "log_splits")
"""Options only an isolated executor can honour."""
RENAMED = {"max_attempts": "crash_after"}
"""Old parameter names still accepted (with a FutureWarning)."""


@dataclass(frozen=True)
class RunOptions:
    """How to run a project: every option of :func:`mpibench.run` and ``mpibench run``.

    Made and checked before the run touches anything (no lock, no journal): a bad value
    raises :class:`~mpibench.MpibenchError` naming the parameter (the command line names
    its flag instead).

    Parameters
    ----------
    threads : int, optional
        BLAS/OpenMP threads per worker (default: ``MPIBENCH_THREADS``, else
        ``SLURM_CPUS_PER_TASK``, else 1).
    order : {"lpt", "grid", "random"}, default="lpt"
        Dispatch order; ``lpt`` sends the longest expected splits first (train rows x
        a per-learner rate learned from finished splits). A ``priority`` column given
        to :func:`~mpibench.create_project` comes first.
    chunk_size : int or "auto", default="auto"
        Splits per message; ``"auto"`` sends about 10 ms of expected work per message,
        shrinking as the run ends, and long splits one at a time.
    checkpoint_every : float, default=300.0
        Seconds between rewrites of ``results.h5`` during the run.
    progress_every : float, default=5.0
        Seconds between progress lines on stderr (0: none).
    grace : float, default=20.0
        Seconds the splits in flight get to finish after a stop signal.
    crash_after : int, default=2
        A split in flight in this many runs that died (killed, crashed) is recorded
        ``crash`` instead of being tried again.
    repair : bool, default=False
        Drop damaged journal records (those splits run again) instead of refusing.
    isolate : bool, default=True
        Run the splits in a long-lived executor process per worker (forked before MPI
        starts; replaced when it dies), so a crash, hang or memory blow-up ends only
        that split.
    timeout : float, optional
        Wall-clock seconds per split (then it is killed, see ``kill_grace``);
        status ``timeout``. Needs ``isolate``.
    memory_limit : int, optional
        Bytes of memory a split may add; status ``oom``. Needs ``isolate``.
    kill_grace : float, default=2.0
        A split that timed out or was interrupted is killed at once; the processes it
        started get at most this many seconds between SIGTERM and SIGKILL.
    escalate : float, default=1.0
        A split's ``timeout`` and ``memory_limit`` grow by this factor per earlier
        ``timeout`` or ``oom`` result of it (with ``retry="timeout,oom"``: 2 doubles them
        on each retry), at most the SLURM job's time left and the node's memory; a
        learner's ``learner_options`` may set its own. Each result records the limits
        it ran under (``limit_seconds``, ``limit_bytes``).
    time_left : float, optional
        Seconds this run may take (default: until ``SLURM_JOB_END_TIME``, if set). Near
        the end rank 0 starts only splits the cost model says can finish
        ``MPIBENCH_END_MARGIN`` seconds (default 30) before it, the longest that fit
        first (checkpointing learners' splits start anyway), and a worker for which
        nothing fits stops: the run exits 3, resumable, instead of idling to the limit.
    fallback : "featureless" or estimator, optional
        Overrides the grid's fallback learner for failed splits.
    test : bool, default=False
        Test mode: run the first split of each task x learner x resampling on tasks
        down-sampled per stratum, in the sub-project ``PROJECT/test`` (its own
        ``results.h5``), to find errors in a minute.
    recycle_after : int, default=1000
        Splits an executor runs before a fresh one replaces it (it is also replaced
        after an ``oom`` split and when its memory grew by 1 GiB).
    retry : str or sequence of str, optional
        Run again the splits whose result has one of these statuses (``"error"``,
        ``"timeout"``, ``"crash"``, ``"oom"``, ``"invalid"``, or ``"ok"`` to recompute
        finished ones; a comma-separated string or a list), with this run's options.
        Earlier results stay as history (``read_results(attempts="all")``).
    save_predictions : bool, default=False
        Keep every split's test-row predictions (and class probabilities) in
        ``/predictions`` of ``results.h5`` (:func:`~mpibench.read_predictions`).
    log_splits : bool, default=False
        Keep what each split prints (up to 1 MiB) in ``PROJECT/logs/JOB-ATTEMPT.log``
        instead of the job's stderr. Needs ``isolate``.

    Examples
    --------
    >>> RunOptions(retry="timeout,error").retry
    ('timeout', 'error')
    >>> try:
    ...     RunOptions(order="fastest")
    ... except MpibenchError as exc:
    ...     print(exc)
    The 'order' parameter of run must be one of ('lpt', 'grid', 'random'). Got 'fastest' instead.
    """

    threads: int | None = None
    order: str = "lpt"
    chunk_size: int | str = "auto"
    checkpoint_every: float = 300.0
    progress_every: float = 5.0
    grace: float = 20.0
    crash_after: int = 2
    repair: bool = False
    isolate: bool = True
    timeout: float | None = None
    memory_limit: int | None = None
    kill_grace: float = 2.0
    escalate: float = 1.0
    time_left: float | None = None
    fallback: Any = None
    test: bool = False
    recycle_after: int = 1000
    retry: tuple[str, ...] = ()
    save_predictions: bool = False
    log_splits: bool = False
    spelling: dataclasses.InitVar[str] = "python"

    def __post_init__(self, spelling: str) -> None:
        object.__setattr__(self, "retry", _retry_statuses(self.retry, spelling))
        check("run", {f.name: getattr(self, f.name) for f in fields(self)}, RULES, spelling)
        if not self.isolate:
            refuse_without_isolation([spelled(n, spelling) for n in NEEDS_ISOLATION
                                      if getattr(self, n) not in (None, False)], spelling)

    @property
    def limits(self) -> SplitLimits:
        """The run's per-split limits (a learner's own ``learner_options`` win)."""
        return SplitLimits(**{name: getattr(self, name) for name in LIMITS})

    @classmethod
    def from_arguments(cls, arguments: dict[str, Any],
                       spelling: str = "python") -> RunOptions:
        """Options from keyword arguments (``mpibench.run``'s, or the command line's
        with ``spelling="cli"``); an unknown name is refused in one line, a renamed one
        accepted with a FutureWarning."""
        known = {f.name for f in fields(cls)}
        for old, new in RENAMED.items():
            arguments = take_renamed(arguments, old, new, spelling)
        unknown = sorted(set(arguments) - known)
        if unknown:
            raise MpibenchError(f"run() got unknown option(s) {unknown}; the options are "
                                f"{sorted(known)} (see mpibench.RunOptions).")
        return cls(**arguments, spelling=spelling)


RULES: dict[str, Rule] = {
    "threads": integer(1).or_none(),
    "order": one_of(ORDERS),
    "chunk_size": either(integer(1), Rule(lambda v: v == "auto", "'auto'")),
    "checkpoint_every": number(0, above=True),
    "progress_every": number(0),
    "grace": number(0),
    "crash_after": integer(1),
    **LIMIT_RULES,
    "kill_grace": number(0),
    "escalate": ESCALATE_RULE,
    "time_left": number(0, above=True).or_none(),
    "fallback": Rule(lambda v: not isinstance(v, str) or v in FALLBACKS,
                     f"None, an estimator or one of {FALLBACKS}"),
    "recycle_after": integer(1),
}
"""What each option may be (checked in this order)."""


def default(name: str) -> Any:
    """The default value of option ``name`` (for the command line's help)."""
    return RunOptions.__dataclass_fields__[name].default


def spelled(name: str, spelling: str) -> str:
    """Option ``name`` as the caller writes it: ``'max_attempts'`` in Python,
    ``--max-attempts`` on the command line (``spelling="cli"``)."""
    return flag(name) if spelling == "cli" else repr(name)


NOT_FOR_BATCH_SCRIPTS = ("threads", "time_left", "test", "repair")
"""Run options ``mpibench sbatch`` does not pass on: the script sets the threads from
``--cpus-per-task``, SLURM gives the time left; a dry run and a repair are done by hand."""


def command_line(given: dict[str, Any]) -> list[str]:
    """The ``mpibench run`` flags that give these options (as the command line parsed
    them), checked first: a bad value raises the run's one-line error now.

    Examples
    --------
    >>> command_line({"grace": 10.0, "isolate": False, "save_predictions": True})
    ['--grace', '10.0', '--no-isolate', '--save-predictions']
    """
    RunOptions.from_arguments(dict(given), spelling="cli")
    flags: list[str] = []
    for name, value in given.items():
        if name == "isolate":
            flags += [] if value else ["--no-isolate"]
        elif value is True:
            flags.append(flag(name))
        elif value is not None and value is not False:
            flags += [flag(name), str(value)]
    return flags


def batch_run_arguments(run_options: dict[str, Any]) -> list[str]:
    """The ``mpibench run`` flags of a batch script, from the run options given to
    ``mpibench sbatch`` (checked now, not hours later in the queue).

    Examples
    --------
    >>> batch_run_arguments({"grace": 10.0, "retry": "timeout,oom", "escalate": 2.0})
    ['--grace', '10.0', '--retry', 'timeout,oom', '--escalate', '2.0']
    """
    passed = {name: value for name, value in run_options.items()
              if name not in NOT_FOR_BATCH_SCRIPTS}
    if "ok" in str(passed.get("retry", "")).split(","):
        raise MpibenchError("--retry ok would run every finished split again in each "
                            "resubmitted job: run `mpibench run PROJECT --retry ok` once "
                            "instead, or retry failed statuses only.")
    return command_line(passed)


def take_renamed(arguments: dict[str, Any], old: str, new: str,
                 spelling: str) -> dict[str, Any]:
    """``arguments`` with a value given under the ``old`` name moved to ``new`` (with a
    FutureWarning); an unset (None) ``old`` is dropped.

    Examples
    --------
    >>> import warnings
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     take_renamed({"max_attempts": 3}, "max_attempts", "crash_after", "cli")
    {'crash_after': 3}
    >>> str(caught[0].message)
    '--max-attempts is now --crash-after.'
    """
    arguments = dict(arguments)
    value = arguments.pop(old, None)
    if value is not None:
        warnings.warn(f"{spelled(old, spelling)} is now {spelled(new, spelling)}.",
                      FutureWarning, stacklevel=4)
        arguments[new] = value
    return arguments


def _retry_statuses(retry: Any, spelling: str) -> tuple[str, ...]:
    """``"error,timeout"`` or a list -> a tuple of recorded statuses, without repeats."""
    if retry is None or retry == ():
        return ()
    names = ([n.strip() for n in retry.split(",")] if isinstance(retry, str)
             else [str(n) for n in retry])  # type: ignore[attr-defined]
    if not names or any(n not in RECORDED for n in names):
        raise violation("run", "retry", Rule(bool, f"statuses among {RECORDED}"), retry,
                        spelling)
    return tuple(dict.fromkeys(names))


def resolve_threads(threads: int | None) -> int:
    """Threads per worker: the option > ``MPIBENCH_THREADS`` > ``SLURM_CPUS_PER_TASK``
    > 1 (a value that is not an integer is ignored with a warning; one below 1 is
    refused, naming the variable)."""
    if threads is not None:
        return threads
    for name in ("MPIBENCH_THREADS", "SLURM_CPUS_PER_TASK"):
        value = env_int(name, None)
        if value is not None and value < 1:
            raise MpibenchError(f"{name}={value}: threads per worker must be >= 1; "
                                "set it to 1 or more, or pass threads.")
        if value is not None:
            return value
    return 1
