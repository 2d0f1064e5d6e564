"""``results.journal``: the append-only, checksummed record of a project's runs.

Format: the line ``MPIBENCH-JOURNAL 1\\n``, then records, each a little-endian
``uint32`` payload length, a ``uint32`` CRC-32 of the payload, and the payload: one
JSON object whose ``"t"`` names its kind. Every record is written by a method of
:class:`JournalWriter` and read by :func:`parse` (or, after ``results.h5``, by
:func:`read_tail`; :func:`results_of` decodes results for both):

======  ==================  =====================  ==========================================
kind    written by          fields                 meaning; what a reader does
======  ==================  =====================  ==========================================
header  ``JournalWriter()``  fingerprint, parts,    the grid the journal belongs to (first
                            created, result_fields  record); a reader refuses other grids
``s``   ``handed_out``      jobs                   ids handed out: counts attempts
``u``   ``handed_back``     jobs                   ids back unstarted: attempts taken back
``x``   ``retried``         jobs                   ``--retry``: their results go to history
``g``   ``grew``            parts, fingerprint     the project grew: the grid's new parts
``k``   ``rank_table``      run, rows              a run's ``/ranks`` rows (latest wins)
``n``   ``run_facts``       run, facts             a run's ``/runs`` row (latest wins)
``r``   ``append_results``  rows                   finished splits, one list per split in
                                                   the header's ``result_fields`` order
``c``   ``append_results``  n, t0, cols            finished splits, one list per field
======  ==================  =====================  ==========================================

Records reach the file with one ``write`` each (a killed process loses none) and are
fsynced in groups (a machine crash loses at most the last group). ``strings
results.journal`` shows them.
"""

from __future__ import annotations

import contextlib
import json
import os
import struct
import threading
import time
import warnings
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import MpibenchError, WriteFailed
from ..tuning import COMMIT_RECORDS, COMMIT_SECONDS
from .batch import (
    RESULT_FIELDS,
    EncodedResults,
    ResultBatch,
    batch_from_columns_record,
    json_bytes,
)
from .paths import fsync_path, replace_atomically, write_failed
from .records import SplitResult

MAGIC = b"MPIBENCH-JOURNAL 1\n"
HEADER, HANDED_OUT, HANDED_BACK, RETRIED, GREW, RANK_TABLE, ROWS, COLUMNS, RUN_FACTS = (
    "header", "s", "u", "x", "g", "k", "r", "c", "n")
"""The record kinds (the table above)."""
HEAD = struct.Struct("<II")
_RECORD_START = b'{"t": '


class JournalCorrupt(MpibenchError):
    """A damaged record in the middle of the journal."""


class JournalHeaderDamaged(JournalCorrupt):
    """The journal's header (the grid it belongs to) is damaged: no record can be
    trusted to belong to this grid."""


def frame(body: bytes) -> bytes:
    """One record: length, CRC-32, then the JSON ``body``."""
    return HEAD.pack(len(body), zlib.crc32(body)) + body


def encode(payload: dict) -> bytes:
    """One record of ``payload``: length, CRC-32, JSON."""
    return frame(json_bytes(payload))


def batch_from_record(record: dict) -> ResultBatch:
    """The results of a ``"t": "r"`` record: ``"rows"`` in ``RESULT_FIELDS`` order."""
    return ResultBatch.from_rows(record["rows"])


@dataclass
class JournalContents:
    """What a journal holds: header, finished splits, hand-out counts, damage found."""

    header: dict | None = None
    batches: list[ResultBatch] = field(default_factory=list)
    started_ids: list[list[int]] = field(default_factory=list)
    returned_ids: list[list[int]] = field(default_factory=list)
    retries: list[tuple[int, int, int, list[int]]] = field(default_factory=list)
    """``--retry`` marks, in order: (result rows, hand-out records and return records
    before the mark, job ids). Earlier results of those jobs are history."""
    n_rows: int = 0
    ranks: dict = field(default_factory=dict)
    """Per run (rank 0's start time): its ranks' ``/ranks`` rows, latest record wins."""
    runs: dict = field(default_factory=dict)
    """Per run (rank 0's start time): its ``/runs`` row, latest record wins."""
    torn_at: int | None = None
    damaged: list[tuple[int, int]] = field(default_factory=list)
    parts_before_growth: dict | None = None
    """The grid's parts before the growth records that end the journal (None when
    something came after them): a growth killed before ``grid.h5`` was replaced
    leaves the journal ahead of the grid."""
    interrupted_growth: bool = False
    """Set by :func:`read_journal` when the grid is the one before such records."""

    @property
    def results(self) -> list[SplitResult]:
        """Every finished split as an object, in journal order (small journals)."""
        return [r for batch in self.batches for r in batch.results()]

    def started_counts(self, n_jobs: int) -> np.ndarray:
        """How many times each job id was handed out (length ``n_jobs``)."""
        def count(lists: list[list[int]]) -> np.ndarray:
            ids = [np.asarray(i, dtype=np.int64) for i in lists]
            flat = np.concatenate(ids) if ids else np.zeros(0, dtype=np.int64)
            return np.bincount(flat, minlength=n_jobs)

        return (count(self.started_ids) - count(self.returned_ids)).astype(np.int32)

    def retry_marks(self, n_jobs: int) -> tuple[np.ndarray, np.ndarray]:
        """Per job: the result rows before its latest ``--retry`` mark (-1: none), and
        its hand-outs before that mark (attempts are counted anew from there)."""
        rows_before = np.full(n_jobs, -1, dtype=np.int64)
        started_before = np.zeros(n_jobs, dtype=np.int32)
        for n_rows, n_started, n_returned, jobs in self.retries:
            ids = np.asarray(jobs, dtype=np.int64)
            upto = JournalContents(started_ids=self.started_ids[:n_started],
                                   returned_ids=self.returned_ids[:n_returned])
            rows_before[ids] = n_rows
            started_before[ids] = upto.started_counts(n_jobs)[ids]
        return rows_before, started_before


def _valid_record(data: bytes, pos: int) -> tuple[dict, int] | None:
    if pos + HEAD.size > len(data):
        return None
    length, crc = HEAD.unpack_from(data, pos)
    end = pos + HEAD.size + length
    if end > len(data):
        return None
    body = data[pos + HEAD.size:end]
    if zlib.crc32(body) != crc:
        return None
    try:
        return json.loads(body), end
    except ValueError:
        return None


def _next_valid(data: bytes, pos: int) -> int | None:
    """Offset of the next intact record after ``pos``, or None."""
    search = pos + 1
    while True:
        found = data.find(_RECORD_START, search + HEAD.size)
        if found < 0:
            return None
        if _valid_record(data, found - HEAD.size) is not None:
            return found - HEAD.size
        search = found - HEAD.size + 1


def parse(data: bytes) -> JournalContents:
    """Parse journal bytes; damage is reported in the result, not raised."""
    contents = JournalContents()
    if not data.startswith(MAGIC):
        raise MpibenchError(
            "results.journal does not start with the mpibench journal header. "
            "Move it away if it is not from mpibench."
        )
    pos = len(MAGIC)
    while pos < len(data):
        parsed = _valid_record(data, pos)
        if parsed is None:
            resume = _next_valid(data, pos)
            if resume is None:
                contents.torn_at = pos
                break
            contents.damaged.append((pos, resume))
            pos = resume
            continue
        record, pos = parsed
        _apply(contents, record)
    return contents


def results_of(record: dict) -> ResultBatch | None:
    """The finished splits a record holds (None for a record of another kind)."""
    kind = record.get("t")
    if kind == ROWS:
        return batch_from_record(record)
    if kind == COLUMNS:
        return batch_from_columns_record(record)
    return None


def _apply(contents: JournalContents, record: dict) -> None:
    kind = record.get("t")
    if kind != GREW:
        contents.parts_before_growth = None
    batch = results_of(record)
    if batch is not None:
        contents.batches.append(batch)
        contents.n_rows += len(batch)
    elif kind == RANK_TABLE:
        contents.ranks[record["run"]] = record["rows"]
    elif kind == RUN_FACTS:
        contents.runs[record["run"]] = record["facts"]
    elif kind == RETRIED:
        contents.retries.append((contents.n_rows, len(contents.started_ids),
                                 len(contents.returned_ids), record["jobs"]))
    elif kind == HANDED_OUT:
        contents.started_ids.append(record["jobs"])
    elif kind == HANDED_BACK:
        contents.returned_ids.append(record["jobs"])
    elif kind == HEADER and contents.header is None:
        contents.header = record
    elif kind == GREW and contents.header is not None:  # the project grew: new parts
        if contents.parts_before_growth is None:
            contents.parts_before_growth = contents.header.get("parts", {})
        contents.header = {**contents.header, "parts": record["parts"]}


def changed_parts(header: dict | None, parts: dict[str, str]) -> list[str]:
    """Fingerprint parts that differ between a journal header and a grid."""
    if header is None:
        return []
    stored = header.get("parts", {})
    return [k for k in parts if stored.get(k) != parts[k]]


def read_journal(path: Path, parts: dict[str, str], *, repair: bool = False) -> JournalContents:
    """Read a journal written for the grid with fingerprint ``parts``.

    A torn last record (a killed writer) is truncated with a warning.

    Parameters
    ----------
    path : pathlib.Path
        The journal.
    parts : dict
        The grid's fingerprint parts; a journal of another grid is refused before
        anything is modified.
    repair : bool, default=False
        Drop damaged records in the middle (their splits run again) instead of
        refusing.

    Raises
    ------
    MpibenchError
        The journal belongs to another grid.
    JournalCorrupt
        Damaged records in the middle and ``repair`` is False.
    """
    data = path.read_bytes()
    contents = parse(data)
    if contents.header is None:
        raise JournalHeaderDamaged(
            f"{path}: its header, which names the grid it belongs to, is damaged, so no "
            "result in it can be checked against this grid. Rerun with --repair: it is "
            "moved aside (kept), the results in a results.h5 of this grid are kept and "
            "the other splits run again.")
    changed = changed_parts(contents.header, parts)
    if changed and contents.parts_before_growth is not None and not changed_parts(
            {"parts": contents.parts_before_growth}, parts):
        changed, contents.interrupted_growth = [], True
    if changed:
        raise MpibenchError(
            f"{path} was written for a different grid (changed: {', '.join(changed)}). "
            "Run the old grid's project, or move the journal and results.h5 away to start "
            "over; both are left untouched."
        )
    if contents.damaged and not repair:
        first = contents.damaged[0][0]
        raise JournalCorrupt(
            f"{path} has {len(contents.damaged)} damaged record(s) in the middle (first at "
            f"byte {first}). Rerun with --repair to drop them (those splits run again)."
        )
    if contents.damaged:
        _rewrite_without_damage(path, data, contents)
        return read_journal(path, parts)
    if contents.torn_at is not None:
        with open(path, "r+b") as handle:
            handle.truncate(contents.torn_at)
            os.fsync(handle.fileno())
        warnings.warn(
            f"{path}: truncated a torn last record ({len(data) - contents.torn_at} bytes at "
            f"byte {contents.torn_at}) left by a killed run.", stacklevel=2)
    return contents


def _rewrite_without_damage(path: Path, data: bytes, contents: JournalContents) -> None:
    starts = [start for start, _ in contents.damaged]
    kept = bytearray(data[:starts[0]])
    for (_, resume), next_start in zip(contents.damaged, [*starts[1:], contents.torn_at],
                                       strict=True):
        kept += data[resume:next_start]
    tmp = path.with_name(f".{path.name}.repair.tmp")
    tmp.write_bytes(bytes(kept))
    replace_atomically(tmp, path)
    warnings.warn(f"Repaired {path}: dropped {len(contents.damaged)} damaged record(s); "
                  "their splits run again.", stacklevel=3)


class JournalWriter:
    """Appends records with one ``write`` each and fsyncs them in groups.

    Parameters
    ----------
    path : pathlib.Path
        The journal (created with ``header`` when missing).
    header : dict
        Written as the first record of a new journal.
    """

    def __init__(self, path: Path, header: dict) -> None:
        self.path = path
        fresh = not path.exists() or path.stat().st_size == 0  # an empty one is absent
        try:
            self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        except OSError as exc:
            raise self.failed(exc) from None
        self._unsynced = 0
        self._oldest = 0.0
        self._staged: list[bytes] | None = None
        self._committing: threading.Thread | None = None
        self._commit_error: OSError | None = None
        if fresh:
            try:
                os.ftruncate(self._fd, 0)
                os.write(self._fd, MAGIC + encode({"t": HEADER, **header,
                                                   "result_fields": list(RESULT_FIELDS)}))
                os.fsync(self._fd)
                fsync_path(path.parent)
            except OSError as exc:
                os.close(self._fd)
                path.unlink(missing_ok=True)
                raise self.failed(exc) from None

    @contextlib.contextmanager
    def one_write(self) -> Iterator[None]:
        """Records appended in the block reach the file in one ``write`` at its end."""
        self._staged = []
        try:
            yield
        finally:
            staged, self._staged = self._staged, None
            if staged:
                self._write_now(b"".join(staged))

    def _write(self, record: bytes) -> None:
        if self._staged is not None:
            self._staged.append(record)
        else:
            self._write_now(record)

    def _write_now(self, data: bytes) -> None:
        """``write`` (a full disk or an I/O error: :class:`WriteFailed`; a torn tail
        record is dropped when the journal is next read)."""
        try:
            os.write(self._fd, data)
        except OSError as exc:
            raise self.failed(exc) from None

    def failed(self, error: OSError) -> WriteFailed:
        """The one-line error for a failed write or fsync of the journal."""
        return write_failed(self.path, error, "Free space and rerun the same command: "
                            "every split the journal holds is kept, the ones in flight "
                            "run again.")

    def _append(self, body: bytes, n_splits: int = 1) -> None:
        """Write one record now (no fsync); ``n_splits`` count towards the group commit."""
        self._write(frame(body))
        if not self._unsynced:
            self._oldest = time.monotonic()
        self._unsynced += n_splits

    def grew(self, parts: dict, fingerprint: str) -> None:
        """A ``g`` record: the project's grid now has these fingerprint ``parts``."""
        self._append(json_bytes({"t": GREW, "parts": parts, "fingerprint": fingerprint}))

    def rank_table(self, run: float, rows: list) -> None:
        """A ``k`` record: run ``run``'s ``/ranks`` rows so far."""
        self._append(json_bytes({"t": RANK_TABLE, "run": run, "rows": rows}))

    def run_facts(self, run: float, facts: dict) -> None:
        """An ``n`` record: run ``run``'s ``/runs`` row so far."""
        self._append(json_bytes({"t": RUN_FACTS, "run": run, "facts": facts}))

    def handed_out(self, job_ids: np.ndarray | list[int]) -> None:
        """An ``s`` record: these splits were handed out."""
        self._ids(HANDED_OUT, job_ids)

    def handed_back(self, job_ids: np.ndarray | list[int]) -> None:
        """A ``u`` record: these splits came back unstarted."""
        self._ids(HANDED_BACK, job_ids)

    def retried(self, job_ids: np.ndarray | list[int]) -> None:
        """An ``x`` record: these splits run again (``--retry``)."""
        self._ids(RETRIED, job_ids)

    def _ids(self, kind: str, job_ids: np.ndarray | list[int]) -> None:
        ids = job_ids if isinstance(job_ids, list) else job_ids.tolist()
        self._append(b'{"t": "%s", "jobs": %s}' % (kind.encode(), str(ids).encode()))

    def append_results(self, results: list[SplitResult] | EncodedResults) -> None:
        """One record holding finished splits (result objects, or encoded by a worker)."""
        if len(results):
            if not isinstance(results, EncodedResults):
                results = EncodedResults(results)
            self._append(results.record, len(results))

    @property
    def commit_due(self) -> bool:
        """True when the group commit should happen now (and none is under way)."""
        if self._committing is not None and self._committing.is_alive():
            return False
        return self._unsynced >= COMMIT_RECORDS or (
            self._unsynced > 0 and time.monotonic() - self._oldest >= COMMIT_SECONDS)

    def commit(self) -> int:
        """fsync what was appended; returns how many records that made durable."""
        self._wait_for_commit()
        committed = self._unsynced
        if committed:
            try:
                os.fsync(self._fd)
            except OSError as exc:
                raise self.failed(exc) from None
            self._unsynced = 0
        return committed

    def commit_in_background(self) -> int:
        """Start an fsync of what was appended in a thread and return at once (rank 0
        goes on answering workers: an fsync takes milliseconds on a local disk and can
        take far longer on a parallel file system). Returns how many records it covers;
        a failed fsync is raised by the next commit."""
        self._wait_for_commit()
        committed, self._unsynced = self._unsynced, 0
        if committed:
            self._committing = threading.Thread(target=self._fsync_quietly,
                                                name="mpibench-journal-commit", daemon=True)
            self._committing.start()
        return committed

    def _fsync_quietly(self) -> None:
        try:
            os.fsync(self._fd)
        except OSError as exc:
            self._commit_error = exc

    def _wait_for_commit(self) -> None:
        if self._committing is not None:
            self._committing.join()
            self._committing = None
        error, self._commit_error = self._commit_error, None
        if error is not None:
            raise self.failed(error)

    @property
    def size(self) -> int:
        """Bytes written so far (records staged by :meth:`one_write` excluded)."""
        return os.fstat(self._fd).st_size

    def close(self) -> None:
        """Commit and close."""
        self.commit()
        os.close(self._fd)


def read_tail(path: Path, offset: int) -> tuple[dict | None, list[dict]]:
    """The header and the intact records from byte ``offset`` on (``0``: all), read
    only: a run may be appending (a record being written is left out) and nothing is
    repaired. For ``mpibench status``, which reads what came after the last
    ``results.h5``."""
    with open(path, "rb") as handle:
        head = handle.read(1 << 16)
        if not head.startswith(MAGIC):
            raise MpibenchError(f"{path} does not start with the mpibench journal header.")
        first = _valid_record(head, len(MAGIC))
        header = first[0] if first is not None else None
        start = max(offset, first[1] if first is not None else len(MAGIC))
        handle.seek(start)
        data = handle.read()
    records, pos = [], 0
    while (parsed := _valid_record(data, pos)) is not None:
        record, pos = parsed
        records.append(record)
        if record.get("t") == GREW and header is not None:
            header = {**header, "parts": record["parts"]}
    return header, records
