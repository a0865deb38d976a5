"""The second half of publish and promote: the report attached to the image in the release repository, the
validated tags moved to it (only for a pass), and `publish.json` recording what was done."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from rocmci.oci import (
    CLOCK_TOLERANCE,
    REPORT_ARTIFACT_TYPE,
    AttachedReport,
    Descriptor,
    Log,
    Manifest,
    RegistryClient,
    ahead_of_registry,
    as_documents,
    attach_report,
    format_time,
    newest_passing_report,
    read_report,
    report_order,
    split_repository,
)
from rocmci.oci.artifacts import clock_tolerance_text
from rocmci.oci.client import settle
from rocmci.plan import validated_tag_for as validated_tag
from rocmci.publish.items import DocumentsFor, PublishItem, PublishResult
from rocmci.publish.record import PublishRecord, now_iso, write_publish_record

if TYPE_CHECKING:
    from rocmci.attest import PublishHooks


def _utc_now() -> datetime:
    return datetime.now(UTC)


def publisher_time(client: RegistryClient, log: Log) -> datetime:
    """The report time this publisher may claim: its own clock (microseconds), refused when it is further than
    CLOCK_TOLERANCE from the registry's (its `Date` header): a runner with a clock in the future would otherwise
    claim the newest report for good."""
    now = _utc_now()
    registry_now = client.registry_now()
    if registry_now is None:
        log(f"publish: registry {client.host} sends no Date header: report time from this runner's clock, unchecked")
        return now
    skew = (now - registry_now).total_seconds()
    if abs(skew) > CLOCK_TOLERANCE.total_seconds():
        raise client.error(
            f"this runner's clock ({format_time(now)}) is {skew:+.0f} s from the registry's (Date {format_time(registry_now)}), "
            f"more than the {clock_tolerance_text()} allowed: fix the clock (NTP)"
        )
    return now


# ---------------------------------------------------------------- validated tag


@dataclass(frozen=True)
class TagMove:
    tag: str
    moved: bool
    reason: str


def move_validated_tag(
    client: RegistryClient,
    name: str,
    gpu: str,
    digest: str,
    report: AttachedReport,
    attempts: int = 6,
    stack: str | None = None,
) -> TagMove:
    """Point `<gpu>-validated` (`<gpu>-<stack>-validated` with a stack) at `digest` (exact manifest bytes) unless
    the current one has a later passing report on that GPU (and stack) (report_order; reports claiming a time past
    the registry's clock + CLOCK_TOLERANCE do not count).

    Racers converge: each re-reads after a settle delay longer than its own read-write window and re-decides.
    """
    tag = validated_tag(gpu, stack)
    wrong_stack = stack is not None and report.entry.get("stack") != stack
    if report.verdict != "pass" or report.entry.get("gpu") != gpu or report.subject_digest != digest or wrong_stack:
        on = f"{gpu} x {stack}" if stack else gpu
        return TagMove(tag, False, f"report {report.artifact.digest[:19]} is not a pass on {on} for {digest[:19]}")
    bound = client.time_bound()
    too_late = ahead_of_registry(report, bound)
    if too_late:
        return TagMove(tag, False, f"{too_late}: {tag} not moved")
    manifest = client.get_manifest(name, digest)
    for _ in range(attempts):
        started = time.monotonic()
        current = client.head_manifest(name, tag)
        if current is None or current.digest != digest:
            theirs = newest_passing_report(client, name, current.digest, gpu, bound, stack) if current else None
            if current and theirs and report_order(theirs) > report_order(report):
                return TagMove(
                    tag,
                    False,
                    f"{tag} stays on {current.digest}: its report ({format_time(theirs.report_time)}) is newer than ours "
                    f"({format_time(report.report_time)})",
                )
            client.put_manifest(name, tag, manifest.body, manifest.media_type)
        settle(time.monotonic() - started)
        after = client.head_manifest(name, tag)
        if after and after.digest == digest:
            return TagMove(tag, True, f"{tag} -> {digest}")
    return TagMove(
        tag, False, f"{tag} kept changing under concurrent publishers; left it on {after.digest if after else 'nothing'}"
    )


def attach_and_move(
    item: PublishItem,
    repository: str,
    manifest: Manifest,
    *,
    client: RegistryClient,
    documents_for: DocumentsFor,
    log: Log,
    hooks: PublishHooks | None = None,
    verb: str = "publishing",
) -> PublishResult:
    """The image is in `repository` as `manifest`: attach its report there (the regression gate and signing through
    `hooks`), and only for a pass on the item's GPU (and stack) move `<gpu>-<stack>-validated`, then `<gpu>-validated`
    to the exact manifest bytes."""
    _, name = split_repository(repository)
    prefix = f"{verb} {item.entry_id}:"
    base = {"entry_id": item.entry_id, "gpu": item.gpu, "tag": item.tag, "validated_tag": validated_tag(item.gpu, item.stack)}
    reference = f"{repository}@{manifest.digest}"
    docs = as_documents(documents_for(item, manifest.digest, repository, format_time(publisher_time(client, log))))
    blocked = None
    if hooks:  # rocmci.history's regression gate: the comparison goes into the record (issue 14)
        docs, blocked = hooks.before_attach(client, name, item.gpu, manifest.digest, docs, log)
    log(f"{prefix} attaching report ({docs.verdict}) to {reference}")
    artifact = attach_report(repository, manifest.descriptor, docs, client=client)
    base |= {"reference": reference, "verdict": docs.verdict, "report_digest": artifact.digest}
    if hooks:  # rocmci.attest: the record as a signed in-toto attestation, before any tag moves (issue 14)
        base["attestation"] = hooks.after_attach(reference, docs, log)
    wrong_stack = item.stack is not None and docs.entry.get("stack") != item.stack
    if docs.verdict != "pass" or docs.entry.get("gpu") != item.gpu or wrong_stack:
        why = (
            f"verdict {docs.verdict}"
            if docs.verdict != "pass"
            else f"report is for {docs.entry.get('gpu')} x {docs.entry.get('stack')}"
        )
        reasons = "; ".join(str(r) for r in docs.record.get("reasons") or [])[:300]
        reason = f"{why}{': ' + reasons if reasons else ''}: {base['validated_tag']} not moved"
        log(f"{prefix} {reason}")
        return PublishResult(status="published", moved=False, reason=reason, **base)
    if blocked:
        log(f"{prefix} {blocked}")
        return PublishResult(status="published", moved=False, reason=blocked, **base)
    report = read_report(client, name, manifest.digest, artifact)
    moves = []
    for stack in ([item.stack] if item.stack else []) + [None]:
        log(f"{prefix} moving {validated_tag(item.gpu, stack)}")
        moves.append(move_validated_tag(client, name, item.gpu, manifest.digest, report, stack=stack))
        log(f"{prefix} {moves[-1].reason}")
    if any(move.moved for move in moves):
        _ensure_listed(client, name, manifest.digest, artifact)
    moved = tuple(move.tag for move in moves if move.moved)
    reason = "; ".join(move.reason for move in moves)
    return PublishResult(status="published", moved=moves[0].moved, reason=reason, moved_tags=moved, **base)


def _ensure_listed(client: RegistryClient, name: str, digest: str, artifact: Descriptor) -> None:
    """The validated tag must not point at an image whose report a racing index writer dropped."""
    if not any(d.digest == artifact.digest for d in client.referrers(name, digest, REPORT_ARTIFACT_TYPE)):
        client.add_to_fallback_index(name, digest, artifact)


def record_result(item: PublishItem, result: PublishResult, repository: str) -> None:
    """publish.json for a published entry (the report is attached; the tags moved are listed, maybe none)."""
    if result.status != "published" or not result.reference or not result.report_digest:
        return
    record = PublishRecord(
        entry_id=item.entry_id,
        repository=repository,
        digest=result.reference.rsplit("@", 1)[1],
        report_digest=result.report_digest,
        tags_moved=list(result.moved_tags),
        signed=result.attestation is not None,
        finished=now_iso(),
    )
    write_publish_record(Path(item.entry_dir), record)
