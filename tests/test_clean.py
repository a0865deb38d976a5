"""`invoke clean`: label-scoped, GPU holders first, graceful stop then kill, keep-count per entry.

The docker-marked tests use the real engine (DOCKER_HOST or the default socket) with images made by `docker import`
of a tar holding a static busybox: nothing is pulled. Every object they create carries a per-test scope label, and
clean() runs with that scope, so a concurrent user of the same engine is never touched; objects that must survive
(unlabelled, or `io.rocmci.managed=false`) are created inside the scope too, so the managed filter is what spares them.
"""

from __future__ import annotations

import contextlib
import tarfile
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from rocmci.runner.clean import (
    ImageInfo,
    clean,
    clean_command,
    holds_gpu,
    is_managed,
    parse_created,
    plan_image_prune,
    started_by_rocmci,
    tagged_by_rocmci,
)
from tests.helpers import require_module, unavailable

SCOPE_LABEL = "io.rocmci.test-scope"
BUSYBOX_CANDIDATES = ("/bin/busybox", "/usr/bin/busybox")
TEST_REPO = "rocmci-clean-test"


# ---------------------------------------------------------------- pure logic


def _img(entry: str, minutes: int, image_id: str | None = None) -> ImageInfo:
    created = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(minutes=minutes)
    iid = image_id or f"sha256:{entry}{minutes:04d}"
    return ImageInfo(iid, (f"r:{entry}-{minutes:012d}",), entry, created)


def test_plan_keeps_newest_per_entry() -> None:
    images = [_img("a", 1), _img("a", 3), _img("a", 2), _img("b", 1)]
    plan = {(a.image.entry, a.image.created.minute): a.action for a in plan_image_prune(images, 1, {})}
    assert plan == {("a", 3): "kept", ("a", 2): "remove", ("a", 1): "remove", ("b", 1): "kept"}


def test_plan_keep_zero_and_in_use() -> None:
    images = [_img("a", 1, "sha256:old"), _img("a", 2)]
    actions = {a.image.id: a for a in plan_image_prune(images, 0, {"sha256:old": "someone"})}
    assert actions["sha256:old"].action == "skipped" and "someone" in actions["sha256:old"].detail
    assert actions["sha256:a0002"].action == "remove"
    with pytest.raises(ValueError):
        plan_image_prune(images, -1, {})


def test_label_predicates() -> None:
    assert is_managed({"io.rocmci.managed": "true"})
    assert not is_managed({"io.rocmci.managed": "True "})
    assert not is_managed({"io.rocmci.managed": "false"})
    assert not is_managed(None)
    assert not is_managed({"io.rocmci.managed": "true"}, {"x": "1"})
    assert holds_gpu({"io.rocmci.devices": "/dev/kfd,/dev/dri"})
    assert not holds_gpu({"io.rocmci.devices": ""})
    assert not holds_gpu({})


def test_started_by_rocmci_ignores_inherited_labels() -> None:
    image = {"io.rocmci.managed": "true", "io.rocmci.entry": "e"}
    assert started_by_rocmci({**image, "io.rocmci.role": "validate"}, image)
    assert not started_by_rocmci(image, image), "someone's `docker run` of a rocmci image"
    assert not started_by_rocmci({**image, "io.rocmci.role": "x"}, {**image, "io.rocmci.role": "x"})
    assert not started_by_rocmci({"io.rocmci.role": "validate"}, {})


def test_tagged_by_rocmci() -> None:
    assert tagged_by_rocmci(
        ["127.0.0.1:5000/rocmci:mi355x-rocm7.2-torch2.13.0-aiter0.1.20-0123456789ab"], "mi355x-rocm7.2-torch2.13.0-aiter0.1.20"
    )
    assert tagged_by_rocmci([], "e")  # dangling: a superseded build of ours
    assert not tagged_by_rocmci(["myapp:latest"], "e")  # FROM our image: inherits labels, not ours to prune


def test_parse_created_orders_nanoseconds() -> None:
    short = parse_created("2026-01-01T00:00:33.1Z")
    long = parse_created("2026-01-01T00:00:33.123456789Z")
    assert short < long
    assert parse_created(0) == datetime(1970, 1, 1, tzinfo=UTC)


# ---------------------------------------------------------------- real engine


@pytest.fixture(scope="module")
def engine() -> Any:
    docker = require_module("docker")
    try:
        client = docker.from_env(timeout=120)
        client.ping()
    except Exception as exc:
        unavailable(f"Docker engine not reachable ({exc}); scripts/test starts one")
    return client


@pytest.fixture(scope="module")
def rootfs_tar(tmp_path_factory: pytest.TempPathFactory) -> Path:
    busybox = next((Path(p) for p in BUSYBOX_CANDIDATES if Path(p).is_file()), None)
    if busybox is None:
        unavailable("no static busybox to make a test image from: apt-get install busybox-static")
    out = tmp_path_factory.mktemp("rootfs") / "rootfs.tar"
    with tarfile.open(out, "w") as tar:
        tar.add(busybox, arcname="bin/busybox")
        for applet in ("sh", "sleep"):
            link = tarfile.TarInfo(f"bin/{applet}")
            link.type, link.linkname = tarfile.SYMTYPE, "busybox"
            tar.addfile(link)
        tmp = tarfile.TarInfo("tmp")
        tmp.type, tmp.mode = tarfile.DIRTYPE, 0o1777
        tar.addfile(tmp)
    return out


@pytest.fixture
def scope(engine: Any) -> Iterator[dict[str, str]]:
    """A label unique to this test; teardown force-removes whatever still carries it."""
    value = uuid.uuid4().hex[:12]
    yield {SCOPE_LABEL: value}
    selector = {"label": [f"{SCOPE_LABEL}={value}"]}
    for container in engine.containers.list(all=True, filters=selector):
        container.remove(force=True)
    for image in engine.images.list(filters=selector):
        for tag in image.tags or [image.id]:
            with contextlib.suppress(Exception):
                engine.images.remove(tag, force=True)


def make_image(engine: Any, rootfs: Path, tag: str, labels: dict[str, str]) -> str:
    changes = [f'LABEL "{k}"="{v}"' for k, v in labels.items()] + ['CMD ["/bin/sleep", "3600"]']
    engine.api.import_image_from_data(rootfs.read_bytes(), repository=TEST_REPO, tag=tag, changes=changes)
    time.sleep(0.05)  # distinct creation times
    return engine.images.get(f"{TEST_REPO}:{tag}").id


def run_container(engine: Any, image: str, labels: dict[str, str], command: list[str], start: bool = True) -> Any:
    container = engine.containers.create(image, command=command, labels=labels, network_mode="none")
    if start:
        container.start()
    return container


def _exists(engine: Any, container_id: str) -> bool:
    from docker.errors import NotFound

    try:
        engine.containers.get(container_id)
    except NotFound:
        return False
    return True


GRACEFUL = ["/bin/sh", "-c", "trap 'exit 0' TERM; while :; do sleep 1; done"]
IGNORES_TERM = ["/bin/sleep", "3600"]  # PID 1 without a handler: SIGTERM is ignored, only SIGKILL ends it


@pytest.mark.docker
def test_clean_stops_only_managed_containers(engine: Any, rootfs_tar: Path, scope: dict[str, str]) -> None:
    image = make_image(engine, rootfs_tar, f"base-{scope[SCOPE_LABEL]}", scope)
    managed = {**scope, "io.rocmci.managed": "true", "io.rocmci.role": "validate", "io.rocmci.entry": "t"}
    gpu = run_container(engine, image, {**managed, "io.rocmci.devices": "/dev/kfd,/dev/dri"}, GRACEFUL)
    stubborn = run_container(engine, image, {**managed, "io.rocmci.devices": "/dev/kfd"}, IGNORES_TERM)
    cpu = run_container(engine, image, {**managed, "io.rocmci.devices": ""}, GRACEFUL)
    exited = run_container(engine, image, managed, IGNORES_TERM, start=False)
    not_managed = run_container(engine, image, {**scope, "io.rocmci.managed": "false"}, IGNORES_TERM)
    unlabelled = run_container(engine, image, {}, IGNORES_TERM)
    entry_image = make_image(
        engine, rootfs_tar, f"t-{scope[SCOPE_LABEL]}", {**scope, "io.rocmci.managed": "true", "io.rocmci.entry": "t"}
    )
    inherited = run_container(engine, entry_image, {}, IGNORES_TERM)  # a user's `docker run` of a rocmci image
    try:
        time.sleep(1)  # let the shells install their trap
        result = clean(engine, keep=5, stop_timeout=3, scope=scope)

        actions = {c.id: c for c in result.containers}
        assert set(actions) == {gpu.short_id, stubborn.short_id, cpu.short_id, exited.short_id}
        assert actions[gpu.short_id].action == "stopped"
        assert actions[stubborn.short_id].action == "killed"
        assert actions[cpu.short_id].action == "stopped"
        assert actions[exited.short_id].action == "removed"
        order = [c.id for c in result.containers]
        assert set(order[:2]) == {gpu.short_id, stubborn.short_id}, "GPU holders are stopped first"
        for gone in (gpu, stubborn, cpu, exited):
            assert not _exists(engine, gone.id)
        for kept in (not_managed, unlabelled, inherited):
            kept.reload()
            assert kept.status == "running", f"{kept.name} must not be touched"
        assert engine.images.get(image).id == image, "an image without an entry label is never pruned"
        assert result.exit_code == 0
    finally:
        for container in (unlabelled, inherited):
            with contextlib.suppress(Exception):
                container.remove(force=True)


@pytest.mark.docker
def test_clean_prunes_images_per_entry(engine: Any, rootfs_tar: Path, scope: dict[str, str]) -> None:
    s = scope[SCOPE_LABEL]
    managed = {**scope, "io.rocmci.managed": "true"}
    entry_a, entry_b = f"t{s}-a", f"t{s}-b"

    def entry_image(entry: str, n: int, **extra: str) -> str:
        labels = {**managed, "io.rocmci.entry": entry, "io.rocmci.content-hash": f"{n:064d}", **extra}
        return make_image(engine, rootfs_tar, f"{entry}-{n:012d}", labels)

    a1, a2, a3, a4 = (entry_image(entry_a, n) for n in (1, 2, 3, 4))
    b1 = entry_image(entry_b, 1)
    not_managed = make_image(
        engine, rootfs_tar, f"{entry_a}-{9:012d}", {**scope, "io.rocmci.managed": "false", "io.rocmci.entry": entry_a}
    )
    base = make_image(engine, rootfs_tar, f"base-{s}", managed)  # managed but no entry label (e.g. a base image)
    derived = make_image(engine, rootfs_tar, f"mine-{s}", {**managed, "io.rocmci.entry": entry_a})  # not our tag
    unlabelled_tag = f"plain-{s}"
    unlabelled = make_image(engine, rootfs_tar, unlabelled_tag, {})
    user = run_container(engine, a1, {}, IGNORES_TERM, start=False)  # someone else's container on an old image
    try:
        dry = clean(engine, keep=2, scope=scope, dry_run=True)
        assert {i.image.id for i in dry.images if i.action == "would-remove"} == {a2}
        assert all(engine.images.get(i) for i in (a1, a2, a3, a4))

        result = clean(engine, keep=2, scope=scope)
        by_id = {i.image.id: i.action for i in result.images}
        assert by_id == {a4: "kept", a3: "kept", a2: "removed", a1: "skipped", b1: "kept"}
        from docker.errors import ImageNotFound

        with pytest.raises(ImageNotFound):
            engine.images.get(a2)
        for survivor in (a1, a3, a4, b1, not_managed, base, derived, unlabelled):
            assert engine.images.get(survivor).id == survivor
        assert _exists(engine, user.id), "a container clean did not start is never removed"
    finally:
        with contextlib.suppress(Exception):
            user.remove(force=True)
        engine.images.remove(f"{TEST_REPO}:{unlabelled_tag}", force=True)


@pytest.mark.docker
def test_clean_without_scope_spares_unlabelled(engine: Any, rootfs_tar: Path, scope: dict[str, str]) -> None:
    """The shipped default (no scope) still leaves unlabelled objects alone; dry run so no one else's are touched."""
    image = make_image(engine, rootfs_tar, f"plain-{scope[SCOPE_LABEL]}", scope)
    bystander = run_container(engine, image, {}, IGNORES_TERM)
    try:
        result = clean(engine, keep=0, dry_run=True)
        assert bystander.short_id not in {c.id for c in result.containers}
        assert image not in {i.image.id for i in result.images}
    finally:
        bystander.remove(force=True)


@pytest.mark.docker
def test_clean_command_scoped_to_one_entry(
    engine: Any, rootfs_tar: Path, scope: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    """What CI runs (`invoke clean --entry ID`): another runner's validation on the same engine keeps running."""
    image = make_image(engine, rootfs_tar, f"base-{scope[SCOPE_LABEL]}", scope)
    labels = {**scope, "io.rocmci.managed": "true", "io.rocmci.role": "validate", "io.rocmci.devices": "/dev/kfd"}
    mine = run_container(engine, image, {**labels, "io.rocmci.entry": f"t{scope[SCOPE_LABEL]}-mine"}, GRACEFUL)
    theirs = run_container(engine, image, {**labels, "io.rocmci.entry": f"t{scope[SCOPE_LABEL]}-theirs"}, GRACEFUL)
    time.sleep(1)
    code = clean_command(keep=1, stop_timeout=5, entry=f"t{scope[SCOPE_LABEL]}-mine", client_factory=lambda: engine)
    assert code == 0
    assert not _exists(engine, mine.id)
    theirs.reload()
    assert theirs.status == "running"
    out = capsys.readouterr().out
    assert mine.name in out and theirs.name not in out
