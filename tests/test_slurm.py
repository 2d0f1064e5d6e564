"""Batch scripts: golden text, option checks, and real runs on a real SLURM (one node,
and two nodes on one machine).

The `slurm` tests need a running controller (`bash jobs/slurm-test-cluster.sh` starts
one; `.ci/run` does); they are skipped where `sinfo` cannot reach one.
"""

from __future__ import annotations

import difflib
import functools
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

import mpibench as mb
from mpibench.cli import main
from mpibench.slurm import SbatchOptions, render_sbatch

GOLDEN = Path(__file__).parent / "golden"


def check_golden(text: str, name: str) -> None:
    expected = (GOLDEN / name).read_text()
    diff = "".join(difflib.unified_diff(expected.splitlines(True), text.splitlines(True),
                                        f"golden/{name}", "rendered"))
    assert not diff, diff


def regenerate_golden() -> None:
    """Rewrite the golden files from the current template (run by hand, then review)."""
    GOLDEN.joinpath("sbatch_default.txt").write_text(default_script())
    GOLDEN.joinpath("sbatch_full.txt").write_text(full_script())


def default_script() -> str:
    text = render_sbatch("/data/proj", SbatchOptions(ntasks=64, time="04:00:00"),
                         python="/opt/venv/bin/python")
    return text.replace(mb.__version__, "VERSION")


def full_script() -> str:
    options = SbatchOptions(ntasks=129, time="1-12:00:00", cpus_per_task=4,
                            mem_per_cpu="4G", partition="cpu", account="lab",
                            nodes="2-4", modules=["gcc/12", "openmpi/5"], signal_seconds=300,
                            max_submissions=3, mpi="pmix", overcommit=True,
                            gpus_per_task=1, gres="gpu:a100:4")
    text = render_sbatch("/data/my project", options, python="/opt/venv/bin/python",
                         run_arguments=["--grace", "10.0", "--retry", "timeout,oom"])
    return text.replace(mb.__version__, "VERSION")


def test_golden_default_script():
    check_golden(default_script(), "sbatch_default.txt")


def test_golden_script_with_every_option():
    check_golden(full_script(), "sbatch_full.txt")


def test_sbatch_header_lines():
    text = render_sbatch("/p", SbatchOptions(ntasks=8, time="10:00", cpus_per_task=2,
                                             partition="short"), python="python")
    header = [line for line in text.splitlines() if line.startswith("#SBATCH")]
    assert header == [
        "#SBATCH --job-name=mpibench-p", "#SBATCH --ntasks=8", "#SBATCH --cpus-per-task=2",
        "#SBATCH --time=10:00", "#SBATCH --output=/p/slurm-%j.out",
        "#SBATCH --signal=B:USR1@120", "#SBATCH --open-mode=append",
        "#SBATCH --partition=short"]
    assert "--kill-on-bad-exit=1" in text and 'SRUN_CPUS_PER_TASK="${SLURM_CPUS_PER_TASK' in text


@pytest.mark.parametrize(("argv", "message"), [
    (["--ntasks", "4", "--time", "4h"], "--time must be a SLURM time"),
    (["--ntasks", "0", "--time", "01:00:00"], "--ntasks must be an int >= 1"),
    (["--ntasks", "4", "--time", "01:00:00", "--mpi", "pmi9"], "--mpi must be one of"),
    (["--ntasks", "4", "--time", "01:00:00", "--gres", "gpu::"], "--gres must be NAME"),
    (["--ntasks", "4", "--time", "01:00:00", "--signal-seconds", "0"],
     "--signal-seconds must be an int >= 1"),
    (["--ntasks", "4", "--time", "01:00:00", "--grace", "-1"], "--grace must be a number"),
    (["--ntasks", "4", "--time", "01:00:00", "--escalate", "0.5", "--retry", "timeout"],
     "--escalate must be a factor >= 1"),
    (["--ntasks", "4", "--time", "01:00:00", "--retry", "error,ok"],
     "--retry ok would run every finished split again in each resubmitted job"),
])
def test_bad_sbatch_options_are_one_line(demo_project, argv, message, capsys):
    assert main(["sbatch", str(demo_project), *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_sbatch_writes_the_script_into_the_project(demo_project, capsys):
    assert main(["sbatch", str(demo_project), "--ntasks", "3", "--time", "00:10:00"]) == 0
    script = Path(demo_project).absolute() / "mpibench.sbatch"
    assert capsys.readouterr().out == script.read_text()
    assert script.stat().st_mode & 0o111
    syntax = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert syntax.returncode == 0, syntax.stderr


def test_run_options_given_to_sbatch_go_to_the_scripts_run(demo_project, capsys):
    assert main(["sbatch", str(demo_project), "--ntasks", "3", "--time", "00:10:00",
                 "--grace", "7", "--retry", "error", "--memory-limit", "1G",
                 "--save-predictions"]) == 0
    (line,) = [ln for ln in capsys.readouterr().out.splitlines() if "-m mpibench run" in ln]
    given = line.split("-m mpibench run", 1)[1].split()
    assert given[1:] == ["--grace", "7.0", "--memory-limit", "1073741824", "--retry",
                         "error", "--save-predictions", "--threads",
                         '"${SLURM_CPUS_PER_TASK:-1}"', "&"], line
    from mpibench.cli import build_parser  # (the run's parser takes them back)

    parsed = build_parser().parse_args(["run", *given[:-3]])
    assert (parsed.grace, parsed.memory_limit, parsed.retry) == (7.0, 1 << 30, "error")
    assert main(["sbatch", str(demo_project), "--ntasks", "3", "--time", "00:10:00",
                 "--no-isolate"]) == 0
    assert "--no-isolate --threads" in Path(demo_project, "mpibench.sbatch").read_text()
    assert main(["sbatch", str(demo_project), "--ntasks", "3", "--time", "00:10:00",
                 "--no-isolate", "--memory-limit", "1G"]) == 2  # (checked now)
    assert "needs isolation" in capsys.readouterr().err


@functools.cache
def slurm_up() -> bool:
    """Does ``sinfo`` reach a controller with a usable node? (Asked once, and only when a
    ``slurm`` test runs: without a controller ``sinfo`` takes about 9 s to give up.)"""
    if shutil.which("sinfo") is None:
        return False
    done = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True,
                          timeout=20)
    return done.returncode == 0 and any(s in done.stdout for s in ("idle", "mix", "alloc"))


@functools.cache
def two_nodes_up() -> bool:
    if not slurm_up():
        return False
    done = subprocess.run(["sinfo", "-h", "-p", "twonodes", "-N", "-o", "%N %T"],
                          capture_output=True, text=True, timeout=20)
    return sum(s in done.stdout for s in ("idle", "mix", "alloc")) >= 1 and \
        {"node1", "node2"} <= {line.split()[0] for line in done.stdout.splitlines()}


@pytest.fixture
def slurm_controller():
    if not slurm_up():
        pytest.skip("no SLURM controller (jobs/slurm-test-cluster.sh)")


@pytest.fixture
def two_node_partition(slurm_controller):
    if not two_nodes_up():
        pytest.skip("no two-node partition 'twonodes' (jobs/slurm-test-cluster.sh "
                    "starts one)")


slurm = pytest.mark.usefixtures("slurm_controller")
two_nodes = pytest.mark.usefixtures("two_node_partition")


@pytest.fixture
def small_pmi_values(monkeypatch):
    """The mpich wheel's MPICH over OFI, not UCX, for jobs across nodes (exported to the
    job by sbatch). UCX's addresses go through PMI in lines of up to ~1 KB, and SLURM
    22.05's pmi2 plugin misreads a line over its limit ("mpi/pmi2: value not properly
    terminated in client request"; MPI_Init then hangs): seen once in about 60
    two-node starts here. OFI's lines are under 70 bytes."""
    monkeypatch.setenv("MPIR_CVAR_CH4_NETMOD", "ofi")


def slurm_state(project: Path) -> str:
    """sinfo, squeue, sacct and the job logs, for failure messages."""
    parts = []
    for command in (["sinfo"], ["squeue"], ["sacct", "-X", "--starttime", "now-1hour"]):
        done = subprocess.run(command, capture_output=True, text=True, timeout=20)
        parts.append(f"$ {' '.join(command)}\n{done.stdout}{done.stderr}")
    for log in sorted(project.glob("slurm-*.out")):
        parts.append(f"--- {log.name}\n{log.read_text()}")
    return "\n".join(parts)


def wait_complete(project: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        results = project / "results.h5"
        if results.exists() and mb.read_attrs(project)["complete"]:
            queue = subprocess.run(["squeue", "-h", "-n", f"mpibench-{project.name}"],
                                   capture_output=True, text=True, timeout=20)
            if not queue.stdout.strip():
                return
        time.sleep(2)
    raise AssertionError(f"not complete after {timeout}s\n{slurm_state(project)}")


@slurm
@pytest.mark.slurm
def test_submit_the_demo_on_slurm(tmp_path, capsys):
    project = mb.create_demo(tmp_path / "demo")
    assert main(["sbatch", str(project), "--ntasks", "3", "--time", "00:05:00",
                 "--submit"]) == 0
    assert "as job" in capsys.readouterr().out
    wait_complete(project, timeout=240)
    results = mb.read_results(project)
    assert len(results) == 72 and (results["status"] == "ok").all(), slurm_state(project)
    assert set(results["rank"]) == {1, 2}


@slurm
@pytest.mark.slurm
def test_time_limit_stops_with_exit_3_and_resubmits_until_complete(tmp_path):
    import numpy as np
    from sklearn.model_selection import ShuffleSplit

    rng = np.random.default_rng(0)
    task = mb.Task("t", X=rng.normal(size=(100, 2)), y=rng.normal(size=100))
    grid = mb.Grid([task], {"slow": mb.DebugLearner(sleep_fit=2.0)},
                   resamplings=[ShuffleSplit(40, test_size=0.2)])
    project = mb.create_project(tmp_path / "slow", grid)
    reference = mb.create_project(tmp_path / "ref", grid)
    assert mb.run(reference, progress_every=0, isolate=False) == 0
    assert main(["sbatch", str(project), "--ntasks", "3", "--time", "00:01:00",
                 "--signal-seconds", "30", "--submit"]) == 0
    wait_complete(project, timeout=420)
    logs = "".join(p.read_text() for p in sorted(project.glob("slurm-*.out")))
    assert "time limit near: stopping" in logs, slurm_state(project)
    assert "resumable (exit 3): submitting attempt 2" in logs, slurm_state(project)
    results = mb.read_results(project)
    assert (results["status"] == "ok").all(), slurm_state(project)
    expected = mb.read_results(reference)
    assert results["rmse"].tolist() == expected["rmse"].tolist()


@two_nodes
@pytest.mark.slurm
def test_two_nodes_run_the_demo_like_a_serial_run(tmp_path, capsys, small_pmi_values):
    project = mb.create_demo(tmp_path / "demo")
    reference = mb.create_demo(tmp_path / "reference")
    assert mb.run(reference, progress_every=0, isolate=False) == 0
    assert main(["sbatch", str(project), "--nodes", "2", "--ntasks", "5", "--partition",
                 "twonodes", "--time", "00:05:00", "--submit"]) == 0
    wait_complete(project, timeout=240)
    assert "5 ranks on 2 nodes: node1" in logs(project), slurm_state(project)
    results = mb.read_results(project)
    assert (results["status"] == "ok").all(), slurm_state(project)
    ranks = mb.read_ranks(project)
    assert set(ranks["host"]) == {"node1", "node2"}, ranks
    assert set(results["host"]) <= {"node1", "node2"}
    expected = mb.read_results(reference)
    for scorer in ("rmse", "mae"):
        assert results[scorer].tolist() == expected[scorer].tolist()


@two_nodes
@pytest.mark.slurm
@pytest.mark.timeout(480)
def test_time_limit_stop_and_resubmit_across_two_nodes(tmp_path, small_pmi_values):
    # 80 s of work on 4 workers; SLURM may send the warning up to 60 s early, so with 2
    # minutes and 45 s it comes 15 to 75 s after the start: always before the end.
    project = slow_project(tmp_path / "slow", seconds=2.0, n_splits=160)
    reference = slow_project(tmp_path / "ref", seconds=0.0, n_splits=160)
    assert mb.run(reference, progress_every=0, isolate=False) == 0
    assert main(["sbatch", str(project), "--nodes", "2", "--ntasks", "5", "--partition",
                 "twonodes", "--time", "00:02:00", "--signal-seconds", "45",
                 "--submit"]) == 0
    wait_complete(project, timeout=420)
    text = logs(project)
    assert "time limit near: stopping" in text, slurm_state(project)
    assert "resumable (exit 3): submitting attempt 2" in text, slurm_state(project)
    assert text.count("5 ranks on 2 nodes") >= 2, slurm_state(project)
    results = mb.read_results(project)
    assert (results["status"] == "ok").all(), slurm_state(project)
    assert set(results["host"]) == {"node1", "node2"}
    assert results["rmse"].tolist() == mb.read_results(reference)["rmse"].tolist()


@slurm
@pytest.mark.slurm
def test_a_rank_killed_while_exiting_after_a_stop_still_resubmits(tmp_path, monkeypatch):
    from mpibench.slurm import SbatchOptions, submit, write_sbatch

    project = slow_project(tmp_path / "linger", seconds=3.0, n_splits=8)
    # Task 2 is 5 s late to leave after mpibench has exited (as on a loaded node):
    # srun's --kill-on-bad-exit kills it once the others left with exit 3.
    late = tmp_path / "late-python"
    late.write_text('#!/bin/bash\n"$REAL_PYTHON" "$@"\ncode=$?\n'
                    '[ "$SLURM_PROCID" = 2 ] && sleep 5\nexit $code\n')
    late.chmod(0o755)
    monkeypatch.setenv("REAL_PYTHON", sys.executable)
    script = write_sbatch(project, SbatchOptions(ntasks=3, time="00:05:00",
                                                 max_submissions=2), python=str(late))
    job = submit(script)
    wait_until(lambda: b'"t": "s"' in _journal(project), 120, project, "a split started")
    subprocess.run(["scancel", "--batch", "--signal=USR1", job], timeout=20)  # time limit
    wait_complete(project, timeout=240)
    text = logs(project)
    assert "time limit near: stopping" in text, slurm_state(project)
    assert "task 2: Terminated" in text, slurm_state(project)  # killed after exit 3 ...
    assert "submitting attempt 2" in text, slurm_state(project)  # ... and yet it goes on
    assert (mb.read_results(project)["status"] == "ok").all()


def _journal(project: Path) -> bytes:
    path = project / "results.journal"
    return path.read_bytes() if path.exists() else b""


def slow_project(path: Path, seconds: float, n_splits: int) -> Path:
    import numpy as np
    from sklearn.model_selection import ShuffleSplit

    rng = np.random.default_rng(0)
    task = mb.Task("t", X=rng.normal(size=(100, 2)), y=rng.normal(size=100))
    grid = mb.Grid([task], {"slow": mb.DebugLearner(sleep_fit=seconds)},
                   resamplings=[ShuffleSplit(n_splits, test_size=0.2)])
    return mb.create_project(path, grid)


def job_ids(name: str) -> list[str]:
    queue = subprocess.run(["squeue", "-h", "-n", name, "-o", "%i %T"], capture_output=True,
                           text=True, timeout=20)
    return [line.split()[0] for line in queue.stdout.splitlines() if line.strip()]


def wait_until(condition, timeout: float, project: Path, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not within {timeout}s\n{slurm_state(project)}")
        time.sleep(1)


def logs(project: Path) -> str:
    return "".join(p.read_text() for p in sorted(project.glob("slurm-*.out")))


@slurm
@pytest.mark.slurm
def test_scancel_stops_the_run_and_ends_the_chain(tmp_path):
    project = slow_project(tmp_path / "cancel", 2.0, 40)
    name = f"mpibench-{project.name}"
    assert main(["sbatch", str(project), "--ntasks", "3", "--time", "00:05:00",
                 "--submit"]) == 0
    journal = project / "results.journal"
    wait_until(lambda: journal.exists() and b'"t": "r"' in journal.read_bytes(), 120,
               project, "a first result")
    (first,) = job_ids(name)
    subprocess.run(["scancel", first], check=True, timeout=20)
    wait_until(lambda: not job_ids(name), 90, project, "the cancelled job gone")
    time.sleep(5)  # a resubmission would be queued by now
    assert not job_ids(name), slurm_state(project)
    text = logs(project)
    assert "cancelled (SIGTERM before the time limit" in text, slurm_state(project)
    assert "submitting attempt" not in text, slurm_state(project)
    assert not (project / "run.lock").exists()
    assert 0 < mb.read_attrs(project)["n_done"] < 40


@slurm
@pytest.mark.slurm
@pytest.mark.timeout(480)
def test_split_longer_than_the_grace_at_the_time_limit_still_resubmits(tmp_path):
    project = slow_project(tmp_path / "long", 600.0, 4)  # no split can finish
    name = f"mpibench-{project.name}"
    # SLURM may send the warning up to 60 s early: with 3 minutes and 100 s it comes 20
    # to 80 s after the start, when the splits run; after the 20 s grace they are
    # interrupted, well before the limit.
    assert main(["sbatch", str(project), "--ntasks", "3", "--time", "00:03:00",
                 "--signal-seconds", "100", "--submit"]) == 0
    wait_until(lambda: "submitting attempt 2" in logs(project), 240, project,
               "the resubmission")
    for job in job_ids(name):  # attempt 2 would only repeat attempt 1
        subprocess.run(["scancel", job], timeout=20)
    wait_until(lambda: not job_ids(name), 90, project, "the jobs gone")
    first = sorted(project.glob("slurm-*.out"))[0].read_text()
    assert "time limit near: stopping" in first, slurm_state(project)
    assert "interrupting them" in first and "exit 3" in first, slurm_state(project)
    journal = (project / "results.journal").read_bytes()
    assert journal.count(b'"t": "u"') >= 1  # the interrupted splits were not counted
    assert not (project / "stop.request").exists()
    assert not (project / "run.lock").exists()


TESTS = str(Path(__file__).parent)


def epochs_project(path: Path, epochs: int = 10, pause: float = 1.0) -> Path:
    """Four splits of a checkpointing learner, one save a second (``slow_epochs``)."""
    import numpy as np
    from sklearn.model_selection import KFold
    from slow_epochs import SlowPartialFit

    rng = np.random.default_rng(1)
    X = rng.normal(size=(60, 3))
    task = mb.Task("t", X=X, y=X @ [1.0, -2.0, 0.5] + rng.normal(size=60) * 0.1)
    learner = mb.Epochs(SlowPartialFit(pause=pause), epochs=epochs)
    grid = mb.Grid([task], {"slow": learner}, [KFold(4)], scoring=["rmse"])
    return mb.create_project(path, grid)


def start_requeued_job_now(job: str, project: Path) -> None:
    """SLURM holds a requeued job for about two minutes (Reason=BeginTime): start it."""
    def pending() -> bool:
        state = subprocess.run(["squeue", "-h", "-j", job, "-o", "%T %r"],
                               capture_output=True, text=True, timeout=20).stdout
        return "PENDING" in state and "BeginTime" in state

    wait_until(pending, 60, project, "the requeued job pending")
    subprocess.run(["scontrol", "update", f"JobId={job}", "StartTime=now"], timeout=20,
                   check=True)


def assert_resumed_like(project: Path, reference: Path) -> None:
    import numpy as np

    ours, theirs = mb.read_results(project), mb.read_results(reference)
    assert (ours["status"] == "ok").all(), slurm_state(project)
    assert (ours["resumed_from"] >= 2).any(), ours[["job_id", "resumed_from"]]
    np.testing.assert_array_equal(ours.sort_values("job_id")["rmse"],
                                  theirs.sort_values("job_id")["rmse"])
    assert not list((project / "checkpoints").glob("*/meta.json"))


@slurm
@pytest.mark.slurm
@pytest.mark.timeout(420)
def test_scontrol_requeue_saves_checkpoints_and_the_same_job_resumes(tmp_path,
                                                                     monkeypatch):
    monkeypatch.setenv("PYTHONPATH", TESTS)  # (the learner's module, in the job too)
    project = epochs_project(tmp_path / "requeue")
    reference = epochs_project(tmp_path / "whole", epochs=10, pause=0.0)
    assert mb.run(reference, progress_every=0) == 0
    assert main(["sbatch", str(project), "--ntasks", "3", "--time", "00:05:00",
                 "--grace", "5", "--submit"]) == 0
    (job,) = job_ids(f"mpibench-{project.name}")
    wait_until(lambda: list((project / "checkpoints").glob("*/state-000002")), 120,
               project, "a second checkpoint")
    subprocess.run(["scontrol", "requeue", job], timeout=20, check=True)
    start_requeued_job_now(job, project)
    wait_complete(project, timeout=240)
    text = logs(project)
    assert "(SLURM restart 0)" in text and "(SLURM restart 1)" in text, slurm_state(project)
    assert "requeued by SLURM" in text, slurm_state(project)
    assert "submitting attempt" not in text, slurm_state(project)  # SLURM requeued it
    assert [p.name for p in project.glob("slurm-*.out")] == [f"slurm-{job}.out"]
    assert_resumed_like(project, reference)


@slurm
@pytest.mark.slurm
@pytest.mark.timeout(420)
def test_preemption_within_the_grace_time_saves_and_resubmits(tmp_path, monkeypatch):
    """Partition ``scavenger`` (PreemptMode=REQUEUE, GraceTime=30) is preempted by a job
    of ``urgent`` that needs every CPU: SIGTERM to the tasks, none to the batch shell."""
    monkeypatch.setenv("PYTHONPATH", TESTS)
    project = epochs_project(tmp_path / "preempted")
    reference = epochs_project(tmp_path / "whole", epochs=10, pause=0.0)
    assert mb.run(reference, progress_every=0) == 0
    assert main(["sbatch", str(project), "--ntasks", "3", "--time", "00:05:00",
                 "--partition", "scavenger", "--grace", "5", "--submit"]) == 0
    wait_until(lambda: list((project / "checkpoints").glob("*/state-000002")), 120,
               project, "a second checkpoint")
    cpus = subprocess.run(["sinfo", "-h", "-p", "urgent", "-o", "%c"], capture_output=True,
                          text=True, timeout=20, check=True).stdout.split()[0]
    subprocess.run(["sbatch", "-p", "urgent", "-n", cpus, "-J", f"urgent-{project.name}",
                    "-o", "/dev/null", "--wrap", "sleep 2"], timeout=20, check=True)
    wait_complete(project, timeout=240)
    text = logs(project)
    assert "preempted at" in text, slurm_state(project)
    assert "submitting attempt 2" in text, slurm_state(project)
    assert_resumed_like(project, reference)
