"""Nodes, GPUs and node-local grid copies: the placement rules without MPI, then real
``mpiexec`` runs (GPU devices are named through ``CUDA_VISIBLE_DEVICES``: nothing here
touches a GPU, so the tests run on machines without one)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from mpi_helpers import launcher, mpibench_command, run_mpibench, run_process
from sklearn.dummy import DummyRegressor
from sklearn.model_selection import KFold

import mpibench as mb
from mpibench.engine.placement import LocalFacts, node_gpus, place_ranks
from mpibench.engine.pools import PooledScheduler, make_scheduler
from mpibench.engine.scheduler import Scheduler

TESTS = str(Path(__file__).parent)


def facts(key: int, node: str, gpus: str | None = None, found: tuple = (),
          mappable: bool = True) -> LocalFacts:
    return LocalFacts(key, node, gpus, found, mappable)


def test_ranks_of_two_nodes_are_numbered_by_node():
    ranks = [facts(0, "a"), facts(0, "a"), facts(2, "b"), facts(2, "b"), facts(0, "a")]
    placed = place_ranks(ranks, [False, True, True, True, True])
    assert [(p.node, p.node_index, p.local_rank) for p in placed] == [
        ("a", 0, 0), ("a", 0, 1), ("b", 1, 0), ("b", 1, 1), ("a", 0, 2)]


def test_gpus_found_on_the_node_go_to_its_working_ranks_in_turn():
    ranks = [facts(0, "a", found=("0", "1"))] * 3 + [facts(3, "b", found=("0",))] * 2
    placed = place_ranks(ranks, [False, True, True, True, True])
    assert [(p.gpu, p.gpu_from) for p in placed] == [
        ("", "none"), ("0", "assigned"), ("1", "assigned"), ("0", "assigned"),
        ("0", "assigned")]


def test_launcher_values_that_differ_are_kept_and_an_empty_one_means_no_gpu():
    ranks = [facts(0, "a", "")] + [facts(0, "a", g) for g in ("2,3", "0,1", "")]
    placed = place_ranks(ranks, [False, True, True, True])
    assert [(p.gpu, p.gpu_from) for p in placed] == [
        ("", "none"), ("2,3", "launcher"), ("0,1", "launcher"), ("", "none")]
    assert [p.has_gpu for p in placed] == [False, True, True, False]


def test_one_shared_gpu_or_a_single_rank_keeps_the_launchers_value():
    assert place_ranks([facts(0, "a", "0")] * 3, [False, True, True])[2].gpu == "0"
    assert place_ranks([facts(0, "a", "0,1")], [True])[0].gpu == "0,1"


def test_a_node_that_cannot_map_the_grid_gets_one_copy_made_by_its_first_worker():
    ranks = [facts(0, "a"), facts(0, "a"), facts(2, "b", mappable=False), facts(2, "b")]
    placed = place_ranks(ranks, [False, True, True, True], "/dev/shm/x")
    assert [p.grid_copy for p in placed] == ["", "", "/dev/shm/x/node1-grid.h5",
                                             "/dev/shm/x/node1-grid.h5"]
    assert [p.copies_grid for p in placed] == [False, False, True, False]


def test_node_gpus_reads_the_driver_device_files(tmp_path):
    for name in ("nvidia10", "nvidia2", "nvidia-uvm", "nvidiactl"):
        (tmp_path / name).touch()
    assert node_gpus(tmp_path) == ("2", "10")
    assert node_gpus(tmp_path / "missing") == ()


def test_pools_keep_gpu_splits_on_gpu_ranks():
    needs_gpu = np.array([True, True, False, False, False])
    pools = make_scheduler(np.arange(5), needs_gpu, chunk_size=1, order="grid")
    assert isinstance(pools, PooledScheduler)
    pools.gpu_ranks = {2}
    assert [pools.next_chunk(1) for _ in range(4)] == [[2], [3], [4], []]
    assert pools.next_chunk(2) == [0]
    pools.release(2, [0])
    assert pools.n_pending == 2 and pools.next_chunk(1) == []
    assert pools.next_chunk(2) == [0] and pools.next_chunk(2) == [1]
    pools.complete(2, [0, 1])
    pools.complete(1, [2, 3, 4])
    assert pools.n_done == 5 and pools.n_in_flight == 0


def test_a_grid_without_gpu_learners_keeps_one_plain_scheduler():
    plain = make_scheduler(np.arange(3), np.zeros(3, bool), chunk_size=1)
    assert type(plain) is Scheduler


def test_gpu_option_is_checked_by_the_grid():
    task = mb.Task("t", X=np.zeros((10, 1)), y=np.zeros(10))
    with pytest.raises(mb.MpibenchError, match=r"learner_options\['m'\]\['gpu'\]"):
        mb.Grid([task], {"m": DummyRegressor()}, learner_options={"m": {"gpu": "yes"}})


def test_no_split_process_is_forked_from_a_cuda_initialised_parent(monkeypatch):
    from types import SimpleNamespace

    from mpibench.engine.procs import refuse_cuda_context

    cuda = SimpleNamespace(is_initialized=lambda: False)
    monkeypatch.setitem(__import__("sys").modules, "torch", SimpleNamespace(cuda=cuda))
    refuse_cuda_context()  # a torch that has not touched CUDA: fine
    cuda.is_initialized = lambda: True
    with pytest.raises(mb.MpibenchError, match="initialised CUDA before forking"):
        refuse_cuda_context()


def where_grid(gpu: bool) -> mb.Grid:
    from place_learners import WhereLearner, where

    rng = np.random.default_rng(0)
    task = mb.Task("t", X=rng.normal(size=(60, 2)), y=rng.normal(size=60))
    return mb.Grid([task], {"where": WhereLearner(), "mean": DummyRegressor()},
                   resamplings=[KFold(6)], record=where,
                   learner_options={"where": {"gpu": True}} if gpu else None)


def create(path: Path, grid: mb.Grid) -> Path:
    import sys

    sys.path.insert(0, TESTS)
    try:
        return mb.create_project(path, grid)
    finally:
        sys.path.remove(TESTS)


@pytest.mark.mpi
def test_shared_gpus_are_given_out_one_per_rank_and_reach_the_splits(tmp_path):
    project = create(tmp_path / "p", where_grid(gpu=False))
    done = run_mpibench(4, "run", project, "--chunk-size", "1", timeout=120,
                        env={"PYTHONPATH": TESTS, "CUDA_VISIBLE_DEVICES": "0,1"})
    assert done.returncode == 0, done.stderr
    assert "GPUs (rank:CUDA_VISIBLE_DEVICES, assigned): 1:0 2:1 3:0" in done.stderr
    results = mb.read_results(project)
    expected = {1: "0", 2: "1", 3: "0"}
    assert results["gpu"].tolist() == [expected[r] for r in results["rank"]]
    mine = results[results["learner"] == "where"]
    assert (mine["cuda"] == mine["gpu"]).all()  # what the split itself saw
    ranks = mb.read_ranks(project)
    assert dict(zip(ranks["rank"], ranks["gpu"], strict=True)) == {0: "", **expected}


@pytest.mark.mpi
def test_gpu_learners_run_only_on_ranks_with_a_gpu(tmp_path):
    project = create(tmp_path / "p", where_grid(gpu=True))
    command = [*mpibench_command(), "run", str(project), "--chunk-size", "1"]
    done = run_process([*launcher(2), "env", "CUDA_VISIBLE_DEVICES=", *command, ":",
                        "-n", "2", "env", "CUDA_VISIBLE_DEVICES=7", *command],
                       timeout=120, env={"PYTHONPATH": TESTS})
    assert done.returncode == 0, done.stderr
    results = mb.read_results(project)
    assert (results["status"] == "ok").all()
    gpu_splits = results[results["learner"] == "where"]
    assert set(gpu_splits["rank"]) <= {2, 3} and (gpu_splits["cuda"] == "7").all()
    assert set(results.loc[results["rank"] == 1, "learner"]) <= {"mean"}
    assert (results["gpu"] == np.where(results["rank"] >= 2, "7", "")).all()


@pytest.mark.mpi
def test_gpu_learners_without_any_gpu_end_every_rank_with_one_line(tmp_path):
    project = create(tmp_path / "p", where_grid(gpu=True))
    done = run_mpibench(3, "run", project, timeout=60,
                        env={"PYTHONPATH": TESTS, "CUDA_VISIBLE_DEVICES": ""})
    assert done.returncode == 2, done.stderr
    assert "no rank of this job has one" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (project / "run.lock").exists()
    rerun = run_mpibench(3, "run", project, timeout=120,
                         env={"PYTHONPATH": TESTS, "CUDA_VISIBLE_DEVICES": "3"})
    assert rerun.returncode == 0, rerun.stderr


@pytest.mark.mpi
def test_a_grid_that_cannot_be_mapped_is_copied_once_per_node(tmp_path):
    project = create(tmp_path / "p", where_grid(gpu=False))
    reference = create(tmp_path / "ref", where_grid(gpu=False))
    local = tmp_path / "node-local"
    done = run_mpibench(3, "run", project, "--chunk-size", "1", timeout=120,
                        env={"PYTHONPATH": TESTS, "MPIBENCH_FAULT": "mmap:2",
                             "MPIBENCH_LOCAL_DIR": str(local)})
    assert done.returncode == 0, done.stderr
    assert "cannot be memory-mapped on" in done.stderr
    results = mb.read_results(project)
    mapped = results.loc[results["learner"] == "where", "mapped"]
    assert mapped.str.endswith("node0-grid.h5").all(), mapped.tolist()  # the copy
    assert not local.exists() or not any(local.iterdir())  # removed at the end
    assert run_mpibench(None, "run", reference, timeout=120,
                        env={"PYTHONPATH": TESTS}).returncode == 0
    expected = mb.read_results(reference)
    assert results["rmse"].tolist() == expected["rmse"].tolist()
