"""The layers contract (import-linter, in pyproject.toml): each stage imports only earlier stages and the shared leaves.
docs/imports.md is the picture scripts/import-graph draws from the same contract: current, and without a cycle."""

from __future__ import annotations

import importlib.machinery
import importlib.util
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from tests.helpers import ROOT

GRAPH_SCRIPT = ROOT / "scripts" / "import-graph"


@pytest.fixture(scope="module")
def import_graph() -> Iterator[ModuleType]:
    loader = importlib.machinery.SourceFileLoader("rocmci_import_graph", str(GRAPH_SCRIPT))
    spec = importlib.util.spec_from_loader(loader.name, loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the file executes
    loader.exec_module(module)
    yield module
    del sys.modules[spec.name]


def lint_imports(package_root: Path) -> subprocess.CompletedProcess[str]:
    """lint-imports with this repository's contract over the rocmci found under package_root."""
    env = {**os.environ, "PYTHONPATH": str(package_root)}
    command = [str(Path(sys.executable).parent / "lint-imports"), "--no-cache", "--no-logo", str(ROOT / "pyproject.toml")]
    return subprocess.run(command, cwd=package_root, env=env, capture_output=True, text=True, timeout=300, check=False)


def test_the_layers_contract_is_kept() -> None:
    run = lint_imports(ROOT)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "Contracts: 1 kept, 0 broken." in run.stdout


def test_an_import_from_an_earlier_stage_to_a_later_one_breaks_it(tmp_path: Path) -> None:
    shutil.copytree(ROOT / "rocmci", tmp_path / "rocmci", ignore=shutil.ignore_patterns("__pycache__"))
    (tmp_path / "rocmci" / "plan" / "_planted.py").write_text("from rocmci import report  # noqa: F401\n")
    run = lint_imports(tmp_path)
    assert run.returncode == 1, run.stdout + run.stderr
    assert "rocmci.plan is not allowed to import rocmci.report" in run.stdout
    assert "rocmci.plan._planted -> rocmci.report" in run.stdout


def test_every_package_of_rocmci_is_in_a_layer(import_graph: ModuleType) -> None:
    placed = {name for layer in import_graph.layers() for name in layer.names}
    packages = {
        f"rocmci.{path.stem}" for path in (ROOT / "rocmci").iterdir() if path.suffix == ".py" or (path / "__init__.py").is_file()
    }
    assert packages - {"rocmci.__init__"} <= placed, "add the new package to the layers contract in pyproject.toml"


def test_the_picture_in_docs_is_current_and_acyclic() -> None:
    run = subprocess.run([sys.executable, str(GRAPH_SCRIPT), "--check"], capture_output=True, text=True, timeout=300, check=False)
    assert run.returncode == 0, run.stderr
    text = (ROOT / "docs" / "imports.md").read_text()
    assert "```mermaid" in text and "No cycle between packages" in text
    assert "NOT ignored" not in text and "in no layer" not in text


def test_the_picture_orders_stages_and_finds_cycles(import_graph: ModuleType) -> None:
    stack = import_graph.layers()
    assert stack[0].number == 0 and "rocmci.errors" in stack[0].names and "rocmci.contracts" in stack[0].names
    assert [layer.names[0] for layer in stack[1:4]] == ["rocmci.plan", "rocmci.build", "rocmci.validate"]
    edges = {"rocmci.plan": {"rocmci.build"}, "rocmci.build": {"rocmci.plan"}}
    assert import_graph.cycle(edges, set()) is not None
    assert import_graph.cycle(edges, {("rocmci.plan", "rocmci.build")}) is None
    drawn = import_graph.render(edges, stack, set())
    assert "plan -. breaks the layers .-> build" in drawn and "(NOT ignored: lint-imports fails)" in drawn
    assert "Cycle: " in drawn
