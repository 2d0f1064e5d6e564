"""A checkpoint inside a split: saves survive kills, a stopped split resumes from its
last save in the next run, and ends with the result an uninterrupted run gives."""

from __future__ import annotations

import os
import signal
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
from sklearn.ensemble import HistGradientBoostingRegressor, RandomForestClassifier
from sklearn.linear_model import SGDRegressor
from sklearn.model_selection import KFold
from sklearn.neural_network import MLPClassifier
from slow_epochs import SlowPartialFit

import mpibench as mb
from mpibench.checkpoint import CheckpointSlot, SplitCheckpoint, list_checkpoints

TESTS = str(Path(__file__).parent)


def test_a_save_is_whole_or_absent(tmp_path):
    folder = tmp_path / "7"
    first = SplitCheckpoint(folder, stopping=lambda: False)
    assert first.load() is None and first.resumed_from == 0 and first.file is None
    first.save({"epoch": 1})
    first.save({"epoch": 2})
    assert sorted(p.name for p in folder.iterdir()) == ["meta.json", "state-000002"]
    (folder / "state-000003").write_bytes(b"half a save")  # killed before its meta.json
    again = SplitCheckpoint(folder, stopping=lambda: False)
    assert again.load() == {"epoch": 2} and again.resumed_from == 2
    with again.saving() as path:  # the path form, as torch.save(state, path) uses it
        path.write_bytes(b"raw state")
    assert SplitCheckpoint(folder, lambda: False).file.read_bytes() == b"raw state"
    listed = list_checkpoints(tmp_path)
    assert [(c["job_id"], c["saves"], c["bytes"]) for c in listed] == [(7, 3, 9)]
    again.remove()
    assert not folder.exists() and list_checkpoints(tmp_path) == []


def test_a_damaged_save_is_not_loaded(tmp_path):
    checkpoint = SplitCheckpoint(tmp_path / "1", stopping=lambda: False)
    checkpoint.save(list(range(1000)))
    state = tmp_path / "1" / "state-000001"
    data = bytearray(state.read_bytes())
    data[len(data) // 2] ^= 0x10
    state.write_bytes(bytes(data))
    with pytest.warns(mb.MpibenchWarning, match="damaged.*starts afresh"):
        reread = SplitCheckpoint(tmp_path / "1", stopping=lambda: False)
    assert reread.load() is None and reread.resumed_from == 0


def test_a_failed_save_keeps_the_one_before(tmp_path):
    checkpoint = SplitCheckpoint(tmp_path / "2", stopping=lambda: False)
    checkpoint.save("first")
    with pytest.raises(RuntimeError), checkpoint.saving() as path:
        path.write_bytes(b"partial")
        raise RuntimeError("disk full")
    assert SplitCheckpoint(tmp_path / "2", lambda: False).load() == "first"


def fit_in_slot(estimator, X, y, folder: Path, stop_after_checks: int | None):
    """``estimator.fit`` as a split's fit: with a checkpoint whose run starts stopping
    at the ``stop_after_checks``-th question (None: never)."""
    asked = []

    def stopping() -> bool:
        asked.append(1)
        return stop_after_checks is not None and len(asked) >= stop_after_checks

    slot = CheckpointSlot(folder.parent, int(folder.name), stopping, check_every=0.0)
    with slot:
        estimator.fit(X, y)
        assert mb.split_checkpoint() is slot.checkpoint
    assert mb.split_checkpoint() is None
    return slot.checkpoint


@pytest.mark.parametrize("make", [
    lambda: SGDRegressor(random_state=0),
    lambda: MLPClassifier(hidden_layer_sizes=(8,), random_state=0),
    lambda: RandomForestClassifier(n_estimators=3, random_state=0),
    lambda: HistGradientBoostingRegressor(max_iter=5, random_state=0),
], ids=["sgd", "mlp", "forest", "hgb"])
def test_epochs_stopped_and_resumed_equal_an_uninterrupted_fit(make, tmp_path):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(80, 3))
    y = X[:, 0] + rng.normal(size=80) * 0.1
    inner = make()
    if type(inner).__name__.endswith("Classifier"):
        y = (y > 0).astype(int)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # (convergence warnings of one epoch)
        whole = mb.Epochs(make(), epochs=4).fit(X, y)
        stopped = mb.Epochs(make(), epochs=4)
        checkpoint = fit_in_slot(stopped, X, y, tmp_path / "3", stop_after_checks=2)
        assert checkpoint.stop_seen and stopped.epochs_done_ == 2
        resumed = mb.Epochs(make(), epochs=4)
        checkpoint = fit_in_slot(resumed, X, y, tmp_path / "3", stop_after_checks=None)
    assert checkpoint.resumed_from == 2 and resumed.epochs_done_ == 4
    assert not checkpoint.stop_seen
    np.testing.assert_array_equal(resumed.predict(X), whole.predict(X))


def test_epochs_refuses_an_estimator_that_cannot_grow():
    from sklearn.linear_model import Ridge

    with pytest.raises(TypeError, match="partial_fit, or with warm_start"):
        mb.Epochs(Ridge(), epochs=2).fit(np.zeros((4, 1)), np.arange(4.0))
    with pytest.raises(mb.MpibenchError, match="'epochs' parameter of Epochs"):
        mb.Epochs(SGDRegressor(), epochs=0).fit(np.zeros((4, 1)), np.arange(4.0))


PAUSE, EPOCHS = 0.2, 12
"""Seconds per epoch and epochs: 2.4 s a split, so a stop finds every split running
(checkpoints ask whether the run stops once a second)."""


def slow_grid(n_splits: int = 4, epochs: int = EPOCHS) -> mb.Grid:
    rng = np.random.default_rng(1)
    X = rng.normal(size=(60, 3))
    task = mb.Task("t", X=X, y=X @ [1.0, -2.0, 0.5] + rng.normal(size=60) * 0.1)
    learner = mb.Epochs(SlowPartialFit(pause=PAUSE), epochs=epochs)
    return mb.Grid([task], {"slow": learner}, [KFold(n_splits)], scoring=["rmse"])


def wait_for(condition, timeout: float) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if condition():
            return True
        time.sleep(0.05)
    return False


@pytest.mark.mpi
@pytest.mark.parametrize("how", ["stop", "kill"])
def test_a_stopped_or_killed_run_resumes_splits_from_their_checkpoints(how, tmp_path,
                                                                      monkeypatch):
    from mpi_helpers import processes_mentioning, run_mpibench, start_mpibench

    monkeypatch.setenv("PYTHONPATH", TESTS)  # (the learner's module, for every process)
    reference = mb.create_project(tmp_path / "whole", slow_grid())
    assert mb.run(reference, progress_every=0, save_predictions=True) == 0
    project = mb.create_project(tmp_path / "cut", slow_grid())
    env = {"PYTHONPATH": TESTS}
    started = start_mpibench(3, "run", project, "--save-predictions", env=env)
    seen = wait_for(lambda: list((project / "checkpoints").glob("*/state-000002")), 60)
    if how == "stop":
        (project / "stop.request").write_text("test\n")
    else:
        os.killpg(started.pid, signal.SIGKILL)
    _, err = started.communicate(timeout=60)
    assert seen, err
    assert wait_for(lambda: not processes_mentioning(str(project)), 30)
    if how == "stop":
        assert started.returncode == 3, err
    kept = mb.project_status(project)
    assert kept.checkpoints and "resume from one" in kept.format()
    done = run_mpibench(3, "run", project, "--save-predictions", env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    ours, theirs = mb.read_results(project), mb.read_results(reference)
    assert (ours["status"] == "ok").all() and (ours["resumed_from"] >= 2).any()
    np.testing.assert_array_equal(ours.sort_values("job_id")["rmse"],
                                  theirs.sort_values("job_id")["rmse"])
    resumed = ours[ours["resumed_from"] > 0]
    assert (resumed["fit_seconds"] >= EPOCHS * PAUSE - 0.05).all()  # every attempt's epochs
    predictions = [mb.read_predictions(p).sort_values(["job_id", "row"])
                   for p in (project, reference)]
    np.testing.assert_array_equal(predictions[0]["prediction"], predictions[1]["prediction"])
    assert not list((project / "checkpoints").glob("*/meta.json"))
    assert not (project / "run.stopping").exists()


def test_the_torch_example_stopped_and_resumed_equals_an_uninterrupted_fit(tmp_path,
                                                                           monkeypatch):
    pytest.importorskip("torch", reason="PyTorch is not installed (see test_docs)")
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parent.parent / "examples"))
    from torch_mlp import TorchMLPRegressor

    rng = np.random.default_rng(0)
    X = rng.normal(size=(120, 2))
    y = X[:, 0] - X[:, 1] ** 2
    whole = TorchMLPRegressor(hidden=(8,), epochs=6, random_state=3).fit(X, y)
    stopped = TorchMLPRegressor(hidden=(8,), epochs=6, random_state=3)
    checkpoint = fit_in_slot(stopped, X, y, tmp_path / "5", stop_after_checks=3)
    assert checkpoint.stop_seen and checkpoint.file.name == "state-000003"
    resumed = TorchMLPRegressor(hidden=(8,), epochs=6, random_state=3)
    checkpoint = fit_in_slot(resumed, X, y, tmp_path / "5", stop_after_checks=None)
    assert checkpoint.resumed_from == 3
    np.testing.assert_array_equal(resumed.predict(X), whole.predict(X))
