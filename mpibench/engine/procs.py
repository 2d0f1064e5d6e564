"""Process and pipe helpers of isolation: length-prefixed pickle frames over pipes,
forking a child that never returns into its parent's code, process groups, liveness,
resident memory (Linux ``/proc``)."""

from __future__ import annotations

import contextlib
import ctypes
import os
import pickle
import signal
import struct
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

FRAME = struct.Struct("<Q")
"""Frame head: the pickle's length in bytes."""


def set_process_name(name: str) -> None:
    """Name this process in ``ps``/``top`` (Linux ``comm``, 15 bytes)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(15, name.encode()[:15], 0, 0, 0)  # PR_SET_NAME


def die_with_parent() -> None:
    """Ask Linux to SIGKILL this process when its parent dies."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def become_subreaper() -> None:
    """Make this process the reaper of its orphaned descendants (Linux
    ``PR_SET_CHILD_SUBREAPER``): a process a learner started in a session of its own
    comes back to us, not to init, when its parent ends, and can be ended."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)


def child_pids(pid: int) -> list[int]:
    """The children of process ``pid`` (Linux ``/proc/PID/task/TID/children``)."""
    found: list[int] = []
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return found
    for task in tasks:
        with contextlib.suppress(OSError, ValueError):
            found.extend(int(c) for c in (task / "children").read_text().split())
    return found


def escaped_descendants(pid: int) -> list[int]:
    """Descendants of ``pid`` in another session than ``pid``'s (a learner's
    ``start_new_session``): a kill of ``pid``'s process group does not reach them."""
    try:
        session = os.getsid(pid)
    except OSError:
        return []
    escaped, stack = [], child_pids(pid)
    while stack:
        child = stack.pop()
        with contextlib.suppress(OSError):
            if os.getsid(child) != session:
                escaped.append(child)
            stack.extend(child_pids(child))
    return escaped


def end_processes(pids: list[int]) -> None:
    """SIGKILL each process (and the process group it leads, if it leads one)."""
    for pid in pids:
        with contextlib.suppress(OSError):
            if os.getpgid(pid) == pid:
                os.killpg(pid, signal.SIGKILL)
            os.kill(pid, signal.SIGKILL)


def write_frame(fd: int, obj: Any) -> None:
    """Pickle ``obj`` with an 8-byte length prefix and write it whole to ``fd``."""
    data = pickle.dumps(obj, protocol=5)
    view = memoryview(FRAME.pack(len(data)) + data)
    while view:
        view = view[os.write(fd, view):]


def read_exactly(fd: int, size: int) -> bytes:
    parts, left = [], size
    while left:
        chunk = os.read(fd, min(left, 1 << 20))
        if not chunk:
            raise EOFError
        parts.append(chunk)
        left -= len(chunk)
    return b"".join(parts)


def read_frame(fd: int) -> Any:
    """Read one length-prefixed pickle from ``fd`` (EOFError at end of stream)."""
    (length,) = FRAME.unpack(read_exactly(fd, FRAME.size))
    return pickle.loads(read_exactly(fd, length))  # noqa: S301 - our own processes


def rss_bytes(pid: int) -> int:
    """Resident memory of process ``pid``, bytes (0 if it is gone)."""
    try:
        pages = int(Path(f"/proc/{pid}/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return 0
    return pages * os.sysconf("SC_PAGE_SIZE")


def vm_bytes() -> int:
    return int(Path("/proc/self/statm").read_text().split()[0]) * os.sysconf("SC_PAGE_SIZE")


def close_quietly(*fds: int) -> None:
    """Close each file descriptor (one already closed is skipped)."""
    for fd in fds:
        with contextlib.suppress(OSError):
            os.close(fd)


def fork_child(body: Callable[[], None]) -> int:
    """Fork; the child runs ``body`` and exits (1 after printing an exception), never
    returning into the caller's code. Returns the child's pid."""
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            body()
        except BaseException:
            traceback.print_exc()
            code = 1
        finally:
            os._exit(code)
    return pid


def has_exited(pid: int) -> bool:
    """True if child ``pid`` has ended (it is left to be reaped)."""
    try:
        return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:
        return True


def kill_group(pid: int, sig: int) -> None:
    """Send ``sig`` to process group ``pid`` (gone already: nothing to do)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def end_executor(pid: int) -> None:
    """End the split running in executor ``pid`` now: SIGKILL to the executor (it
    ignores SIGTERM, which from outside is a stop request for rank 0) and SIGTERM to
    the rest of its process group (what its learner started; SIGKILL follows)."""
    kill_group(pid, signal.SIGTERM)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


_HIGHEST_SEEN = [0]
"""The highest peak a split's meter read before it reset the kernel's mark (bytes)."""


def kernel_peak_rss_bytes() -> int:
    """The kernel's peak resident memory of this process, bytes (Linux reports KiB,
    macOS bytes); since the last reset by :mod:`mpibench.engine.usage`, if any."""
    import resource

    peak = int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
    return peak if sys.platform == "darwin" else peak * 1024


def note_peak(peak: int) -> None:
    """Remember ``peak`` (bytes) before the kernel's mark is reset."""
    if peak > _HIGHEST_SEEN[0]:
        _HIGHEST_SEEN[0] = peak


def peak_rss_bytes() -> int:
    """Peak resident memory of this process so far, bytes (over every split, whatever
    resets of the kernel's mark measuring them per split made)."""
    return max(kernel_peak_rss_bytes(), _HIGHEST_SEEN[0])


def refuse_cuda_context() -> None:
    """Raise if this process holds a CUDA context (PyTorch's): a process forked from it
    cannot use the GPU, so splits are forked only from processes that never touched it.

    Examples
    --------
    >>> refuse_cuda_context()  # no CUDA here: nothing to refuse
    """
    torch = sys.modules.get("torch")
    if torch is None:
        return
    try:
        initialized = bool(torch.cuda.is_initialized())
    except Exception:  # a torch without CUDA support, or a stand-in module
        return
    if initialized:
        from ..errors import MpibenchError

        raise MpibenchError(
            f"pid {os.getpid()} initialised CUDA before forking a split's process, which "
            "could not use the GPU: a learner touched CUDA when it was loaded or pickled. "
            "Move the model to the device in fit(), not in __init__ or __setstate__.")


def node_memory_bytes() -> int:
    """This node's physical memory, bytes."""
    return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
