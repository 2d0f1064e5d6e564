"""The journal: format, group commit, damage handling, attempts."""

from __future__ import annotations

import math

import pytest

from mpibench import MpibenchError
from mpibench.errors import WriteFailed
from mpibench.store.journal import (
    MAGIC,
    JournalCorrupt,
    JournalWriter,
    encode,
    parse,
    read_journal,
)
from mpibench.store.records import SplitResult

PARTS = {"data": "d", "splits": "s", "learners": "l", "scorers": "c", "seed": "x"}


def result(job_id: int) -> SplitResult:
    return SplitResult(job_id, "ok", "", (1.5, float("nan")), 1, "h", 7, 1.0, 2.0, 0.5, 0.25,
                       0.125, 1024, 1)


def journal_with(path, n: int):
    """A journal with ``n`` hand-outs and ``n`` results, one record per result."""
    writer = JournalWriter(path, {"fingerprint": "f", "parts": PARTS})
    writer.handed_out(list(range(n)))
    for j in range(n):
        writer.append_results([result(j)])
    writer.close()
    return path


def test_round_trip(tmp_path):
    path = journal_with(tmp_path / "j", 5)
    assert path.read_bytes().startswith(MAGIC)
    contents = read_journal(path, PARTS)
    assert [r.job_id for r in contents.results] == list(range(5))
    first = contents.results[0]
    assert first.scores[0] == 1.5 and math.isnan(first.scores[1])
    assert first.max_rss_bytes == 1024 and first.fit_seconds == 0.5
    assert contents.started_counts(7).tolist() == [1, 1, 1, 1, 1, 0, 0]
    assert contents.header["parts"] == PARTS


def test_one_record_per_batch_and_group_commit_after_4096_results(tmp_path):
    writer = JournalWriter(tmp_path / "j", {"parts": PARTS})
    writer.append_results([result(j) for j in range(4000)])
    assert not writer.commit_due
    writer.append_results([result(j) for j in range(4000, 4096)])
    assert writer.commit_due
    assert writer.commit() == 4096 and not writer.commit_due
    writer.close()
    contents = read_journal(tmp_path / "j", PARTS)
    assert len(contents.batches) == 2 and [len(b) for b in contents.batches] == [4000, 96]
    assert contents.batches[1].job_ids.tolist() == list(range(4000, 4096))
    assert contents.header["result_fields"][:2] == ["job_id", "status"]


def test_background_group_commit_covers_what_was_appended_and_reports_failure(
        tmp_path, monkeypatch):
    import mpibench.store.journal as journal_module

    writer = JournalWriter(tmp_path / "j", {"parts": PARTS})
    writer.append_results([result(j) for j in range(4096)])
    assert writer.commit_in_background() == 4096
    writer.append_results([result(4096)])
    assert writer.commit() == 1 and writer.commit_in_background() == 0

    def failing_fsync(fd):
        raise OSError(5, "Input/output error")

    writer.append_results([result(4097)])
    monkeypatch.setattr(journal_module.os, "fsync", failing_fsync)
    assert writer.commit_in_background() == 1  # returns at once ...
    with pytest.raises(WriteFailed, match=r"Could not write .*j: Input/output error \("):
        writer.commit()  # ... and the failure is not lost: one line naming the file
    monkeypatch.undo()
    writer.close()
    assert len(read_journal(tmp_path / "j", PARTS).results) == 4098


def test_torn_tail_is_truncated_with_a_warning(tmp_path):
    path = journal_with(tmp_path / "j", 4)
    intact = path.read_bytes()
    path.write_bytes(intact + encode({"t": "r", "rows": [result(9)]})[:-7])
    with pytest.warns(UserWarning, match="truncated a torn last record"):
        contents = read_journal(path, PARTS)
    assert [r.job_id for r in contents.results] == [0, 1, 2, 3]
    assert path.read_bytes() == intact


def test_corrupt_middle_is_refused_then_repaired(tmp_path):
    path = journal_with(tmp_path / "j", 6)
    data = bytearray(path.read_bytes())
    where = data.index(b'[[2, "ok"')
    data[where + 5] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(JournalCorrupt, match="--repair"):
        read_journal(path, PARTS)
    assert path.read_bytes() == bytes(data)
    with pytest.warns(UserWarning, match="dropped 1 damaged"):
        contents = read_journal(path, PARTS, repair=True)
    assert [r.job_id for r in contents.results] == [0, 1, 3, 4, 5]
    assert not parse(path.read_bytes()).damaged


def test_other_grid_is_refused_untouched(tmp_path):
    path = journal_with(tmp_path / "j", 3)
    before = path.read_bytes()
    with pytest.raises(MpibenchError, match=r"changed: learners, seed"):
        read_journal(path, {**PARTS, "learners": "L", "seed": "X"})
    assert path.read_bytes() == before


def test_not_a_journal(tmp_path):
    (tmp_path / "j").write_text("hello")
    with pytest.raises(MpibenchError, match="does not start with"):
        read_journal(tmp_path / "j", PARTS)


def test_returned_hand_outs_do_not_count_as_attempts(tmp_path):
    path = journal_with(tmp_path / "j", 3)
    with open(path, "ab") as handle:
        handle.write(encode({"t": "s", "jobs": [5, 6]}) + encode({"t": "u", "jobs": [6]}))
    assert read_journal(path, PARTS).started_counts(7).tolist() == [1, 1, 1, 0, 0, 1, 0]


def test_retry_marks_make_earlier_results_history_and_count_attempts_anew(tmp_path):
    path = journal_with(tmp_path / "j", 3)  # jobs 0-2 handed out once, 3 result rows
    with open(path, "ab") as handle:
        handle.write(encode({"t": "x", "jobs": [1, 2]}) + encode({"t": "s", "jobs": [1]}))
    rows_before, started_before = read_journal(path, PARTS).retry_marks(4)
    assert rows_before.tolist() == [-1, 3, 3, -1]  # results of 1 and 2 so far: history
    assert started_before.tolist() == [0, 1, 1, 0]
    assert read_journal(path, PARTS).started_counts(4).tolist() == [1, 2, 1, 0]


def test_rank_records_of_older_journals_read_with_an_empty_gpu(tmp_path):
    import mpibench as mb

    project = mb.create_demo(tmp_path / "demo")
    assert mb.run(project, progress_every=0, isolate=False) == 0
    old_row = [1, "old-node", 99, 3, 1.0, 0.5, 0.2, 1000, 0.0, 1.0]  # before issue 18
    with open(project / "results.journal", "ab") as handle:
        handle.write(encode({"t": "k", "run": 0.5, "rows": [old_row]}))
    (project / "results.h5").unlink()
    assert mb.run(project, progress_every=0, isolate=False) == 0  # rebuilt from the journal
    ranks = mb.read_ranks(project)
    old = ranks[ranks["host"] == "old-node"]
    assert old[["rank", "gpu", "pid", "n_splits"]].values.tolist() == [[1, "", 99, 3]]
    assert (ranks.loc[ranks["host"] != "old-node", "gpu"] == "").all()


def test_a_large_hdf5_file_goes_through_a_checked_temporary_file(tmp_path, monkeypatch):
    """Files past IN_MEMORY_LIMIT are not built in memory: written to a temporary file
    and renamed, after a check of the free space (results.h5 of a million splits)."""
    import shutil

    import h5py
    import numpy as np

    from mpibench.store import paths

    monkeypatch.setattr(paths, "IN_MEMORY_LIMIT", 10)
    target = tmp_path / "big.h5"
    paths.write_hdf5_atomically(target, lambda h5: h5.create_dataset("x", data=np.arange(5)),
                                fix="Free space.", expected_bytes=1000)
    with h5py.File(target, "r") as h5:
        assert h5["x"][()].tolist() == [0, 1, 2, 3, 4]
    free = shutil.disk_usage(tmp_path).free
    with pytest.raises(WriteFailed, match="Free space") as failed:
        paths.write_hdf5_atomically(target, lambda h5: None, fix="Free space.",
                                    expected_bytes=2 * free)
    assert "\n" not in str(failed.value)
    assert [p.name for p in tmp_path.iterdir()] == ["big.h5"]  # nothing else left
