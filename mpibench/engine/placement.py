"""Where each rank runs: its node, its place on that node, and the GPUs its splits see.

Ranks are grouped by node the way MPI groups them
(``Comm.Split_type(COMM_TYPE_SHARED)``: the processes that can share memory), and a
node is named by SLURM's node name (``SLURMD_NODENAME``) when the job runs under
SLURM, else by MPI's processor name. The names go into the ``host`` column; two
``slurmd`` daemons on one machine are two nodes, as they are to SLURM and MPI.

GPUs: a rank whose launcher set ``CUDA_VISIBLE_DEVICES`` to its own devices (SLURM's
``--gpus-per-task`` does) keeps them. When the launcher gave every rank of a node the
same list of several devices (``--gres=gpu:4``), or set nothing and the node has
``/dev/nvidia<N>`` devices, the node's working ranks take them in turn by their place
on the node, one device each (ranks share devices when there are more ranks). Rank 0
of a job, which runs no split, gets none. The value becomes the ``CUDA_VISIBLE_DEVICES``
of the rank's splits and is recorded per split and per rank (``gpu`` column; empty:
none).

Everything here but :func:`local_facts` is plain Python, tested without MPI.
"""

from __future__ import annotations

import os
import re
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

DEVICE_FOLDER = Path("/dev")
"""Where the NVIDIA driver's device files (``nvidia0``, ``nvidia1``, ...) appear."""
_DEVICE = re.compile(r"nvidia(\d+)")


class LocalFacts(NamedTuple):
    """What one rank finds out about itself, sent to rank 0 before the run."""

    node_key: int
    """The lowest world rank on this rank's node (the same on every rank of a node)."""
    node: str
    """The node's name (SLURM's, else MPI's processor name, else the host name)."""
    launcher_gpus: str | None
    """``CUDA_VISIBLE_DEVICES`` as the launcher set it (None: not set)."""
    node_gpus: tuple[str, ...]
    """The node's GPU indices from ``/dev/nvidia<N>`` (used when the launcher set none)."""
    grid_mappable: bool = True
    """Whether ``grid.h5`` can be memory-mapped from where this rank sees it."""
    hardware: dict | None = None
    """The node's CPU, memory and GPUs (from its first rank only; ``/runs``)."""


@dataclass(frozen=True)
class Placement:
    """Where a rank runs and what it may use.

    Attributes
    ----------
    rank : int
        World rank.
    node : str
        The node's name (the ``host`` column).
    node_index : int
        Nodes numbered 0, 1, ... in the order of their lowest rank.
    local_rank : int
        Place among the ranks of its node (0 for the node's lowest rank).
    gpu : str
        The ``CUDA_VISIBLE_DEVICES`` of its splits; ``""``: no GPU.
    gpu_from : str
        ``"launcher"`` (kept as set), ``"assigned"`` (taken by place on the node) or
        ``"none"``.
    grid_copy : str
        Path of the node-local copy of ``grid.h5`` its splits read, ``""`` when they
        read (memory-map) the project's own file.
    copies_grid : bool
        True for the one rank of a node that makes that copy.
    """

    rank: int
    node: str
    node_index: int = 0
    local_rank: int = 0
    gpu: str = ""
    gpu_from: str = "none"
    grid_copy: str = ""
    copies_grid: bool = False

    @property
    def has_gpu(self) -> bool:
        """True when the rank's splits see at least one GPU."""
        return bool(self.gpu)

    @property
    def cuda_environment(self) -> dict[str, str]:
        """What the splits' environment must change: ``CUDA_VISIBLE_DEVICES`` when the
        GPU was given out here (a launcher's value is already in the environment)."""
        return {"CUDA_VISIBLE_DEVICES": self.gpu} if self.gpu_from == "assigned" else {}


def node_name(processor_name: str | None = None) -> str:
    """This process's node: ``SLURMD_NODENAME``, else ``processor_name``, else the host.

    Examples
    --------
    >>> import os
    >>> os.environ.get("SLURMD_NODENAME") or node_name("n7") == "n7"
    True
    """
    return os.environ.get("SLURMD_NODENAME") or processor_name or socket.gethostname()


def node_gpus(devices: Path = DEVICE_FOLDER) -> tuple[str, ...]:
    """GPU indices of this node from the driver's device files, in order ("0", "1", ...).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> for name in ("nvidia1", "nvidia0", "nvidiactl"): (folder / name).touch()
    >>> node_gpus(folder)
    ('0', '1')
    """
    try:
        names = [entry.name for entry in Path(devices).iterdir()]
    except OSError:
        return ()
    found = sorted(int(m.group(1)) for n in names if (m := _DEVICE.fullmatch(n)))
    return tuple(str(i) for i in found)


def local_facts(node_key: int, processor_name: str | None, grid_mappable: bool = True,
                devices: Path = DEVICE_FOLDER) -> LocalFacts:
    """This rank's :class:`LocalFacts` (``node_key`` from the node communicator)."""
    launcher = os.environ.get("CUDA_VISIBLE_DEVICES")
    found = node_gpus(devices) if launcher is None else ()
    return LocalFacts(node_key, node_name(processor_name), launcher, found, grid_mappable)


def place_ranks(facts: list[LocalFacts], runs_splits: list[bool],
                grid_copy_folder: str | None = None) -> list[Placement]:
    """Every rank's :class:`Placement` from what each found out (index = world rank).

    ``runs_splits[r]`` is False for a rank that runs no split (rank 0 of a job): it
    gets no GPU and does not count when a node's GPUs are shared out. Nodes where some
    rank cannot memory-map ``grid.h5`` get a copy in ``grid_copy_folder`` (made by the
    node's lowest working rank).

    Examples
    --------
    Four ranks on one node given the same two GPUs (``--gres=gpu:2``); rank 0 only
    dispatches:

    >>> facts = [LocalFacts(0, "n1", "0,1", ())] * 4
    >>> [p.gpu for p in place_ranks(facts, [False, True, True, True])]
    ['', '0', '1', '0']

    SLURM bound one GPU to each task: kept as set.

    >>> facts = [LocalFacts(0, "n1", g, ()) for g in ("0", "0", "1")]
    >>> [(p.gpu, p.gpu_from) for p in place_ranks(facts, [False, True, True])][1:]
    [('0', 'launcher'), ('1', 'launcher')]
    """
    keys = list(dict.fromkeys(f.node_key for f in facts))
    placements = []
    for key in keys:
        ranks = [r for r, f in enumerate(facts) if f.node_key == key]
        gpus = _share_gpus([facts[r] for r in ranks], [runs_splits[r] for r in ranks])
        copy = ""
        if grid_copy_folder and not all(facts[r].grid_mappable for r in ranks):
            copy = str(Path(grid_copy_folder) / f"node{keys.index(key)}-grid.h5")
        copier = next((r for r in ranks if runs_splits[r]), None)
        for local, rank in enumerate(ranks):
            gpu, origin = gpus[local]
            placements.append(Placement(
                rank, facts[rank].node, keys.index(key), local, gpu, origin,
                copy if runs_splits[rank] else "", bool(copy) and rank == copier))
    return sorted(placements, key=lambda p: p.rank)


def _share_gpus(facts: list[LocalFacts], working: list[bool]) -> list[tuple[str, str]]:
    """``(CUDA_VISIBLE_DEVICES, origin)`` for each rank of one node."""
    launched = [f.launcher_gpus for f in facts]
    worker_values = {v for v, w in zip(launched, working, strict=True) if w}
    shared = len(worker_values) == 1 and next(iter(worker_values)) is not None
    pool: list[str] = []
    if shared:
        value = next(iter(worker_values))
        assert value is not None
        pool = [d for d in value.split(",") if d.strip()]
        if len(pool) < 2 or sum(working) < 2:
            pool = []  # one device, or one rank: nothing to share out, keep as set
    elif all(v is None for v in launched):
        pool = list(facts[0].node_gpus)
    out, turn = [], 0
    for value, works in zip(launched, working, strict=True):
        if not works:
            out.append(("", "none"))
        elif pool:
            out.append((pool[turn % len(pool)], "assigned"))
            turn += 1
        elif value:
            out.append((value, "launcher"))
        else:
            out.append(("", "none"))
    return out
