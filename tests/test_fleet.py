"""The fleet (issue 11): images.yml's job scripts, run with the environment GitHub Actions gives them, hand the `local`
entry's image from a builder to a GPU runner and on to a release repository through the real registry alone.

Two Docker engines of this test's own stand for two machines (tests/engines.py: own data root, exec root, pidfile,
socket, `--bridge=none --iptables=false`): the BUILDER, which gets only the base image the build starts from (copied
from the shared engine in set-up), and the RUNNER, which starts empty. Promotion runs with DOCKER_HOST at a socket
nothing listens on. Only the build record (small JSON) and the results travel between the jobs, as artifacts would.
"""

from __future__ import annotations

import io
import json
import shutil
import tarfile
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from tests.engines import SecondEngine, own_engine
from tests.fleet import Repositories, StepRun, first, fleet_matrix, hand_over, run_step, unique_repositories

BASE_IMAGE = "rocmci/debian:bookworm"
MANIFEST_TYPES = (
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
)

pytestmark = [pytest.mark.docker, pytest.mark.registry, pytest.mark.slow]


# ---------------------------------------------------------------- the registry, read directly (HTTP, no rocmci code)


def _manifest_url(repository: str, reference: str) -> str:
    host, name = repository.split("/", 1)
    return f"http://{host}/v2/{name}/manifests/{reference}"


def tag_digest(repository: str, tag: str) -> str | None:
    response = requests.head(_manifest_url(repository, tag), headers={"Accept": ", ".join(MANIFEST_TYPES)}, timeout=30)
    if response.status_code == 404:
        return None
    response.raise_for_status()
    return response.headers["Docker-Content-Digest"]


def manifest(repository: str, reference: str) -> tuple[bytes, str]:
    response = requests.get(_manifest_url(repository, reference), headers={"Accept": ", ".join(MANIFEST_TYPES)}, timeout=30)
    response.raise_for_status()
    return response.content, response.headers["Content-Type"]


def put_manifest(repository: str, tag: str, body: bytes, media_type: str) -> None:
    requests.put(_manifest_url(repository, tag), data=body, headers={"Content-Type": media_type}, timeout=30).raise_for_status()


def referrers(repository: str, digest: str) -> list[dict]:
    """Distribution 2.8 has no referrers API: the artifacts of a digest are listed in the `sha256-<hex>` index."""
    fallback = digest.replace(":", "-")
    response = requests.get(_manifest_url(repository, fallback), headers={"Accept": MANIFEST_TYPES[1]}, timeout=30)
    return response.json().get("manifests", []) if response.ok else []


# ---------------------------------------------------------------- fixtures: two machines, a plan, a staged build


@dataclass(frozen=True)
class Staged:
    """The plan and build jobs' work: what later jobs are handed."""

    matrix: Path
    repositories: Repositories
    item: dict  # the plan's one validate/promote matrix item (the local entry)
    build_row: dict  # the plan's one build matrix item
    plan: StepRun
    build: StepRun
    builder_reports: Path  # the build job's reports folder: builds/<build>.json is its artifact
    record: dict


@pytest.fixture(scope="module")
def builder(engine) -> Iterator[SecondEngine]:
    with own_engine("rocmci-fb-") as own:
        own.load_from(engine, BASE_IMAGE)  # set-up: the base image the local stack starts from, not a pipeline step
        yield own


@pytest.fixture
def runner(engine) -> Iterator[SecondEngine]:
    with own_engine("rocmci-fr-") as own:
        yield own


def github_env(staged_matrix: Path, item: dict, reports: Path) -> dict[str, str]:
    return {
        "MATRIX": str(staged_matrix),
        "GPU": item["gpu"],
        "ENTRY": item["id"],
        "BUILD": item["build"],
        "REPORTS": str(reports),
        # The runner's disk check (`invoke doctor`, run by scripts/ci/validate) is sized for 20-30 GB ROCm images;
        # the local image is 1.3 GB, and this shared test machine has a small disk.
        "ROCMCI_MIN_FREE_GB": "3",
    }


@pytest.fixture(scope="module")
def staged(builder: SecondEngine, registry: str, wheelhouse: Path) -> Iterator[Staged]:
    work = Path(tempfile.mkdtemp(prefix="rocmci-fleet-"))
    repositories = unique_repositories(registry)
    matrix = fleet_matrix(work / "matrix.yaml", repositories)

    plan = run_step(
        "plan",
        work / "plan",
        "unix:///nonexistent/plan.sock",
        {"MATRIX": str(matrix), "ROCMCI_GPUS": "local", "GITHUB_REF": "refs/heads/main", "GITHUB_EVENT_NAME": "schedule"},
    )
    assert plan.code == 0, plan.log
    item, build_row = first(plan.outputs, "matrix"), first(plan.outputs, "builds")
    assert plan.outputs["promote"] == "true" and item["id"].startswith("local-"), plan.outputs
    assert build_row["staging_ref"] == f"{repositories.staging}:{item['tag']}", build_row
    assert tag_digest(repositories.staging, item["tag"]) is None, "a fresh staging repository"

    reports = work / "builder-reports"
    env = {
        **github_env(matrix, {**item, "id": build_row["id"]}, reports),
        "KIND": build_row["kind"],
        "WHEELHOUSE": str(wheelhouse),
    }
    build = run_step("build", work / "build", builder.host, env)
    assert build.code == 0, build.log
    record = json.loads((reports / "builds" / f"{build_row['build']}.json").read_text())
    yield Staged(matrix, repositories, item, build_row, plan, build, reports, record)
    shutil.rmtree(work, ignore_errors=True)


# ---------------------------------------------------------------- the tests


def test_build_pushes_to_staging_and_records_the_digest(staged: Staged) -> None:
    record, outputs = staged.record, staged.build.outputs
    assert record["schema"] == "rocmci.build/v1" and record["pushed"] is True, record
    assert record["reference"] == staged.build_row["staging_ref"] and record["entries"] == staged.build_row["entries"]
    assert outputs == {"reference": record["reference"], "digest": record["digest"], "pushed": "true"}, outputs
    assert tag_digest(staged.repositories.staging, staged.item["tag"]) == record["digest"]
    for repository in (staged.repositories.staging, staged.repositories.release):
        assert tag_digest(repository, staged.item["validated_tag"]) is None, "staging a build moves no validated tag"
        assert tag_digest(repository, "local-validated") is None
    assert tag_digest(staged.repositories.release, staged.item["tag"]) is None, "nothing in release before promotion"
    assert record["digest"] in staged.build.summary and "::error::" not in staged.build.log


def test_the_runner_validates_the_staged_digest_and_promotion_needs_no_engine(staged: Staged, runner: SecondEngine) -> None:
    item, record, work = staged.item, staged.record, staged.builder_reports.parent
    assert runner.client().images.list(all=True) == [], "the runner engine starts with no image at all"

    # validate job: its only input from the build job is the build record (the artifact), not the image.
    runner_reports = work / f"runner-reports-{uuid.uuid4().hex[:6]}"
    hand_over(staged.builder_reports, runner_reports, f"builds/{item['build']}.json")
    validate = run_step("validate", work / "validate", runner.host, github_env(staged.matrix, item, runner_reports))
    assert validate.code == 0, validate.log
    assert validate.outputs == {"status": "finished", "digest": record["digest"]}, validate.outputs
    repo_digests = [d for image in runner.client().images.list() for d in image.attrs.get("RepoDigests") or []]
    assert f"{staged.repositories.staging}@{record['digest']}" in repo_digests, repo_digests
    result = json.loads((runner_reports / item["id"] / "result.json").read_text())
    assert result["error"] is None and result["image"]["digest"] == record["digest"], result["image"]

    # report job: every entry's results (here one) into compat.json and the job summary.
    report = run_step(
        "report", work / "report", "unix:///nonexistent/report.sock", github_env(staged.matrix, item, runner_reports)
    )
    assert report.code == 0, report.log
    compat = json.loads((runner_reports / "compat.json").read_text())
    [row] = [r for r in compat["entries"] if r["entry"]["id"] == item["id"]]
    assert row["verdict"] == "pass", row
    assert item["id"] in report.summary

    # promote job: the entry's results and build record (its artifact), and no Docker engine at all.
    promote_reports = work / f"promote-reports-{uuid.uuid4().hex[:6]}"
    hand_over(runner_reports, promote_reports, item["id"], f"builds/{item['build']}.json")
    dead = f"unix://{work / 'no-engine.sock'}"
    promote = run_step("promote", work / "promote", dead, github_env(staged.matrix, item, promote_reports))
    assert promote.code == 0, promote.log
    published = json.loads((promote_reports / item["id"] / "publish.json").read_text())
    release = staged.repositories.release
    assert published["schema"] == "rocmci.publish/v1" and published["repository"] == release, published
    assert published["digest"] == record["digest"] and set(published["tags_moved"]) >= {item["validated_tag"], "local-validated"}
    assert promote.outputs["promoted"] == "true" and promote.outputs["digest"] == record["digest"], promote.outputs

    # The validated tags end on exactly the digest the builder pushed, with its report attached there.
    for tag in (item["validated_tag"], "local-validated"):
        assert tag_digest(release, tag) == record["digest"], tag
    staged_bytes, _ = manifest(staged.repositories.staging, record["digest"])
    assert manifest(release, item["validated_tag"])[0] == staged_bytes, "promotion puts the same manifest bytes"
    attached = referrers(release, record["digest"])
    assert published["report_digest"] in {a["digest"] for a in attached}, attached
    assert tag_digest(staged.repositories.staging, item["validated_tag"]) is None, "staging never gets a validated tag"


def _rebuilt(builder: SecondEngine, reference: str) -> str:
    """Someone else's push under the same staging tag: the base image with one label more (another digest)."""
    dockerfile = f"FROM {BASE_IMAGE}\nLABEL io.rocmci.test.rebuilt={uuid.uuid4().hex}\n".encode()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        info = tarfile.TarInfo("Dockerfile")
        info.size = len(dockerfile)
        tar.addfile(info, io.BytesIO(dockerfile))
    buffer.seek(0)
    repository, tag = reference.rsplit(":", 1)
    client = builder.client()
    image, _ = client.images.build(fileobj=buffer, custom_context=True, rm=True, network_mode="none")
    image.tag(repository, tag)
    for line in client.api.push(repository, tag=tag, stream=True, decode=True):
        assert "error" not in line, line
    return tag_digest(repository, tag) or ""


def test_a_digest_changed_between_build_and_validate_is_refused(
    staged: Staged, builder: SecondEngine, runner: SecondEngine
) -> None:
    item, record, work = staged.item, staged.record, staged.builder_reports.parent
    repository, tag = record["reference"].rsplit(":", 1)
    original, media_type = manifest(repository, record["digest"])
    try:
        moved = _rebuilt(builder, record["reference"])
        assert moved and moved != record["digest"], "precondition: the staging tag now names another digest"
        runner_reports = work / f"refused-reports-{uuid.uuid4().hex[:6]}"
        hand_over(staged.builder_reports, runner_reports, f"builds/{item['build']}.json")
        validate = run_step("validate", work / "refused", runner.host, github_env(staged.matrix, item, runner_reports))
        assert validate.code != 0, validate.log
        assert "Traceback" not in validate.log, validate.log
        assert record["digest"] in validate.log and moved in validate.log, validate.log
        assert "::error::scripts/ci/validate:" in validate.log
        result = runner_reports / item["id"] / "result.json"
        assert not result.exists() or json.loads(result.read_text())["error"], "a refused digest never leaves a clean result"
        assert validate.outputs.get("status") in ("not-run", "error"), validate.outputs
        pulled = [d for image in runner.client().images.list() for d in image.attrs.get("RepoDigests") or []]
        assert not any(moved in d for d in pulled), f"the runner pulled the other digest: {pulled}"
    finally:
        put_manifest(repository, tag, original, media_type)  # the tag back where the build left it, for the other tests
    assert tag_digest(repository, tag) == record["digest"]
