"""What several test files share that is not a fixture: paths, the CI rule for a missing service or module, the aiter
test-double wheels and the fixture matrix. The fixtures themselves live in conftest.py."""

from __future__ import annotations

import importlib
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
REGISTRY = os.environ.get("ROCMCI_TEST_REGISTRY", "127.0.0.1:5000")
FIXTURE_SOURCE = ROOT / "tests" / "fixtures" / "aiter_double"


def unavailable(what: str) -> None:
    """Outside CI a missing service, tool or module skips with its reason; in CI (scripts/test installs and starts
    everything) it is a failure. Works inside a test or fixture and at module level (a collection error in CI)."""
    if os.environ.get("CI"):
        pytest.fail(f"{what} (CI must run scripts/test, which provides it)", pytrace=False)
    pytest.skip(what, allow_module_level=True)


def require_module(name: str, hint: str = "") -> ModuleType:
    """`import name` for a test module: a missing module neither breaks collection nor skips silently in CI."""
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        unavailable(f"cannot import {name}: {exc}" + (f" ({hint})" if hint else ""))
        raise  # unreachable: unavailable() always raises


@dataclass(frozen=True)
class FixtureWheels:
    good: Path
    bad: Path


def fixture_wheel(out: Path, variant: str) -> Path:
    """The aiter test double as a wheel; the `bad` variant lacks layernorm2d_fwd (what aiter 0.1.12-0.1.14 did)."""
    source = out / f"src-{variant}"
    shutil.copytree(FIXTURE_SOURCE, source)
    version = "0.1.20+rocmcifixture" + ("" if variant == "good" else variant)
    init = source / "aiter" / "__init__.py"
    text = init.read_text().replace("0.1.20+rocmcifixture", version)
    if variant == "bad":
        text = text.replace("def layernorm2d_fwd(", "def _layernorm2d_fwd_dropped(").replace(
            "layer_norm = layernorm2d_fwd", "layer_norm = _layernorm2d_fwd_dropped"
        )
    init.write_text(text)
    project = source / "pyproject.toml"
    project.write_text(project.read_text().replace("0.1.20+rocmcifixture", version))
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(out), str(source)], check=True
    )
    return next(out.glob(f"amd_aiter-{version}-*.whl"))


FIXTURE_MATRIX = """\
# rocmci TEST FIXTURE matrix: the aiter of these stacks is a test double. Fixture stacks never carry AMD targets.
version: 1
repository: {repository}
targets:
  local:
    kind: cpu
    runs_on: [ubuntu-latest]
    device_policy: {{devices: [], group_add: [], shm_size: 2g, network: none}}
stacks:
  fixture-good:
    base_image: {{name: rocmci/debian, tag: bookworm, local: true}}
    python: "3.11"
    torch: {{version: 2.13.0, index: https://download.pytorch.org/whl/cpu}}
    aiter: {{wheel: "file://{good}"}}
    fixture: true
  fixture-bad:
    base_image: {{name: rocmci/debian, tag: bookworm, local: true}}
    python: "3.11"
    torch: {{version: 2.13.0, index: https://download.pytorch.org/whl/cpu}}
    aiter: {{wheel: "file://{bad}"}}
    fixture: true
{extra_stacks}
matrix:
  gpu: [local]
  stack: [{stacks}]
"""


def write_fixture_matrix(path: Path, repository: str, wheels: FixtureWheels, stacks: list[str], extra_stacks: str = "") -> Path:
    path.write_text(
        FIXTURE_MATRIX.format(
            repository=repository, good=wheels.good, bad=wheels.bad, stacks=", ".join(stacks), extra_stacks=extra_stacks
        )
    )
    return path


@dataclass(frozen=True)
class BuiltImages:
    """The real `local` entry (torch 2.13.0 CPU + amd-aiter from PyPI) and the two fixture entries, built once."""

    repository: str
    local_plan: object
    fixture_plan: object
    results: dict


def run_checks_on_host(entry: Any, work: Path) -> dict[str, int]:
    """checks/probe.py then checks/smoke_layernorm.py on this host, with the command lines validate gives the entry's
    image (this venv holds the local entry's pins); each writes <name>.json and <name>.log under work as in a container.
    Returns each step's exit code."""
    from rocmci.validate import probe_command, smoke_command

    codes: dict[str, int] = {}
    for name, command in (("probe", probe_command(entry)), ("smoke", smoke_command(entry, entry.target))):
        on_host = [sys.executable, "-P", str(ROOT / "checks" / Path(command[2]).name), *command[3:]]
        proc = subprocess.run(on_host, capture_output=True, timeout=600, check=False)
        (work / f"{name}.json").write_bytes(proc.stdout)
        (work / f"{name}.log").write_bytes(proc.stderr)
        codes[name] = proc.returncode
    return codes
