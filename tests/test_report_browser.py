"""The HTML report renders in headless Chromium (skipped where Chromium is absent)."""

from __future__ import annotations

import shutil

import pytest
from mpi_helpers import run_process

import mpibench as mb

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (apt-get install chromium)")
def test_report_renders_in_headless_chromium(tmp_path):
    project = mb.create_demo(tmp_path / "demo")
    assert mb.run(project, progress_every=0, isolate=False) == 0
    report = mb.write_report(project, tmp_path / "report.html")
    shot = tmp_path / "report.png"
    done = run_process([
        CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
        "--no-first-run", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}",
        f"--screenshot={shot}", "--window-size=1200,2400", report.as_uri()], timeout=120)
    assert done.returncode == 0, done.stderr
    dump = run_process([
        CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
        "--disable-background-networking", f"--user-data-dir={tmp_path / 'profile2'}",
        "--dump-dom", report.as_uri()], timeout=120)
    assert "Same vs other vs all: rmse" in dump.stdout
    assert dump.stdout.count("<img") == 3
    assert shot.stat().st_size > 50_000  # a page of tables and figures, not a blank one
