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
