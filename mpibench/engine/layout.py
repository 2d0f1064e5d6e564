"""The start of a run across nodes: every rank reports where it runs, rank 0 places
them (node, GPU, data), and each node gets ``grid.h5`` in a form its ranks can map.

Task data is held once per node because every process of a node memory-maps the same
``grid.h5`` (one copy in the page cache). Some shared file systems refuse memory maps;
a rank finds that out by trying (:func:`grid_mappable`), and on such a node the lowest
working rank copies ``grid.h5`` once into node-local memory (``/dev/shm``, or
``MPIBENCH_LOCAL_DIR``), where every rank of the node maps it. Rank 0 logs the choice;
the copy is removed when the run ends.
"""

from __future__ import annotations

import mmap
import os
import shutil
import socket
import tempfile
import time
from pathlib import Path

from ..errors import InjectedFault, MpibenchError, inject_fault
from .placement import LocalFacts, Placement, local_facts, place_ranks
from .polling import worker_backoff
from .progress import log
from .protocol import TAG_PLACE
from .provenance import node_hardware
from .transport import Transport

GRID_COPY_WAIT = 600.0
"""Seconds a rank waits for its node's copy of ``grid.h5`` (the copier failing ends
the job long before: this only bounds a copier that hangs on a stuck file system)."""


def grid_mappable(grid: Path, rank: int) -> bool:
    """Whether ``grid`` can be memory-mapped here (a read-only map of its first page).

    ``MPIBENCH_FAULT=mmap:RANK`` makes the answer False on that rank (a test hook: file
    systems that refuse maps are rare on test machines).
    """
    try:
        inject_fault("mmap", rank)
        with open(grid, "rb") as handle:
            size = min(os.fstat(handle.fileno()).st_size, mmap.PAGESIZE)
            if size == 0:
                return True
            with mmap.mmap(handle.fileno(), size, access=mmap.ACCESS_READ) as mapped:
                return len(mapped[:1]) == 1
    except (OSError, ValueError, InjectedFault):
        return False


def local_folder() -> str:
    """Where node-local copies go: ``MPIBENCH_LOCAL_DIR``, else ``/dev/shm`` (memory),
    else the temporary folder; a subfolder named after rank 0's host and pid."""
    base = os.environ.get("MPIBENCH_LOCAL_DIR")
    if not base:
        shm = "/dev/shm"  # noqa: S108 - memory-backed and node-local; a private subfolder
        base = shm if os.access(shm, os.W_OK) else tempfile.gettempdir()
    return str(Path(base) / f"mpibench-{socket.gethostname()}-{os.getpid()}")


def exchange_placements(transport: Transport, grid: Path
                        ) -> tuple[Placement, list[Placement] | None, list[dict] | None]:
    """Every rank reports its :class:`LocalFacts` to rank 0, which places them all.

    Returns this rank's placement, and on rank 0 everyone's and each node's hardware
    (the first rank of each node reports it; None elsewhere).
    Collective: every rank calls it once, after the start was agreed. Rank 0 of a job
    of several ranks runs no split (no GPU, no grid copy).
    """
    inject_fault("place", transport.rank)
    key, processor = transport.node_key()
    facts = local_facts(key, processor, grid_mappable(grid, transport.rank))
    if key == transport.rank:  # the node's first rank describes it
        facts = facts._replace(hardware=node_hardware(facts.node))
    if transport.rank != 0:
        transport.send(facts, 0, TAG_PLACE)
        mine, _ = transport.receive(0, TAG_PLACE, worker_backoff(spin=0.0))
        return mine, None, None
    everyone: list[LocalFacts | None] = [facts] + [None] * (transport.size - 1)
    for _ in range(transport.size - 1):
        theirs, source = transport.receive(None, TAG_PLACE, worker_backoff(spin=0.0))
        everyone[source] = theirs
    working = [transport.size == 1 or rank > 0 for rank in range(transport.size)]
    placements = place_ranks(everyone, working, local_folder())  # type: ignore[arg-type]
    for placement in placements[1:]:
        transport.send(placement, placement.rank, TAG_PLACE)
    report(placements, grid)
    nodes = [f.hardware for f in everyone if f is not None and f.hardware]
    return placements[0], placements, nodes


def report(placements: list[Placement], grid: Path) -> None:
    """Log the nodes (when more than one), the GPUs and any node-local grid copy."""
    nodes: dict[str, list[int]] = {}
    for p in placements:
        nodes.setdefault(p.node, []).append(p.rank)
    if len(nodes) > 1:
        log(f"{len(placements)} ranks on {len(nodes)} nodes: " + ", ".join(
            f"{node} (ranks {_spans(ranks)})" for node, ranks in nodes.items()))
    gpus = [f"{p.rank}:{p.gpu}" for p in placements if p.gpu]
    if gpus:
        origin = {p.gpu_from for p in placements if p.gpu}
        log(f"GPUs (rank:CUDA_VISIBLE_DEVICES, {'/'.join(sorted(origin))}): "
            + " ".join(gpus))
    for p in placements:
        if p.copies_grid:
            log(f"{grid} cannot be memory-mapped on {p.node}: its ranks share one copy in "
                f"node-local {Path(p.grid_copy).parent} (made by rank {p.rank})")


def _spans(ranks: list[int]) -> str:
    """``0-2,5`` for [0, 1, 2, 5]."""
    spans: list[list[int]] = []
    for rank in ranks:
        if spans and rank == spans[-1][1] + 1:
            spans[-1][1] = rank
        else:
            spans.append([rank, rank])
    return ",".join(f"{a}-{b}" if b > a else f"{a}" for a, b in spans)


def settle_grid_copy(placement: Placement, grid: Path) -> None:
    """Make (the node's copier) or wait for (the other ranks) the node-local copy of
    ``grid`` that ``placement`` names; nothing when it names none."""
    if not placement.grid_copy:
        return
    target = Path(placement.grid_copy)
    if placement.copies_grid:
        target.parent.mkdir(parents=True, exist_ok=True)
        size = grid.stat().st_size
        free = shutil.disk_usage(target.parent).free
        if free < size:
            raise MpibenchError(
                f"{grid} cannot be memory-mapped on {placement.node} and {target.parent} "
                f"has {free / 1e6:.0f} MB free for its {size / 1e6:.0f} MB copy: set "
                "MPIBENCH_LOCAL_DIR to a node-local folder with room, or keep the project "
                "on a file system that allows memory maps.")
        partial = target.with_name(target.name + ".part")
        shutil.copyfile(grid, partial)
        partial.replace(target)
        return
    deadline, backoff = time.monotonic() + GRID_COPY_WAIT, worker_backoff(spin=0.0)
    while not target.exists():
        if time.monotonic() > deadline:
            raise MpibenchError(f"no copy of {grid} appeared in {target.parent} within "
                                f"{GRID_COPY_WAIT:g} s: check that folder's file system.")
        backoff.sleep()


def remove_grid_copy(placement: Placement | None) -> None:
    """The copier removes its node's copy once every rank has finished."""
    if placement is not None and placement.copies_grid:
        shutil.rmtree(Path(placement.grid_copy).parent, ignore_errors=True)
