"""rocmci.oci, rocmci.publish and rocmci.pull against a real registry (127.0.0.1:5000, distribution 2.8: no referrers API, so the tag-schema
fallback) and the real Docker engine; auth against a second, htpasswd-protected registry and an in-process
Bearer-token registry."""

from __future__ import annotations

import base64
import io
import json
import os
import shutil
import socket
import subprocess
import tarfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import docker
import pytest
import requests

import rocmci.publish as publishing
import rocmci.pull as pulling
from rocmci import oci
from rocmci.errors import RegistryError
from rocmci.plan import validated_tag_for
from rocmci.pull.lock import pull_and_lock, write_lock

# ---------------------------------------------------------------- helpers

LOCAL_REGISTRY = "127.0.0.1:5000"
# bcrypt of AUTH_PASSWORD for the htpasswd-protected registry the credential tests start.
AUTH_USER = "rocmci-ci"
AUTH_PASSWORD = "rocmci-test-Zq8vV3pT"
AUTH_HTPASSWD = f"{AUTH_USER}:$2b$05$dl1jCSKyiQ0zDh9CtbFeoOaZGo59i57Lcc/4aDRiiPEfTcfg38K0y\n"


def registry_problem(host: str = LOCAL_REGISTRY) -> str | None:
    try:
        response = requests.get(f"http://{host}/v2/", timeout=3)
    except requests.RequestException as exc:
        return f"{type(exc).__name__}"
    return None if response.status_code in (200, 401) else f"HTTP {response.status_code}"


def unique_repository(host: str = LOCAL_REGISTRY) -> str:
    return f"{host}/rocmci-test-{uuid.uuid4().hex[:10]}"


def build_image(engine: docker.DockerClient, ref: str, payload: str) -> str:
    """A FROM-scratch image holding one small file; returns its image id."""
    dockerfile = b"FROM scratch\nCOPY payload.txt /payload.txt\n"
    context = io.BytesIO()
    with tarfile.open(fileobj=context, mode="w") as tar:
        for name, data in (("Dockerfile", dockerfile), ("payload.txt", payload.encode())):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    context.seek(0)
    image, _ = engine.images.build(
        fileobj=context, custom_context=True, tag=ref, network_mode="none", rm=True, labels={"io.rocmci.managed": "true"}
    )
    return image.id


def push_image(engine: docker.DockerClient, repository: str, tag: str) -> str:
    digest = None
    for line in engine.api.push(repository, tag=tag, stream=True, decode=True):
        assert "error" not in line, line
        digest = (line.get("aux") or {}).get("Digest") or digest
    assert digest
    return digest


def documents(
    digest: str,
    *,
    gpu: str = "local",
    verdict: str = "pass",
    when: str = "2026-01-01T00:00:00Z",
    torch: str = "2.13.0",
    aiter: str = "0.1.20",
    entry_id: str | None = None,
    names: str | None = None,
    stack: str | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Hand-written documents of report.entry_documents' contract; `names` makes them claim another image."""
    named = names or digest
    entry_id = entry_id or f"{gpu}-cpu-torch{torch}-aiter{aiter}"
    record = {
        "schema": "rocmci.compat.entry/v1",
        "verdict": verdict,
        "scope": "cpu-only",
        "reasons": [] if verdict == "pass" else [f"smoke: k_norm bf16 case {verdict}"],
        "report_time": when,
        "entry": {"id": entry_id, "gpu": gpu, "gfx": None, "torch": torch, "aiter": aiter, "rocm": None, "python": "3.11"}
        | ({"stack": stack} if stack else {}),
        "image": {"digest": named},
    }
    statement = {
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{"name": entry_id, "digest": {"sha256": named.split(":", 1)[1]}}],
        "predicateType": "https://in-toto.io/attestation/test-result/v0.1",
        "predicate": {
            "result": "PASSED" if verdict == "pass" else "FAILED",
            "configuration": [],
            "passedTests": ["probe", "smoke"] if verdict == "pass" else [],
            "failedTests": [] if verdict == "pass" else ["smoke"],
        },
    }
    return record, statement


def cleanup_repository(repository: str) -> None:
    """Delete every manifest the test left (images, reports, fallback indexes); blobs wait for the registry's GC."""
    client = oci.RegistryClient(oci.split_repository(repository)[0])
    name = oci.split_repository(repository)[1]
    try:
        digests = {head.digest for tag in client.list_tags(name) if (head := client.head_manifest(name, tag))}
        for digest in list(digests):
            for tag in (oci.fallback_tag(digest),):
                if client.tag_exists(name, tag):
                    digests |= {d.digest for d in client.fallback_index(name, digest)}
        for digest in digests:
            client.delete_manifest(name, digest)
    except oci.RegistryError:
        pass


def remove_local_images(engine: docker.DockerClient, repository: str) -> None:
    for image in engine.images.list(name=repository):
        for ref in list(image.tags):
            if ref.startswith(repository + ":"):
                engine.images.remove(ref, force=True)
    for image in engine.images.list(filters={"reference": f"{repository}@*"}):
        engine.images.remove(image.id, force=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def htpasswd_registry(workdir: Path) -> Iterator[str]:
    """A second real docker-registry with htpasswd (Basic) auth on a free loopback port."""
    port = free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "htpasswd").write_text(AUTH_HTPASSWD)
    config = {
        "version": 0.1,
        "log": {"level": "error"},
        "storage": {"filesystem": {"rootdirectory": str(workdir / "data")}, "delete": {"enabled": True}},
        "http": {"addr": f"127.0.0.1:{port}", "secret": uuid.uuid4().hex},
        "auth": {"htpasswd": {"realm": "rocmci-test", "path": str(workdir / "htpasswd")}},
    }
    (workdir / "config.yml").write_text(json.dumps(config))
    log = (workdir / "registry.log").open("w")
    proc = subprocess.Popen(["docker-registry", "serve", str(workdir / "config.yml")], stdout=log, stderr=log)
    try:
        for _ in range(100):
            if registry_problem(f"127.0.0.1:{port}") is None:
                break
            time.sleep(0.1)
        else:
            raise RuntimeError(f"htpasswd registry did not start: {(workdir / 'registry.log').read_text()}")
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        log.close()


@dataclass
class FakeRegistry:
    """An in-process registry speaking the Bearer token dance (and echoing Authorization headers back in errors,
    as a careless server might), with tag pagination and a referrers API."""

    user: str
    password: str
    tags: list[str] = field(default_factory=list)
    referrers: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    token_requests: list[dict[str, str]] = field(default_factory=list)
    token: str = field(default_factory=lambda: f"tok-{uuid.uuid4().hex}")
    port: int = 0

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_args: Any) -> None:
                pass

            def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
                self.send_response(status)
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def _token(self) -> None:
                expected = "Basic " + base64.b64encode(f"{fake.user}:{fake.password}".encode()).decode()
                got = self.headers.get("Authorization", "")
                fake.token_requests.append({"path": self.path, "authorized": str(got == expected)})
                if got != expected:
                    echo = {"errors": [{"code": "UNAUTHORIZED", "message": f"bad credentials {got}", "detail": got}]}
                    self._send(401, json.dumps(echo).encode(), {"Content-Type": "application/json"})
                    return
                self._send(200, json.dumps({"token": fake.token}).encode(), {"Content-Type": "application/json"})

            def _handle(self) -> None:
                if self.path.startswith("/token"):
                    self._token()
                    return
                if self.headers.get("Authorization") != f"Bearer {fake.token}":
                    realm = f'Bearer realm="http://{fake.host}/token",service="fake",scope="repository:demo:pull"'
                    self._send(
                        401,
                        b'{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}',
                        {"WWW-Authenticate": realm},
                    )
                    return
                self._route()

            def _route(self) -> None:
                path, _, query = self.path.partition("?")
                if path == "/v2/demo/tags/list":
                    self._tags(query)
                elif path.startswith("/v2/demo/referrers/"):
                    digest = path.rsplit("/", 1)[1]
                    index = {"schemaVersion": 2, "mediaType": oci.OCI_INDEX, "manifests": fake.referrers.get(digest, [])}
                    self._send(200, json.dumps(index).encode(), {"Content-Type": oci.OCI_INDEX})
                elif path.startswith("/v2/demo/manifests/"):
                    exists = path.rsplit("/", 1)[1] in fake.tags
                    headers = {"Docker-Content-Digest": "sha256:" + "0" * 64, "Content-Type": oci.OCI_MANIFEST}
                    self._send(200 if exists else 404, b"{}" if exists else b"", headers)
                else:
                    self._send(404)

            def _tags(self, query: str) -> None:
                params = dict(p.split("=", 1) for p in query.split("&") if "=" in p)
                start = fake.tags.index(params["last"]) + 1 if "last" in params else 0
                page = fake.tags[start : start + 2]
                headers = {"Content-Type": "application/json"}
                if start + 2 < len(fake.tags):
                    headers["Link"] = f'</v2/demo/tags/list?n=2&last={page[-1]}>; rel="next"'
                self._send(200, json.dumps({"name": "demo", "tags": page}).encode(), headers)

            do_GET = do_HEAD = _handle

        return Handler

    @contextmanager
    def serve(self) -> Iterator[FakeRegistry]:
        server = ThreadingHTTPServer(("127.0.0.1", 0), self.handler())
        self.port = server.server_address[1]
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            server.shutdown()
            server.server_close()


def collect() -> tuple[list[str], Callable[[str], None]]:
    lines: list[str] = []
    return lines, lines.append


def run_concurrently(target: Callable[[int], None], count: int, timeout: float = 300) -> None:
    """Start `count` threads of target(i) together; re-raise the first exception any of them raised."""
    errors: list[BaseException] = []

    def guarded(i: int) -> None:
        try:
            target(i)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=guarded, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=timeout)
    if errors:
        raise errors[0]


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def local_registry(request: pytest.FixtureRequest) -> str:
    """conftest's `registry` (a missing one fails in CI); the name `registry` stays free for that fixture."""
    return request.getfixturevalue("registry")


@contextmanager
def scratch_repository(engine: docker.DockerClient, host: str) -> Iterator[str]:
    """A repository of its own on `host`; its manifests and local images are removed afterwards."""
    repository = unique_repository(host)
    try:
        yield repository
    finally:
        cleanup_repository(repository)
        remove_local_images(engine, repository)


@pytest.fixture
def repo(local_registry: str, engine: docker.DockerClient) -> Iterator[str]:
    with scratch_repository(engine, local_registry) as repository:
        yield repository


@pytest.fixture
def client(local_registry: str) -> oci.RegistryClient:
    return oci.RegistryClient(local_registry)


@dataclass
class Published:
    """An image built, pushed and with a report attached (no validated-tag move)."""

    tag: str
    digest: str
    artifact: oci.Descriptor


def name_of(repository: str) -> str:
    return oci.split_repository(repository)[1]


def item_for(
    engine: docker.DockerClient, repository: str, tag: str, tmp_path: Path, gpu: str = "local", stack: str | None = None
) -> publishing.PublishItem:
    ref = f"{repository}:{tag}"
    build_image(engine, ref, f"{tag} {uuid.uuid4().hex}\n")
    return publishing.PublishItem(entry_id=tag, gpu=gpu, local_ref=ref, tag=tag, entry_dir=tmp_path / tag, stack=stack)


def documents_by_tag(spec: dict[str, dict[str, Any]]) -> publishing.DocumentsFor:
    """Documents per tag; `when` (the report time) is the publisher's unless the spec names one."""

    def documents_for(
        item: publishing.PublishItem, digest: str, _repository: str, report_time: str
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        return documents(
            digest, gpu=item.gpu, entry_id=item.entry_id, stack=item.stack, **({"when": report_time} | spec[item.tag])
        )

    return documents_for


def push_with_report(engine: docker.DockerClient, client: oci.RegistryClient, repository: str, tag: str, **doc: Any) -> Published:
    build_image(engine, f"{repository}:{tag}", f"{tag} {uuid.uuid4().hex}\n")
    digest = push_image(engine, repository, tag)
    subject = client.head_manifest(name_of(repository), digest)
    assert subject is not None
    validate = "names" not in doc
    artifact = oci.attach_report(repository, subject, documents(digest, entry_id=tag, **doc), client=client, validate=validate)
    return Published(tag, digest, artifact)


# ---------------------------------------------------------------- pure functions


def test_split_repository_and_tags() -> None:
    assert oci.split_repository("127.0.0.1:5000/rocmci") == ("127.0.0.1:5000", "rocmci")
    assert oci.split_repository("localhost/a/b") == ("localhost", "a/b")
    assert oci.split_repository("ghcr.io/org/rocmci") == ("ghcr.io", "org/rocmci")
    assert oci.split_repository("rocm/pytorch") == ("registry-1.docker.io", "rocm/pytorch")
    assert oci.split_repository("busybox") == ("registry-1.docker.io", "library/busybox")
    with pytest.raises(RegistryError, match="invalid repository name"):
        oci.split_repository("127.0.0.1:5000/Bad")
    digest = "sha256:" + "ab" * 32
    assert oci.fallback_tag(digest) == "sha256-" + "ab" * 32
    assert validated_tag_for("mi355x") == "mi355x-validated"
    assert oci.RegistryClient("127.0.0.1:5000").base == "http://127.0.0.1:5000"
    assert oci.RegistryClient("[::1]:5000").base == "http://[::1]:5000"
    assert oci.RegistryClient("ghcr.io").base == "https://ghcr.io"
    assert oci.RegistryClient("reg.internal:5000", insecure=True).base == "http://reg.internal:5000"


def test_empty_descriptor_matches_its_bytes() -> None:
    assert oci.digest_of(oci.EMPTY_JSON) == oci.EMPTY_DIGEST
    assert base64.b64decode(oci.EMPTY_DESCRIPTOR.data or "") == oci.EMPTY_JSON


def test_inconsistent_documents_are_refused_before_anything_is_pushed() -> None:
    digest, other = "sha256:" + "1" * 64, "sha256:" + "2" * 64
    docs = oci.ReportDocuments(*documents(digest, names=other))
    problems = docs.problems(digest)
    assert any("in-toto subject names " + other in p for p in problems)
    assert any("record names image " + other in p for p in problems)
    assert oci.ReportDocuments(*documents(digest)).problems(digest) == []
    bad_verdict = oci.ReportDocuments(*documents(digest, verdict="maybe"))
    assert "verdict 'maybe'" in bad_verdict.problems(digest)[0]


def test_push_stream_error_is_raised() -> None:
    lines = [{"status": "Preparing", "id": "abc"}, {"errorDetail": {"message": "denied: no"}, "error": "denied: no"}]
    with pytest.raises(RegistryError, match="push of x failed: denied: no"):
        publishing.push.follow_stream(lines, "push of x", lambda _line: None, "p:", oci.RegistryClient("127.0.0.1:5000"))


# ---------------------------------------------------------------- publish on the real registry


@pytest.mark.registry
@pytest.mark.docker
def test_publish_attaches_reports_and_moves_validated_tag_only_for_pass(
    engine: docker.DockerClient, repo: str, client: oci.RegistryClient, tmp_path: Path
) -> None:
    name = name_of(repo)
    failing = item_for(engine, repo, "local-fail-1", tmp_path)
    passing = item_for(engine, repo, "local-pass-1", tmp_path)
    spec = {
        "local-fail-1": {"verdict": "fail", "when": "2026-03-01T00:00:00Z"},
        "local-pass-1": {"verdict": "pass", "when": "2026-02-01T00:00:00Z"},
    }
    lines, log = collect()
    # The failing entry goes first: with no validated tag at all it still must not create one.
    (fail_result,) = publishing.publish(
        [failing], repo, documents_for=documents_by_tag(spec), engine=engine, client=client, log=log
    )
    assert fail_result.status == "published" and not fail_result.moved and fail_result.verdict == "fail"
    assert "verdict fail" in fail_result.reason and "not moved" in fail_result.reason
    assert not client.tag_exists(name, "local-validated")
    (pass_result,) = publishing.publish(
        [passing], repo, documents_for=documents_by_tag(spec), engine=engine, client=client, log=log
    )
    assert pass_result.status == "published" and pass_result.moved, pass_result

    for expected in (
        "publishing local-pass-1: pushing",
        "publishing local-pass-1: attaching report (pass)",
        "publishing local-pass-1: moving local-validated",
    ):
        assert any(line.startswith(expected) for line in lines), (expected, lines)

    # The validated tag resolves to the identical digest: the same manifest bytes, not a new index.
    pass_digest = pass_result.reference.split("@")[1]
    validated, content_tag = client.head_manifest(name, "local-validated"), client.head_manifest(name, "local-pass-1")
    assert validated and content_tag and validated.digest == content_tag.digest == pass_digest
    assert validated.media_type == oci.DOCKER_MANIFEST
    assert client.get_manifest(name, "local-validated").body == client.get_manifest(name, pass_digest).body

    # distribution 2.8 has no referrers API: the fallback index tag holds both reports, one per subject.
    fail_digest = fail_result.reference.split("@")[1]
    assert requests.get(f"http://{client.host}/v2/{name}/referrers/{pass_digest}", timeout=10).status_code == 404
    for result, digest in ((pass_result, pass_digest), (fail_result, fail_digest)):
        tag = "sha256-" + digest.split(":")[1]
        assert tag in client.list_tags(name)
        index = client.get_manifest(name, tag)
        assert index.media_type == oci.OCI_INDEX
        (listed,) = index.json["manifests"]
        assert listed["digest"] == result.report_digest
        assert listed["artifactType"] == oci.REPORT_ARTIFACT_TYPE
        assert listed["annotations"]["io.rocmci.verdict"] == result.verdict
        (found,) = client.referrers(name, digest, oci.REPORT_ARTIFACT_TYPE)
        assert found.digest == result.report_digest
        assert client.referrers(name, digest, "application/vnd.other") == []

    # The artifact itself: OCI 1.1 manifest, empty config, record + in-toto layers, subject = the image.
    artifact = client.get_manifest(name, pass_result.report_digest or "").json
    assert artifact["mediaType"] == oci.OCI_MANIFEST
    assert artifact["artifactType"] == oci.REPORT_ARTIFACT_TYPE
    assert artifact["config"] == {
        "mediaType": oci.EMPTY_MEDIA_TYPE,
        "digest": oci.EMPTY_DIGEST,
        "size": 2,
        "data": "e30=",
    }
    assert [layer["mediaType"] for layer in artifact["layers"]] == [oci.REPORT_ARTIFACT_TYPE, oci.INTOTO_MEDIA_TYPE]
    assert artifact["subject"] == {"mediaType": oci.DOCKER_MANIFEST, "digest": pass_digest, "size": validated.size}
    assert artifact["annotations"] == {
        "org.opencontainers.image.created": "2026-02-01T00:00:00Z",
        "io.rocmci.verdict": "pass",
        "io.rocmci.entry": "local-pass-1",
        "io.rocmci.gpu": "local",
    }
    report = oci.read_report(client, name, pass_digest, oci.Descriptor.from_json(listed | {"digest": pass_result.report_digest}))
    assert dict(report.documents.record) == documents(pass_digest, entry_id="local-pass-1", when="2026-02-01T00:00:00Z")[0]


@pytest.mark.registry
@pytest.mark.docker
def test_validated_tag_never_moves_backwards(
    engine: docker.DockerClient, repo: str, client: oci.RegistryClient, tmp_path: Path
) -> None:
    newer, older = item_for(engine, repo, "local-b", tmp_path), item_for(engine, repo, "local-a", tmp_path)
    spec = {"local-b": {"when": "2026-05-01T00:00:00Z"}, "local-a": {"when": "2026-04-01T00:00:00Z"}}
    first, second = publishing.publish(
        [newer, older], repo, documents_for=documents_by_tag(spec), engine=engine, client=client, log=print
    )
    assert first.moved and not second.moved
    assert "newer than ours" in second.reason
    assert client.head_manifest(name_of(repo), "local-validated").digest == first.reference.split("@")[1]


@pytest.mark.registry
@pytest.mark.docker
def test_missing_local_image_and_unreachable_registry_fail_only_that_entry(
    engine: docker.DockerClient, repo: str, client: oci.RegistryClient, tmp_path: Path
) -> None:
    ghost = publishing.PublishItem("local-ghost", "local", f"{repo}:nope", "nope", tmp_path / "local-ghost")
    real = item_for(engine, repo, "local-ok", tmp_path)
    results = publishing.publish(
        [ghost, real], repo, documents_for=documents_by_tag({"local-ok": {}}), engine=engine, client=client, log=print
    )
    assert [r.status for r in results] == ["skipped", "published"]
    assert "not in the local engine" in results[0].reason
    (tmp_path / "local-ghost").mkdir()
    (tmp_path / "local-ghost" / "result.json").write_text("{}")
    assert publishing.publish([ghost], repo, engine=engine, client=client, log=print)[0].status == "error"

    # Nothing listens on port 9: every entry fails with the reason, before anything is pushed.
    dead = f"127.0.0.1:9/{name_of(repo)}"
    item = publishing.PublishItem("local-ok", "local", real.local_ref, "local-ok", tmp_path / "local-ok")
    _lines, log = collect()
    (result,) = publishing.publish([item], dead, documents_for=documents_by_tag({"local-ok": {}}), engine=engine, log=log)
    assert result.status == "error" and "registry 127.0.0.1:9: GET http://127.0.0.1:9/v2/ failed" in result.reason, result
    assert "Connection refused" in result.reason
    assert not engine.images.list(name=f"{dead}")


@pytest.mark.registry
@pytest.mark.docker
def test_publish_reads_validated_image_id_and_refuses_a_rebuilt_image(
    engine: docker.DockerClient, repo: str, client: oci.RegistryClient, tmp_path: Path
) -> None:
    item = item_for(engine, repo, "local-rebuilt", tmp_path)
    stale = publishing.PublishItem(**{**item.__dict__, "validated_image_id": "sha256:" + "9" * 64})
    (result,) = publishing.publish(
        [stale], repo, documents_for=documents_by_tag({"local-rebuilt": {}}), engine=engine, client=client
    )
    assert result.status == "error" and "validate it again" in result.reason
    assert not client.tag_exists(name_of(repo), "local-rebuilt")


# ---------------------------------------------------------------- pull


@pytest.mark.registry
@pytest.mark.docker
def test_pull_picks_newest_passing_report_not_last_tag(
    engine: docker.DockerClient, repo: str, client: oci.RegistryClient, tmp_path: Path
) -> None:
    # Lexical tag order (local-10 < local-2 < local-3) is the opposite of report time for the passing ones.
    newest = push_with_report(engine, client, repo, "local-10", when="2026-06-03T10:00:00Z", torch="2.13.0")
    older = push_with_report(engine, client, repo, "local-2", when="2026-06-01T10:00:00Z", torch="2.12.1")
    push_with_report(engine, client, repo, "local-3", when="2026-06-09T10:00:00Z", verdict="fail")
    push_with_report(engine, client, repo, "mi355x-1", gpu="mi355x", when="2026-06-10T10:00:00Z")
    build_image(engine, f"{repo}:local-9", "no report\n")
    push_image(engine, repo, "local-9")
    remove_local_images(engine, repo)

    lock = tmp_path / "deploy" / "rocmci.lock.json"
    lines, log = collect()
    result, locked = pull_and_lock(repo, "local", lock_file=lock, engine=engine, client=client, log=log)
    assert result.digest == newest.digest and result.reference == f"{repo}@{newest.digest}"
    assert result.tags == ("local-10",)
    assert engine.images.get(result.reference).id == result.image_id
    assert any(line.startswith(f"pull: {result.reference}") for line in lines)
    assert json.loads(lock.read_text()) == {
        "schema": "rocmci.lock/v2",
        "repository": repo,
        "gpu": "local",
        "reference": f"{repo}@{newest.digest}",
        "digest": newest.digest,
        "tags": ["local-10"],
        "pins": {
            "id": "local-10",
            "gpu": "local",
            "gfx": None,
            "rocm": None,
            "python": "3.11",
            "torch": "2.13.0",
            "aiter": "0.1.20",
        },
        "report": {
            "digest": newest.artifact.digest,
            "artifactType": oci.REPORT_ARTIFACT_TYPE,
            "report_time": "2026-06-03T10:00:00Z",
            "verdict": "pass",
            "scope": "cpu-only",
        },
    }

    # --torch as a prefix of the pinned version picks the older image that carries it.
    pinned, _ = pulling.find_validated(repo, "local", torch="2.12", client=client)
    assert pinned.digest == older.digest
    with pytest.raises(RegistryError) as caught:
        pulling.find_validated(repo, "local", torch="2.11", aiter="0.1", client=client)
    message = str(caught.value)
    assert message.startswith(f"no image of {repo} passed on local, torch 2.11, aiter 0.1 (4 candidates: ")
    assert "local-3@" in message and "verdict fail" in message and "local-9@" in message and "no report attached" in message
    with pytest.raises(RegistryError, match=r"passed on mi300x \(0 candidates: no tags starting with mi300x-\)"):
        pulling.find_validated(repo, "mi300x", client=client)

    yaml_lock = tmp_path / "lock.yaml"
    write_lock(locked, yaml_lock)
    assert "reference: " + result.reference in yaml_lock.read_text()


@pytest.mark.registry
@pytest.mark.docker
def test_each_stack_keeps_its_own_validated_tag_and_pull_selects_by_stack(
    engine: docker.DockerClient, repo: str, client: oci.RegistryClient, tmp_path: Path
) -> None:
    name = name_of(repo)
    old_a = item_for(engine, repo, "a-1", tmp_path, stack="torch2.12")
    new_b = item_for(engine, repo, "b-1", tmp_path, stack="torch2.13")
    new_a = item_for(engine, repo, "a-2", tmp_path, stack="torch2.12")
    spec = {
        "a-1": {"when": "2026-09-01T00:00:00Z", "torch": "2.12.0"},
        "b-1": {"when": "2026-09-02T00:00:00Z", "torch": "2.13.0"},
        "a-2": {"when": "2026-09-03T00:00:00Z", "torch": "2.12.0"},
    }
    published = {}
    for item in (old_a, new_b):
        (published[item.tag],) = publishing.publish(
            [item], repo, documents_for=documents_by_tag(spec), engine=engine, client=client
        )
    digest = {tag: (result.reference or "").split("@")[1] for tag, result in published.items()}
    assert published["a-1"].moved_tags == ("local-torch2.12-validated", "local-validated")
    assert published["b-1"].moved_tags == ("local-torch2.13-validated", "local-validated")
    assert published["b-1"].validated_tag == "local-torch2.13-validated"
    on = {tag: client.head_manifest(name, tag).digest for tag in client.list_tags(name) if tag.endswith("-validated")}
    # The newer torch 2.13 pass moved the GPU tag, never the torch 2.12 stack's tag.
    assert on == {
        "local-torch2.12-validated": digest["a-1"],
        "local-torch2.13-validated": digest["b-1"],
        "local-validated": digest["b-1"],
    }
    [report] = client.referrers(name, digest["b-1"], oci.REPORT_ARTIFACT_TYPE)
    assert report.annotations["io.rocmci.stack"] == "torch2.13"

    (published["a-2"],) = publishing.publish([new_a], repo, documents_for=documents_by_tag(spec), engine=engine, client=client)
    digest["a-2"] = (published["a-2"].reference or "").split("@")[1]
    on = {tag: client.head_manifest(name, tag).digest for tag in client.list_tags(name) if tag.endswith("-validated")}
    assert on == {
        "local-torch2.12-validated": digest["a-2"],
        "local-torch2.13-validated": digest["b-1"],
        "local-validated": digest["a-2"],
    }

    # An older report of a stack never takes that stack's tag back.
    older = oci.read_report(client, name, digest["a-1"], client.referrers(name, digest["a-1"], oci.REPORT_ARTIFACT_TYPE)[0])
    stays = publishing.move_validated_tag(client, name, "local", digest["a-1"], older, stack="torch2.12")
    assert not stays.moved and "newer than ours" in stays.reason
    wrong = publishing.move_validated_tag(client, name, "local", digest["a-1"], older, stack="torch2.13")
    assert not wrong.moved and "not a pass on local x torch2.13" in wrong.reason

    remove_local_images(engine, repo)
    lines, log = collect()
    # Content tags start with the build (gfx950-..., cpu-...): build_prefixes lists them with the GPU's own tags.
    pulled = pulling.pull(repo, "local", stack="torch2.13", build_prefixes=("b",), engine=engine, client=client, log=log)
    assert pulled.digest == digest["b-1"] and pulled.entry["stack"] == "torch2.13"
    assert set(pulled.tags) == {"local-torch2.13-validated", "b-1"}
    assert not any("--stack keeps to one stack" in line for line in lines)
    newest = pulling.pull(repo, "local", engine=engine, client=client, log=log)
    assert newest.digest == digest["a-2"]
    assert any("stack torch2.12: the newest pass of any stack on local; --stack keeps to one stack" in line for line in lines)
    pinned, _ = pulling.find_validated(repo, "local", stack="torch2.12", torch="2.12", client=client)
    assert pinned.digest == digest["a-2"]
    with pytest.raises(
        RegistryError,
        match=r"passed on local, stack torch2.14 \(2 candidates: .*report is for stack torch2.12; .*report is for stack torch2.13\)",
    ):
        pulling.find_validated(repo, "local", stack="torch2.14", client=client)


@pytest.mark.registry
@pytest.mark.docker
def test_tampered_report_is_rejected(engine: docker.DockerClient, repo: str, client: oci.RegistryClient) -> None:
    honest = push_with_report(engine, client, repo, "local-honest", when="2026-07-01T00:00:00Z")
    # A newer "pass" attached to another image, whose documents name the honest image's digest.
    build_image(engine, f"{repo}:local-forged", "forged\n")
    forged_digest = push_image(engine, repo, "local-forged")
    subject = client.head_manifest(name_of(repo), forged_digest)
    assert subject is not None
    forged_docs = documents(forged_digest, names=honest.digest, when="2026-08-01T00:00:00Z")
    with pytest.raises(RegistryError, match=r"inconsistent: .*in-toto subject names"):
        oci.attach_report(repo, subject, forged_docs, client=client)
    oci.attach_report(repo, subject, forged_docs, client=client, validate=False)

    chosen, notes = pulling.find_validated(repo, "local", client=client)
    assert chosen.digest == honest.digest
    assert any(f"attached to {forged_digest} rejected" in n and f"in-toto subject names {honest.digest}" in n for n in notes)

    client.delete_manifest(name_of(repo), honest.digest)
    with pytest.raises(RegistryError, match=f"rejected: .*in-toto subject names {honest.digest}, not {forged_digest}"):
        pulling.find_validated(repo, "local", client=client)


# ---------------------------------------------------------------- races


@pytest.mark.registry
@pytest.mark.docker
def test_racing_publishers_leave_validated_tag_on_newest_pass(
    engine: docker.DockerClient, repo: str, local_registry: str, tmp_path: Path
) -> None:
    spec = {
        "local-old": {"when": "2026-09-01T00:00:00Z"},
        "local-new": {"when": "2026-09-02T00:00:00Z"},
        "local-bad": {"when": "2026-09-03T00:00:00Z", "verdict": "fail"},
    }
    items = [item_for(engine, repo, tag, tmp_path) for tag in spec]
    results: dict[str, publishing.PublishResult] = {}
    barrier = threading.Barrier(len(items))

    def publisher(item: publishing.PublishItem) -> None:
        own_engine, own_client = docker.from_env(timeout=120), oci.RegistryClient(local_registry)
        barrier.wait()
        (results[item.tag],) = publishing.publish(
            [item], repo, documents_for=documents_by_tag(spec), engine=own_engine, client=own_client, log=print
        )

    run_concurrently(lambda i: publisher(items[i]), len(items))
    assert all(r.status == "published" for r in results.values()), results
    client = oci.RegistryClient(local_registry)
    final = client.head_manifest(name_of(repo), "local-validated")
    assert final is not None
    assert final.digest == results["local-new"].reference.split("@")[1], results
    assert not results["local-bad"].moved


@pytest.mark.registry
@pytest.mark.docker
def test_concurrent_tag_moves_converge_on_a_passing_digest(
    engine: docker.DockerClient, repo: str, client: oci.RegistryClient, local_registry: str
) -> None:
    name = name_of(repo)
    published = [push_with_report(engine, client, repo, f"local-r{i}", when=f"2026-10-0{i + 1}T00:00:00Z") for i in range(5)]
    reports = [oci.newest_passing_report(client, name, p.digest, "local") for p in published]
    moves: list[publishing.TagMove] = []
    barrier = threading.Barrier(len(published))

    def mover(index: int) -> None:
        own = oci.RegistryClient(local_registry)
        barrier.wait()
        report = reports[index]
        assert report is not None
        moves.append(publishing.move_validated_tag(own, name, "local", published[index].digest, report))

    run_concurrently(mover, len(published))
    final = client.head_manifest(name, "local-validated")
    assert final is not None and final.digest == published[-1].digest, moves
    assert oci.newest_passing_report(client, name, final.digest, "local") is not None


@pytest.mark.registry
def test_concurrent_report_writers_all_stay_in_the_fallback_index(client: oci.RegistryClient, local_registry: str) -> None:
    repository = unique_repository(local_registry)
    name = name_of(repository)
    try:
        # The subject: a small OCI manifest pushed straight through the client (no engine needed).
        layer = client.upload_blob(name, b"layer\n", "application/vnd.oci.image.layer.v1.tar")
        config = client.upload_blob(name, b"{}", oci.EMPTY_MEDIA_TYPE)
        body = json.dumps(
            {"schemaVersion": 2, "mediaType": oci.OCI_MANIFEST, "config": config.to_json(), "layers": [layer.to_json()]}
        ).encode()
        digest, _ = client.put_manifest(name, "local-subject", body, oci.OCI_MANIFEST)
        subject = oci.Descriptor(oci.OCI_MANIFEST, digest, len(body))
        artifacts: list[oci.Descriptor] = []
        barrier = threading.Barrier(6)

        def writer(i: int) -> None:
            own = oci.RegistryClient(local_registry)
            barrier.wait()
            docs = documents(digest, when=f"2026-11-0{i + 1}T00:00:00Z", entry_id=f"local-w{i}")
            artifacts.append(oci.attach_report(repository, subject, docs, client=own))

        run_concurrently(writer, 6)
        listed = {d.digest for d in client.referrers(name, digest, oci.REPORT_ARTIFACT_TYPE)}
        assert len(artifacts) == 6 and listed == {a.digest for a in artifacts}
    finally:
        cleanup_repository(repository)


# ---------------------------------------------------------------- credentials


@pytest.fixture
def no_docker_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    config_dir = tmp_path / "docker-config"
    config_dir.mkdir()
    monkeypatch.setenv("DOCKER_CONFIG", str(config_dir))
    monkeypatch.delenv(oci.USER_ENV, raising=False)
    monkeypatch.delenv(oci.PASSWORD_ENV, raising=False)
    return config_dir


@pytest.fixture
def auth_registry(tmp_path: Path) -> Iterator[str]:
    if not shutil.which("docker-registry"):
        pytest.skip("docker-registry is not installed (apt-get install docker-registry)")
    with htpasswd_registry(tmp_path / "auth-registry") as host:
        yield host


def test_bearer_token_dance_and_pagination(no_docker_config: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeRegistry("robot", "pw-" + uuid.uuid4().hex, tags=[f"local-{i}" for i in range(5)])
    fake.referrers["sha256:" + "a" * 64] = [
        {
            "mediaType": oci.OCI_MANIFEST,
            "digest": "sha256:" + "b" * 64,
            "size": 10,
            "artifactType": oci.REPORT_ARTIFACT_TYPE,
        },
        {"mediaType": oci.OCI_MANIFEST, "digest": "sha256:" + "c" * 64, "size": 10, "artifactType": "application/other"},
    ]
    monkeypatch.setenv(oci.USER_ENV, fake.user)
    monkeypatch.setenv(oci.PASSWORD_ENV, fake.password)
    with fake.serve():
        client = oci.RegistryClient(fake.host)
        assert client.tag_exists("demo", "local-3") and not client.tag_exists("demo", "nope")
        assert client.list_tags("demo", page_size=2) == fake.tags
        found = client.referrers("demo", "sha256:" + "a" * 64, oci.REPORT_ARTIFACT_TYPE)
        assert [d.digest for d in found] == ["sha256:" + "b" * 64]
    assert fake.token_requests and all(r["authorized"] == "True" for r in fake.token_requests)
    assert len(fake.token_requests) == 1  # the token is cached for the scope


def test_credentials_never_leak_on_auth_errors(
    no_docker_config: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    secret = "S3cr3t-" + uuid.uuid4().hex
    encoded = base64.b64encode(f"robot:{secret}".encode()).decode()
    fake = FakeRegistry("robot", "the-right-one")
    monkeypatch.setenv(oci.USER_ENV, "robot")
    monkeypatch.setenv(oci.PASSWORD_ENV, secret)
    with fake.serve():
        client = oci.RegistryClient(fake.host)
        with pytest.raises(RegistryError) as caught:
            client.tag_exists("demo", "x")
    message = str(caught.value)
    # The fake server echoed the Authorization header back; the message carries neither form of the secret.
    assert "401" in message and "refused" in message and "***" in message
    for leak in (secret, encoded):
        assert leak not in message and leak not in repr(caught.value) and leak not in repr(client)
        assert leak not in repr(oci.load_credentials(fake.host))
    out = capsys.readouterr()
    assert secret not in out.out + out.err


@pytest.mark.registry
@pytest.mark.docker
def test_publish_and_pull_with_credentials_on_an_htpasswd_registry(
    engine: docker.DockerClient,
    auth_registry: str,
    no_docker_config: Path,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    repository = f"{auth_registry}/rocmci-test-{uuid.uuid4().hex[:8]}"
    item = item_for(engine, repository, "local-auth", tmp_path)
    spec = {"local-auth": {}}
    lines, log = collect()
    try:
        # Anonymous: refused with a hint that names where credentials come from, not what they are.
        with pytest.raises(RegistryError, match="no credentials: run docker login"):
            oci.RegistryClient(auth_registry).tag_exists(name_of(repository), "x")

        # Wrong password from the environment: the entry fails, the secret appears nowhere.
        wrong = "wrong-" + uuid.uuid4().hex
        monkeypatch.setenv(oci.USER_ENV, AUTH_USER)
        monkeypatch.setenv(oci.PASSWORD_ENV, wrong)
        (bad,) = publishing.publish(
            [item],
            repository,
            documents_for=documents_by_tag(spec),
            engine=engine,
            client=oci.RegistryClient(auth_registry),
            log=log,
        )
        assert bad.status == "error" and wrong not in repr(bad)

        # The right password: engine push (auth_config), client Basic auth, report, validated tag, pull back.
        monkeypatch.setenv(oci.PASSWORD_ENV, AUTH_PASSWORD)
        client = oci.RegistryClient(auth_registry)
        (good,) = publishing.publish(
            [item], repository, documents_for=documents_by_tag(spec), engine=engine, client=client, log=log
        )
        assert good.status == "published" and good.moved, good
        remove_local_images(engine, repository)
        pulled = pulling.pull(repository, "local", engine=engine, client=client, log=log)
        assert pulled.reference == good.reference
        blobs = b"".join(
            client.get_blob(name_of(repository), layer)
            for layer in map(
                oci.Descriptor.from_json, client.get_manifest(name_of(repository), good.report_digest or "").json["layers"]
            )
        )
        everything = "\n".join(lines) + repr(good) + repr(pulled) + blobs.decode() + "".join(capsys.readouterr())
        for secret in (wrong, AUTH_PASSWORD, base64.b64encode(f"{AUTH_USER}:{AUTH_PASSWORD}".encode()).decode()):
            assert secret not in everything
    finally:
        remove_local_images(engine, repository)


@pytest.mark.registry
def test_credentials_from_docker_config_and_credential_helper(
    auth_registry: str, no_docker_config: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    auth = base64.b64encode(f"{AUTH_USER}:{AUTH_PASSWORD}".encode()).decode()
    config = no_docker_config / "config.json"
    config.write_text(json.dumps({"auths": {f"http://{auth_registry}": {"auth": auth}}}))
    creds = oci.load_credentials(auth_registry)
    assert creds is not None and creds.source == f"docker config {config}"
    assert AUTH_PASSWORD not in repr(creds)
    assert not oci.RegistryClient(auth_registry).tag_exists("rocmci-test-none", "x")  # authorized: a plain 404

    bindir = tmp_path / "bin"
    bindir.mkdir()
    helper = bindir / "docker-credential-rocmcitest"
    reply = json.dumps({"ServerURL": auth_registry, "Username": AUTH_USER, "Secret": AUTH_PASSWORD})
    helper.write_text(f'#!/bin/sh\nread server\n[ "$server" = "{auth_registry}" ] || exit 1\necho \'{reply}\'\n')
    helper.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    config.write_text(json.dumps({"auths": {}, "credHelpers": {auth_registry: "rocmcitest"}}))
    creds = oci.load_credentials(auth_registry)
    assert creds is not None and creds.source == "credential helper docker-credential-rocmcitest"
    assert not oci.RegistryClient(auth_registry).tag_exists("rocmci-test-none", "x")
    config.write_text(json.dumps({"credHelpers": {auth_registry: "absent"}}))
    with pytest.raises(RegistryError, match="no credentials"):
        oci.RegistryClient(auth_registry).tag_exists("rocmci-test-none", "x")


@pytest.mark.registry
@pytest.mark.docker
def test_publish_items_from_the_plan_then_pull(
    engine: docker.DockerClient, repo: str, client: oci.RegistryClient, tmp_path: Path
) -> None:
    from rocmci.plan import load_plan

    plan = load_plan()
    (local,) = plan.select(gpu="local")
    reports = tmp_path / "reports"
    (reports / local.id).mkdir(parents=True)
    validated_ref = f"{repo}:validated-{uuid.uuid4().hex[:6]}"
    image_id = build_image(engine, validated_ref, "validated\n")
    result = {"entry": {"tag": local.tag}, "image": {"ref": validated_ref, "id": image_id, "digest": None}}
    (reports / local.id / "result.json").write_text(json.dumps(result))

    items = publishing.publish_items(plan.select(), reports, plan.repository)
    by_id = {item.entry_id: item for item in items}
    assert by_id[local.id] == publishing.PublishItem(
        local.id, "local", validated_ref, local.tag, reports / local.id, image_id, stack="local"
    )

    # A result validated under another tag (the inputs changed since) is never published.
    (reports / local.id / "result.json").write_text(json.dumps({**result, "entry": {"tag": "local-cpu-old-000000000000"}}))
    [stale] = publishing.publish_items(plan.select(gpu="local"), reports, plan.repository)
    assert stale.problem and "stale result" in stale.problem
    [refused] = publishing.publish([stale], repo, engine=engine, client=client, log=lambda line: None)
    assert refused.status == "error" and "stale result" in refused.reason and not refused.moved
    (reports / local.id / "result.json").write_text(json.dumps(result))
    other = next(e for e in plan.entries if e.gpu != "local")
    assert by_id[other.id].local_ref == other.image_ref(plan.repository) and by_id[other.id].validated_image_id is None

    def documents_for(
        item: publishing.PublishItem, digest: str, repository: str, _report_time: str
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        assert repository == repo and item.entry_dir == reports / local.id
        return documents(digest, entry_id=item.entry_id, torch="2.13.0", aiter="0.1.7.post2.dev18", stack=item.stack)

    (result,) = publishing.publish([by_id[local.id]], repo, documents_for=documents_for, engine=engine, client=client, log=print)
    assert result.status == "published" and result.moved and result.tag == local.tag
    assert result.moved_tags == ("local-local-validated", "local-validated")
    pulled = pulling.pull(repo, "local", torch="2.13", aiter="0.1.7", build_prefixes=("cpu",), engine=engine, client=client)
    assert pulled.reference == result.reference
    assert set(pulled.tags) == {local.tag, "local-local-validated", "local-validated"}
