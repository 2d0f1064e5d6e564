"""A checkpoint inside a split: long fits save their state and resume from it.

Learner code running in a split asks for its checkpoint with :func:`split_checkpoint`
(None outside a run). It loads the last saved state (``None`` on the first attempt),
saves its state as it goes (every epoch, every few minutes) and, once
:meth:`SplitCheckpoint.should_stop` says the run is stopping, saves and returns early:
the split is then ``interrupted`` (not an attempt, no result) and its next attempt, in a
later job, on any rank or node, resumes from the last save.

On disk (``PROJECT/checkpoints/JOB_ID/``, on the project's shared file system)::

    state-000007     the 7th save (a pickle, or the file a learner wrote, e.g. torch.save)
    meta.json        {"n": 7, "file": "state-000007", "crc32": ..., "seconds": ...}

A save writes a new state file (fsynced), then ``meta.json`` through a temporary file
and a rename, then removes the save before it: a kill at any moment leaves the previous
save or the new one, whole. A state whose CRC-32 does not match ``meta.json`` is not
loaded (the split starts afresh, with a warning). The folder is removed once the split
has its result.
"""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import shutil
import time
import warnings
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from .errors import MpibenchWarning
from .store.paths import fsync_path

STOP_CHECK_SECONDS = 1.0
"""How often :meth:`SplitCheckpoint.should_stop` looks at the file system (seconds)."""
_CHUNK = 1 << 22


class SplitCheckpoint:
    """The checkpoint of the split running in this process.

    Parameters
    ----------
    folder : pathlib.Path
        ``PROJECT/checkpoints/JOB_ID``.
    stopping : callable
        ``stopping() -> bool``: is the run stopping?
    check_every : float, default=STOP_CHECK_SECONDS
        Seconds between two questions to ``stopping`` (it looks at the file system).

    Attributes
    ----------
    resumed_from : int
        The save this attempt started from (0: from scratch); the ``resumed_from``
        column of the split's result.
    earlier_seconds : float
        Fit seconds that earlier attempts had spent up to that save.
    stop_seen : bool
        :meth:`should_stop` has said True: the split ends ``interrupted``.

    Examples
    --------
    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp()) / "7"
    >>> ckpt = SplitCheckpoint(folder, stopping=lambda: False)
    >>> ckpt.load() is None
    True
    >>> ckpt.save({"epoch": 3}); SplitCheckpoint(folder, lambda: False).load()
    {'epoch': 3}
    """

    def __init__(self, folder: Path, stopping: Callable[[], bool],
                 check_every: float = STOP_CHECK_SECONDS) -> None:
        self.folder = Path(folder)
        self._stopping, self._check_every = stopping, check_every
        self._checked = 0.0
        self.stop_seen = False
        self.started = time.monotonic()
        self._last = self._meta()
        self.resumed_from = int(self._last["n"]) if self._last else 0
        self.earlier_seconds = float(self._last["seconds"]) if self._last else 0.0
        self._n = self.resumed_from

    def _meta(self) -> dict | None:
        """What ``meta.json`` says of the last save, if its state file is whole."""
        try:
            meta = json.loads((self.folder / "meta.json").read_text())
            state = self.folder / meta["file"]
            if _crc32(state) == meta["crc32"]:
                return meta
            problem = "its CRC-32 does not match"
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            problem = f"{type(exc).__name__}: {exc}"
        warnings.warn(f"The checkpoint in {self.folder} is damaged ({problem}); the split "
                      "starts afresh.", MpibenchWarning, stacklevel=3)
        return None

    @property
    def file(self) -> Path | None:
        """The last save's file (for ``torch.load``), or None before the first."""
        return self.folder / self._last["file"] if self._last else None

    def load(self) -> Any:
        """The state of the last :meth:`save` (None before the first)."""
        path = self.file
        if path is None:
            return None
        with open(path, "rb") as source:
            return pickle.load(source)  # noqa: S301 - written by this split's learner

    def save(self, state: Any) -> None:
        """Save ``state`` (anything picklable; large states fine), atomically; the
        CRC-32 is taken as the pickle is written (the file is not read back)."""
        with self._saving() as (path, written):
            with open(path, "wb") as target:
                summed = _Summed(target)
                pickle.dump(state, summed, protocol=pickle.HIGHEST_PROTOCOL)
            written.append(summed.crc)

    @contextlib.contextmanager
    def saving(self) -> Iterator[Path]:
        """A path to write the new save to (``torch.save(state, path)``); it becomes the
        checkpoint when the block ends without an exception."""
        with self._saving() as (path, _):
            yield path

    @contextlib.contextmanager
    def _saving(self) -> Iterator[tuple[Path, list[int]]]:
        """The new save's path, and a list to put its CRC-32 in (else it is read)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        number = self._n + 1
        path = self.folder / f"state-{number:06d}"
        path.unlink(missing_ok=True)  # (left by a save killed before its meta.json)
        written: list[int] = []
        try:
            yield path, written
            fsync_path(path)
            seconds = self.earlier_seconds + time.monotonic() - self.started
            crc = written[0] if written else _crc32(path)
            meta = {"n": number, "file": path.name, "crc32": crc,
                    "seconds": seconds, "saved": time.time()}
            temporary = self.folder / f"meta.json.{os.getpid()}"
            temporary.write_text(json.dumps(meta))
            fsync_path(temporary)
            temporary.replace(self.folder / "meta.json")
            fsync_path(self.folder)
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        previous, self._n, self._last = self.folder / f"state-{self._n:06d}", number, meta
        previous.unlink(missing_ok=True)

    def should_stop(self) -> bool:
        """True once the run is stopping (a stop signal, the stop file, SLURM's end
        time): save and return from ``fit`` now; the split resumes in the next job."""
        now = time.monotonic()
        if not self.stop_seen and (now - self._checked >= self._check_every
                                   or not self._checked):
            self._checked = now
            self.stop_seen = bool(self._stopping())
        return self.stop_seen

    def remove(self) -> None:
        """Delete every save (the split has its result)."""
        shutil.rmtree(self.folder, ignore_errors=True)


class _Summed:
    """A binary file that keeps the CRC-32 of what is written to it."""

    def __init__(self, target: Any) -> None:
        self.target, self.crc = target, 0

    def write(self, data: Any) -> int:
        self.crc = zlib.crc32(data, self.crc)
        return int(self.target.write(data))


def _crc32(path: Path) -> int:
    crc = 0
    with open(path, "rb") as source:
        while block := source.read(_CHUNK):
            crc = zlib.crc32(block, crc)
    return crc


class CheckpointSlot:
    """Where the split running now would keep its checkpoint, and, as a context
    manager, the slot :func:`split_checkpoint` answers from while the block runs (the
    engine wraps each split's ``fit`` in one). The :class:`SplitCheckpoint` (its folder,
    the file system) is made only if the learner asks for it: on the path of every
    split, a slot costs an object and a context, about half a microsecond.

    Parameters
    ----------
    checkpoints : pathlib.Path
        ``PROJECT/checkpoints``.
    job_id : int
        The split: its checkpoint is ``checkpoints/JOB_ID``.
    stopping, check_every
        As for :class:`SplitCheckpoint`.
    """

    __slots__ = ("check_every", "checkpoint", "checkpoints", "job_id", "stopping")

    def __init__(self, checkpoints: Path, job_id: int, stopping: Callable[[], bool],
                 check_every: float = STOP_CHECK_SECONDS) -> None:
        self.checkpoints, self.job_id = checkpoints, job_id
        self.stopping, self.check_every = stopping, check_every
        self.checkpoint: SplitCheckpoint | None = None
        """The checkpoint, once the learner asked for it."""

    def open(self) -> SplitCheckpoint:
        """The split's checkpoint (made on the first call)."""
        if self.checkpoint is None:
            self.checkpoint = SplitCheckpoint(self.checkpoints / str(self.job_id),
                                              self.stopping, self.check_every)
        return self.checkpoint

    def __enter__(self) -> CheckpointSlot:
        _CURRENT["slot"] = self
        return self

    def __exit__(self, *exc_info: object) -> None:
        _CURRENT["slot"] = None


_CURRENT: dict[str, CheckpointSlot | None] = {"slot": None}


def split_checkpoint() -> SplitCheckpoint | None:
    """The checkpoint of the split this code runs in (None outside an mpibench run,
    e.g. in a plain ``fit``, and for a fallback learner).

    Examples
    --------
    >>> split_checkpoint() is None
    True
    """
    slot = _CURRENT["slot"]
    return None if slot is None else slot.open()


def list_checkpoints(folder: Path) -> list[dict[str, Any]]:
    """The checkpoints kept in ``folder`` (``PROJECT/checkpoints``), newest first: for
    each, ``job_id``, ``saves`` (its save number), ``bytes`` (its state file),
    ``seconds`` (fit seconds up to it) and ``saved`` (Unix seconds). Read from each
    ``meta.json`` alone (no state is read).

    Examples
    --------
    >>> list_checkpoints(Path("/nonexistent"))
    []
    """
    found = []
    for meta_file in Path(folder).glob("*/meta.json"):
        try:
            meta = json.loads(meta_file.read_text())
            size = (meta_file.parent / meta["file"]).stat().st_size
            found.append({"job_id": int(meta_file.parent.name), "saves": int(meta["n"]),
                          "bytes": size, "seconds": float(meta["seconds"]),
                          "saved": float(meta["saved"])})
        except (OSError, ValueError, KeyError, TypeError):
            continue  # (one being written, or damaged: its split starts afresh)
    return sorted(found, key=lambda c: -c["saved"])
