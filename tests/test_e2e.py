"""End to end on the real engine and registry, through the CLI a user runs: pipeline (build, validate, report,
publish), then pull by digest. The pass path uses the TEST FIXTURE images whose aiter is a test double."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid

import pytest

from rocmci.errors import ExitCode
from rocmci.oci import REPORT_ARTIFACT_TYPE, client_for, fallback_tag
from rocmci.plan import validated_tag_for as validated_tag
from tests.helpers import ROOT, write_fixture_matrix

pytestmark = [pytest.mark.docker, pytest.mark.registry, pytest.mark.slow]


def _invoke(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "invoke", *args], cwd=ROOT, capture_output=True, text=True, check=False)


def test_pipeline_publishes_both_and_pull_gets_only_the_pass(engine, built_images, fixture_wheels, tmp_path):
    repository = built_images.repository
    matrix = write_fixture_matrix(tmp_path / "fixture.yaml", repository, fixture_wheels, ["fixture-good", "fixture-bad"])
    reports = tmp_path / "reports"
    run = _invoke("pipeline", "--gpu", "local", "--file", str(matrix), "--reports", str(reports))
    assert run.returncode == ExitCode.VALIDATION_FAILED, run.stdout + run.stderr  # the bad fixture lacks layernorm2d_fwd
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


TWO_CPU_MODELS = (
    "  local2:\n    kind: cpu\n    runs_on: [ubuntu-latest]\n    device_policy: {devices: [], group_add: [], shm_size: 2g}\n"
)


def test_two_models_of_one_kind_share_one_build_and_each_get_a_report_and_tags(
    engine, registry, wheelhouse, fixture_wheels, tmp_path
):
    """Two cpu targets (one "kind", as MI350X and MI355X share gfx950) and one stack: one build, two validations,
    two reports on one digest, each model's validated tags; what the workflow does, job by job, through the CLI."""
    from rocmci.build import BuildOptions, build_entries
    from rocmci.plan import load_plan
    from tests.test_registry import cleanup_repository, remove_local_images

    repository = f"{registry}/rocmci-test-{uuid.uuid4().hex[:10]}"
    matrix = write_fixture_matrix(tmp_path / "two.yaml", repository, fixture_wheels, ["fixture-good"])
    matrix.write_text(
        matrix.read_text().replace("stacks:\n", TWO_CPU_MODELS + "stacks:\n", 1).replace("gpu: [local]", "gpu: [local, local2]")
    )
    plan = load_plan(matrix)
    local, local2 = plan.entries
    try:
        # The plan: two entries, one shared image; the build matrix has one item naming both.
        table = _invoke("matrix", "--file", str(matrix))
        assert table.returncode == 0 and "2 entries, 1 builds" in table.stdout, table.stdout + table.stderr
        assert table.stdout.count(f" {local.build_id} ") == 2  # the build column of both rows
        builds = json.loads(_invoke("matrix", "--file", str(matrix), "--json", "--builds").stdout)["include"]
        assert [(b["build"], b["entries"], b["gpus"]) for b in builds] == [
            (local.build_id, [local.id, local2.id], ["local", "local2"])
        ]

        # One build for both entries.
        options = BuildOptions.resolve(repository, wheelhouse=wheelhouse, log_dir=tmp_path / "logs")
        [built] = build_entries(plan, list(plan.entries), options)
        assert built.status == "built" and built.entries == (local.id, local2.id), built
        image = engine.images.get(local.image_ref(repository))
        assert "io.rocmci.gpu" not in image.labels and image.labels["io.rocmci.build"] == local.build_id
        again = _invoke("build", "--gpu", "local2", "--file", str(matrix))
        assert again.returncode == 0 and "nothing to build" in again.stdout, again.stdout + again.stderr

        # Two validations of that one image, one per model, then one report per model.
        reports = tmp_path / "reports"
        for gpu in ("local", "local2"):
            ran = _invoke("validate", "--gpu", gpu, "--file", str(matrix), "--reports", str(reports))
            assert ran.returncode == 0, ran.stdout + ran.stderr
        ran_on = {e.id: json.loads((reports / e.id / "result.json").read_text())["image"]["id"] for e in (local, local2)}
        assert set(ran_on.values()) == {image.id}
        judged = _invoke("report", "--file", str(matrix), "--reports", str(reports))
        assert judged.returncode == 0, judged.stdout + judged.stderr
        verdicts = {e["entry"]["id"]: e["verdict"] for e in json.loads((reports / "compat.json").read_text())["entries"]}
        assert verdicts == {local.id: "pass", local2.id: "pass"}

        # Publish per model: one digest, two reports on it, each model's tags on it.
        for gpu in ("local", "local2"):
            published = _invoke("publish", "--gpu", gpu, "--file", str(matrix), "--reports", str(reports))
            assert published.returncode == 0, published.stdout + published.stderr
            assert f"{gpu}-fixture-good-validated, {gpu}-validated" in published.stdout
        client, name = client_for(repository)
        digest = client.head_manifest(name, local.tag).digest
        attached = client.referrers(name, digest, REPORT_ARTIFACT_TYPE)
        assert sorted(r.annotations["io.rocmci.gpu"] for r in attached) == ["local", "local2"]
        assert {r.annotations["io.rocmci.stack"] for r in attached} == {"fixture-good"}
        for tag in ("local-fixture-good-validated", "local2-fixture-good-validated", "local-validated", "local2-validated"):
            assert client.head_manifest(name, tag).digest == digest, tag
        images = [t for t in client.list_tags(name) if not t.endswith("-validated") and not t.startswith("sha256-")]
        assert images == [local.tag]
        # publish records what it pushed in its own file; validate's result.json is not edited
        recorded = {e.id: json.loads((reports / e.id / "publish.json").read_text())["digest"] for e in (local, local2)}
        assert set(recorded.values()) == {digest}

        pulled = _invoke("pull", "--gpu", "local2", "--stack", "fixture-good", "--file", str(matrix))
        assert pulled.returncode == 0 and pulled.stdout.strip() == f"{repository}@{digest}", pulled.stderr
        unknown = _invoke("pull", "--gpu", "local2", "--stack", "nope", "--file", str(matrix))
        assert unknown.returncode != 0 and "--stack: unknown stack 'nope' (known: fixture-bad, fixture-good)" in unknown.stderr
        assert "Traceback" not in unknown.stderr
    finally:
        cleanup_repository(repository)
        remove_local_images(engine, repository)
