"""The project lock: one holder, stale locks taken over, never guessed."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest

from mpibench import MpibenchError
from mpibench.store.lock import ProjectLock


def test_lock_refuses_a_second_holder(tmp_path):
    path = tmp_path / "run.lock"
    with ProjectLock(path):
        holder = json.loads(path.read_text())
        assert holder["pid"] == os.getpid() and holder["host"] == socket.gethostname()
        with pytest.raises(MpibenchError, match=f"pid {os.getpid()}") as info:
            ProjectLock(path).acquire()
        assert "\n" not in str(info.value)
    assert not path.exists()


def test_stale_lock_of_a_dead_process_is_taken_over(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    path = tmp_path / "run.lock"
    path.write_text(json.dumps({"host": socket.gethostname(), "pid": int(dead.stdout),
                                "start_time": 0}))
    with pytest.warns(UserWarning, match="process is dead"), ProjectLock(path) as lock:
        assert json.loads(path.read_text())["pid"] == lock.info["pid"]


def test_lock_from_another_host_is_not_guessed_stale(tmp_path, monkeypatch):
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    monkeypatch.setattr("mpibench.store.lock._slurm_job_running", lambda job: True)
    path = tmp_path / "run.lock"
    path.write_text(json.dumps({"host": "node-b", "pid": 1, "slurm_job_id": "77",
                                "start_time": 0}))
    with pytest.raises(MpibenchError, match="node-b pid 1 \\(SLURM job 77\\)"):
        ProjectLock(path).acquire()


def test_lock_of_the_same_slurm_job_is_a_requeued_run(tmp_path, monkeypatch):
    monkeypatch.setenv("SLURM_JOB_ID", "77")
    path = tmp_path / "run.lock"
    path.write_text(json.dumps({"host": "node-b", "pid": 1, "slurm_job_id": "77",
                                "start_time": 0}))
    with pytest.warns(UserWarning, match="requeued"), ProjectLock(path):
        pass


@pytest.mark.parametrize("content", [b"", b"\x00\x00garbage{", b"[1, 2]"])
def test_an_empty_or_garbled_lock_is_stale_once_old(tmp_path, content):
    path = tmp_path / "run.lock"
    path.write_bytes(content)
    with pytest.raises(MpibenchError, match="being written by another run"):
        ProjectLock(path).acquire()
    os.utime(path, (0, 0))
    with pytest.warns(UserWarning, match="empty or garbled lock"), ProjectLock(path) as lock:
        assert json.loads(path.read_text())["pid"] == lock.info["pid"]
    assert not path.exists()


def _contend(path, start, done, held):
    """One contender: take the lock when ``start`` opens, hold it until all tried."""
    import warnings

    warnings.simplefilter("ignore")
    lock = ProjectLock(path)
    start.wait()
    try:
        lock.acquire()
        held.put(os.getpid())
    except MpibenchError:
        pass
    done.wait()
    lock.release()


def test_two_runs_taking_over_one_stale_lock_never_both_hold_it(tmp_path):
    import multiprocessing

    context = multiprocessing.get_context("fork")
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    stale = json.dumps({"host": socket.gethostname(), "pid": int(dead.stdout),
                        "start_time": 0})
    holders = []
    for trial in range(40):
        path = tmp_path / f"run{trial}.lock"
        path.write_text(stale)
        start, done, held = context.Barrier(3), context.Barrier(3), context.Queue()
        procs = [context.Process(target=_contend, args=(path, start, done, held))
                 for _ in range(2)]
        for proc in procs:
            proc.start()
        start.wait(timeout=30)
        done.wait(timeout=30)
        for proc in procs:
            proc.join(timeout=30)
        count = 0
        while not held.empty():
            held.get()
            count += 1
        holders.append(count)
    assert holders == [1] * 40, holders
