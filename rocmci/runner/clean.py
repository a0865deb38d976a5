"""Label-scoped cleanup (`invoke clean`): stop what rocmci started, prune what rocmci built, touch nothing else.

Containers: every container rocmci started (`io.rocmci.managed=true` plus its own `io.rocmci.role`, not one
inherited from the image: a user's `docker run` of a rocmci image inherits the image's labels) is stopped, those
holding GPU devices (a non-empty `io.rocmci.devices` label) first: SIGTERM with a timeout, then SIGKILL; then removed.
Images: those labelled `io.rocmci.managed=true` with an `io.rocmci.entry` label and a tag rocmci gave them
(`<entry id>-<hash>`, or none left) are grouped by entry (on an image that label holds the build id, which the
entries of one stack and gfx share); the newest `keep` of each entry stay, older ones are
untagged/removed without force, and an image any container still uses is skipped.
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from rocmci import labels
from rocmci.engine import MANAGED_LABEL
from rocmci.engine import docker_client as default_client

ENTRY_LABEL = labels.ENTRY
DEVICES_LABEL = labels.DEVICES
ROLE_LABEL = labels.ROLE
DEFAULT_KEEP = 2
DEFAULT_STOP_TIMEOUT = 30
_ACTIVE_STATES = {"running", "paused", "restarting"}


@dataclass(frozen=True)
class ContainerAction:
    id: str
    name: str
    entry: str
    devices: str
    action: str  # stopped | killed | removed | would-stop | would-remove | error
    detail: str = ""


@dataclass(frozen=True)
class ImageInfo:
    id: str
    tags: tuple[str, ...]
    entry: str
    created: datetime


@dataclass(frozen=True)
class ImageAction:
    image: ImageInfo
    action: str  # kept | removed | untagged | would-remove | skipped
    detail: str = ""


@dataclass(frozen=True)
class CleanResult:
    containers: tuple[ContainerAction, ...]
    images: tuple[ImageAction, ...]
    dry_run: bool = False
    errors: tuple[str, ...] = field(default=())

    @property
    def exit_code(self) -> int:
        return 1 if self.errors else 0

    def summary(self) -> str:
        lines = [f"containers: {len(self.containers)} rocmci container(s)" + (" (dry run)" if self.dry_run else "")]
        lines += [
            f"  {c.action:<12} {c.name or c.id}  entry={c.entry or '-'} devices={c.devices or '-'}"
            + (f"  ({c.detail})" if c.detail else "")
            for c in self.containers
        ]
        lines.append(f"images: {len(self.images)} rocmci image(s) with an entry label")
        lines += [
            f"  {i.action:<12} {', '.join(i.image.tags) or i.image.id[:19]}  entry={i.image.entry}"
            + (f"  ({i.detail})" if i.detail else "")
            for i in self.images
        ]
        lines += [f"error: {e}" for e in self.errors]
        return "\n".join(lines)


# ---------------------------------------------------------------- pure helpers


def is_managed(labels: Mapping[str, str] | None, scope: Mapping[str, str] | None = None) -> bool:
    """rocmci made it (label exactly `true`), and it matches every extra `scope` label."""
    labels = labels or {}
    return labels.get(MANAGED_LABEL) == "true" and all(labels.get(k) == v for k, v in (scope or {}).items())


def started_by_rocmci(
    labels: Mapping[str, str] | None, image_labels: Mapping[str, str] | None, scope: Mapping[str, str] | None = None
) -> bool:
    """A container inherits its image's labels, so `managed=true` alone also matches anyone's `docker run` of a
    rocmci image. rocmci sets `io.rocmci.role` on the containers it starts; images never carry it (or carry
    another value), so a role the image does not already have is the container's own."""
    labels = labels or {}
    role = labels.get(ROLE_LABEL)
    return is_managed(labels, scope) and bool(role) and (image_labels or {}).get(ROLE_LABEL) != role


def holds_gpu(labels: Mapping[str, str] | None) -> bool:
    return bool((labels or {}).get(DEVICES_LABEL, "").strip(" ,"))


def label_filters(scope: Mapping[str, str] | None) -> list[str]:
    return [f"{MANAGED_LABEL}=true", *(f"{k}={v}" for k, v in (scope or {}).items())]


def parse_created(value: str | int | float) -> datetime:
    """Docker's `Created`: RFC 3339 with up to nanoseconds (image inspect) or epoch seconds (list)."""
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value, UTC)
    text = value.strip().replace("Z", "+00:00")
    if "." in text:  # trim nanoseconds to microseconds: fromisoformat takes at most 6 digits
        head, rest = text.split(".", 1)
        digits = "".join(ch for ch in rest if ch.isdigit())
        text = f"{head}.{digits[:6].ljust(6, '0')}{rest[len(digits) :]}"
    created = datetime.fromisoformat(text)
    return created if created.tzinfo else created.replace(tzinfo=UTC)


def tagged_by_rocmci(tags: Sequence[str], entry: str) -> bool:
    """rocmci tags are `<repo>:<entry id>-<hash>`; an image built FROM ours inherits our labels but not our tag."""
    return not tags or any(tag.rsplit(":", 1)[-1].startswith(f"{entry}-") for tag in tags)


def plan_image_prune(images: Iterable[ImageInfo], keep: int, in_use: Mapping[str, str]) -> list[ImageAction]:
    """Per entry, newest first: keep `keep`, remove the rest unless a container (id -> name in `in_use`) uses it."""
    if keep < 0:
        raise ValueError("keep must be >= 0")
    by_entry: dict[str, list[ImageInfo]] = defaultdict(list)
    for image in images:
        by_entry[image.entry].append(image)
    actions: list[ImageAction] = []
    for entry in sorted(by_entry):
        ordered = sorted(by_entry[entry], key=lambda i: (i.created, i.id), reverse=True)
        for rank, image in enumerate(ordered):
            if rank < keep:
                actions.append(ImageAction(image, "kept", f"newest {rank + 1} of {len(ordered)}"))
            elif image.id in in_use:
                actions.append(ImageAction(image, "skipped", f"used by container {in_use[image.id]}"))
            else:
                actions.append(ImageAction(image, "remove", f"older than the newest {keep}"))
    return actions


# ---------------------------------------------------------------- containers


def managed_containers(client: Any, scope: Mapping[str, str] | None = None) -> list[Any]:
    """Containers rocmci started (see started_by_rocmci), GPU holders first, then oldest first."""
    found = client.containers.list(all=True, filters={"label": label_filters(scope)})
    image_labels: dict[str, dict[str, str]] = {}
    for container in found:
        image_id = container.attrs.get("Image", "")
        if image_id not in image_labels:
            image_labels[image_id] = _image_labels(client, image_id)
    ours = [c for c in found if started_by_rocmci(c.labels, image_labels[c.attrs.get("Image", "")], scope)]
    return sorted(ours, key=lambda c: (not holds_gpu(c.labels), c.attrs.get("Created", "")))


def _image_labels(client: Any, image_id: str) -> dict[str, str]:
    from docker.errors import NotFound

    try:
        return dict((client.api.inspect_image(image_id).get("Config") or {}).get("Labels") or {})
    except NotFound:
        return {}


def stop_container(container: Any, timeout: int) -> tuple[str, str]:
    """SIGTERM, wait up to `timeout` s, then SIGKILL. Returns (stopped|killed, detail)."""
    from docker.errors import APIError, NotFound

    try:
        container.stop(timeout=timeout)
    except NotFound:
        return "stopped", "already gone"
    except APIError as exc:
        container.reload()
        if container.status in _ACTIVE_STATES:
            container.kill()
            return "killed", f"stop failed ({exc.explanation or exc}), sent SIGKILL"
    container.reload()
    if container.status in _ACTIVE_STATES:
        container.kill()
        return "killed", f"still {container.status} after stop, sent SIGKILL"
    state = container.attrs.get("State", {})
    if state.get("ExitCode") == 137 and not state.get("OOMKilled"):
        return "killed", f"ignored SIGTERM for {timeout} s, SIGKILL sent"
    return "stopped", f"exited {state.get('ExitCode')} on SIGTERM"


def clean_containers(
    client: Any, *, stop_timeout: int = DEFAULT_STOP_TIMEOUT, scope: Mapping[str, str] | None = None, dry_run: bool = False
) -> tuple[list[ContainerAction], list[str]]:
    from docker.errors import APIError, NotFound

    actions: list[ContainerAction] = []
    errors: list[str] = []
    for container in managed_containers(client, scope):
        labels = container.labels or {}
        who = {
            "id": container.short_id,
            "name": container.name,
            "entry": labels.get(ENTRY_LABEL, ""),
            "devices": labels.get(DEVICES_LABEL, ""),
        }
        active = container.status in _ACTIVE_STATES
        if dry_run:
            actions.append(ContainerAction(**who, action="would-stop" if active else "would-remove", detail=container.status))
            continue
        try:
            action, detail = stop_container(container, stop_timeout) if active else ("removed", f"was {container.status}")
            container.remove(v=True, force=True)
        except NotFound:
            action, detail = "removed", "already gone"
        except APIError as exc:
            errors.append(f"container {container.name}: {exc.explanation or exc}")
            action, detail = "error", str(exc.explanation or exc)
        actions.append(ContainerAction(**who, action=action, detail=detail))
    return actions, errors


# ---------------------------------------------------------------- images


def managed_images(client: Any, scope: Mapping[str, str] | None = None) -> list[ImageInfo]:
    """rocmci-built entry images (labels and tag checked); base images without an entry label are not included."""
    infos: list[ImageInfo] = []
    for image in client.images.list(filters={"label": label_filters(scope)}):
        labels = image.labels or {}
        entry = labels.get(ENTRY_LABEL, "")
        tags = tuple(image.tags)
        if is_managed(labels, scope) and entry and tagged_by_rocmci(tags, entry):
            infos.append(ImageInfo(image.id, tags, entry, parse_created(image.attrs.get("Created", 0))))
    return infos


def images_in_use(client: Any) -> dict[str, str]:
    """image id -> name of one container (any state, anyone's) created from it."""
    used: dict[str, str] = {}
    for container in client.containers.list(all=True):
        used.setdefault(container.attrs.get("Image", ""), container.name)
    return used


def remove_image(client: Any, image: ImageInfo) -> str:
    """Untag each tag, then drop the id if nothing references it; never forced, so children and users are safe."""
    from docker.errors import NotFound

    for tag in image.tags:
        client.images.remove(tag, noprune=False)
    if not image.tags:
        client.images.remove(image.id, noprune=False)
        return "removed"
    try:  # the last untag deletes the image unless a child image still needs its layers
        client.images.get(image.id)
    except NotFound:
        return "removed"
    return "untagged"


def prune_images(
    client: Any, *, keep: int = DEFAULT_KEEP, scope: Mapping[str, str] | None = None, dry_run: bool = False
) -> list[ImageAction]:
    from docker.errors import APIError, NotFound

    planned = plan_image_prune(managed_images(client, scope), keep, images_in_use(client))
    done: list[ImageAction] = []
    for step in planned:
        if step.action != "remove":
            done.append(step)
        elif dry_run:
            done.append(ImageAction(step.image, "would-remove", step.detail))
        else:
            try:
                done.append(ImageAction(step.image, remove_image(client, step.image), step.detail))
            except NotFound:
                done.append(ImageAction(step.image, "removed", "already gone"))
            except APIError as exc:  # a container appeared meanwhile, or a dependent child image
                done.append(ImageAction(step.image, "skipped", str(exc.explanation or exc)))
    return done


# ---------------------------------------------------------------- entry points


def clean(
    client: Any,
    *,
    keep: int = DEFAULT_KEEP,
    stop_timeout: int = DEFAULT_STOP_TIMEOUT,
    scope: Mapping[str, str] | None = None,
    dry_run: bool = False,
) -> CleanResult:
    """Stop and remove rocmci's containers (GPU holders first), then prune its images past `keep` per entry.

    `scope` adds label=value filters on top of `io.rocmci.managed=true` (e.g. one test's or one runner's objects).
    """
    containers, container_errors = clean_containers(client, stop_timeout=stop_timeout, scope=scope, dry_run=dry_run)
    images = prune_images(client, keep=keep, scope=scope, dry_run=dry_run)
    return CleanResult(tuple(containers), tuple(images), dry_run, tuple(container_errors))


def clean_command(
    keep: int = DEFAULT_KEEP,
    stop_timeout: int | None = None,
    dry_run: bool = False,
    entry: str | None = None,
    client_factory: Callable[[], Any] | None = None,
) -> int:
    """`invoke clean [--keep N] [--stop-timeout S] [--entry ID] [--dry-run]`: print what was done, return the exit code.

    `entry` narrows everything to one entry's containers and images: what a CI job uses on a host whose Docker
    engine serves several runners, so one job's cleanup never stops another runner's validation.
    """
    timeout = stop_timeout if stop_timeout is not None else int(os.environ.get("ROCMCI_STOP_TIMEOUT", DEFAULT_STOP_TIMEOUT))
    scope = {ENTRY_LABEL: entry} if entry else None
    result = clean((client_factory or default_client)(), keep=keep, stop_timeout=timeout, scope=scope, dry_run=dry_run)
    print(result.summary())
    return result.exit_code
