"""What each split used (CPU, memory), and the ``/runs`` table: real runs under mpiexec."""

from __future__ import annotations

import json
import os
import subprocess
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest
from mpi_helpers import launcher, mpibench_command, run_mpibench, run_process
from sklearn.model_selection import ShuffleSplit
from usage_learners import Allocating, AllocatingThenDying, Sleeping, Spinning

import mpibench as mb

TESTS = str(Path(__file__).parent)
ENV = {"PYTHONPATH": TESTS}
MB = 2**20


def small_task() -> mb.Task:
    rng = np.random.default_rng(0)
    return mb.Task("t", X=rng.normal(size=(40, 2)), y=rng.normal(size=40))


@pytest.mark.mpi
@pytest.mark.parametrize("isolate", [True, False], ids=["isolated", "in-process"])
def test_max_rss_is_the_peak_of_each_split_not_of_the_process(tmp_path, isolate):
    grid = mb.Grid([small_task()], {"big": Allocating(200), "small": Allocating(0)},
                   resamplings=[ShuffleSplit(3, test_size=0.2)])
    path = mb.create_project(tmp_path / "p", grid)
    flags = [] if isolate else ["--no-isolate"]
    done = run_mpibench(2, "run", path, "--order", "grid", *flags, env=ENV)
    assert done.returncode == 0, done.stderr
    results = mb.read_results(path).sort_values("start_time")
    assert results["pid"].nunique() == 1  # one worker: one process ran them in turn
    big = results[results["learner"] == "big"]["max_rss_bytes"]
    small = results[results["learner"] == "small"]["max_rss_bytes"]
    assert (big >= 200 * MB).all(), big
    assert (results["learner"].astype(str).tolist()[-3:] == ["small"] * 3)  # after "big"
    assert (small < big.min() - 150 * MB).all(), (big.tolist(), small.tolist())
    ranks = mb.read_ranks(path)  # the rank's own peak stays its lifetime's
    if not isolate:
        assert ranks.loc[ranks["rank"] == 1, "max_rss_bytes"].item() >= 200 * MB


@pytest.mark.mpi
def test_a_killed_split_records_the_peak_of_its_process(tmp_path):
    grid = mb.Grid([small_task()], {"small": Allocating(0), "dies": AllocatingThenDying(200)},
                   resamplings=[ShuffleSplit(2, test_size=0.2)])
    path = mb.create_project(tmp_path / "p", grid)
    done = run_mpibench(2, "run", path, "--order", "grid", env=ENV)
    assert done.returncode == 0, done.stderr
    results = mb.read_results(path).set_index("learner")
    assert (results.loc["dies", "status"] == "crash").all()
    died = results.loc["dies", "max_rss_bytes"]
    assert (died >= 200 * MB).all(), died
    assert (results.loc["small", "max_rss_bytes"] < died.min() - 150 * MB).all()


@pytest.mark.mpi
def test_cpu_seconds_tell_sleeping_from_computing(tmp_path):
    grid = mb.Grid([small_task()], {"sleep": Sleeping(0.6), "spin": Spinning(0.4)},
                   resamplings=[ShuffleSplit(2, test_size=0.2)])
    path = mb.create_project(tmp_path / "p", grid)
    done = run_mpibench(2, "run", path, env=ENV)
    assert done.returncode == 0, done.stderr
    results = mb.read_results(path).set_index("learner", drop=False)
    sleeping, spinning = results.loc["sleep"], results.loc["spin"]
    assert (sleeping["fit_seconds"] >= 0.6).all()
    assert (sleeping["cpu_seconds"] < 0.1).all(), sleeping["cpu_seconds"]
    assert (spinning["cpu_seconds"] > 0.25).all(), spinning["cpu_seconds"]
    assert (spinning["cpu_seconds"] < spinning["fit_seconds"] + 0.2).all()


def git_head(folder: Path) -> str:
    done = subprocess.run(["git", "-C", str(folder), "rev-parse", "HEAD"],
                          capture_output=True, text=True)
    return done.stdout.strip() if done.returncode == 0 else ""


@pytest.mark.mpi
def test_the_runs_table_holds_versions_nodes_and_the_launch(tmp_path):
    path = mb.create_demo(tmp_path / "demo")
    here = Path(__file__).parent
    command = [*launcher(3), *mpibench_command(), "run", str(path)]
    done = run_process(command, cwd=here, env={"OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr
    again = run_mpibench(2, "run", path, "--retry", "ok", "--no-isolate")
    assert again.returncode == 0, again.stderr
    runs = mb.read_runs(path)
    assert runs["run"].tolist() == [1, 2]
    assert runs["n_ranks"].tolist() == [3, 2] and runs["exit_code"].tolist() == [0, 0]
    first = runs.iloc[0]
    for column, distribution in (("numpy", "numpy"), ("scikit_learn", "scikit-learn"),
                                 ("pandas", "pandas"), ("h5py", "h5py"),
                                 ("mpi4py", "mpi4py"), ("scipy", "scipy"),
                                 ("torch", "torch")):
        try:
            installed = metadata.version(distribution)
        except metadata.PackageNotFoundError:
            installed = ""
        assert first[f"{column}_version"] == installed, column
    assert first["mpibench_version"] == mb.__version__
    assert first["mpi_library"] == mb.read_attrs(path)["mpi_library"]
    assert "run" in first["command"] and str(path) in first["command"]
    assert first["working_directory"] == str(here)
    assert first["git_commit"] == git_head(here)
    assert json.loads(first["thread_settings"])["OMP_NUM_THREADS"] == "1"
    (node,) = json.loads(first["nodes"])
    assert node["cores"] == os.cpu_count() and node["memory_bytes"] > 2**30
    assert node["cpu_model"] and node["node"] == mb.read_ranks(path)["host"].iloc[0]
    assert first["start_time"] < first["end_time"] <= runs.iloc[1]["start_time"]
    results = mb.read_results(path, attempts="all")
    assert set(results.loc[results["attempt"] == 1, "run"]) == {1}
    assert set(results.loc[results["attempt"] == 2, "run"]) == {2}
    ranks = mb.read_ranks(path)
    assert set(ranks["run"]) == {1, 2}  # the same numbers as /runs


def test_a_killed_run_keeps_its_number(tmp_path):
    """A run that wrote no results.h5 (killed) is still counted: the next one's splits
    do not take its number."""
    from mpibench.store.gridfile import GridFile
    from mpibench.store.paths import ProjectPaths
    from mpibench.store.storage import ResultStore

    path = mb.create_demo(tmp_path / "demo")
    grid = GridFile(ProjectPaths(path).grid)
    jobs, scorers = grid.job_table(), grid.scorer_names()

    def store() -> ResultStore:
        return ResultStore(ProjectPaths(path), jobs, scorers, grid.attrs())

    first = store()
    assert first.begin_run(100.0, {"command": "killed"}) == 1
    first.close()  # (no write: as if killed)
    second = store()
    assert second.begin_run(200.0, {"command": "next"}) == 2
    table = second.runs_table()
    assert table["command"].tolist() == ["killed", "next"]
    assert table["exit_code"].tolist() == [-1, -1]
    second.close()


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    path = mb.create_demo(tmp_path_factory.mktemp("demo") / "demo")
    assert mb.run(path, progress_every=0) == 0
    return path


def test_energy_follows_the_model():
    from mpibench.energy import EnergyModel

    model = EnergyModel(watts_per_core=10, watts_per_gb=0.5, watts_per_gpu=200, pue=1.5)
    assert model.kwh(core_hours=2, gb_hours=4, gpu_hours=0) == pytest.approx(0.033)
    assert model.kwh(0, 0, gpu_hours=1) == pytest.approx(0.3)
    with pytest.raises(mb.MpibenchError, match="'watts_per_core' parameter"):
        EnergyModel(watts_per_core=-1)


def test_the_next_request_covers_what_is_left(finished):
    from mpibench.analysis.resources import next_request

    results = mb.read_results(finished)
    left = next_request(finished, results=results.iloc[:12], ntasks=2)
    assert not left.whole and left.n_splits == 60
    wide = next_request(finished, results=results.iloc[:12], ntasks=61)
    assert left.time_seconds > wide.time_seconds > 120  # (the warning is in both)
    whole = next_request(finished, margin=1.0)
    assert whole.whole and whole.n_splits == 72
    assert whole.mem_per_cpu_bytes >= 2 * results["max_rss_bytes"].max()
    with pytest.raises(mb.MpibenchError, match="'ntasks' parameter"):
        next_request(finished, ntasks=0)


def test_status_resources_and_the_sbatch_line_it_prints(finished, capsys):
    from mpibench.cli import build_parser, main

    assert main(["status", str(finished), "--resources", "--ntasks", "9",
                 "--watts-per-core", "20"]) == 0
    out = capsys.readouterr().out
    assert "featureless: 36 splits" in out and "rpart: 36 splits" in out
    assert "x 20 W" in out and "kWh" in out
    (line,) = [ln for ln in out.splitlines() if ln.startswith("next time")]
    command = line.split(": ", 1)[1].split()
    assert command[:3] == ["mpibench", "sbatch", str(finished)]
    args = build_parser().parse_args(command[1:])  # the line is a valid command
    assert (args.ntasks, args.cpus_per_task) == (9, 1)
    assert main(["status", str(finished), "--resources", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [row["learner"] for row in data["resources"]["learners"]][-1] == "all"
    assert main(["status", str(finished), "--resources", "--pue", "0.5"]) == 2
    assert "--pue must be a ratio >= 1" in capsys.readouterr().err


def test_the_report_shows_resources_and_runs(finished, tmp_path):
    text = mb.write_report(finished, tmp_path / "r.html").read_text()
    assert "<h2>Resources</h2>" in text and "<h2>Runs</h2>" in text
    assert "mpibench sbatch" in text and "kWh" in text


def test_use_that_older_versions_did_not_measure_is_unknown_not_zero():
    import pandas as pd

    from mpibench.analysis.resources import usage_by_learner

    old = pd.DataFrame({"learner": ["a", "a"], "max_rss_bytes": [1e9, 2e9],
                        "start_time": [0.0, 0.0], "end_time": [10.0, 10.0]})
    table = usage_by_learner(old)
    assert table["cpu_hours"].isna().all() and table["gpu_hours"].isna().all()
    mixed = old.assign(cpu_seconds=[3600.0, float("nan")])
    assert usage_by_learner(mixed)["cpu_hours"].isna().all()  # (not 1 CPU-hour)
