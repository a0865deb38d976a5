"""Promote: a publish that needs no local image and no engine (issue 11).

The build pushed each entry to staging under its content tag and recorded the digest (`<reports>/builds/<id>.json`);
validation ran on exactly that digest. Promotion checks every entry first (build record, staging tag still on the
recorded digest, the image validation ran on, the evidence), then per entry: where the release repository differs
from staging, mounts every blob the manifest names (config included) from staging and PUTs the same manifest bytes
under the content tag in release; then attaches the report there and moves the validated tags for a pass only
(`attach_and_move`). No layer bytes pass through this machine. A mount the registry answers with an upload (202) is
cancelled and fails the entry before any tag is written.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from rocmci.errors import RegistryError, RocmciError
from rocmci.oci import (
    DOCKER_MANIFEST,
    OCI_MANIFEST,
    Descriptor,
    Log,
    Manifest,
    RegistryClient,
    as_documents,
    client_for,
    config_digest,
    format_time,
    split_repository,
)
from rocmci.publish.attach import attach_and_move, publisher_time, record_result
from rocmci.publish.items import DocumentsFor, PublishItem, PublishResult, report_documents, validated_image
from rocmci.publish.push import failed_result, guarded
from rocmci.publish.record import BuildRecord, read_build_record

if TYPE_CHECKING:
    from rocmci.attest import PublishHooks
    from rocmci.plan import Entry


@dataclass(frozen=True)
class Promotion:
    """One entry to promote: what validation ran on (`item`), and what the build pushed to staging (`build`)."""

    item: PublishItem
    build: BuildRecord | None = field(default=None, repr=False)


@dataclass(frozen=True)
class Staged:
    """A promotion whose build record, staging tag, validated image and evidence were checked before anything moved."""

    item: PublishItem
    staging: str  # the staging repository
    manifest: Manifest


def split_reference(reference: str) -> tuple[str, str]:
    """`host:5000/repo:tag` -> (`host:5000/repo`, `tag`)."""
    repository, colon, tag = reference.rpartition(":")
    if not colon or "/" in tag or not repository:
        raise RegistryError(f"build record reference {reference!r} is not <repository>:<tag>")
    return repository, tag


def promotion_items(entries: Iterable[Entry], reports_dir: Path) -> list[Promotion]:
    """For each entry: its validated result (result.json) and its build record (`<reports>/builds/<build_id>.json`)."""
    promotions = []
    for entry in entries:
        entry_dir = Path(reports_dir) / entry.id
        image, problem = validated_image(entry_dir, entry.tag)
        build = None
        try:
            build = read_build_record(Path(reports_dir) / "builds" / f"{entry.build_id}.json")
        except RocmciError as exc:
            problem = problem or str(exc)
        if build and entry.id not in build.entries:
            problem = problem or f"build record {build.build_id} does not list entry {entry.id}"
        reference = build.reference if build else entry.tag
        item = PublishItem(
            entry.id,
            entry.gpu,
            reference,
            entry.tag,
            entry_dir,
            image.get("id"),
            problem,
            build.digest if build else None,
            entry.stack_name,
        )
        promotions.append(Promotion(item, build))
    return promotions


def check_before_promote(
    promotion: Promotion, release: str, *, client: RegistryClient, documents_for: DocumentsFor, report_time: str
) -> Staged:
    """Everything that can refuse a promotion before anything is written to any repository."""
    item, build = promotion.item, promotion.build
    if item.problem:
        raise RegistryError(item.problem)
    if build is None:
        raise RegistryError(f"{item.entry_id}: no build record")
    staging, tag = split_reference(build.reference)
    if tag != item.tag:
        raise RegistryError(f"build record {build.build_id} pushed tag {tag}; the plan's tag is {item.tag}: build it again")
    (staging_host, staging_name), (release_host, release_name) = split_repository(staging), split_repository(release)
    if staging_host != release_host:
        raise RegistryError(
            f"staging {staging} and release {release} are on different registries: promotion mounts blobs within one "
            "registry and moves no layer bytes"
        )
    head = client.head_manifest(staging_name, tag)
    if head is None:
        raise RegistryError(f"{build.reference} is not in staging (any more): nothing promoted")
    if head.digest != build.digest:
        raise RegistryError(f"{build.reference} now names {head.digest}, the build recorded {build.digest}: refused")
    manifest = client.get_manifest(staging_name, build.digest)
    if manifest.media_type not in (OCI_MANIFEST, DOCKER_MANIFEST):
        raise RegistryError(f"{build.reference} is a {manifest.media_type}: promotion handles single image manifests")
    if config_digest(manifest) != build.image_id:
        raise RegistryError(f"{build.reference}: config {config_digest(manifest)} is not the recorded image {build.image_id}")
    if item.validated_image_id is None:
        raise RegistryError(f"{item.entry_id} has no validated result ({item.entry_dir / 'result.json'}): validate it first")
    if item.validated_image_id not in (build.digest, build.image_id):
        raise RegistryError(
            f"validation ran on {item.validated_image_id[:19]}, not on the built image {build.digest[:19]}: validate it again"
        )
    if release_name != staging_name:
        on_release = client.head_manifest(release_name, tag)
        if on_release and on_release.digest != build.digest:
            raise RegistryError(
                f"{release}:{tag} already names another image ({on_release.digest[:19]}): a content tag never moves to "
                "another digest; nothing promoted"
            )
    problems = as_documents(documents_for(item, build.digest, release, report_time)).problems(build.digest)
    if problems:
        raise RegistryError(f"the evidence of {item.entry_id} is inconsistent, nothing promoted: {'; '.join(problems)}")
    return Staged(item, staging, manifest)


def blobs_of(manifest: Manifest) -> list[Descriptor]:
    """Every blob an image manifest names: its config and its layers."""
    document = manifest.json
    listed = [document.get("config"), *(document.get("layers") or [])]
    if not all(isinstance(d, dict) for d in listed):
        raise RegistryError(f"manifest {manifest.digest} lacks a config or has a malformed layer list")
    return [Descriptor.from_json(d) for d in listed]


def copy_by_mount(client: RegistryClient, staged: Staged, release: str, log: Log) -> None:
    """Mount every blob from staging into release, then PUT the same manifest bytes under the content tag."""
    prefix = f"promoting {staged.item.entry_id}:"
    staging_name, release_name = split_repository(staged.staging)[1], split_repository(release)[1]
    blobs = blobs_of(staged.manifest)
    for blob in blobs:
        client.mount_blob(release_name, blob.digest, staging_name)
    log(f"{prefix} {len(blobs)} blobs mounted from {staged.staging} into {release}")
    client.put_manifest(release_name, staged.item.tag, staged.manifest.body, staged.manifest.media_type)
    log(f"{prefix} {release}:{staged.item.tag} -> {staged.manifest.digest}")


def promote_one(
    staged: Staged,
    release: str,
    *,
    client: RegistryClient,
    documents_for: DocumentsFor,
    log: Log,
    hooks: PublishHooks | None = None,
) -> PublishResult:
    if split_repository(release)[1] != split_repository(staged.staging)[1]:
        copy_by_mount(client, staged, release, log)
    item = replace(staged.item, local_ref=f"{staged.staging}@{staged.manifest.digest}")
    result = attach_and_move(
        item, release, staged.manifest, client=client, documents_for=documents_for, log=log, hooks=hooks, verb="promoting"
    )
    record_result(item, result, release)
    return result


def promote(
    promotions: Sequence[Promotion],
    release: str,
    *,
    documents_for: DocumentsFor | None = None,
    client: RegistryClient | None = None,
    insecure: bool | None = None,
    log: Log = print,
    hooks: PublishHooks | None = None,
) -> list[PublishResult]:
    """Check every promotion first, then promote each; one result per promotion, an error fails only its entry."""
    split_repository(release)
    client = client or client_for(release, insecure)[0]
    documents_for = documents_for or report_documents
    items = [p.item for p in promotions]
    try:
        report_time = format_time(publisher_time(client, log))
    except RocmciError as exc:
        reason = f"{exc}; nothing promoted"
        log(f"promote: {reason}")
        return [failed_result(item, "error", reason) for item in items]
    results: dict[int, PublishResult] = {}
    staged: dict[int, Staged] = {}
    for index, promotion in enumerate(promotions):
        outcome = guarded(
            promotion.item,
            client,
            log,
            lambda promotion=promotion: check_before_promote(
                promotion, release, client=client, documents_for=documents_for, report_time=report_time
            ),
        )
        (staged if isinstance(outcome, Staged) else results)[index] = outcome
    for index, ready in staged.items():
        results[index] = guarded(
            ready.item,
            client,
            log,
            lambda ready=ready: promote_one(ready, release, client=client, documents_for=documents_for, log=log, hooks=hooks),
        )
    return [results[index] for index in range(len(promotions))]
