"""Shared fixtures: the real Docker engine and registry that scripts/test starts, and images built once per run."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from rocmci.errors import EngineUnavailable

ROOT = Path(__file__).resolve().parent.parent
REGISTRY = os.environ.get("ROCMCI_TEST_REGISTRY", "127.0.0.1:5000")
FIXTURE_SOURCE = ROOT / "tests" / "fixtures" / "aiter_double"


def _unavailable(what: str) -> None:
    """Outside CI a missing service skips with its reason; in CI (scripts/test starts both) it is a failure."""
    if os.environ.get("CI"):
        pytest.fail(f"{what} (CI must run scripts/test, which starts it)")
    pytest.skip(what)


@pytest.fixture(scope="session")
def engine():
    from rocmci.engine import docker_client

    try:
        return docker_client()
    except EngineUnavailable as exc:
        _unavailable(str(exc))


@pytest.fixture(scope="session")
def registry() -> str:
    try:
        requests.get(f"http://{REGISTRY}/v2/", timeout=5).raise_for_status()
    except requests.RequestException as exc:
        _unavailable(f"no OCI registry at {REGISTRY}: {exc}")
    return REGISTRY


@pytest.fixture(scope="session")
def test_repository(registry: str) -> str:
    return f"{registry}/rocmci-test-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="session")
def wheelhouse(tmp_path_factory) -> Path:
    """Everything the local stack installs, downloaded on the host (torch 2.13.0 CPU comes from the local wheel)."""
    from rocmci.build import fill_wheelhouse
    from rocmci.plan import load_plan

    dest = ROOT / ".cache" / "wheelhouse"
    fill_wheelhouse(load_plan().select("local"), dest, use_torch_index=False)
    return dest


@dataclass(frozen=True)
class FixtureWheels:
    good: Path
    bad: Path


def _fixture_wheel(out: Path, variant: str) -> Path:
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


@pytest.fixture(scope="session")
def fixture_wheels(tmp_path_factory) -> FixtureWheels:
    """TEST FIXTURE wheels of the aiter test double: a correct one and one without layernorm2d_fwd."""
    out = tmp_path_factory.mktemp("aiter-double")
    return FixtureWheels(good=_fixture_wheel(out, "good"), bad=_fixture_wheel(out, "bad"))


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


@pytest.fixture(scope="session")
def built_images(engine, test_repository, wheelhouse, fixture_wheels, tmp_path_factory) -> BuiltImages:
    from rocmci.build import BuildOptions, build_entries
    from rocmci.plan import load_plan

    options = BuildOptions.resolve(test_repository, wheelhouse=wheelhouse, log_dir=tmp_path_factory.mktemp("logs"))
    local_plan = load_plan()
    matrix_file = write_fixture_matrix(
        tmp_path_factory.mktemp("matrix") / "fixture.yaml", test_repository, fixture_wheels, ["fixture-good", "fixture-bad"]
    )
    fixture_plan = load_plan(matrix_file)
    built = build_entries(local_plan, local_plan.select("local"), options)
    built += build_entries(fixture_plan, list(fixture_plan.entries), options)
    results = {entry_id: r for r in built for entry_id in r.entries}
    failed = {k: (r.detail, r.log) for k, r in results.items() if r.status == "failed"}
    assert not failed, failed
    return BuiltImages(test_repository, local_plan, fixture_plan, results)
