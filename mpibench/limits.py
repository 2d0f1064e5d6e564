"""Per-split limits and per-learner options: one definition for a run and a grid.

A limit (how long a split may run, how much memory it may add) can be set for the whole
run (``mpibench.run(timeout=...)``, ``--timeout``) and for one learner (a grid's
``learner_options``); both take :class:`SplitLimits`' fields, checked by the same
rules. A learner's own limit wins over the run's, resolved once per learner
(:meth:`SplitLimits.under`). Adding a limit means adding a field and its rule here, and
enforcing it in the supervisor.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

from .constraints import Rule, boolean, check, integer, is_number, number
from .errors import MpibenchError, invalid_parameter


@dataclass(frozen=True)
class SplitLimits:
    """What one split may use; enforced only in an isolated executor.

    Attributes
    ----------
    timeout : float or None
        Wall-clock seconds a split may run (then status ``timeout``).
    memory_limit : int or None
        Bytes of memory a split may add (then status ``oom``).

    Examples
    --------
    >>> run = SplitLimits(timeout=60.0)
    >>> run.under(SplitLimits(memory_limit=2**30))
    SplitLimits(timeout=60.0, memory_limit=1073741824)
    >>> bool(SplitLimits())
    False
    """

    timeout: float | None = None
    memory_limit: int | None = None

    def __bool__(self) -> bool:
        """Is any limit set?"""
        return any(getattr(self, name) is not None for name in LIMITS)

    def under(self, own: SplitLimits) -> SplitLimits:
        """These (a run's) limits with those a learner sets itself (``own``) in their
        place."""
        return replace(self, **{n: getattr(own, n) for n in LIMITS
                                if getattr(own, n) is not None})

    def set_names(self) -> list[str]:
        """The names of the limits set."""
        return [name for name in LIMITS if getattr(self, name) is not None]

    def escalated(self, factor: float, level: int, max_seconds: float | None = None,
                  max_bytes: int | None = None) -> SplitLimits:
        """These limits times ``factor ** level`` (``level``: the split's earlier
        ``timeout`` or ``oom`` results), at most ``max_seconds`` and ``max_bytes`` (the
        job's time left, the node's memory) and never below the limits themselves.

        Examples
        --------
        >>> SplitLimits(timeout=60.0, memory_limit=2**30).escalated(2.0, 2)
        SplitLimits(timeout=240.0, memory_limit=4294967296)
        >>> SplitLimits(timeout=60.0).escalated(2.0, 3, max_seconds=300.0).timeout
        300.0
        """
        if factor == 1 or level <= 0 or not self:
            return self
        scale = factor ** level
        timeout = memory = None
        if self.timeout is not None:
            timeout = self.timeout * scale
            if max_seconds is not None:
                timeout = max(self.timeout, min(timeout, max_seconds))
        if self.memory_limit is not None:
            memory = int(self.memory_limit * scale)
            if max_bytes is not None:
                memory = max(self.memory_limit, min(memory, max_bytes))
        return SplitLimits(timeout, memory)


NO_LIMITS = SplitLimits()
LIMITS = tuple(f.name for f in fields(SplitLimits))
"""The names of the per-split limits (also the options that need isolation)."""
LIMIT_RULES: dict[str, Rule] = {
    "timeout": number(0, above=True).or_none(),
    "memory_limit": integer(1, unit="bytes").or_none(),
}
"""What each limit may be."""
ESCALATE_RULE = Rule(lambda v: is_number(v) and v >= 1,
                     "a factor >= 1 (limits grow by it per earlier timeout or oom)")

FALLBACKS = ("featureless",)
"""Fallback learners named by a string."""


@dataclass(frozen=True)
class LearnerOptions:
    """What a grid's ``learner_options`` set for one learner, checked.

    Attributes
    ----------
    limits : SplitLimits
        Its own limits (None: the run's).
    fallback : object
        ``"featureless"``, an estimator, or None; meaningful when ``has_fallback``.
    has_fallback : bool
        Whether it names its own fallback (``None`` then means: none).
    gpu : bool
        Its splits run only on ranks with a GPU.
    escalate : float or None
        Its own growth factor of the limits per earlier ``timeout``/``oom`` result of a
        split (None: the run's ``escalate``).
    checkpoints : bool
        Its splits checkpoint (:func:`mpibench.split_checkpoint`; set for
        :class:`mpibench.Epochs` learners): near a job's time limit they start even
        when they cannot finish, and resume in the next job.

    Examples
    --------
    >>> LearnerOptions.from_mapping("knn", {"timeout": 30}).limits.timeout
    30
    >>> LearnerOptions.from_mapping("knn", {"gpu": "yes"})  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    mpibench.errors.MpibenchError: The "learner_options['knn']['gpu']" parameter ... 'yes' instead.
    """

    limits: SplitLimits = NO_LIMITS
    fallback: Any = None
    has_fallback: bool = False
    gpu: bool = False
    escalate: float | None = None
    checkpoints: bool = False

    @classmethod
    def from_mapping(cls, learner: str, settings: Any) -> LearnerOptions:
        """Options from ``{option: value}`` (a grid's ``learner_options[learner]``);
        an unknown option or a bad value is refused in one line."""
        where = f"learner_options[{learner!r}]"
        if not isinstance(settings, Mapping) or set(settings) - set(LEARNER_OPTIONS):
            raise invalid_parameter("Grid", where, f"a dict with keys among "
                                    f"{LEARNER_OPTIONS}", settings)
        check("Grid", {f"{where}[{name!r}]": value for name, value in settings.items()},
              {f"{where}[{name!r}]": rule for name, rule in LEARNER_RULES.items()})
        fallback = settings.get("fallback")
        if isinstance(fallback, str) and fallback not in FALLBACKS:
            raise invalid_parameter("Grid", f"{where}['fallback']",
                                    f"None, an estimator or one of {FALLBACKS}", fallback)
        return cls(SplitLimits(**{n: settings.get(n) for n in LIMITS}), fallback,
                   "fallback" in settings, bool(settings.get("gpu", False)),
                   settings.get("escalate"), bool(settings.get("checkpoints", False)))

    def as_mapping(self) -> dict[str, Any]:
        """Back to the ``{option: value}`` a grid stores (only what is set)."""
        found: dict[str, Any] = {n: getattr(self.limits, n) for n in self.limits.set_names()}
        if self.has_fallback:
            found["fallback"] = self.fallback
        if self.gpu:
            found["gpu"] = True
        if self.escalate is not None:
            found["escalate"] = self.escalate
        if self.checkpoints:
            found["checkpoints"] = True
        return found


LEARNER_OPTIONS = (*LIMITS, "fallback", "gpu", "escalate", "checkpoints")
"""The options a grid's ``learner_options`` may set for a learner."""
LEARNER_RULES: dict[str, Rule] = {
    **LIMIT_RULES,
    "gpu": boolean("its splits run only on ranks with a GPU"),
    "escalate": ESCALATE_RULE.or_none(),
    "checkpoints": boolean("its splits save checkpoints and may start near a time limit"),
}


def learner_options_of(stored: Mapping[str, Any], learners: list[str]) -> list[LearnerOptions]:
    """Per learner index, its options (from the ``{name: {option: value}}`` a grid
    stores; a learner it does not name gets the defaults)."""
    return [LearnerOptions.from_mapping(name, stored[name]) if name in stored
            else LearnerOptions() for name in learners]


def refuse_without_isolation(what: list[str], spelling: str = "") -> None:
    """Limits (and ``log_splits``) act on an isolated executor: a run without one that
    has ``what`` (the settings, as the message names them) is refused.

    Examples
    --------
    >>> refuse_without_isolation(["--timeout"], "cli")
    Traceback (most recent call last):
    ...
    mpibench.errors.MpibenchError: --timeout needs isolation: drop --no-isolate.
    """
    if what:
        fix = {"cli": "drop --no-isolate", "python": "keep isolate=True"}.get(
            spelling, "drop --no-isolate (isolate=False)")
        verb = "needs" if len(what) == 1 else "need"
        raise MpibenchError(f"{' and '.join(what)} {verb} isolation: {fix}.")
