"""Builds on the real Docker engine: the local entry, pin gates, failure isolation, no-op rebuilds, the CA plumbing."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from rocmci.build import BuildOptions, bake_file, build_entries, file_server
from rocmci.matrix import load_plan
from rocmci.registry import tag_exists
from tests.conftest import ROOT, write_fixture_matrix

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


def test_bake_file_is_deterministic_apart_from_build_time():
    plan = load_plan()
    options = BuildOptions(repository="r.example/rocmci")
    first, second = (bake_file(plan.select("mi300x"), options) for _ in range(2))
    for bake in (first, second):
        for target in bake["target"].values():
            target["labels"].pop("org.opencontainers.image.created")
    assert first == second


@pytest.mark.docker
@pytest.mark.slow
def test_local_image_holds_its_pins(engine, built_images):
    entry = built_images.local_plan.select("local")[0]
    ref = entry.image_ref(built_images.repository)
    image = engine.images.get(ref)
    labels = image.labels
    assert labels["io.rocmci.torch"] == "2.13.0"
    assert labels["io.rocmci.aiter"] == "0.1.7.post2.dev18"
    assert labels["io.rocmci.content-hash"] == entry.content_hash
    assert labels["org.opencontainers.image.base.name"] == "rocmci/debian:bookworm"
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
def test_constraints_keep_torch_from_being_replaced(engine, built_images):
    ref = built_images.local_plan.select("local")[0].image_ref(built_images.repository)
    out = engine.containers.run(
        ref, ["sh", "-c", "pip install --no-index torch==2.12.0 2>&1; echo EXIT=$?"], remove=True, network_mode="none"
    ).decode()
    assert "EXIT=1" in out


@pytest.mark.docker
@pytest.mark.slow
def test_failed_pin_is_isolated_and_leaves_no_tag(
    engine, registry, test_repository, wheelhouse, fixture_wheels, built_images, tmp_path
):
    repository = f"{test_repository}-isolation"
    matrix_file = write_fixture_matrix(
        tmp_path / "m.yaml", repository, fixture_wheels, ["bad-torch", "fixture-good"], extra_stacks=BAD_TORCH_STACK
    )
    plan = load_plan(matrix_file)
    options = BuildOptions.resolve(repository, wheelhouse=wheelhouse, log_dir=tmp_path / "logs", push=True)
    results = {r.entry_id: r for r in build_entries(plan, list(plan.entries), options)}
    bad = results["local-cpu-torch2.99.0-aiter0.1.7.post2.dev18"]
    assert bad.status == "failed"
    assert bad.log and "torch==2.99.0" in bad.log.read_text()
    assert not engine.images.list(name=bad.image_ref)
    assert not tag_exists(repository, bad.image_ref.rsplit(":", 1)[1])
    good = results["local-cpu-torch2.13.0-aiter0.1.20_rocmcifixture"]
    assert good.status == "built"
    assert tag_exists(repository, good.image_ref.rsplit(":", 1)[1])

    # The registry is asked too: with the local copy gone, the pushed tag still means nothing to build.
    engine.images.remove(good.image_ref)
    [again] = build_entries(plan, [e for e in plan.entries if e.id == good.entry_id], options)
    assert again.status == "skipped" and again.detail == "tag present in 127.0.0.1:5000"


@pytest.mark.docker
@pytest.mark.slow
def test_second_build_builds_nothing(built_images, wheelhouse, tmp_path):
    plan = built_images.fixture_plan
    options = BuildOptions.resolve(built_images.repository, wheelhouse=wheelhouse, log_dir=tmp_path)
    results = build_entries(plan, list(plan.entries), options)
    assert [r.status for r in results] == ["skipped", "skipped"]
    assert all("local engine" in r.detail for r in results)


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
