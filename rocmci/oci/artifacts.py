"""Compat reports as OCI 1.1 artifacts: attach a report to an image (`subject`), read reports back verified against
the image they are attached to, and the one order of passing reports (`report_order`) with the registry's clock as
the bound on report times.

Referrers come from the referrers API where the registry has it, else from the `sha256-<hex>` fallback index, which
is per repository: a report attached in one repository is not seen from another.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from rocmci import labels
from rocmci.contracts import is_pass
from rocmci.errors import RegistryError
from rocmci.oci.client import CLOCK_TOLERANCE, RegistryClient, _canonical, client_for
from rocmci.oci.reference import (
    EMPTY_DESCRIPTOR,
    EMPTY_JSON,
    EMPTY_MEDIA_TYPE,
    INTOTO_MEDIA_TYPE,
    OCI_MANIFEST,
    REPORT_ARTIFACT_TYPE,
    VERDICTS,
    Descriptor,
    config_digest,
    digest_of,
    split_repository,
)


def parse_time(value: Any) -> datetime:
    if not isinstance(value, str):
        raise ValueError(f"expected an ISO 8601 time (got {value!r})")
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


@dataclass(frozen=True)
class ReportDocuments:
    """What report.entry_documents returns: the per-entry compat record and its in-toto statement."""

    record: Mapping[str, Any]
    statement: Mapping[str, Any]

    @property
    def verdict(self) -> str:
        return str(self.record.get("verdict"))

    @property
    def entry(self) -> Mapping[str, Any]:
        return self.record.get("entry") or {}

    @property
    def report_time(self) -> datetime:
        return parse_time(self.record.get("report_time"))

    def statement_subjects(self) -> list[str]:
        subjects = self.statement.get("subject") or []
        return [f"sha256:{s.get('digest', {}).get('sha256')}" for s in subjects if isinstance(s, dict)]

    def problems(self, image_digest: str) -> list[str]:
        """Why these documents cannot be a report on `image_digest` (empty when they can)."""
        found: list[str] = []
        if self.verdict not in VERDICTS:
            found.append(f"verdict {self.verdict!r} is not one of {', '.join(VERDICTS)}")
        try:
            self.report_time  # noqa: B018 - parse check
        except ValueError as exc:
            found.append(f"report_time: {exc}")
        if not self.entry.get("gpu") or not self.entry.get("id"):
            found.append("the record has no entry.id/entry.gpu")
        named = (self.record.get("image") or {}).get("digest")
        if named != image_digest:
            found.append(f"the record names image {named}, not {image_digest}")
        subjects = self.statement_subjects()
        if not subjects or subjects[0] != image_digest:
            found.append(f"the in-toto subject names {subjects[0] if subjects else 'nothing'}, not {image_digest}")
        return found


def as_documents(documents: ReportDocuments | tuple[Mapping[str, Any], Mapping[str, Any]]) -> ReportDocuments:
    return documents if isinstance(documents, ReportDocuments) else ReportDocuments(*documents)


def report_manifest(subject: Descriptor, documents: ReportDocuments, record: Descriptor, statement: Descriptor) -> dict[str, Any]:
    """The OCI 1.1 artifact manifest of a compat report on `subject`."""
    return {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": REPORT_ARTIFACT_TYPE,
        "config": EMPTY_DESCRIPTOR.to_json(),
        "layers": [record.to_json(), statement.to_json()],
        "subject": Descriptor(subject.media_type, subject.digest, subject.size).to_json(),
        "annotations": _report_annotations(documents),
    }


def _report_annotations(documents: ReportDocuments) -> dict[str, str]:
    return {
        "org.opencontainers.image.created": str(documents.record.get("report_time")),
        labels.VERDICT_LABEL: documents.verdict,
        labels.ENTRY_LABEL: str(documents.entry.get("id", "")),
        labels.GPU_LABEL: str(documents.entry.get("gpu", "")),
    } | ({labels.STACK_LABEL: str(documents.entry["stack"])} if documents.entry.get("stack") else {})


def attach_report(
    repository: str,
    subject: Descriptor,
    documents: ReportDocuments | tuple[Mapping[str, Any], Mapping[str, Any]],
    *,
    client: RegistryClient | None = None,
    validate: bool = True,
) -> Descriptor:
    """Push the report as an artifact referring to `subject` (by digest) and index it; returns its descriptor.

    `validate=False` skips the consistency checks (only for tests that need a deliberately inconsistent report).
    """
    docs = as_documents(documents)
    client, name = (client, split_repository(repository)[1]) if client else client_for(repository)
    problems = docs.problems(subject.digest) if validate else []
    if problems:
        raise RegistryError(f"report for {repository}@{subject.digest} is inconsistent: {'; '.join(problems)}")
    client.upload_blob(name, EMPTY_JSON, EMPTY_MEDIA_TYPE)
    record = client.upload_blob(
        name, _canonical(docs.record), REPORT_ARTIFACT_TYPE, annotations={"org.opencontainers.image.title": "compat.json"}
    )
    statement = client.upload_blob(
        name,
        _canonical(docs.statement),
        INTOTO_MEDIA_TYPE,
        annotations={"org.opencontainers.image.title": "statement.intoto.json"},
    )
    body = _canonical(report_manifest(subject, docs, record, statement))
    digest, response = client.put_manifest(name, digest_of(body), body, OCI_MANIFEST)
    artifact = Descriptor(OCI_MANIFEST, digest, len(body), REPORT_ARTIFACT_TYPE, _report_annotations(docs))
    if response.headers.get("OCI-Subject") != subject.digest:
        client.add_to_fallback_index(name, subject.digest, artifact)
    return artifact


@dataclass(frozen=True)
class AttachedReport:
    """A report artifact read back and verified against the manifest it is attached to."""

    artifact: Descriptor
    subject_digest: str
    documents: ReportDocuments = field(repr=False)

    @property
    def verdict(self) -> str:
        return self.documents.verdict

    @property
    def report_time(self) -> datetime:
        return self.documents.report_time

    @property
    def entry(self) -> Mapping[str, Any]:
        return self.documents.entry


def read_report(client: RegistryClient, name: str, subject_digest: str, artifact: Descriptor) -> AttachedReport:
    """Fetch one report artifact and check it: attached to `subject_digest` and naming that same image."""
    manifest = client.get_manifest(name, artifact.digest).json
    short = artifact.digest[:19]
    if manifest.get("artifactType") != REPORT_ARTIFACT_TYPE:
        raise RegistryError(f"report {short}: artifactType is {manifest.get('artifactType')!r}")
    attached_to = (manifest.get("subject") or {}).get("digest")
    if attached_to != subject_digest:
        raise RegistryError(f"report {short} is listed for {subject_digest} but its subject is {attached_to}")
    layers = [Descriptor.from_json(layer) for layer in manifest.get("layers") or []]
    by_type = {layer.media_type: layer for layer in layers}
    if REPORT_ARTIFACT_TYPE not in by_type or INTOTO_MEDIA_TYPE not in by_type:
        raise RegistryError(f"report {short} lacks its compat record or in-toto statement layer")
    try:
        docs = ReportDocuments(
            *(json.loads(client.get_blob(name, by_type[t])) for t in (REPORT_ARTIFACT_TYPE, INTOTO_MEDIA_TYPE))
        )
    except ValueError:
        raise RegistryError(f"report {short} has a layer that is not JSON") from None
    problems = docs.problems(subject_digest)
    if problems:
        raise RegistryError(f"report {short} attached to {subject_digest} rejected: {'; '.join(problems)}")
    _check_validated_image(client, name, subject_digest, docs, short)
    return AttachedReport(artifact, subject_digest, docs)


def _check_validated_image(client: RegistryClient, name: str, subject_digest: str, docs: ReportDocuments, short: str) -> None:
    """A report that names the image id it validated must sit on that image: the id is the manifest's config
    digest (classic image store) or the manifest digest itself (containerd image store)."""
    validated_id = (docs.record.get("image") or {}).get("id")
    if not validated_id:
        return
    subject = client.get_manifest(name, subject_digest)
    if validated_id not in (subject.digest, config_digest(subject)):
        raise RegistryError(
            f"report {short} attached to {subject_digest} rejected: it validated image {str(validated_id)[:19]}, "
            f"and {subject_digest[:19]} is not that image (config {config_digest(subject)})"
        )


def attached_reports(
    client: RegistryClient, name: str, digest: str, keep: Callable[[Descriptor], str | None] = lambda _d: None
) -> tuple[list[AttachedReport], list[str]]:
    """Verified reports on `digest`, and why others were skipped; `keep` may skip by annotations before fetching."""
    reports: list[AttachedReport] = []
    skipped: list[str] = []
    for artifact in client.referrers(name, digest, REPORT_ARTIFACT_TYPE):
        why = keep(artifact)
        if why:
            skipped.append(why)
            continue
        try:
            reports.append(read_report(client, name, digest, artifact))
        except RegistryError as exc:
            skipped.append(f"rejected: {exc}")
    return reports, skipped


def passing_on(gpu: str, stack: str | None = None) -> Callable[[Descriptor], str | None]:
    def keep(artifact: Descriptor) -> str | None:
        verdict = artifact.annotations.get(labels.VERDICT_LABEL, "pass")
        on = artifact.annotations.get(labels.GPU_LABEL, gpu)
        with_stack = artifact.annotations.get(labels.STACK_LABEL) or stack
        if not is_pass(verdict):
            return f"verdict {verdict}"
        if stack and with_stack != stack:
            return f"report is for stack {with_stack}"
        return None if on == gpu else f"report is for {on}"

    return keep


def newest_passing_report(
    client: RegistryClient, name: str, digest: str, gpu: str, not_after: datetime | None = None, stack: str | None = None
) -> AttachedReport | None:
    """The last passing report on `digest` (on `gpu`, and `stack` when given) by report_order, among those claiming
    no time past `not_after`."""
    reports, _ = attached_reports(client, name, digest, passing_on(gpu, stack))
    passing = [
        r
        for r in reports
        if is_pass(r.verdict)
        and r.entry.get("gpu") == gpu
        and (stack is None or r.entry.get("stack") == stack)
        and (not_after is None or r.report_time <= not_after)
    ]
    return max(passing, key=report_order, default=None)


# ---------------------------------------------------------------- time and order of reports


def format_time(moment: datetime) -> str:
    """A report time as written: UTC, microseconds, `Z` (`2026-12-01T21:40:48.123456Z`)."""
    return moment.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def report_order(report: AttachedReport) -> tuple[datetime, str, str]:
    """The one order of passing reports, for publishers and pullers alike: the later report time wins; on equal
    times (to the microsecond) the larger image digest wins, then the larger report digest (plain string order)."""
    return (report.report_time, report.subject_digest, report.artifact.digest)


def ahead_of_registry(report: AttachedReport, bound: datetime) -> str | None:
    """Why a report may not take part in ordering: it claims a time past the registry's clock + CLOCK_TOLERANCE."""
    if report.report_time <= bound:
        return None
    return (
        f"report time {format_time(report.report_time)} is ahead of the registry's clock + {clock_tolerance_text()} "
        f"({format_time(bound)}): not trusted"
    )


def clock_tolerance_text() -> str:
    return f"{int(CLOCK_TOLERANCE.total_seconds())} s"
