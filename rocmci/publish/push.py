"""Publish: push locally validated images and attach their reports.

`publish` checks every item's image, content tag and evidence before pushing any (`check_before_push`), pushes each
through the Docker engine and verifies that what landed is the validated image (`_push_verified`), then
`attach_and_move` attaches the report and moves the validated tags for a pass only; `publish.json` records it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from rocmci.errors import RegistryError, RocmciError
from rocmci.labels import EXTRA_CA_LABEL
from rocmci.oci import (
    PASSWORD_ENV,
    USER_ENV,
    Log,
    Manifest,
    RegistryClient,
    as_documents,
    client_for,
    format_time,
    image_mismatch,
    image_store,
    split_repository,
)
from rocmci.plan import validated_tag_for as validated_tag
from rocmci.publish.attach import attach_and_move, publisher_time, record_result
from rocmci.publish.items import DocumentsFor, PublishItem, PublishResult, report_documents

if TYPE_CHECKING:
    import docker

    from rocmci.attest import PublishHooks


T = TypeVar("T")
Ready = TypeVar("Ready")


class ImageMissing(RegistryError):
    """The local engine does not have the image an entry would publish."""


def engine_auth() -> dict[str, str] | None:
    """Explicit auth for the engine only from our environment variables; the engine reads the Docker config itself."""
    if os.environ.get(USER_ENV) and os.environ.get(PASSWORD_ENV):
        return {"username": os.environ[USER_ENV], "password": os.environ[PASSWORD_ENV]}
    return None


def follow_stream(lines: Iterable[Any], what: str, log: Log, prefix: str, client: RegistryClient) -> str | None:
    """Follow an engine push/pull stream: log finished layers, raise on an error line, return the digest it reports."""
    digest = None
    for line in lines:
        if not isinstance(line, dict):
            continue
        if line.get("error") or line.get("errorDetail"):
            message = line.get("error") or (line.get("errorDetail") or {}).get("message")
            raise client.error(f"{what} failed: {message}")
        status = str(line.get("status", ""))
        finished = status in {"Pushed", "Layer already exists", "Pull complete", "Already exists"} or status.startswith(
            "Mounted from"
        )
        if line.get("id") and finished:
            log(f"{prefix}  {line['id']}: {status}")
        digest = (line.get("aux") or {}).get("Digest") or digest
    return digest


@dataclass(frozen=True)
class Checked:
    """An item whose local image, content tag and evidence were checked before anything of any item was pushed."""

    item: PublishItem
    image: Any = field(repr=False)  # docker.models.images.Image, fixed by id
    image_id: str
    in_registry: Manifest | None  # the content tag already names this very image: nothing to push


def _local_image(engine: docker.DockerClient, item: PublishItem) -> Any:
    from docker.errors import ImageNotFound

    try:
        image = engine.images.get(item.local_ref)
    except ImageNotFound:
        raise ImageMissing(f"{item.local_ref} is not in the local engine (run invoke build and validate first)") from None
    if image.labels.get(EXTRA_CA_LABEL) == "baked":
        raise RegistryError(
            f"{item.local_ref} has a private CA baked in (--bake-ca): it is for its build host only, never published"
        )
    if item.validated_image_id and image.id != item.validated_image_id:
        raise RegistryError(
            f"{item.local_ref} is {image.id[:19]} but validation ran on {item.validated_image_id[:19]}: validate it again"
        )
    return image


def _content_tag_in_registry(client: RegistryClient, repository: str, tag: str, image_id: str, store: str) -> Manifest | None:
    """The content tag's manifest when it already names this image; a content tag naming another image never moves."""
    name = split_repository(repository)[1]
    head = client.head_manifest(name, tag)
    if head is None:
        return None
    manifest = client.get_manifest(name, head.digest)
    why = image_mismatch(manifest, image_id, store)
    if why:
        raise RegistryError(
            f"{repository}:{tag} already names another image ({head.digest[:19]}: {why}): a content tag never moves to "
            "another digest; nothing pushed (build the same inputs reproducibly, or publish the image that tag names)"
        )
    return manifest


def check_before_push(
    item: PublishItem,
    repository: str,
    *,
    engine: docker.DockerClient,
    client: RegistryClient,
    store: str,
    documents_for: DocumentsFor,
    report_time: str,
) -> Checked:
    """Everything that can refuse an item without pushing: its result, local image, content tag and evidence.

    The evidence is built for the digest the image will have (the content tag's, an earlier publish's, or the image
    id as a stand-in before the first push); after the push it is built again for the pushed digest."""
    if item.problem:
        raise RegistryError(item.problem)
    image = _local_image(engine, item)
    in_registry = _content_tag_in_registry(client, repository, item.tag, image.id, store)
    expected = in_registry.digest if in_registry else (item.recorded_digest or image.id)
    problems = as_documents(documents_for(item, expected, repository, report_time)).problems(expected)
    if problems:
        raise RegistryError(f"the evidence of {item.entry_id} is inconsistent, nothing pushed: {'; '.join(problems)}")
    return Checked(item, image, image.id, in_registry)


def _push_verified(
    engine: docker.DockerClient, client: RegistryClient, checked: Checked, repository: str, store: str, log: Log
) -> Manifest:
    """Push the checked image under its content tag; the manifest that landed, or a refusal when it is not the
    validated image (the engine pushes whatever the local name means when the push starts: another publisher on
    this engine may re-tag that name in between, and the Docker API has no push by image id)."""
    item = checked.item
    prefix = f"publishing {item.entry_id}:"
    name = split_repository(repository)[1]
    checked.image.tag(repository, item.tag)  # from the image id, never from the mutable local name
    log(f"{prefix} pushing {repository}:{item.tag}")
    lines = engine.api.push(repository, tag=item.tag, stream=True, decode=True, auth_config=engine_auth())
    pushed = follow_stream(lines, f"push of {repository}:{item.tag}", log, prefix, client)
    on_tag = None if pushed else client.head_manifest(name, item.tag)
    digest = pushed or (on_tag.digest if on_tag else None)
    if not digest or not client.head_manifest(name, digest):
        raise client.error(f"{repository}:{item.tag} is not in the registry after the push")
    manifest = client.get_manifest(name, digest)
    why = image_mismatch(manifest, checked.image_id, store)
    if why:
        raise RegistryError(
            f"refused: the push of {repository}:{item.tag} sent {digest}, which is not the validated image ({why}); "
            f"was {repository}:{item.tag} re-tagged during the push? no report attached, {validated_tag(item.gpu, item.stack)} "
            "not moved"
        )
    return manifest


def publish_one(
    checked: Checked,
    repository: str,
    *,
    engine: docker.DockerClient,
    client: RegistryClient,
    store: str,
    documents_for: DocumentsFor,
    log: Log,
    hooks: PublishHooks | None = None,
) -> PublishResult:
    """Push (unless the content tag already names the image), verify, attach the report, move the validated tags
    (`<gpu>-<stack>-validated`, then `<gpu>-validated`). Entries that share a build publish one image: the first
    pushes it, the others find it under the content tag and attach their own report to the same digest."""
    item = checked.item
    prefix = f"publishing {item.entry_id}:"
    manifest = checked.in_registry or _content_tag_in_registry(client, repository, item.tag, checked.image_id, store)
    if manifest:
        log(f"{prefix} {repository}:{item.tag} already is this image ({manifest.digest}): not pushed again")
    else:
        manifest = _push_verified(engine, client, checked, repository, store, log)
    result = attach_and_move(item, repository, manifest, client=client, documents_for=documents_for, log=log, hooks=hooks)
    record_result(item, result, repository)
    return result


def publish(
    items: Sequence[PublishItem],
    repository: str,
    *,
    documents_for: DocumentsFor | None = None,
    engine: docker.DockerClient | None = None,
    client: RegistryClient | None = None,
    insecure: bool | None = None,
    log: Log = print,
    hooks: PublishHooks | None = None,
) -> list[PublishResult]:
    """Check every item (image, content tag, evidence) first, then push each by digest, verify that what landed
    is the validated image, attach its report, and move `<gpu>-validated` for passing reports only.

    One result per item; an error on one entry is recorded and the next entry still runs.
    """
    split_repository(repository)
    if engine is None:
        from rocmci.engine import docker_client

        engine = docker_client()
    client = client or client_for(repository, insecure)[0]
    documents_for = documents_for or report_documents
    try:
        store = image_store(engine.info())
        report_time = format_time(publisher_time(client, log))
    except Exception as exc:  # the engine or the registry cannot serve this publish: every entry fails, none is pushed
        reason = client.redact(str(exc) if isinstance(exc, RocmciError) else f"{type(exc).__name__}: {exc}") + "; nothing pushed"
        log(f"publish: {reason}")
        return [failed_result(item, "error", reason) for item in items]

    def check(item: PublishItem) -> Checked:
        return check_before_push(
            item, repository, engine=engine, client=client, store=store, documents_for=documents_for, report_time=report_time
        )

    def push(ready: Checked) -> PublishResult:
        return publish_one(
            ready, repository, engine=engine, client=client, store=store, documents_for=documents_for, log=log, hooks=hooks
        )

    return check_all_then_each(items, items, check, push, client, log)


def check_all_then_each(
    items: Sequence[PublishItem],
    work: Sequence[T],
    check: Callable[[T], Ready],
    do: Callable[[Ready], PublishResult],
    client: RegistryClient,
    log: Log,
) -> list[PublishResult]:
    """check() every piece of work before do() runs on any; one result per item, in order. A refusal or error fails
    only its own entry (`guarded`), and do() runs only on what passed its check."""
    results: dict[int, PublishResult] = {}
    ready: dict[int, Ready] = {}
    for index, (item, piece) in enumerate(zip(items, work, strict=True)):
        outcome = guarded(item, client, log, lambda piece=piece: check(piece))
        (results if isinstance(outcome, PublishResult) else ready)[index] = outcome
    for index, checked in ready.items():
        results[index] = guarded(items[index], client, log, lambda checked=checked: do(checked))
    return [results[index] for index in range(len(items))]


def guarded(item: PublishItem, client: RegistryClient, log: Log, step: Callable[[], Any]) -> Any:
    """step()'s value, or the error result of this one entry (logged)."""
    try:
        return step()
    except ImageMissing as exc:
        unvalidated = not (item.entry_dir / "result.json").is_file()
        result = failed_result(item, "skipped" if unvalidated else "error", str(exc))
    except (RocmciError, OSError, ValueError, KeyError) as exc:
        result = failed_result(item, "error", client.redact(str(exc)))
    except Exception as exc:  # docker.errors.* and anything the engine raises: one entry fails, not the run
        result = failed_result(item, "error", client.redact(f"{type(exc).__name__}: {exc}"))
    log(f"publishing {item.entry_id}: {result.status}: {result.reason}")
    return result


def failed_result(item: PublishItem, status: str, message: str) -> PublishResult:
    return PublishResult(
        item.entry_id, item.gpu, status, tag=item.tag, validated_tag=validated_tag(item.gpu, item.stack), reason=message
    )
