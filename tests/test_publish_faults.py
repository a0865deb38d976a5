"""Faults and bad input at publish and pull (issue 9 items 1, 4, 5, 6; issue 16 item 3) on the real Docker engine
and the real registry (127.0.0.1:5000, distribution 2.8). A stub HTTP server on loopback serves only the answers
the real registry never gives (non-JSON bodies, bad tag lists, endless pagination)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import docker
import pytest
import requests

import rocmci.publish as publishing
import rocmci.pull as pulling
from rocmci import oci
from rocmci.errors import RegistryError, RocmciError
from rocmci.pull.lock import LockError, pull_and_lock
from tests.conftest import ROOT
from tests.test_registry import (
    build_image,
    documents,
    name_of,
    push_image,
    push_with_report,
    remove_local_images,
    scratch_repository,
)

# ---------------------------------------------------------------- helpers and fixtures


@pytest.fixture
def repo(engine: docker.DockerClient, registry: str) -> Iterator[str]:
    with scratch_repository(engine, registry) as repository:
        yield repository


@pytest.fixture
def client(registry: str) -> oci.RegistryClient:
    return oci.RegistryClient(registry)


def _now_text() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def validated_documents(image_id: str, **doc: Any) -> publishing.DocumentsFor:
    """Passing documents that name the image id validation ran on, as report.entry_documents writes them; the
    report time is the publisher's (the optional argument also lets these run against a publisher without one)."""

    def documents_for(
        item: publishing.PublishItem, digest: str, _repository: str, report_time: str | None = None
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        record, statement = documents(digest, gpu=item.gpu, entry_id=item.entry_id, when=report_time or _now_text(), **doc)
        record["image"]["id"] = image_id
        return record, statement

    return documents_for


def item_of(repository: str, tag: str, image_id: str, tmp_path: Path) -> publishing.PublishItem:
    return publishing.PublishItem(
        f"local-{tag}", "local", f"{repository}:{tag}", tag, tmp_path / tag, validated_image_id=image_id
    )


def config_of(client: oci.RegistryClient, repository: str, digest: str) -> str | None:
    return oci.config_digest(client.get_manifest(name_of(repository), digest))


def invoke(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "invoke", *args], cwd=ROOT, capture_output=True, text=True, check=False, env=env, timeout=300
    )


def one_line_error(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode != 0, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    return lines[0]


# ---------------------------------------------------------------- item 1: the validated tag names the validated image


@pytest.mark.registry
@pytest.mark.docker
def test_retag_during_the_push_never_validates_the_other_image(
    engine: docker.DockerClient, repo: str, client: oci.RegistryClient, tmp_path: Path
) -> None:
    name, tag = name_of(repo), "local-cpu-race-0123456789ab"
    good_id = build_image(engine, f"{repo}:{tag}", f"validated {uuid.uuid4().hex}\n")
    bad_id = build_image(engine, f"{repo}:failed-build", f"failed validation {uuid.uuid4().hex}\n")
    lines: list[str] = []

    def log_and_race(line: str) -> None:
        lines.append(line)
        if line.endswith(f"pushing {repo}:{tag}"):
            # Between our tag and the engine's push, another pipeline on this engine re-tags the same name.
            engine.api.tag(bad_id, repo, tag)

    item = item_of(repo, tag, good_id, tmp_path)
    (result,) = publishing.publish(
        [item], repo, documents_for=validated_documents(good_id), engine=engine, client=client, log=log_and_race
    )
    assert result.status == "error" and not result.moved and result.report_digest is None, result
    assert "is not the validated image" in result.reason and "no report attached" in result.reason
    assert not client.tag_exists(name, "local-validated")
    landed = client.head_manifest(name, tag)
    assert landed is not None and config_of(client, repo, landed.digest) == bad_id  # the racer's name was pushed
    assert client.referrers(name, landed.digest) == []  # and nothing claims it passed
    with pytest.raises(RegistryError, match=r"no image of .* passed on local"):
        pulling.pull(repo, "local", engine=engine, client=client, log=lines.append)
    assert "no image of " in one_line_error(invoke("pull", "--gpu", "local", "--registry", repo))


@pytest.mark.registry
@pytest.mark.docker
def test_a_retagger_racing_many_publishes_never_gets_its_image_validated(
    engine: docker.DockerClient, repo: str, registry: str, client: oci.RegistryClient, tmp_path: Path
) -> None:
    name = name_of(repo)
    bad_id = build_image(engine, f"{repo}:failed-build", f"failed validation {uuid.uuid4().hex}\n")
    good_ids: set[str] = set()
    outcomes: list[str] = []
    for round_ in range(4):
        tag = f"local-cpu-round{round_}-0123456789ab"
        good_id = build_image(engine, f"{repo}:{tag}", f"validated {round_} {uuid.uuid4().hex}\n")
        good_ids.add(good_id)
        stop = threading.Event()
        racer_engine = docker.from_env(timeout=60)

        def retag(
            tag: str = tag, good_id: str = good_id, racer: docker.DockerClient = racer_engine, stop: threading.Event = stop
        ) -> None:
            flip = False
            while not stop.wait(0.002):
                racer.api.tag(bad_id if flip else good_id, repo, tag)
                flip = not flip

        thread = threading.Thread(target=retag, daemon=True)
        thread.start()
        try:
            (result,) = publishing.publish(
                [item_of(repo, tag, good_id, tmp_path)],
                repo,
                documents_for=validated_documents(good_id),
                engine=engine,
                client=client,
                log=lambda _line: None,
            )
        finally:
            stop.set()
            thread.join(timeout=30)
            racer_engine.close()
        if result.status == "published":
            assert config_of(client, repo, (result.reference or "").split("@")[1]) == good_id, result
        else:
            # Caught when the name is read (before the push) or when the pushed manifest is checked (after it).
            refusals = ("but validation ran on", "is not the validated image")
            assert any(r in result.reason for r in refusals) and not result.moved, result
        outcomes.append(result.status)
        validated = client.head_manifest(name, "local-validated")
        assert validated is None or config_of(client, repo, validated.digest) in good_ids, outcomes
    print(f"publishes racing a re-tagger: {outcomes}")
    if "published" in outcomes:
        found, _notes = pulling.find_validated(repo, "local", client=oci.RegistryClient(registry))
        assert config_of(client, repo, found.digest) in good_ids


@pytest.mark.registry
@pytest.mark.docker
def test_pull_rejects_a_pass_attached_to_another_image_than_it_validated(
    engine: docker.DockerClient, repo: str, client: oci.RegistryClient
) -> None:
    name = name_of(repo)
    good_id = build_image(engine, f"{repo}:local-good", f"validated {uuid.uuid4().hex}\n")
    build_image(engine, f"{repo}:local-other", f"failed validation {uuid.uuid4().hex}\n")
    wrong = push_image(engine, repo, "local-other")
    # What a publisher that lost the race used to leave: a pass naming the validated image id on the pushed image.
    record, statement = documents(wrong, entry_id="local-other")
    record["image"]["id"] = good_id
    subject = client.head_manifest(name, wrong)
    assert subject is not None
    oci.attach_report(repo, subject, (record, statement), client=client)
    manifest = client.get_manifest(name, wrong)
    client.put_manifest(name, "local-validated", manifest.body, manifest.media_type)
    remove_local_images(engine, repo)
    lines: list[str] = []
    with pytest.raises(RegistryError, match=f"it validated image {good_id[:19]}, and {wrong[:19]} is not that image"):
        pulling.pull(repo, "local", engine=engine, client=client, log=lines.append)
    with pytest.raises(docker.errors.ImageNotFound):
        engine.images.get(f"{repo}@{wrong}")


@pytest.mark.registry
@pytest.mark.docker
def test_which_image_a_manifest_is_in_either_image_store(
    engine: docker.DockerClient, repo: str, client: oci.RegistryClient
) -> None:
    image_id = build_image(engine, f"{repo}:local-store", f"store {uuid.uuid4().hex}\n")
    digest = push_image(engine, repo, "local-store")
    manifest = client.get_manifest(name_of(repo), digest)
    store = oci.image_store(engine.info())
    # This engine's own idea of the image id matches the pushed manifest, whichever store it runs.
    assert oci.image_mismatch(manifest, engine.images.get(f"{repo}:local-store").id, store) is None
    # Both rules on the same real manifest: classic = config digest, containerd = manifest digest.
    assert oci.image_mismatch(manifest, image_id if store == "classic" else digest, store) is None
    assert oci.image_mismatch(manifest, oci.config_digest(manifest) or "", "classic") is None
    assert oci.image_mismatch(manifest, digest, "containerd") is None
    assert oci.image_mismatch(manifest, digest, "classic")  # a manifest digest is not a config digest
    assert oci.image_mismatch(manifest, oci.config_digest(manifest) or "", "containerd")
    # `docker info` of an engine with the containerd image store (moby#46757), and of a classic one.
    containerd_info = {"Driver": "overlayfs", "DriverStatus": [["driver-type", "io.containerd.snapshotter.v1"]]}
    assert oci.image_store(containerd_info) == "containerd"
    assert oci.image_store({"Driver": "overlay2", "DriverStatus": [["Backing Filesystem", "extfs"]]}) == "classic"


# ---------------------------------------------------------------- issue 16 item 3: a content tag never moves


@pytest.mark.registry
@pytest.mark.docker
def test_a_content_tag_in_the_registry_is_never_re_pointed(
    engine: docker.DockerClient, repo: str, client: oci.RegistryClient, tmp_path: Path
) -> None:
    name, tag = name_of(repo), "local-cpu-torch2.13.0-content-0123456789ab"
    first_id = build_image(engine, f"{repo}:{tag}", f"first build {uuid.uuid4().hex}\n")
    item = item_of(repo, tag, first_id, tmp_path)
    lines: list[str] = []
    (first,) = publishing.publish(
        [item], repo, documents_for=validated_documents(first_id), engine=engine, client=client, log=lines.append
    )
    assert first.status == "published" and first.moved, first
    digest = (first.reference or "").split("@")[1]

    # Publishing the same image again pushes nothing: the tag already names it.
    (again,) = publishing.publish(
        [item], repo, documents_for=validated_documents(first_id), engine=engine, client=client, log=lines.append
    )
    assert again.status == "published" and again.reference == first.reference, again
    assert any(line.endswith("not pushed again") for line in lines)

    # A rebuild of the same inputs with other bytes (a wall-clock label): refused, neither tag moves.
    second_id = build_image(engine, f"{repo}:{tag}", f"second build {uuid.uuid4().hex}\n")
    assert second_id != first_id
    rebuilt = replace(item, validated_image_id=second_id)
    (refused,) = publishing.publish(
        [rebuilt], repo, documents_for=validated_documents(second_id), engine=engine, client=client, log=lines.append
    )
    assert refused.status == "error" and "a content tag never moves" in refused.reason, refused
    assert f"{repo}:{tag} already names another image" in refused.reason
    for still in (tag, "local-validated"):
        head = client.head_manifest(name, still)
        assert head is not None and head.digest == digest, still


# ---------------------------------------------------------------- item 5: evidence before any push


@pytest.mark.registry
@pytest.mark.docker
def test_inconsistent_evidence_is_refused_before_anything_is_pushed(
    engine: docker.DockerClient, repo: str, client: oci.RegistryClient, tmp_path: Path
) -> None:
    name = name_of(repo)
    ids = {tag: build_image(engine, f"{repo}:{tag}", f"{tag} {uuid.uuid4().hex}\n") for tag in ("local-a", "local-b", "local-c")}
    good = validated_documents(ids["local-c"])

    def documents_for(
        item: publishing.PublishItem, digest: str, repository: str, report_time: str | None = None
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        if item.tag == "local-a":  # documents that describe another image
            return documents(digest, entry_id=item.entry_id, names="sha256:" + "0" * 64)
        if item.tag == "local-b":  # evidence that cannot be read (report.entry_documents raises ReportError)
            raise RocmciError(f"{item.entry_dir}/smoke.json: unreadable")
        return good(item, digest, repository, report_time)

    items = [item_of(repo, tag, image_id, tmp_path) for tag, image_id in ids.items()]
    results = publishing.publish(items, repo, documents_for=documents_for, engine=engine, client=client, log=lambda _line: None)
    assert [r.status for r in results] == ["error", "error", "published"], results
    assert "inconsistent, nothing pushed" in results[0].reason and "record names image sha256:000" in results[0].reason
    assert "smoke.json: unreadable" in results[1].reason
    assert not client.tag_exists(name, "local-a") and not client.tag_exists(name, "local-b")
    assert client.tag_exists(name, "local-c") and results[2].moved


# ---------------------------------------------------------------- item 6: report time is bounded by the registry's clock


@pytest.mark.registry
@pytest.mark.docker
def test_a_report_from_the_future_never_pins_the_validated_tag(
    engine: docker.DockerClient, repo: str, registry: str, client: oci.RegistryClient, tmp_path: Path
) -> None:
    name = name_of(repo)
    # What a runner with its clock in 2099 left behind: a passing report claiming 2099, and the validated tag on it.
    future = push_with_report(engine, client, repo, "local-2099", when="2099-01-01T00:00:00Z")
    manifest = client.get_manifest(name, future.digest)
    client.put_manifest(name, "local-validated", manifest.body, manifest.media_type)

    published = []
    for honest in ("local-honest-1", "local-honest-2"):
        image_id = build_image(engine, f"{repo}:{honest}", f"{honest} {uuid.uuid4().hex}\n")
        (result,) = publishing.publish(
            [item_of(repo, honest, image_id, tmp_path)],
            repo,
            documents_for=validated_documents(image_id),
            engine=engine,
            client=client,
            log=print,
        )
        assert result.status == "published" and result.moved, result
        head = client.head_manifest(name, "local-validated")
        assert head is not None and head.digest == (result.reference or "").split("@")[1]
        published.append(result)

    found, notes = pulling.find_validated(repo, "local", client=client)
    assert found.reference == published[-1].reference
    assert any(n.startswith("local-2099@") and "2099-01-01T00:00:00.000000Z is ahead of the registry's clock" in n for n in notes)
    # The publisher's time: sub-second resolution, within the tolerance of the registry's Date.
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", found.report_time), found.report_time
    registry_date = parsedate_to_datetime(requests.get(f"http://{registry}/v2/", timeout=10).headers["Date"])
    assert abs(oci.parse_time(found.report_time) - registry_date) < oci.CLOCK_TOLERANCE


@pytest.mark.registry
@pytest.mark.docker
def test_a_publisher_whose_clock_is_off_pushes_nothing(
    engine: docker.DockerClient, repo: str, client: oci.RegistryClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = name_of(repo)
    image_id = build_image(engine, f"{repo}:local-clock", f"clock {uuid.uuid4().hex}\n")
    item = item_of(repo, "local-clock", image_id, tmp_path)
    monkeypatch.setattr(publishing.attach, "_utc_now", lambda: datetime(2099, 1, 1, tzinfo=UTC))
    (refused,) = publishing.publish(
        [item], repo, documents_for=validated_documents(image_id), engine=engine, client=client, log=print
    )
    assert refused.status == "error" and "this runner's clock (2099-01-01T00:00:00.000000Z)" in refused.reason, refused
    assert "more than the 300 s allowed: fix the clock" in refused.reason
    assert not client.tag_exists(name, "local-clock")

    # Within the tolerance (two minutes ahead) it publishes, and its report still counts.
    monkeypatch.setattr(publishing.attach, "_utc_now", lambda: datetime.now(UTC) + timedelta(minutes=2))
    (ok,) = publishing.publish([item], repo, documents_for=validated_documents(image_id), engine=engine, client=client, log=print)
    assert ok.status == "published" and ok.moved, ok


@pytest.mark.registry
@pytest.mark.docker
def test_equal_report_times_break_ties_by_digest(engine: docker.DockerClient, repo: str, client: oci.RegistryClient) -> None:
    name, when = name_of(repo), "2026-03-03T03:03:03.250000Z"
    pair = [push_with_report(engine, client, repo, tag, when=when) for tag in ("local-tie-1", "local-tie-2")]
    low, high = sorted(pair, key=lambda p: p.digest)
    found, _notes = pulling.find_validated(repo, "local", client=client)
    assert found.digest == high.digest
    reports = {p.digest: oci.newest_passing_report(client, name, p.digest, "local") for p in pair}
    assert all(reports.values())
    assert publishing.move_validated_tag(client, name, "local", high.digest, reports[high.digest]).moved  # type: ignore[arg-type]
    stays = publishing.move_validated_tag(client, name, "local", low.digest, reports[low.digest])  # type: ignore[arg-type]
    assert not stays.moved and "stays on " + high.digest in stays.reason


# ---------------------------------------------------------------- item 4: credentials and hostile answers


@pytest.mark.registry
@pytest.mark.docker
def test_credentials_in_a_reference_are_refused_and_never_printed(engine: docker.DockerClient, registry: str) -> None:
    secret = "S3cret-" + uuid.uuid4().hex
    for reference in (f"robot:{secret}@{registry}/rocmci-test-creds", f"robot:{secret[:4]}/{secret[4:]}@{registry}/x"):
        lines: list[str] = []
        calls: list[Callable[[], object]] = [
            lambda reference=reference, log=lines.append: publishing.publish([], reference, engine=engine, log=log),
            lambda reference=reference, log=lines.append: pulling.pull(reference, "local", engine=engine, log=log),
        ]
        for call in calls:
            with pytest.raises(RegistryError) as caught:
                call()
            message = str(caught.value)
            assert (
                "credentials do not go in a reference" in message and "ROCMCI_REGISTRY_USER/ROCMCI_REGISTRY_PASSWORD" in message
            )
            assert secret not in message and secret[4:] not in message and not lines
    for task in ("pull", "publish"):
        line = one_line_error(invoke(task, "--gpu", "local", "--registry", f"robot:{secret}@{registry}/rocmci-test-creds"))
        assert "docker login" in line and secret not in line


@contextmanager
def stub_registry(answer: Callable[[str], tuple[int, dict[str, str], bytes]]) -> Iterator[str]:
    """A loopback HTTP server answering every GET/HEAD with answer(path)."""

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *_args: Any) -> None:
            pass

        def do_GET(self) -> None:
            status, headers, body = answer(self.path)
            self.send_response(status)
            for key, value in {"Content-Length": str(len(body)), **headers}.items():
                self.send_header(key, value)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        do_HEAD = do_GET

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _within(seconds: float, call: Callable[[], object]) -> BaseException | None:
    """Run call(); its exception (None when it returned); fail when it is still running after `seconds`."""
    caught: list[BaseException] = []

    def target() -> None:
        try:
            call()
        except BaseException as exc:
            caught.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"still running after {seconds} s"
    return caught[0] if caught else None


JSON = {"Content-Type": "application/json"}
HOSTILE_TAG_LISTS: dict[str, tuple[Callable[[str], tuple[int, dict[str, str], bytes]], str]] = {
    "html body": (lambda _p: (200, {"Content-Type": "text/html"}, b"<html>gateway</html>"), "not JSON (text/html)"),
    "json array": (lambda _p: (200, JSON, b"[1, 2]"), "JSON that is not an object"),
    "null tag": (lambda _p: (200, JSON, b'{"name": "demo", "tags": ["local-1", null]}'), "holds null, which is not a tag"),
    "number tag": (lambda _p: (200, JSON, b'{"name": "demo", "tags": [5]}'), "holds 5, which is not a tag"),
    "tags not a list": (lambda _p: (200, JSON, b'{"tags": "local-1"}'), "`tags` is not a list"),
    "next is itself": (
        lambda p: (200, JSON | {"Link": f'<{p}>; rel="next"'}, b'{"tags": ["local-1"]}'),
        'Link rel="next" points back at a page already read',
    ),
    "next on another host": (
        lambda _p: (200, JSON | {"Link": '<http://203.0.113.9/v2/demo/tags/list?last=x>; rel="next"'}, b'{"tags": []}'),
        "the next page is on another host (203.0.113.9)",
    ),
    "pages without end": (
        lambda p: (200, JSON | {"Link": f'</v2/demo/tags/list?last={uuid.uuid4().hex}>; rel="next"'}, b'{"tags": []}'),
        "more than 1000 pages: stopped",
    ),
}


@pytest.mark.parametrize("case", sorted(HOSTILE_TAG_LISTS))
def test_hostile_tag_lists_give_one_clear_error(case: str) -> None:
    answer, expected = HOSTILE_TAG_LISTS[case]
    with stub_registry(answer) as host:
        error = _within(60, lambda: oci.RegistryClient(host).list_tags("demo"))
        assert isinstance(error, RegistryError), error
        assert str(error).startswith(f"registry {host}: tag list of demo") and expected in str(error), str(error)
        # Through the task a user runs: one line on stderr, exit non-zero, no traceback.
        if case in ("html body", "null tag"):
            assert expected in one_line_error(invoke("pull", "--gpu", "local", "--registry", f"{host}/demo"))


def test_hostile_referrers_and_manifests_give_clear_errors() -> None:
    digest = "sha256:" + "a" * 64

    def answer(path: str) -> tuple[int, dict[str, str], bytes]:
        if "/referrers/" in path:
            return 200, {"Content-Type": oci.OCI_INDEX}, b"not json at all"
        return 200, {"Content-Type": "text/plain"}, b"<html>"  # a manifest that is neither typed nor JSON

    with stub_registry(answer) as host:
        client = oci.RegistryClient(host)
        with pytest.raises(RegistryError, match=f"referrers of demo@{digest}: HTTP 200 with a body that is not JSON"):
            client.referrers("demo", digest)
        with pytest.raises(RegistryError, match="is not JSON"):
            client.get_manifest("demo", "local-1")


# ---------------------------------------------------------------- item 5: bad settings and destinations


def test_a_bad_registry_timeout_breaks_only_registry_tasks_with_one_line(registry: str) -> None:
    env = {**os.environ, "ROCMCI_REGISTRY_TIMEOUT": "abc"}
    assert invoke("--list", env=env).returncode == 0
    imported = subprocess.run(
        [sys.executable, "-c", "import rocmci.oci, rocmci.publish, rocmci.pull"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert imported.returncode == 0, imported.stderr
    line = one_line_error(invoke("pull", "--gpu", "local", "--registry", f"{registry}/rocmci-test-timeout", env=env))
    assert line == "ROCMCI_REGISTRY_TIMEOUT: expected a number of seconds > 0 (got 'abc')"
    for bad in ("0", "-1", "nan", "inf"):
        with pytest.raises(RegistryError, match=f"ROCMCI_REGISTRY_TIMEOUT: .*got '{bad}'"):
            os.environ["ROCMCI_REGISTRY_TIMEOUT"] = bad
            try:
                oci.registry_timeout()
            finally:
                del os.environ["ROCMCI_REGISTRY_TIMEOUT"]
    assert oci.registry_timeout() == 60.0


def test_an_explicit_empty_registry_is_an_error() -> None:
    from rocmci import cli
    from rocmci.plan import load_plan

    plan = load_plan()
    for empty in ("", "  "):
        with pytest.raises(RocmciError, match="--registry: empty"):
            cli.repository_for(plan, empty)
    assert cli.repository_for(plan, None) == plan.repository
    assert "--registry: empty" in one_line_error(invoke("pull", "--gpu", "local", "--registry", ""))


@pytest.mark.registry
@pytest.mark.docker
def test_pull_checks_the_lock_destination_before_pulling(
    engine: docker.DockerClient, repo: str, client: oci.RegistryClient, tmp_path: Path
) -> None:
    published = push_with_report(engine, client, repo, "local-lock")
    remove_local_images(engine, repo)
    locks = tmp_path / "locks"
    locks.mkdir()
    destinations = {
        locks: "is a directory",
        Path("/sys") / f"rocmci-{uuid.uuid4().hex}.json": "cannot write there",
        Path("/etc/hostname") / "rocmci.lock.json": "cannot write there: a part of its directory is a file",
    }
    for destination, why in destinations.items():
        lines: list[str] = []
        with pytest.raises(LockError, match=why):
            pull_and_lock(repo, "local", lock_file=destination, engine=engine, client=client, log=lines.append)
        assert lines == []  # refused before choosing or pulling anything
        line = one_line_error(invoke("pull", "--gpu", "local", "--registry", repo, "--lock", str(destination)))
        assert line.startswith(f"--lock {destination}: ") and why in line
    assert list(locks.iterdir()) == []  # no temporary left behind
    with pytest.raises(docker.errors.ImageNotFound):
        engine.images.get(f"{repo}@{published.digest}")
    good = tmp_path / "deploy" / "rocmci.lock.json"
    assert pull_and_lock(repo, "local", lock_file=good, engine=engine, client=client)[0].digest == published.digest
    assert json.loads(good.read_text())["digest"] == published.digest and sorted(p.name for p in good.parent.iterdir()) == [
        good.name
    ]
