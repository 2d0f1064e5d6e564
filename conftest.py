"""Fixtures for the doctests in ``mpibench/`` and the tests in ``tests/``."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def finished_demo_path(tmp_path_factory):
    """The demo project, created and run once per test session (read-only use)."""
    import mpibench

    project = mpibench.create_demo(tmp_path_factory.mktemp("finished") / "demo")
    assert mpibench.run(project, progress_every=0) == 0
    return project


@pytest.fixture(autouse=True)
def _finished_demo_for_doctests(request, doctest_namespace):
    """Doctests that read results call ``finished_demo()``: one demo, run once."""
    doctest_namespace["finished_demo"] = lambda: request.getfixturevalue("finished_demo_path")
