"""End to end on the real engine and registry, through the CLI a user runs: pipeline (build, validate, report,
publish), then pull by digest. The pass path uses the TEST FIXTURE images whose aiter is a test double."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from rocmci.registry import REPORT_ARTIFACT_TYPE, client_for, fallback_tag, validated_tag
from tests.conftest import ROOT, write_fixture_matrix

pytestmark = [pytest.mark.docker, pytest.mark.registry, pytest.mark.slow]


def _invoke(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "invoke", *args], cwd=ROOT, capture_output=True, text=True, check=False)


def test_pipeline_publishes_both_and_pull_gets_only_the_pass(engine, built_images, fixture_wheels, tmp_path):
    repository = built_images.repository
    matrix = write_fixture_matrix(tmp_path / "fixture.yaml", repository, fixture_wheels, ["fixture-good", "fixture-bad"])
    reports = tmp_path / "reports"
    run = _invoke("pipeline", "--gpu", "local", "--file", str(matrix), "--reports", str(reports))
    assert run.returncode == 1, run.stdout + run.stderr  # the bad fixture lacks layernorm2d_fwd: its probe fails
    good_id, bad_id = "local-cpu-torch2.13.0-aiter0.1.20_rocmcifixture", "local-cpu-torch2.13.0-aiter0.1.20_rocmcifixturebad"
    for phase in ("skipped", "probing", "smoke", "publish"):
        assert phase in run.stdout, phase
    compat = json.loads((reports / "compat.json").read_text())
    verdicts = {e["entry"]["id"]: e["verdict"] for e in compat["entries"]}
    assert verdicts == {good_id: "pass", bad_id: "fail"}
    bad_reasons = next(e["reasons"] for e in compat["entries"] if e["entry"]["id"] == bad_id)
    assert any("aiter.symbol.missing" in reason for reason in bad_reasons), bad_reasons
    assert all(e["fixture"] for e in compat["entries"])

    client, name = client_for(repository)
    good_tag = next(e["entry"]["tag"] for e in compat["entries"] if e["entry"]["id"] == good_id)
    bad_tag = next(e["entry"]["tag"] for e in compat["entries"] if e["entry"]["id"] == bad_id)
    good_digest = client.head_manifest(name, good_tag).digest
    bad_digest = client.head_manifest(name, bad_tag).digest
    assert client.head_manifest(name, validated_tag("local")).digest == good_digest
    # The reports written after publishing name the exact digests.
    digests = {e["entry"]["id"]: e["image"]["digest"] for e in json.loads((reports / "compat.json").read_text())["entries"]}
    assert digests == {good_id: good_digest, bad_id: bad_digest}

    # The failing image is published with its report, through the tag-schema fallback this registry needs.
    assert client.tag_exists(name, fallback_tag(bad_digest))
    [bad_report] = client.referrers(name, bad_digest, REPORT_ARTIFACT_TYPE)
    assert bad_report.annotations["io.rocmci.verdict"] == "fail"

    lock = tmp_path / "lock.json"
    engine.images.remove(f"{repository}:{good_tag}", force=True)
    pulled = _invoke("pull", "--gpu", "local", "--file", str(matrix), "--lock", str(lock))
    assert pulled.returncode == 0, pulled.stderr
    assert pulled.stdout.strip() == f"{repository}@{good_digest}"
    assert engine.images.get(f"{repository}@{good_digest}")
    locked = json.loads(lock.read_text())
    assert locked["digest"] == good_digest and locked["report"]["verdict"] == "pass"


def test_fixture_stack_can_never_carry_an_amd_target(fixture_wheels, tmp_path):
    matrix = write_fixture_matrix(tmp_path / "fixture.yaml", "127.0.0.1:5000/x", fixture_wheels, ["fixture-good"])
    text = matrix.read_text().replace(
        "targets:\n",
        "targets:\n  mi355x:\n    gfx: gfx950\n    peak_bandwidth_tbs: 8.0\n"
        "    runs_on: [self-hosted]\n    device_policy: {devices: [/dev/kfd, /dev/dri]}\n",
    )
    matrix.write_text(text.replace("gpu: [local]", "gpu: [local, mi355x]"))
    run = _invoke("matrix", "--file", str(matrix))
    assert run.returncode != 0
    assert "test double" in run.stderr and "expected fixture stacks on cpu targets only" in run.stderr
    assert "mi355x" in run.stderr
    assert "Traceback" not in run.stderr
