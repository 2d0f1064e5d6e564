"""Shared fixtures: a hang backstop, tiny projects, awkward paths."""

from __future__ import annotations

import faulthandler
import sys

import pytest

faulthandler.dump_traceback_later(1500, exit=True)


@pytest.fixture
def weird_tmp_path(tmp_path):
    """A temp folder whose name has spaces and quotes."""
    path = tmp_path / "it's a \"weird\" path"
    path.mkdir()
    return path


@pytest.fixture
def demo_project(tmp_path):
    """The built-in demo project (72 splits), not run."""
    import mpibench

    return mpibench.create_demo(tmp_path / "demo")


@pytest.fixture(scope="session")
def python():
    """The interpreter running the tests."""
    return sys.executable
