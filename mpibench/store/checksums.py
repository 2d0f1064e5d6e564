"""Checksums that make a flipped bit in a project file an error, not a number.

``results.h5`` keeps its numeric columns with HDF5's own Fletcher-32 filter (every
reader, h5py or R's hdf5r, checks it); its text columns, and every dataset of
``grid.h5`` (whose packed arrays are memory-mapped, so they cannot go through an HDF5
filter), carry a CRC-32 of their values in the attribute ``crc32``, stamped when the
file is written and checked when it is read (``grid.h5``: as a run opens it).
"""

from __future__ import annotations

import zlib
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from ..errors import MpibenchError

CRC_ATTR = "crc32"
BLOCK_BYTES = 64 * 2**20
"""Bytes of a dataset read at a time to check it (memory stays bounded)."""


class DamagedFile(MpibenchError):
    """A dataset of a project file does not match its checksum."""

    cause = ""
    """What failed, without the file and the fix."""


def values_crc(values: Any, crc: int = 0) -> int:
    """CRC-32 of an array's values (text as UTF-8 joined by NUL), continuing ``crc``."""
    array = np.asarray(values)
    if array.dtype.kind in "OU":
        data = "\x00".join(v.decode() if isinstance(v, bytes) else str(v)
                           for v in array.reshape(-1)).encode()
        return zlib.crc32(data, crc)
    if array.dtype.kind == "V" and array.shape == ():
        return zlib.crc32(array.tobytes(), crc)
    return zlib.crc32(np.ascontiguousarray(array).view(np.uint8).reshape(-1).data, crc)


def dataset_crc(dataset: h5py.Dataset) -> int:
    """CRC-32 of a dataset's values, read in blocks of at most ``BLOCK_BYTES``."""
    if h5py.check_string_dtype(dataset.dtype):
        return values_crc(dataset.asstr()[()])
    if dataset.shape == () or dataset.size == 0:
        return values_crc(dataset[()])
    row_bytes = max(1, dataset.dtype.itemsize * dataset.size // dataset.shape[0])
    step = max(1, BLOCK_BYTES // row_bytes)
    crc = 0
    for start in range(0, dataset.shape[0], step):
        crc = values_crc(dataset[start:start + step], crc)
    return crc


def stamp_checksums(h5: h5py.File) -> None:
    """Give every dataset without a Fletcher-32 filter its ``crc32`` attribute."""
    def stamp(_: str, item: Any) -> None:
        if isinstance(item, h5py.Dataset) and not item.fletcher32 and \
                CRC_ATTR not in item.attrs:
            item.attrs[CRC_ATTR] = np.uint32(dataset_crc(item))
    h5.visititems(stamp)


def damaged(path: Path, name: str, fix: str) -> DamagedFile:
    """The one-line error for dataset ``name`` of ``path`` failing its checksum."""
    cause = f"{name} does not match its checksum (a changed bit on disk)"
    error = DamagedFile(f"{path} is damaged: {cause}. {fix}")
    error.cause = cause
    return error


def verify_checksums(path: Path, fix: str) -> int:
    """Check every dataset of ``path`` against its checksum; returns the datasets
    checked (0 for a file written before checksums). Raises :class:`DamagedFile`."""
    checked = []

    def check(name: str, item: Any) -> None:
        if not isinstance(item, h5py.Dataset):
            return
        if item.fletcher32:
            try:
                dataset_crc(item)
            except OSError:
                raise damaged(path, item.name, fix) from None
        elif CRC_ATTR in item.attrs:
            if int(item.attrs[CRC_ATTR]) != dataset_crc(item):
                raise damaged(path, item.name, fix)
        else:
            return
        checked.append(name)

    with h5py.File(path, "r") as h5:
        h5.visititems(check)
    return len(checked)
