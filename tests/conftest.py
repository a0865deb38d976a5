"""Shared fixtures: the real Docker engine and registry that scripts/test starts, and images built once per run.
Helpers that test files import (paths, the CI rule, fixture wheels and matrix) live in tests/helpers.py."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
import requests

from rocmci.errors import EngineUnavailable
from tests.helpers import REGISTRY, ROOT, BuiltImages, FixtureWheels, fixture_wheel, unavailable, write_fixture_matrix


@pytest.fixture(scope="session")
def engine():
    from rocmci.engine import docker_client

    try:
        return docker_client()
    except EngineUnavailable as exc:
        unavailable(str(exc))


@pytest.fixture(scope="session")
def registry() -> str:
    try:
        requests.get(f"http://{REGISTRY}/v2/", timeout=5).raise_for_status()
    except requests.RequestException as exc:
        unavailable(f"no OCI registry at {REGISTRY}: {exc}")
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


@pytest.fixture(scope="session")
def fixture_wheels(tmp_path_factory) -> FixtureWheels:
    """TEST FIXTURE wheels of the aiter test double: a correct one and one without layernorm2d_fwd."""
    out = tmp_path_factory.mktemp("aiter-double")
    return FixtureWheels(good=fixture_wheel(out, "good"), bad=fixture_wheel(out, "bad"))


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
