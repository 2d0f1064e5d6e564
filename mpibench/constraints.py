"""What a parameter's value may be, said once: a rule and the words for it.

Every class that takes user input (``RunOptions``, ``SbatchOptions``, ``Grid``,
``SameOtherSizesCV``, a grid's ``learner_options``) states its parameters' rules here
and checks them with :func:`check`, so a bad value always gets the same one-line
message (``The 'folds' parameter of SameOtherSizesCV must be an int >= 2. Got 1
instead.``, or ``--time must be ...`` on the command line). Classes inside the package
then trust what was checked.
"""

from __future__ import annotations

import numbers
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from .errors import MpibenchError, invalid_parameter


@dataclass(frozen=True)
class Rule:
    """A test a value must pass, and how a message says what passes.

    Attributes
    ----------
    test : callable
        ``test(value) -> bool``.
    expected : str
        Words for what passes, e.g. ``"an int >= 2"``.
    optional : bool
        None passes too (said in Python; on the command line leaving the flag out is
        how one gives None).
    """

    test: Callable[[Any], bool]
    expected: str
    optional: bool = False

    def allows(self, value: Any) -> bool:
        """Does ``value`` pass?"""
        return (self.optional and value is None) or bool(self.test(value))

    def or_none(self) -> Rule:
        """This rule, or None."""
        return Rule(self.test, self.expected, optional=True)

    def words(self, spelling: str = "python") -> str:
        """What passes, as a message says it (``spelling="cli"``: no "or None").

        Examples
        --------
        >>> rule = integer(1).or_none()
        >>> rule.words(), rule.words("cli")
        ('an int >= 1 or None', 'an int >= 1')
        """
        return (f"{self.expected} or None" if self.optional and spelling != "cli"
                else self.expected)


def is_int(value: Any) -> bool:
    """An integer (numpy's too), not a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    """A real number (numpy's too), not a bool."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def integer(low: int, unit: str = "") -> Rule:
    """An int ``>= low`` (``unit``: what it counts, for the message).

    Examples
    --------
    >>> integer(2).allows(1), integer(2).expected
    (False, 'an int >= 2')
    """
    words = f"a number of {unit} >= {low}" if unit else f"an int >= {low}"
    return Rule(lambda v: is_int(v) and v >= low, words)


def number(low: float, *, above: bool = False, unit: str = "seconds") -> Rule:
    """A number ``>= low`` (``> low`` with ``above``), in ``unit``.

    Examples
    --------
    >>> number(0, above=True).expected
    'a number of seconds > 0'
    """
    sign = ">" if above else ">="
    return Rule(lambda v: is_number(v) and (v > low if above else v >= low),
                f"a number of {unit} {sign} {low:g}")


def between(low: float, high: float) -> Rule:
    """A number in ``[low, high]``."""
    return Rule(lambda v: is_number(v) and low <= v <= high,
                f"a float in [{low:g}, {high:g}]")


def one_of(choices: Iterable[Any]) -> Rule:
    """One of ``choices``.

    Examples
    --------
    >>> one_of(("lpt", "grid")).expected
    "one of ('lpt', 'grid')"
    """
    allowed = tuple(choices)
    return Rule(lambda v: _hashable(v) and v in allowed, f"one of {allowed}")


def boolean(meaning: str = "") -> Rule:
    """True or False (``meaning``: what True does, for the message)."""
    words = f"True ({meaning}) or False" if meaning else "True or False"
    return Rule(lambda v: isinstance(v, bool), words)


def matching(pattern: str, expected: str) -> Rule:
    """A str that matches the regular expression ``pattern`` whole."""
    compiled = re.compile(pattern)
    return Rule(lambda v: isinstance(v, str) and compiled.fullmatch(v) is not None,
                expected)


def either(*rules: Rule) -> Rule:
    """A value that passes one of ``rules``."""
    return Rule(lambda v: any(r.allows(v) for r in rules),
                " or ".join(r.words() for r in rules))


def _hashable(value: Any) -> bool:
    try:
        hash(value)
    except TypeError:
        return False
    return True


def flag(name: str) -> str:
    """Parameter ``name`` as the command line spells it: ``--chunk-size``."""
    return "--" + name.replace("_", "-")


def violation(owner: str, name: str, rule: Rule, value: Any,
              spelling: str = "python") -> MpibenchError:
    """The one message for ``value`` of parameter ``name`` failing ``rule``: the
    parameter and its owner in Python, the flag on the command line (``spelling="cli"``).

    Examples
    --------
    >>> print(violation("run", "order", one_of(("lpt",)), "x", spelling="cli"))
    --order must be one of ('lpt',). Got 'x' instead.
    """
    if spelling == "cli":
        return MpibenchError(f"{flag(name)} must be {rule.words(spelling)}. "
                             f"Got {value!r} instead.")
    return invalid_parameter(owner, name, rule.words(spelling), value)


def check(owner: str, values: Mapping[str, Any], rules: Mapping[str, Rule],
          spelling: str = "python") -> None:
    """Raise the message of the first of ``values`` (by name) that fails its rule.

    Parameters
    ----------
    owner : str
        The class or function that took the values, named by the message.
    values : mapping
        Parameter name -> value; names without a rule are not checked.
    rules : mapping
        Parameter name -> :class:`Rule`.
    spelling : {"python", "cli"}
        How the message names the parameter.

    Examples
    --------
    >>> check("SameOtherSizesCV", {"folds": 1}, {"folds": integer(2)})
    ... # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    mpibench.errors.MpibenchError: The 'folds' parameter of ... must be an int >= 2. Got 1 ...
    """
    for name, rule in rules.items():
        if name in values and not rule.allows(values[name]):
            raise violation(owner, name, rule, values[name], spelling)
