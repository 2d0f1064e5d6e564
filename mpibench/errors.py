"""The one exception class users see for bad input, and its message format."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any


class MpibenchError(ValueError):
    """Bad input or a refused operation; the message names the problem and the fix.

    The command line turns it into one line on stderr and exit code 2 (``quiet``
    ones, raised on ranks other than the one that reported the problem, print nothing).
    """

    quiet = False
    exit_code = 2
    """Exit code of the command line (2: bad input or refused)."""


class MpibenchWarning(UserWarning):
    """A setting that runs but probably not as meant (one line: what happens, the fix)."""


class WriteFailed(MpibenchError):
    """A project file could not be written (disk full, quota, I/O error): exit code 1.

    Nothing already recorded is lost; the message names the file, the space left and
    the fix.
    """

    exit_code = 1


def invalid_parameter(owner: str, name: str, expected: str, got: Any) -> MpibenchError:
    """Build the standard message for a bad parameter value.

    Parameters
    ----------
    owner : str
        Class or function that received the value, e.g. ``"SameOtherSizesCV"``.
    name : str
        Parameter name.
    expected : str
        What is allowed, e.g. ``"an int >= 2"``.
    got : object
        The value received.

    Returns
    -------
    MpibenchError
        Ready to raise.

    Examples
    --------
    >>> str(invalid_parameter("SameOtherSizesCV", "folds", "an int >= 2", 1))
    "The 'folds' parameter of SameOtherSizesCV must be an int >= 2. Got 1 instead."
    """
    return MpibenchError(
        f"The {name!r} parameter of {owner} must be {expected}. Got {got!r} instead."
    )


class InjectedFault(RuntimeError):
    """Raised on purpose by the ``MPIBENCH_FAULT`` test hook."""


def inject_fault(where: str, rank: int) -> None:
    """Test hook: fail at ``where`` on ``rank`` when ``MPIBENCH_FAULT`` says so.

    ``MPIBENCH_FAULT=WHERE:RANK`` raises :class:`InjectedFault`;
    ``WHERE:RANK:kill`` sends this process SIGKILL. ``where`` is ``worker`` (the
    worker loop, after its first results), ``dispatcher`` (rank 0's loop, after its
    first request), ``setup`` (rank 0, before it opens the project) or
    ``consolidate`` (after writing the temp results file, before the rename),
    ``place`` (any rank, as it reports its node at the start) or ``mmap`` (any rank:
    ``grid.h5`` then counts as impossible to memory-map there).
    """
    spec = os.environ.get("MPIBENCH_FAULT", "")
    if not spec.startswith(f"{where}:{rank}"):
        return
    if spec == f"{where}:{rank}:kill":
        os.kill(os.getpid(), signal.SIGKILL)
    if spec == f"{where}:{rank}":
        raise InjectedFault(f"MPIBENCH_FAULT={spec}")


def one_line_warning(message: Warning | str, category: type[Warning], filename: str,
                     lineno: int, line: str | None = None) -> str:
    """``warnings.formatwarning`` of the command line: ``mpibench: warning: ...``, one
    line, without the source line Python shows (warnings of other packages keep it).

    Examples
    --------
    >>> one_line_warning(UserWarning("Took over run.lock."), UserWarning, __file__, 1)
    'mpibench: warning: Took over run.lock.\\n'
    """
    if str(Path(filename).resolve().parent).startswith(_PACKAGE):
        return f"mpibench: warning: {message}\n"
    return f"{filename}:{lineno}: {category.__name__}: {message}\n"


_PACKAGE = str(Path(__file__).resolve().parent)
