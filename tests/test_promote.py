"""rocmci.publish.promote against the real registry (127.0.0.1:5000, distribution 2.8): an image built and pushed to
a staging repository is promoted into a release repository by cross-repository blob mount and manifest put, with
no local image and no Docker engine; a mount the registry answers with an upload (202) is cancelled and fails."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import docker
import pytest
import requests
from test_registry import build_image, cleanup_repository, documents, push_image, remove_local_images, unique_repository

import rocmci.publish as publishing
from rocmci import oci
from rocmci.plan import load_plan
from rocmci.publish.promote import Promotion, blobs_of, promote, promotion_items
from rocmci.publish.record import BuildRecord, PublishRecord, now_iso, read_publish_record
from tests.conftest import ROOT

pytestmark = [pytest.mark.registry]

ENTRY = "local-local"


@dataclass(frozen=True)
class Staged:
    staging: str
    tag: str
    digest: str
    image_id: str


@pytest.fixture
def staged(registry: str, engine: docker.DockerClient) -> Iterator[Staged]:
    """A small image built and pushed to a staging repository of its own; the local copy is removed again."""
    staging = unique_repository(registry)
    tag = f"cpu-{uuid.uuid4().hex[:12]}"
    try:
        image_id = build_image(engine, f"{staging}:{tag}", f"promote {uuid.uuid4()}\n")
        digest = push_image(engine, staging, tag)
        remove_local_images(engine, staging)
        yield Staged(staging, tag, digest, image_id)
    finally:
        remove_local_images(engine, staging)
        cleanup_repository(staging)


@pytest.fixture
def release(registry: str) -> Iterator[str]:
    repository = unique_repository(registry)
    yield repository
    cleanup_repository(repository)


@pytest.fixture
def no_engine(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Any use of a Docker engine fails: DOCKER_HOST names a socket nothing listens on."""
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-engine.sock")


def promotion_of(stage: Staged, entry_dir: Path, *, validated: str | None = None, digest: str | None = None) -> Promotion:
    build = BuildRecord(
        build_id="cpu-test",
        entries=[ENTRY],
        reference=f"{stage.staging}:{stage.tag}",
        digest=digest or stage.digest,
        image_id=stage.image_id,
        pushed=True,
        finished=now_iso(),
    )
    item = publishing.PublishItem(
        ENTRY, "local", build.reference, stage.tag, entry_dir, validated or stage.image_id, None, build.digest, "local"
    )
    return Promotion(item, build)


def documents_for(**overrides: Any) -> publishing.DocumentsFor:
    def make(item: publishing.PublishItem, digest: str, _repository: str, when: str) -> tuple[dict[str, Any], dict[str, Any]]:
        return documents(digest, entry_id=item.entry_id, stack=item.stack, when=when, **overrides)

    return make


def name_of(repository: str) -> str:
    return oci.split_repository(repository)[1]


def test_promote_mounts_into_release_without_engine_or_local_image(
    staged: Staged, release: str, tmp_path: Path, no_engine: None, engine: docker.DockerClient
) -> None:
    assert not engine.images.list(name=staged.staging)  # no local copy of the image anywhere
    client = oci.client_for(release)[0]
    sent: list[tuple[str, str]] = []
    request = client.request

    def recording(method: str, path: str, **kwargs: Any) -> requests.Response:
        sent.append((method, path))
        return request(method, path, **kwargs)

    client.request = recording  # type: ignore[method-assign]
    try:
        (result,) = promote([promotion_of(staged, tmp_path / ENTRY)], release, documents_for=documents_for(), client=client)
    finally:
        del client.request
    assert result.status == "published" and result.moved, result
    assert result.moved_tags == ("local-local-validated", "local-validated")
    assert result.reference == f"{release}@{staged.digest}"

    name = name_of(release)
    staging_manifest = client.get_manifest(name_of(staged.staging), staged.digest)
    for tag in (staged.tag, "local-local-validated", "local-validated"):
        assert client.get_manifest(name, tag).body == staging_manifest.body  # the same bytes: the same digest
    assert all(client.blob_exists(name, blob.digest) for blob in blobs_of(staging_manifest))
    report = oci.newest_passing_report(client, name, staged.digest, "local", stack="local")
    assert report is not None and report.artifact.digest == result.report_digest
    # No layer bytes through this machine: the blobs came by mount, never by an upload or a blob read.
    mounts = [path for method, path in sent if method == "POST" and path.endswith("/blobs/uploads/")]
    assert len(mounts) == len(blobs_of(staging_manifest)) + 3  # + the report's empty config, record and statement
    assert not [p for m, p in sent if m == "GET" and f"/v2/{name_of(staged.staging)}/blobs/" in p]

    record = read_publish_record(tmp_path / ENTRY)
    assert record == PublishRecord(
        entry_id=ENTRY,
        repository=release,
        digest=staged.digest,
        report_digest=result.report_digest or "",
        tags_moved=["local-local-validated", "local-validated"],
        signed=False,
        finished=record.finished if record else "",
    )
    # The report sits in release only: the sha256-<hex> fallback index is per repository.
    assert oci.client_for(staged.staging)[0].referrers(name_of(staged.staging), staged.digest) == []


def test_a_mount_answered_with_an_upload_is_cancelled_and_leaves_no_tag(
    staged: Staged, release: str, tmp_path: Path, no_engine: None
) -> None:
    client = oci.client_for(release)[0]
    staging_name = name_of(staged.staging)
    config = blobs_of(client.get_manifest(staging_name, staged.digest))[0]
    # Staging loses its link to the config blob: the registry cannot mount it from there and opens an upload (202).
    deleted = client.request("DELETE", f"/v2/{staging_name}/blobs/{config.digest}", scope=f"repository:{staging_name}:delete")
    assert deleted.status_code == 202, deleted.text
    uploads: list[str] = []
    request = client.request

    def recording(method: str, path: str, **kwargs: Any) -> requests.Response:
        response = request(method, path, **kwargs)
        if method == "POST" and response.status_code == 202:
            uploads.append(response.headers["Location"])
        return response

    client.request = recording  # type: ignore[method-assign]
    lines: list[str] = []
    try:
        (result,) = promote(
            [promotion_of(staged, tmp_path / ENTRY)], release, documents_for=documents_for(), client=client, log=lines.append
        )
    finally:
        del client.request
    assert result.status == "error" and not result.moved and not result.moved_tags
    assert f"mount of {config.digest} from {staging_name}" in result.reason and "upload cancelled" in result.reason
    assert uploads, "the registry answered the mount with an upload"
    for location in uploads:  # cancelled: the registry no longer knows the upload
        status = client.request("GET", location, scope=f"repository:{name_of(release)}:pull")
        assert status.status_code == 404, status.text
    assert client.list_tags(name_of(release)) == []  # no content tag, no validated tag, no report
    assert read_publish_record(tmp_path / ENTRY) is None


def test_single_repository_promotion_attaches_and_moves_tags(staged: Staged, tmp_path: Path, no_engine: None) -> None:
    client, name = oci.client_for(staged.staging)
    (result,) = promote([promotion_of(staged, tmp_path / ENTRY)], staged.staging, documents_for=documents_for())
    assert result.status == "published" and result.moved_tags == ("local-local-validated", "local-validated")
    assert client.head_manifest(name, "local-validated").digest == staged.digest  # type: ignore[union-attr]
    assert oci.newest_passing_report(client, name, staged.digest, "local") is not None


def test_failed_checks_promote_nothing(staged: Staged, release: str, tmp_path: Path, no_engine: None) -> None:
    client = oci.client_for(release)[0]
    other = "sha256:" + "0" * 64
    cases = {
        "the staging tag moved since the build": (promotion_of(staged, tmp_path / "a", digest=other), documents_for()),
        "validation ran on another image": (promotion_of(staged, tmp_path / "b", validated=other), documents_for()),
        "the evidence names another image": (promotion_of(staged, tmp_path / "c"), documents_for(names=other)),
    }
    expected = {
        "the staging tag moved since the build": f"now names {staged.digest}, the build recorded {other}",
        "validation ran on another image": "validation ran on sha256:00000000000",
        "the evidence names another image": "inconsistent, nothing promoted",
    }
    for case, (promotion, make) in cases.items():
        (result,) = promote([promotion], release, documents_for=make, client=client, log=lambda _line: None)
        assert result.status == "error" and expected[case] in result.reason, (case, result.reason)
    (failing,) = promote(
        [promotion_of(staged, tmp_path / "d")], release, documents_for=documents_for(verdict="fail"), client=client
    )
    assert failing.status == "published" and not failing.moved and "verdict fail" in failing.reason
    tags = oci.client_for(release)[0].list_tags(name_of(release))
    assert not [t for t in tags if t.endswith("-validated")], tags  # a failed promotion leaves no tag claiming a pass


def test_promotion_items_read_the_build_record(tmp_path: Path) -> None:
    plan = load_plan()
    (local,) = plan.select(gpu="local")
    reports = tmp_path / "reports"
    (reports / local.id).mkdir(parents=True)
    image_id, digest = "sha256:" + "1" * 64, "sha256:" + "2" * 64
    result = {"entry": {"tag": local.tag}, "image": {"ref": f"x@{digest}", "id": image_id}}
    (reports / local.id / "result.json").write_text(json.dumps(result))
    (missing,) = promotion_items([local], reports)
    assert missing.build is None and f"builds/{local.build_id}.json: no build record" in (missing.item.problem or "")
    build = BuildRecord(
        build_id=local.build_id,
        entries=[local.id],
        reference=f"127.0.0.1:5000/staging:{local.tag}",
        digest=digest,
        image_id=image_id,
        pushed=True,
        finished=now_iso(),
    )
    (reports / "builds").mkdir()
    (reports / "builds" / f"{local.build_id}.json").write_text(build.model_dump_json(by_alias=True))
    (found,) = promotion_items([local], reports)
    assert found.build == build and found.item.problem is None and found.item.validated_image_id == image_id
    (reports / "builds" / f"{local.build_id}.json").write_text(json.dumps({"schema": "rocmci.build/v1", "digest": "x"}))
    (broken,) = promotion_items([local], reports)
    assert "not a rocmci.build/v1 record" in (broken.item.problem or "")
    assert replace(found.item, problem=None) == found.item


def test_invoke_promote_without_a_build_record_names_the_file_and_fails(registry: str, tmp_path: Path) -> None:
    env = {**os.environ, "DOCKER_HOST": f"unix://{tmp_path}/no-engine.sock"}
    done = subprocess.run(
        [sys.executable, "-m", "invoke", "promote", "--gpu", "local", "--reports", str(tmp_path / "reports"),
         "--registry", unique_repository(registry)],
        cwd=ROOT, env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert "no build record (run invoke build --push first)" in done.stdout + done.stderr
