"""Pull only validated images: `find_validated` chooses the newest image (by `report_order`, never by tag order)
whose verified report passed on the GPU (and stack, pins); report times past the registry's clock + CLOCK_TOLERANCE
take no part. `pull` pulls that digest through the engine."""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from rocmci.errors import RegistryError
from rocmci.oci import (
    AttachedReport,
    Log,
    RegistryClient,
    ahead_of_registry,
    attached_reports,
    client_for,
    passing_on,
    report_order,
    split_repository,
)
from rocmci.publish.push import engine_auth, follow_stream

if TYPE_CHECKING:
    import docker

    from rocmci.attest import PullVerifier


def stderr_line(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


@dataclass(frozen=True)
class PullResult:
    repository: str
    gpu: str
    reference: str  # <repository>@sha256:...
    digest: str
    tags: tuple[str, ...]
    entry: Mapping[str, Any]
    report_digest: str
    report_time: str
    image_id: str | None = None
    rejected: tuple[str, ...] = ()
    attestation: Mapping[str, Any] | None = None  # the verified signed attestation (pull --verify)


def _pin_matches(have: Any, want: str | None) -> bool:
    if not want:
        return True
    text = str(have or "")
    return text == want or text.startswith((want + ".", want + "+", want + "-"))


def _candidate_problem(
    report: AttachedReport, gpu: str, torch: str | None, aiter: str | None, stack: str | None = None
) -> str | None:
    if report.verdict != "pass":
        return f"verdict {report.verdict}"
    if report.entry.get("gpu") != gpu:
        return f"report is for {report.entry.get('gpu')}"
    if stack and report.entry.get("stack") != stack:
        return f"stack {report.entry.get('stack')} is not {stack}"
    for pin, want in (("torch", torch), ("aiter", aiter)):
        if not _pin_matches(report.entry.get(pin), want):
            return f"{pin} {report.entry.get(pin)} does not match {want}"
    return None


def find_validated(
    repository: str,
    gpu: str,
    torch: str | None = None,
    aiter: str | None = None,
    *,
    stack: str | None = None,
    build_prefixes: Sequence[str] = (),
    client: RegistryClient | None = None,
    insecure: bool | None = None,
    accept: Callable[[str, Mapping[str, Any]], str | None] | None = None,
) -> tuple[PullResult, list[str]]:
    """The newest (by report time) image of `gpu` (and `stack`) whose verified report passed and matches the pins;
    no pull. Candidates: tags starting with `<gpu>-` (its validated tags) and with each of `build_prefixes` (content
    tags of the builds the GPU runs: `gfx950-`, `cpu-`), so an older image a pin asks for is found too."""
    client, name = (client, split_repository(repository)[1]) if client else client_for(repository, insecure)
    by_digest: dict[str, list[str]] = {}
    prefixes = (f"{gpu}-", *(f"{prefix}-" for prefix in build_prefixes))
    for tag in sorted(t for t in client.list_tags(name) if t.startswith(prefixes)):
        head = client.head_manifest(name, tag)
        if head:
            by_digest.setdefault(head.digest, []).append(tag)
    best: AttachedReport | None = None
    notes: list[str] = []
    bound = client.time_bound()
    for digest, tags in by_digest.items():
        where = f"{tags[0]}@{digest[:19]}"
        reports, skipped = attached_reports(client, name, digest, passing_on(gpu, stack))
        notes += [f"{where}: {why}" for why in skipped]
        if not reports and not skipped:
            notes.append(f"{where}: no report attached")
        for report in reports:
            problem = _candidate_problem(report, gpu, torch, aiter, stack) or ahead_of_registry(report, bound)
            if problem is None and accept is not None:  # rocmci.attest.PullVerifier: only signed reports (issue 14)
                problem = accept(digest, report.documents.record)
            if problem:
                notes.append(f"{where}: {problem}")
            elif best is None or report_order(report) > report_order(best):
                best = report
    if best is None:
        pins = "".join(f", {k} {v}" for k, v in (("stack", stack), ("torch", torch), ("aiter", aiter)) if v)
        listed = "; ".join(notes) if notes else f"no tags starting with {gpu}-"
        raise RegistryError(f"no image of {repository} passed on {gpu}{pins} ({len(by_digest)} candidates: {listed})")
    report, digest = best, best.subject_digest
    result = PullResult(
        repository=repository,
        gpu=gpu,
        reference=f"{repository}@{digest}",
        digest=digest,
        tags=tuple(by_digest[digest]),
        entry=dict(report.entry),
        report_digest=report.artifact.digest,
        report_time=str(report.documents.record.get("report_time")),
    )
    return result, notes


def pull(
    repository: str,
    gpu: str,
    torch: str | None = None,
    aiter: str | None = None,
    *,
    stack: str | None = None,
    build_prefixes: Sequence[str] = (),
    engine: docker.DockerClient | None = None,
    client: RegistryClient | None = None,
    insecure: bool | None = None,
    log: Log = stderr_line,
    verifier: PullVerifier | None = None,
) -> PullResult:
    """Find the newest validated image for `gpu` (and stack, pins) and pull it by digest (rocmci.pull.lock writes lock files)."""
    split_repository(repository)
    client = client or client_for(repository, insecure)[0]
    found, notes = find_validated(
        repository, gpu, torch, aiter, stack=stack, build_prefixes=build_prefixes, client=client, accept=verifier
    )
    if verifier:
        found = replace(found, attestation=verifier.lock_entry(found.digest))
    for note in notes:
        if "rejected" in note or "not trusted" in note:
            log(f"pull: {note}")
    log(f"pull: {found.reference} (tags {', '.join(found.tags)}; report {found.report_time}, {found.entry.get('id')})")
    if not stack:
        log(f"pull: stack {found.entry.get('stack')}: the newest pass of any stack on {gpu}; --stack keeps to one stack")
    if engine is None:
        from rocmci.engine import docker_client

        engine = docker_client()
    from docker.errors import DockerException

    try:
        lines = engine.api.pull(repository, tag=found.digest, stream=True, decode=True, auth_config=engine_auth())
        follow_stream(lines, f"pull of {found.reference}", log, "pull:", client)
        image = engine.images.get(found.reference)
    except DockerException as exc:
        raise client.error(
            f"the engine could not pull {found.reference}: {exc} (is the engine logged in? docker login)"
        ) from None
    return replace(found, image_id=image.id, rejected=tuple(n for n in notes if "rejected" in n))
