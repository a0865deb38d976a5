"""The pull path for people who only want an image: the installed `rocmci` command (pip-installed from this tree,
run from a directory without matrix.yaml) against the real registry and engine, and the lock file's consumer
noticing a deleted or replaced report."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest
from test_registry import cleanup_repository, push_with_report, remove_local_images, unique_repository

import rocmci.pull as pulling
from rocmci import oci
from rocmci.console import REGISTRY_ENV, UsageError, repository_from
from rocmci.pull import lock

REPO_ROOT = Path(__file__).resolve().parent.parent
pytestmark = [pytest.mark.registry, pytest.mark.docker]


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """rocmci pip-installed (no deps: they are this venv's) from a copy of this tree into a fresh target directory."""
    source = tmp_path_factory.mktemp("source")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO_ROOT / name, source / name)
    shutil.copytree(REPO_ROOT / "rocmci", source / "rocmci", ignore=shutil.ignore_patterns("__pycache__"))
    target = tmp_path_factory.mktemp("installed")
    pip = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", "--no-index"]
    subprocess.run([*pip, "--target", str(target), str(source)], check=True, capture_output=True, timeout=300)
    assert (target / "bin" / "rocmci").is_file(), "the console script was not installed"
    return target


def run_rocmci(installed: Path, *args: str, cwd: Path, registry_env: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != REGISTRY_ENV}
    env["PYTHONPATH"] = str(installed)  # the installed package, not this checkout
    if registry_env:
        env[REGISTRY_ENV] = registry_env
    return subprocess.run(
        [str(installed / "bin" / "rocmci"), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


@pytest.fixture
def published(registry: str, engine: docker.DockerClient) -> Iterator[tuple[str, oci.RegistryClient, str]]:
    """A repository holding one image with a passing cpu-only report attached: (repository, client, digest)."""
    repository = unique_repository(registry)
    client = oci.RegistryClient(registry)
    image = push_with_report(engine, client, repository, "local-1", when="2026-06-01T10:00:00Z")
    remove_local_images(engine, repository)
    yield repository, client, image.digest
    cleanup_repository(repository)
    remove_local_images(engine, repository)


def test_registry_comes_from_option_or_environment() -> None:
    assert repository_from("ghcr.io/acme/rocmci", {}) == "ghcr.io/acme/rocmci"
    assert repository_from(None, {REGISTRY_ENV: "127.0.0.1:5000"}) == "127.0.0.1:5000/rocmci"
    with pytest.raises(UsageError, match="no registry: give --registry"):
        repository_from(None, {})


def test_installed_pull_works_anywhere_and_verify_lock_notices_a_deleted_report(
    installed: Path, published: tuple[str, oci.RegistryClient, str], tmp_path: Path
) -> None:
    repository, client, digest = published
    elsewhere = tmp_path / "deploy"
    elsewhere.mkdir()
    assert not (elsewhere / "matrix.yaml").exists()

    missing = run_rocmci(installed, "pull", "--gpu", "local", cwd=elsewhere)
    assert missing.returncode == 2 and "Traceback" not in missing.stderr
    assert (
        missing.stderr.strip()
        == f"rocmci pull: no registry: give --registry REPOSITORY (e.g. ghcr.io/acme/rocmci) or set {REGISTRY_ENV}"
    )

    pulled = run_rocmci(installed, "pull", "--gpu", "local", "--lock", "app.lock.json", cwd=elsewhere, registry_env=repository)
    assert pulled.returncode == 0, pulled.stderr
    assert pulled.stdout.strip() == f"{repository}@{digest}"
    assert "verdict pass, CPU only: no aiter kernel ran" in pulled.stderr
    written = json.loads((elsewhere / "app.lock.json").read_text())
    assert written["schema"] == "rocmci.lock/v2" and written["digest"] == digest
    assert written["report"]["verdict"] == "pass" and written["report"]["scope"] == "cpu-only"

    holds = run_rocmci(installed, "verify-lock", "app.lock.json", cwd=elsewhere)
    assert holds.returncode == 0, holds.stdout + holds.stderr
    assert "lock holds" in holds.stdout and "CPU only" in holds.stdout

    # Replace the report: the `sha256-<hex>` fallback index (distribution 2.8 has no referrers API) now lists none.
    name = oci.split_repository(repository)[1]
    empty_index = json.dumps({"schemaVersion": 2, "mediaType": oci.OCI_INDEX, "manifests": []}).encode()
    client.put_manifest(name, oci.fallback_tag(digest), empty_index, oci.OCI_INDEX)
    broken = run_rocmci(installed, "verify-lock", "app.lock.json", cwd=elsewhere)
    assert broken.returncode == 1
    assert f"report {written['report']['digest']} is no longer attached to {digest}" in broken.stdout
    assert "lock broken" in broken.stderr


def test_verify_lock_checks_image_and_verdict_scope(published: tuple[str, oci.RegistryClient, str], tmp_path: Path) -> None:
    repository, client, digest = published
    result, _ = pulling.find_validated(repository, "local", client=client)
    locked = lock.lock_for(result, client)
    assert locked.report.scope == "cpu-only"
    assert all(check.ok for check in lock.verify_lock(locked, client=client))

    claims_gpu = locked.model_copy(update={"report": locked.report.model_copy(update={"scope": "gpu"})})
    verdict = lock.verify_lock(claims_gpu, client=client)[-1]
    assert not verdict.ok and verdict.detail == "verdict pass, scope cpu-only, on local: the lock needs pass, scope gpu, on local"

    client.delete_manifest(oci.split_repository(repository)[1], digest)
    image = lock.verify_lock(locked, client=client)[0]
    assert not image.ok and "is not in the registry" in image.detail


def test_read_lock_errors_are_one_line_each(tmp_path: Path) -> None:
    old = tmp_path / "old.lock.json"
    old.write_text(json.dumps({"schema": "rocmci.lock/v1", "digest": "sha256:" + "0" * 64}))
    with pytest.raises(lock.LockError, match=r"old.lock.json: schema: a rocmci.lock/v1 lock records no verdict scope"):
        lock.read_lock(old)
    bad = tmp_path / "bad.lock.json"
    bad.write_text("{not json")
    with pytest.raises(lock.LockError, match=r"^.*bad.lock.json: expected a JSON lock"):
        lock.read_lock(bad)
    partial = tmp_path / "partial.lock.json"
    partial.write_text(json.dumps({"schema": "rocmci.lock/v2", "gpu": "local"}))
    with pytest.raises(lock.LockError) as caught:
        lock.read_lock(partial)
    lines = str(caught.value).splitlines()
    assert lines and all(line.startswith(f"{partial}: ") for line in lines)
    assert any(": repository: Field required" in line for line in lines)
    assert any(": report: Field required" in line for line in lines)


def test_installed_pull_selects_by_stack(installed: Path, registry: str, engine: docker.DockerClient, tmp_path: Path) -> None:
    repository = unique_repository(registry)
    client = oci.RegistryClient(registry)
    try:
        older = push_with_report(engine, client, repository, "local-a", when="2026-06-01T10:00:00Z", stack="torch2.12")
        push_with_report(engine, client, repository, "local-b", when="2026-06-02T10:00:00Z", stack="torch2.13")
        remove_local_images(engine, repository)
        chosen = run_rocmci(installed, "pull", "--gpu", "local", "--stack", "torch2.12", cwd=tmp_path, registry_env=repository)
        assert chosen.returncode == 0, chosen.stderr
        assert chosen.stdout.strip() == f"{repository}@{older.digest}"  # not the newer pass of another stack
        none = run_rocmci(installed, "pull", "--gpu", "local", "--stack", "torch2.14", cwd=tmp_path, registry_env=repository)
        assert none.returncode != 0 and "Traceback" not in none.stderr
        assert f"no image of {repository} passed on local, stack torch2.14 (2 candidates:" in none.stderr
    finally:
        cleanup_repository(repository)
        remove_local_images(engine, repository)
