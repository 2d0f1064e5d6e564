"""The README's code blocks and every examples/*.py run as written."""

from __future__ import annotations

import os
import re
import shlex
import sys
from pathlib import Path

import pytest
from mpi_helpers import run_process

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
SKIP_PREFIXES = ("pip ", "srun ", "sbatch ", "python -m pytest", "bash ", "ruff ")


def readme_blocks() -> list[tuple[str, str]]:
    """(language, code) of every fenced block, in order."""
    return re.findall(r"```(\w+)\n(.*?)```", README.read_text(), flags=re.S)


def shell_commands(code: str) -> list[str]:
    commands = []
    for line in code.splitlines():
        line = line.split("  #")[0].strip()
        if line and not line.startswith(SKIP_PREFIXES):
            commands.append(line)
    return commands


@pytest.mark.mpi
def test_readme_blocks_run_in_order(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    env = {"PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    namespace: dict = {}
    ran = {"python": 0, "bash": 0}
    for language, code in readme_blocks():
        if language == "python":
            exec(compile(code, str(README), "exec"), namespace)
            ran["python"] += 1
        elif language == "bash":
            for command in shell_commands(code):
                done = run_process(["bash", "-c", command], env=env, cwd=tmp_path, timeout=180)
                assert done.returncode == 0, f"{command}\n{done.stdout}\n{done.stderr}"
                ran["bash"] += 1
    assert ran["python"] >= 3 and ran["bash"] >= 3
    assert len(namespace["results"]) == 72  # the demo, read back in the analysis section
    assert namespace["summary"]["n_splits"] == 72
    for name in ("pvalue.png", "timeline.png", "scores.svg", "report.html", "scores.png"):
        assert (tmp_path / name).stat().st_size > 1000, name


def test_readme_links_resolve():
    text = README.read_text()
    anchors = {re.sub(r"[^a-z0-9 -]", "", h.lower()).replace(" ", "-")
               for h in re.findall(r"^#+ (.+)$", text, flags=re.M)}
    for target in re.findall(r"\]\(([^)]+)\)", text):
        if target.startswith("#"):
            assert target[1:] in anchors, target
        elif not target.startswith("http"):
            assert (ROOT / target).exists(), target


def needs_torch(script: str) -> None:
    """Skip the PyTorch example where torch is not installed (.ci/run installs the CPU
    build when it can)."""
    if script == "torch_mlp.py":
        pytest.importorskip("torch", reason="PyTorch is not installed: "
                            "pip install torch==2.13.0 (CPU build) to run examples/torch_mlp.py")


@pytest.mark.mpi
@pytest.mark.parametrize("script", sorted((ROOT / "examples").glob("*.py")), ids=lambda p: p.name)
def test_example_runs(script, tmp_path):
    needs_torch(script.name)
    done = run_process([sys.executable, str(script)], cwd=tmp_path, timeout=300)
    assert done.returncode == 0, f"{shlex.quote(str(script))}\n{done.stdout}\n{done.stderr}"
    assert done.stdout.strip()


@pytest.mark.mpi
@pytest.mark.parametrize("script", ["classification.py", "one_launch.py", "torch_mlp.py"])
def test_example_runs_under_mpiexec_and_leaves_nothing_in_tmp(script, tmp_path):
    from mpi_helpers import launcher

    needs_torch(script)
    before = set(Path("/tmp").iterdir())
    done = run_process([*launcher(3), sys.executable, str(ROOT / "examples" / script)],
                       cwd=tmp_path, timeout=300)
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}"
    assert done.stdout.count("learner") == 1  # printed once, by rank 0
    projects = [p for p in tmp_path.iterdir() if (p / "grid.h5").exists()]
    assert len(projects) == 1, list(tmp_path.iterdir())
    assert not {p for p in set(Path("/tmp").iterdir()) - before
                if (p / "grid.h5").exists() or any(p.glob("*/grid.h5"))}
