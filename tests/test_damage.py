"""A flipped bit in a project file is an error, not a number (issue 24, item 2)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
from mpi_helpers import run_mpibench

import mpibench as mb
from mpibench.store.checksums import DamagedFile, verify_checksums


def flip_bit(path: Path, dataset: str, element: int = 0) -> None:
    """Flip the lowest bit of byte 0 of ``element`` of ``dataset`` on disk."""
    with h5py.File(path, "r") as h5:
        item = h5[dataset]
        if item.chunks is None:
            offset = item.id.get_offset()
        else:
            offset = item.id.get_chunk_info(0).byte_offset
        offset += element * item.dtype.itemsize
    with open(path, "r+b") as handle:
        handle.seek(offset)
        byte = handle.read(1)[0]
        handle.seek(offset)
        handle.write(bytes([byte ^ 1]))


def packed_y(path: Path) -> str:
    """The packed dataset holding task 0's y (float64)."""
    with h5py.File(path, "r") as h5:
        return f"packed/{sorted(h5['packed'])[0]}"


def test_every_grid_dataset_carries_a_checksum(tmp_path):
    project = mb.create_demo(tmp_path / "demo")
    assert verify_checksums(project / "grid.h5", "fix") > 10
    with h5py.File(project / "grid.h5", "r") as h5:
        names = []
        h5.visititems(lambda n, i: names.append(n) if isinstance(i, h5py.Dataset) else None)
        assert all("crc32" in h5[n].attrs for n in names)


def test_a_flipped_bit_in_results_h5_is_an_error(tmp_path):
    project = mb.create_demo(tmp_path / "demo")
    assert mb.run(project, progress_every=0, isolate=False) == 0
    flip_bit(project / "results.h5", "splits/rmse", element=3)
    with pytest.raises(DamagedFile, match=r"results.h5 is damaged or incomplete "
                       r"\(/splits/rmse does not match its checksum .*\); `mpibench run "):
        mb.read_results(project)
    with h5py.File(project / "results.h5", "r+") as h5:
        h5["splits/error"].attrs["crc32"] = np.uint32(1)  # text: its own checksum
    (project / "results.journal").unlink()
    with pytest.raises(DamagedFile, match=r"/splits/.*no journal to rebuild it from"):
        mb.read_results(project)


@pytest.mark.mpi
def test_damaged_grid_data_is_refused_before_any_split(tmp_path):
    project = mb.create_demo(tmp_path / "demo")
    flip_bit(project / "grid.h5", packed_y(project / "grid.h5"), element=5)
    done = run_mpibench(3, "run", project, timeout=120)
    assert done.returncode == 2, done.stderr
    lines = [line for line in done.stderr.splitlines() if "damaged" in line]
    assert lines and "does not match its checksum" in lines[0] and "/packed/" in lines[0]
    assert not (project / "results.h5").exists()
    assert not (project / "run.lock").exists()


@pytest.mark.mpi
def test_repair_of_a_damaged_header_keeps_the_fingerprint(tmp_path):
    project = mb.create_demo(tmp_path / "demo")
    assert run_mpibench(3, "run", project).returncode == 0
    reference = mb.read_results(project)
    journal = project / "results.journal"
    data = bytearray(journal.read_bytes())
    data[len(b"MPIBENCH-JOURNAL 1\n") + 20] ^= 0xFF  # inside the header record
    journal.write_bytes(bytes(data))
    refused = run_mpibench(3, "run", project)
    assert refused.returncode == 2 and "header" in refused.stderr and "--repair" in \
        refused.stderr
    # a grid.h5 swapped for one with other learner parameters is still refused
    grid = mb.demo_grid()
    grid.learners["rpart"].set_params(max_depth=1)
    other = mb.create_project(tmp_path / "other", grid)
    original = (project / "grid.h5").read_bytes()
    (project / "grid.h5").write_bytes((other / "grid.h5").read_bytes())
    swapped = run_mpibench(3, "run", project, "--repair")
    assert swapped.returncode == 2 and "different grid" in swapped.stderr, swapped.stderr
    (project / "grid.h5").write_bytes(original)
    repaired = run_mpibench(3, "run", project, "--repair")
    assert repaired.returncode == 0, repaired.stderr
    assert list(project.glob("results.journal.damaged-*"))
    pd.testing.assert_frame_equal(
        mb.read_results(project).sort_values("job_id", ignore_index=True)[["job_id", "rmse"]],
        reference.sort_values("job_id", ignore_index=True)[["job_id", "rmse"]])


def test_a_journal_cut_to_its_header_keeps_the_results_of_results_h5(tmp_path):
    project = mb.create_demo(tmp_path / "demo")
    assert mb.run(project, progress_every=0, isolate=False) == 0
    before = mb.read_results(project)
    journal = project / "results.journal"
    data = journal.read_bytes()
    header_end = len(b"MPIBENCH-JOURNAL 1\n") + 8 + int.from_bytes(data[19:23], "little")
    journal.write_bytes(data[:header_end])
    assert mb.run(project, progress_every=0, isolate=False) == 0
    after = mb.read_results(project)
    assert after["start_time"].tolist() == before["start_time"].tolist()  # none ran again


def test_predictions_after_a_torn_record_are_kept(tmp_path):
    from mpibench.store.predictions import PredictionWriter, read_records

    writer = PredictionWriter(tmp_path, 1)
    for job in range(3):
        writer.write(job, 1, np.arange(4), np.arange(4.0), None)
    whole = writer.path.read_bytes()
    with open(writer.path, "ab") as handle:  # half a record: a write the disk cut short
        handle.write(whole[: len(whole) // 3 // 2])
    later = PredictionWriter(tmp_path, 1)
    for job in range(3, 5):
        later.write(job, 1, np.arange(4), np.arange(4.0), None)
    assert [record[0] for record in read_records(writer.path)] == [0, 1, 2, 3, 4]


def test_a_prediction_write_on_a_full_disk_leaves_no_torn_record(tmp_path):
    from test_never_hang import fill, small_disk

    from mpibench.store.predictions import PredictionWriter, read_records

    with small_disk(tmp_path, "1m") as disk:
        writer = PredictionWriter(disk, 1)
        writer.write(0, 1, np.arange(4), np.arange(4.0), None)
        size = writer.path.stat().st_size
        filler = fill(disk, 8 << 10)
        with pytest.raises(OSError):
            writer.write(1, 1, np.arange(50_000), np.arange(50_000.0), None)
        assert writer.path.stat().st_size == size
        filler.unlink()
        writer.write(2, 1, np.arange(4), np.arange(4.0), None)
        assert [record[0] for record in read_records(writer.path)] == [0, 2]


def test_create_project_after_a_killed_create_takes_the_folder(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    folder = tmp_path / "demo"
    folder.mkdir()
    (folder / f".grid.h5.{int(dead.stdout)}.tmp").write_bytes(b"half a file")
    project = mb.create_demo(folder)
    assert sorted(p.name for p in project.iterdir()) == ["grid.h5"]
    other = tmp_path / "busy"
    other.mkdir()
    (other / f".grid.h5.{os.getpid()}.tmp").write_bytes(b"being written")  # alive
    with pytest.raises(mb.MpibenchError, match="is not empty"):
        mb.create_demo(other)


@pytest.mark.mpi
def test_a_growth_killed_before_grid_h5_was_replaced_leaves_the_project_runnable(
        tmp_path, monkeypatch):
    project = mb.create_demo(tmp_path / "demo")
    assert run_mpibench(3, "run", project).returncode == 0
    before = mb.read_results(project)
    grown = mb.demo_grid()
    grown.learners["deeper"] = grown.learners["rpart"].__class__(max_depth=5)

    def killed(*args, **kwargs):
        raise KeyboardInterrupt  # as if killed between the journal and grid.h5

    monkeypatch.setattr("mpibench.project.write_grid_file", killed)
    with pytest.raises(KeyboardInterrupt):
        mb.create_project(project, grown)
    monkeypatch.undo()
    done = run_mpibench(3, "run", project)
    assert done.returncode == 0, done.stderr
    assert "being grown" in done.stderr
    assert mb.read_results(project)["start_time"].tolist() == before["start_time"].tolist()
    mb.create_project(project, grown)
    done = run_mpibench(3, "run", project)
    assert done.returncode == 0, done.stderr
    assert len(mb.read_results(project)) == len(before) * 3 // 2


@pytest.mark.parametrize("name", ["results.journal", "logs", "predictions"])
def test_a_project_file_that_is_a_link_is_refused(tmp_path, name):
    project = mb.create_demo(tmp_path / "demo")
    outside = tmp_path / "outside"
    outside.mkdir()
    (project / name).symlink_to(outside / name)
    done = run_mpibench(None, "run", project, "--log-splits", "--save-predictions")
    assert done.returncode == 2 and "is a symbolic link" in done.stderr, done.stderr
    assert not list(outside.iterdir()) and not (project / "run.lock").exists()
