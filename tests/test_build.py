"""Builds on the real Docker engine, with both backends (the Docker SDK's legacy builder and `docker buildx bake`):
the local entry, pin gates, failure isolation, no-op rebuilds, layer reuse, the CA plumbing, deterministic labels."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import tarfile
import uuid
from contextlib import suppress
from pathlib import Path

import pytest

from rocmci.build import (
    BuildOptions,
    bake_file,
    build_entries,
    buildx_available,
    cached_steps_below_aiter,
    file_server,
)
from rocmci.oci import Descriptor, RegistryClient, tag_exists
from rocmci.plan import load_plan
from tests.helpers import ROOT, BuiltImages, FixtureWheels, fixture_wheel, unavailable, write_fixture_matrix

BAD_TORCH_STACK = """\
  bad-torch:
    base_image: {name: rocmci/debian, tag: bookworm, local: true}
    python: "3.11"
    torch: {version: 2.99.0, index: https://download.pytorch.org/whl/cpu}
    aiter: {pypi: 0.1.7.post2.dev18}
"""


def test_print_gives_a_bake_file_with_pins_as_args_and_labels():
    out = subprocess.run(
        [sys.executable, "-m", "invoke", "build", "--gpu", "mi355x", "--print"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    bake = json.loads(out)
    targets = bake["target"]
    assert set(bake["group"]["default"]["targets"]) == set(targets)
    assert len(targets) == 2
    for target in targets.values():
        assert target["dockerfile"] == "images/Dockerfile"
        args, labels = target["args"], target["labels"]
        assert args["GPU_ARCHS"] == "gfx950" and args["PREBUILD_KERNELS"] == "1"
        assert args["TORCH_INDEX_URL"] == f"https://download.pytorch.org/whl/rocm{args['ROCM_VERSION']}"
        for key in ("torch", "aiter", "rocm", "gfx", "entry", "content-hash"):
            assert labels[f"io.rocmci.{key}"], key
        assert labels["io.rocmci.torch"] == args["TORCH_VERSION"]
        for key in ("created", "source", "revision", "title", "version", "base.name"):
            assert f"org.opencontainers.image.{key}" in labels
        assert target["tags"][0].endswith(labels["io.rocmci.content-hash"][:12])


def _print_plan(env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "invoke", "build", "--gpu", "local", "--print"]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False, env={**os.environ, **(env or {})})


def test_two_prints_give_identical_labels_created_at_the_commit_time():
    first, second = (_print_plan({"SOURCE_DATE_EPOCH": ""}) for _ in range(2))
    assert first.returncode == second.returncode == 0, first.stderr
    assert first.stdout == second.stdout
    [target] = json.loads(first.stdout)["target"].values()
    last = subprocess.run(
        ["git", "-C", str(ROOT), "log", "-1", "--format=%H %ct", "--", "images", "checks"], capture_output=True, text=True
    ).stdout.split()
    assert target["labels"]["org.opencontainers.image.created"] == dt.datetime.fromtimestamp(int(last[1]), dt.UTC).isoformat()
    assert target["labels"]["org.opencontainers.image.revision"].removesuffix("-dirty") == last[0]

    pinned = _print_plan({"SOURCE_DATE_EPOCH": "1700000000"})
    [target] = json.loads(pinned.stdout)["target"].values()
    assert target["labels"]["org.opencontainers.image.created"] == "2023-11-14T22:13:20+00:00"

    bad = _print_plan({"SOURCE_DATE_EPOCH": "yesterday"})
    assert bad.returncode != 0 and bad.stdout == ""
    assert bad.stderr.strip() == "SOURCE_DATE_EPOCH: expected whole seconds since 1970 (got 'yesterday')"


@pytest.mark.docker
def test_registry_cache_is_refused_before_building_where_it_cannot_work(engine):
    command = [sys.executable, "-m", "invoke", "build", "--gpu", "local", "--registry-cache", "--registry", "127.0.0.1:1/none"]
    sdk = subprocess.run([*command, "--backend", "sdk"], cwd=ROOT, capture_output=True, text=True)
    assert (sdk.returncode, sdk.stderr) == (2, "--registry-cache needs the bake backend (docker buildx)\n")
    if not buildx_available():
        unavailable("docker buildx is not installed (scripts/setup-host installs it)")
    bake = subprocess.run([*command, "--backend", "bake"], cwd=ROOT, capture_output=True, text=True)
    message = "--registry-cache: the buildx builder's driver (docker) cannot export a cache (use docker-container)\n"
    assert (bake.returncode, bake.stderr, bake.stdout) == (2, message, "")


@pytest.fixture(scope="session", params=["sdk", "bake"])
def backend(request) -> str:
    if request.param == "bake" and not buildx_available():
        unavailable("docker buildx is not installed (scripts/setup-host installs it)")
    return request.param


@pytest.fixture(scope="session")
def built(backend, built_images, wheelhouse, tmp_path_factory) -> BuiltImages:
    """The suite's `local` and fixture images as built by `backend`: the suite's own build where it used that backend."""
    if {r.backend for r in built_images.results.values()} == {backend}:
        return built_images
    repository = f"{built_images.repository}-{backend}"
    options = BuildOptions.resolve(repository, backend=backend, wheelhouse=wheelhouse, log_dir=tmp_path_factory.mktemp("logs"))
    results = {}
    for plan, entries in ((built_images.local_plan, built_images.local_plan.select("local")), (built_images.fixture_plan, None)):
        results |= {r.entry_id: r for r in build_entries(plan, entries or list(plan.entries), options)}
    assert {(r.status, r.backend) for r in results.values()} == {("built", backend)}, results
    return BuiltImages(repository, built_images.local_plan, built_images.fixture_plan, results)


@pytest.mark.docker
@pytest.mark.slow
def test_local_image_holds_its_pins(engine, built, backend):
    entry = built.local_plan.select("local")[0]
    assert built.results[entry.id].backend == backend
    ref = entry.image_ref(built.repository)
    image = engine.images.get(ref)
    labels = image.labels
    assert labels["io.rocmci.torch"] == "2.13.0"
    assert labels["io.rocmci.aiter"] == "0.1.7.post2.dev18"
    assert labels["io.rocmci.content-hash"] == entry.content_hash
    assert labels["io.rocmci.role"] == "entry", "an entry image must not inherit the base image's role"
    assert labels["org.opencontainers.image.base.name"] == "rocmci/debian:bookworm"
    # Each image kind says what it is: the entry image does not inherit its base image's role.
    assert (labels["io.rocmci.role"], engine.images.get("rocmci/debian:bookworm").labels["io.rocmci.role"]) == ("entry", "base")
    assert labels["org.opencontainers.image.created"] == _print_labels()["org.opencontainers.image.created"]
    versions = json.loads(engine.containers.run(ref, ["cat", "/opt/rocmci/versions.json"], remove=True, network_mode="none"))
    assert versions["torch"]["version"].startswith("2.13.0") and versions["torch"]["hip"] is None
    assert versions["aiter"] == versions["aiter"] | {
        "version": "0.1.7.post2.dev18",
        "source": "pypi",
        "kernels": "jit-at-first-call",
    }
    leftovers = engine.containers.run(
        ref,
        [
            "sh",
            "-c",
            "ls /opt/rocmci/checks; ls -d /root/.cache /var/lib/apt/lists/* /tmp/* 2>/dev/null; echo PIP=$PIP_CONSTRAINT",
        ],
        remove=True,
        network_mode="none",
    ).decode()
    assert "probe.py" in leftovers and "smoke_layernorm.py" in leftovers
    assert "/root/.cache" not in leftovers and "/var/lib/apt/lists/" not in leftovers
    assert "PIP=/opt/rocmci/constraints.txt" in leftovers


@pytest.mark.docker
@pytest.mark.slow
def test_constraints_keep_torch_from_being_replaced(engine, built):
    ref = built.local_plan.select("local")[0].image_ref(built.repository)
    out = engine.containers.run(
        ref, ["sh", "-c", "pip install --no-index torch==2.12.0 2>&1; echo EXIT=$?"], remove=True, network_mode="none"
    ).decode()
    assert "EXIT=1" in out


@pytest.mark.docker
@pytest.mark.slow
def test_failed_pin_is_isolated_and_leaves_no_tag(
    engine, registry, test_repository, wheelhouse, fixture_wheels, built, backend, tmp_path
):
    repository = f"{test_repository}-isolation-{backend}"
    matrix_file = write_fixture_matrix(
        tmp_path / "m.yaml", repository, fixture_wheels, ["bad-torch", "fixture-good"], extra_stacks=BAD_TORCH_STACK
    )
    plan = load_plan(matrix_file)
    options = BuildOptions.resolve(repository, backend=backend, wheelhouse=wheelhouse, log_dir=tmp_path / "logs", push=True)
    results = {r.entry_id: r for r in build_entries(plan, list(plan.entries), options)}
    bad = results["local-cpu-torch2.99.0-aiter0.1.7.post2.dev18"]
    assert bad.status == "failed"
    assert bad.log and "torch==2.99.0" in bad.log.read_text()
    assert not engine.images.list(name=bad.image_ref)
    assert not tag_exists(repository, bad.image_ref.rsplit(":", 1)[1])
    good = results["local-cpu-torch2.13.0-aiter0.1.20_rocmcifixture"]
    assert (good.status, good.backend) == ("built", backend)
    assert tag_exists(repository, good.image_ref.rsplit(":", 1)[1])
    # The digest the build reports (bake: --metadata-file; sdk: the engine's push stream) is the one the registry serves.
    name, tag = good.image_ref.split("/", 1)[1].rsplit(":", 1)
    assert good.digest == RegistryClient(registry).head_manifest(name, tag).digest

    # The registry is asked too: with the local copy gone, the pushed tag still means nothing to build.
    engine.images.remove(good.image_ref)
    [again] = build_entries(plan, [e for e in plan.entries if e.id == good.entry_id], options)
    assert again.status == "skipped" and again.detail == "tag present in 127.0.0.1:5000"


@pytest.mark.docker
@pytest.mark.slow
def test_second_build_builds_nothing(built, backend, wheelhouse, tmp_path):
    plan = built.fixture_plan
    options = BuildOptions.resolve(built.repository, backend=backend, wheelhouse=wheelhouse, log_dir=tmp_path)
    results = build_entries(plan, list(plan.entries), options)
    assert [r.status for r in results] == ["skipped", "skipped"]
    assert all("local engine" in r.detail for r in results)


def _print_labels() -> dict[str, str]:
    [target] = bake_file(load_plan().select("local"), BuildOptions(repository="unused"))["target"].values()
    return target["labels"]


def _layer_files_holding(ref: str, needle: bytes, max_size: int = 4 << 20) -> list[str]:
    """Every file of every layer of `ref` (as `docker save` writes them) whose bytes hold `needle`."""
    found = []
    with (
        subprocess.Popen(["docker", "save", ref], stdout=subprocess.PIPE) as save,
        tarfile.open(fileobj=save.stdout, mode="r|") as image,
    ):
        for layer in image:
            if not layer.name.endswith("layer.tar"):
                continue
            with tarfile.open(fileobj=image.extractfile(layer), mode="r|") as files:
                for member in files:
                    if member.isfile() and member.size <= max_size and needle in files.extractfile(member).read():
                        found.append(f"{layer.name}:{member.name}")
    assert save.returncode == 0
    return found


@pytest.mark.docker
@pytest.mark.slow
def test_new_aiter_pin_reuses_the_layers_below_and_the_served_ca_stays_out(
    engine, built, backend, wheelhouse, fixture_wheels, tmp_path
):
    """Only the aiter pin differs from the built fixture entry: every step below aiter comes from the cache. The build
    is handed a CA (a real bundle carrying a unique marker); pip uses it, and no layer of the image holds it."""
    marker = f"rocmci-ca-marker-{uuid.uuid4().hex}"
    ca = tmp_path / "ca.pem"
    ca.write_text(f"# {marker}\n" + Path("/etc/ssl/certs/ca-certificates.crt").read_text())
    wheel = fixture_wheel(tmp_path, f"ca{uuid.uuid4().hex[:8]}")
    plan = load_plan(
        write_fixture_matrix(tmp_path / "m.yaml", built.repository, FixtureWheels(wheel, fixture_wheels.bad), ["fixture-good"])
    )
    options = BuildOptions.resolve(
        built.repository, backend=backend, ca_cert=str(ca), wheelhouse=wheelhouse, log_dir=tmp_path / "logs"
    )
    [result] = build_entries(plan, list(plan.entries), options)
    assert (result.status, result.backend) == ("built", backend), result
    log = result.log.read_text()
    cached, below = cached_steps_below_aiter(log, backend)
    assert below >= 4 and cached == below, log
    assert "--cert /tmp/rocmci-pip-" in log  # pip was handed the CA
    assert _layer_files_holding(result.image_ref, marker.encode()) == []
    engine.images.remove(result.image_ref)


def _pip_through_file_server(engine, ca, script: str) -> str:
    options = BuildOptions(repository="unused", ca_cert=ca, fileserver_port=5098)
    with file_server(options, []) as server:
        return engine.containers.run(
            "rocmci/debian:bookworm",
            ["sh", "-c", "python3 -m venv /tmp/v >/dev/null; " + script],
            remove=True,
            network_mode="host",
            environment={"ROCMCI_FETCH_URL": server.url},
            volumes={str(ROOT / "images"): {"bind": "/w", "mode": "ro"}},
        ).decode()


INSTALL = "/tmp/v/bin/python /w/rocmci_pip.py install --no-deps --dry-run packaging >/tmp/log 2>&1; echo EXIT=$?; "


@pytest.mark.docker
def test_extra_ca_reaches_pip_but_stays_out_of_the_image(engine, built_images, tmp_path):
    """The build file server hands pip the CA for one run: a bogus CA makes pip fail TLS, the host's lets it
    through (also behind a TLS-intercepting proxy), and nothing of it stays unless ROCMCI_BAKE_CA=1."""
    bogus = tmp_path / "bogus.crt"
    bogus.write_text("-----BEGIN CERTIFICATE-----\nMIIBbogus\n-----END CERTIFICATE-----\n")
    out = _pip_through_file_server(engine, bogus, INSTALL + "grep -c -i -E 'ssl|certificate|tls' /tmp/log")
    assert "EXIT=1" in out, out
    host_ca = BuildOptions.resolve("unused").ca_cert or "/etc/ssl/certs/ca-certificates.crt"
    leftover = "ls /usr/local/share/ca-certificates/ | wc -l; ROCMCI_BAKE_CA=1 python3 /w/rocmci_pip.py --bake-ca-if-asked >/dev/null; ls /usr/local/share/ca-certificates/"
    out = _pip_through_file_server(engine, host_ca, INSTALL + leftover).splitlines()
    assert out[0] == "EXIT=0", out
    assert out[1] == "0", "a CA was left in the image without ROCMCI_BAKE_CA=1"
    assert out[-1] == "rocmci-extra.crt"


def _staging_matrix(path: Path, release: str, staging: str, wheels: FixtureWheels) -> Path:
    written = write_fixture_matrix(path, release, wheels, ["fixture-good"])
    written.write_text(written.read_text().replace(f"repository: {release}\n", f"repository: {release}\nstaging: {staging}\n"))
    return written


def _build_push(matrix_file: Path, backend: str, wheelhouse: Path, reports: Path) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "invoke", "build", "--gpu", "local", "--push", "--backend", backend]
    command += ["--wheelhouse", str(wheelhouse), "--reports", str(reports), "--file", str(matrix_file)]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)


@pytest.mark.docker
@pytest.mark.slow
def test_build_push_stages_the_image_and_records_what_the_registry_serves(
    engine, registry, wheelhouse, fixture_wheels, backend, tmp_path
):
    """`invoke build --push` puts the content-hashed tag in staging only (no validated tag, nothing in the release
    repository) and records the digest read back from the registry; a second run rebuilds nothing and says so."""
    run = uuid.uuid4().hex[:8]
    release, staging = f"{registry}/rocmci-test-release-{run}", f"{registry}/rocmci-test-staging-{run}-{backend}"
    matrix_file = _staging_matrix(tmp_path / "m.yaml", release, staging, fixture_wheels)
    [entry] = load_plan(matrix_file).entries
    reports = tmp_path / "reports"
    first = _build_push(matrix_file, backend, wheelhouse, reports)
    assert first.returncode == 0, first.stdout + first.stderr
    record_file = reports / "builds" / f"{entry.build_id}.json"
    record = json.loads(record_file.read_text())
    client, name = RegistryClient(registry), staging.split("/", 1)[1]
    served = client.get_manifest(name, entry.tag)
    expected = {
        "schema": "rocmci.build/v1",
        "build_id": entry.build_id,
        "entries": [entry.id],
        "reference": f"{staging}:{entry.tag}",
    }
    assert record == record | expected | {"digest": served.digest, "image_id": served.json["config"]["digest"], "pushed": True}
    assert dt.datetime.fromisoformat(record["finished"]).tzinfo is not None
    ref = entry.image_ref(staging)
    if backend == "sdk":  # the engine's image id is the config digest the registry serves
        assert engine.images.get(ref).id == record["image_id"]
    # What `skopeo inspect` shows of the published image: it says it is an entry image, not its base image.
    config = json.loads(client.get_blob(name, Descriptor.from_json(served.json["config"])))
    assert config["config"]["Labels"]["io.rocmci.role"] == "entry"
    assert config["config"]["Labels"]["io.rocmci.content-hash"] == entry.content_hash
    assert client.list_tags(name) == [entry.tag]
    assert client.list_tags(release.split("/", 1)[1]) == []

    with suppress(Exception):
        engine.images.remove(ref)
    second = _build_push(matrix_file, backend, wheelhouse, reports)
    assert second.returncode == 0, second.stdout + second.stderr
    assert "skipped" in second.stdout and "tag present in" in second.stdout
    again = json.loads(record_file.read_text())
    assert again == again | {**expected, "digest": record["digest"], "image_id": record["image_id"], "pushed": False}
    assert not engine.images.list(name=ref), "a staged tag is not rebuilt"


def test_build_records_are_written_whole_and_a_failed_build_leaves_none(tmp_path):
    from rocmci.build.record import read_record, record_path, write_records
    from rocmci.contracts import BuildRecord
    from rocmci.errors import BuildError

    digest, config = "sha256:" + "a" * 64, "sha256:" + "b" * 64
    record = BuildRecord(
        build_id="cpu-x",
        entries=["local-x"],
        reference="r/s:cpu-x-0123456789ab",
        digest=digest,
        image_id=config,
        pushed=True,
        finished="2026-12-02T01:00:00+00:00",
    )
    stale = record_path(tmp_path, "cpu-failed")
    stale.parent.mkdir(parents=True)
    stale.write_text(record.model_copy(update={"build_id": "cpu-failed"}).to_json())
    [written] = write_records([record], ["cpu-failed"], tmp_path)
    assert written == record_path(tmp_path, "cpu-x") and read_record(written) == record
    assert json.loads(written.read_text())["schema"] == "rocmci.build/v1"
    assert sorted(p.name for p in written.parent.iterdir()) == ["cpu-x.json"], "no stale record, no partial file"
    (tmp_path / "file").write_text("")
    with pytest.raises(BuildError, match=r"--reports .*/file: cannot write the build records: Not a directory"):
        write_records([record], [], tmp_path / "file")
