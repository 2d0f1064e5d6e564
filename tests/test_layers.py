"""The package's layers: every import of every module (lazy ones inside functions
included), read from the source, runs downwards."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "mpibench"
DEFINITIONS = ("grid", "seeds", "splitters", "splitsets", "scorers", "debug", "demo",
               "project", "errors", "constraints", "limits", "checkpoint", "epochs",
               "formatting", "slurm", "tuning", "energy", "_version")
"""Top-level modules of the user API (everything on top but the CLI)."""


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    """Absolute names of every module ``path`` imports (relative imports resolved)."""
    package = module_name(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[:len(package) - node.level + 1] if node.level else []
            name = ".".join([*base, *([node.module] if node.module else [])])
            found.add(name)
            found.update(f"{name}.{alias.name}" for alias in node.names)
    return found


MODULES = {module_name(p): imports_of(p) for p in sorted(PACKAGE.rglob("*.py"))}


def layer(name: str) -> str:
    parts = name.split(".")
    if len(parts) > 2 or (len(parts) == 2 and parts[1] in ("engine", "store", "analysis")):
        return parts[1]
    return "definitions" if parts[-1] in DEFINITIONS else parts[-1]


def test_every_module_has_a_layer():
    layers = {layer(name) for name in MODULES}
    assert layers == {"mpibench", "definitions", "engine", "store", "analysis", "cli",
                      "__main__"}, layers


@pytest.mark.parametrize(("lower", "forbidden"), [
    ("definitions", ("mpibench.engine", "mpibench.analysis", "mpibench.cli")),
    ("store", ("mpibench.engine", "mpibench.analysis", "mpibench.cli")),
    ("analysis", ("mpibench.engine", "mpibench.cli")),
    ("engine", ("mpibench.analysis", "mpibench.cli")),
])
def test_imports_run_downwards(lower, forbidden):
    wrong = {name: sorted(i for i in imported if i.startswith(forbidden))
             for name, imported in MODULES.items() if layer(name) == lower}
    assert not {name: found for name, found in wrong.items() if found}


def test_the_scheduler_protocol_and_store_import_no_mpi4py():
    """(``slurm`` may: it asks mpi4py which MPI library it uses, for ``srun --mpi``.)"""
    pure = [n for n in MODULES if n in ("mpibench.engine.scheduler",
                                        "mpibench.engine.protocol")
            or (layer(n) in ("store", "definitions", "analysis") and n != "mpibench.slurm")]
    assert "mpibench.engine.scheduler" in pure
    assert not {n: MODULES[n] for n in pure if any(i.startswith("mpi4py")
                                                  for i in MODULES[n])}


def test_the_reader_finds_lazy_and_relative_imports():
    """The check itself can fail: it sees the CLI's lazy import of the engine."""
    assert "mpibench.engine.runner" in MODULES["mpibench.cli"]
    assert "mpibench.store.records" in MODULES["mpibench.engine.protocol"]


README = PACKAGE.parent / "README.md"


def test_the_readme_module_table_names_every_module():
    """The table in README's "How it works" lists every module of each layer."""
    table = {}
    for line in README.read_text().splitlines():
        cells = line.split("|")
        if len(cells) > 3 and ("`mpibench/" in cells[1] or "user API" in cells[1]):
            key = "definitions" if "user API" in cells[1] else cells[1].strip("` /")[9:]
            table[key] = {name.strip("` ") for name in cells[2].split(",")}
    for key, listed in table.items():
        modules = {name.rsplit(".", 1)[-1] for name in MODULES if layer(name) == key
                   and name.rsplit(".", 1)[-1] not in (key, "_forkserver", "_version")}
        assert modules == listed, (key, sorted(modules - listed), sorted(listed - modules))
    assert set(table) == {"definitions", "store", "engine", "analysis"}


def test_the_readme_counts_the_protocol_tags():
    import re

    from mpibench.engine import protocol

    tags = [name for name in vars(protocol) if name.startswith("TAG_")]
    words = {3: "three", 4: "four", 5: "five", 6: "six", 7: "seven", 8: "eight"}
    assert f"`mpibench/engine/protocol.py`: {words[len(tags)]}" in re.sub(
        r"\s+", " ", README.read_text())
