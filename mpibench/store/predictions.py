"""Predictions of every split (``mpibench run --save-predictions``).

The process that runs a split appends its test rows, predictions and (for learners
with ``predict_proba``) class probabilities to ``PROJECT/predictions/rank-R.bin``,
one framed record per split (length, CRC-32, pickle) written with one ``write``: a
write that fails (a full disk) is cut off again, and readers skip a torn or damaged
record and go on at the next intact one, so records appended later are not lost. Rank 0 gathers
the records of the splits whose result is recorded (the latest attempt of each) into
``/predictions`` of ``results.h5`` at every checkpoint: one row per (split, test row)
with ``job_id``, ``attempt``, ``row`` (index into the task's rows), ``prediction`` and a
``proba_<class>`` column per class.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import struct
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

HEAD = struct.Struct("<II")
"""Record head: payload length and CRC-32."""


class PredictionWriter:
    """Appends the predictions of the splits one process runs.

    Parameters
    ----------
    folder : pathlib.Path
        ``PROJECT/predictions`` (created if missing).
    rank : int
        MPI rank: the file is ``rank-R.bin``; processes of one rank run one split at a
        time, so their appends never interleave.
    """

    def __init__(self, folder: Path, rank: int) -> None:
        self.path = Path(folder) / f"rank-{rank}.bin"
        self._fd: int | None = None

    def write(self, job_id: int, attempt: int, rows: np.ndarray, prediction: np.ndarray,
              proba: np.ndarray | None, classes: Any = None) -> None:
        """Append one split's predictions (``rows``: test row indices)."""
        if self._fd is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        payload = pickle.dumps(
            (int(job_id), int(attempt), np.asarray(rows, dtype=np.int64),
             np.asarray(prediction), None if proba is None else np.asarray(proba, float),
             None if classes is None else [str(c) for c in classes]), protocol=5)
        record = HEAD.pack(len(payload), zlib.crc32(payload)) + payload
        end = os.lseek(self._fd, 0, os.SEEK_END)
        try:
            written = os.write(self._fd, record)
            if written != len(record):
                raise OSError(28, "No space left on device (a short write)")
        except OSError:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, end)  # no torn record stays behind
            raise


PICKLE_START = b"\x80\x05"
"""How every payload begins (pickle protocol 5): where a reader looks to resynchronise."""


def _record_at(data: bytes, pos: int) -> tuple[bytes, int] | None:
    """The intact record at ``pos``: (payload, next position), else None."""
    if pos + HEAD.size > len(data):
        return None
    length, crc = HEAD.unpack_from(data, pos)
    payload = data[pos + HEAD.size:pos + HEAD.size + length]
    if len(payload) < length or zlib.crc32(payload) != crc:
        return None
    return payload, pos + HEAD.size + length


def read_records(path: Path) -> list[tuple]:
    """The intact records of one rank's file (a torn or damaged record is skipped)."""
    data, records, pos = Path(path).read_bytes(), [], 0
    while pos + HEAD.size <= len(data):
        found = _record_at(data, pos)
        if found is None:  # damage: the next intact record starts somewhere after
            start = data.find(PICKLE_START, pos + 1 + HEAD.size)
            while start != -1 and _record_at(data, start - HEAD.size) is None:
                start = data.find(PICKLE_START, start + 1)
            if start == -1:
                break
            pos = start - HEAD.size
            continue
        payload, pos = found
        records.append(pickle.loads(payload))  # noqa: S301 - written by our own workers
    return records


def gather(folder: Path, attempts: dict[int, int]) -> pd.DataFrame | None:
    """``/predictions`` rows of the splits in ``attempts`` (job id -> the attempt whose
    result is recorded), sorted by job id; None without any prediction file."""
    files = sorted(Path(folder).glob("rank-*.bin")) if Path(folder).is_dir() else []
    if not files:
        return None
    latest: dict[int, tuple] = {}
    for path in files:
        for record in read_records(path):
            if attempts.get(record[0]) == record[1]:
                latest[record[0]] = record
    frames = [_frame(latest[job]) for job in sorted(latest)]
    if not frames:
        return pd.DataFrame({"job_id": np.zeros(0, np.int64), "attempt": np.zeros(0, np.int32),
                             "row": np.zeros(0, np.int64), "prediction": np.zeros(0)})
    table = pd.concat(frames, ignore_index=True)
    if table["prediction"].dtype == object:  # labels of several kinds: as text
        table["prediction"] = table["prediction"].astype(str)
    return table


def _frame(record: tuple) -> pd.DataFrame:
    job_id, attempt, rows, prediction, proba, classes = record
    prediction = prediction if prediction.dtype.kind in "fiub" else prediction.astype(str)
    frame = pd.DataFrame({"job_id": job_id, "attempt": attempt, "row": rows,
                          "prediction": prediction})
    if proba is not None and classes is not None:
        for j, name in enumerate(classes):
            frame[f"proba_{name}"] = proba[:, j]
    return frame
