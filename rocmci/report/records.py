"""The collected report and what it records: one EntryReport per planned entry (evidence, verdict, figure), the
per-entry compat record (compat.json's entries, and the report publish attaches) and its in-toto test-result statement."""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rocmci import __version__
from rocmci.contracts import CompatDoc, CompatRecord, PublishRecord, SmokeCase
from rocmci.errors import RocmciError
from rocmci.labels import COMPAT_SCHEMA, PUBLISH_SCHEMA
from rocmci.report.evidence import Evidence, load_evidence, parse_document
from rocmci.report.figures import KNormFigure, cell_label, k_norm_figure
from rocmci.report.verdict import VERDICT_ORDER, Verdict, judge

INTOTO_STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
TEST_RESULT_PREDICATE = "https://in-toto.io/attestation/test-result/v0.1"

_ENTRY_ID = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
_DIGEST = re.compile(r"^sha256:([0-9a-f]{64})$")
_USERINFO = re.compile(r"(?<=://)[^/@\s]+@")
_XML_BAD = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff\ufffe\uffff]")


class ReportError(RocmciError):
    """A report cannot be produced as asked (bad entry id, digest that does not match the run)."""


def redact(text: str) -> str:
    """Drop URL userinfo (user:token@) so no credential embedded in a URL or reference reaches a report."""
    return _USERINFO.sub("", text)


def printable(value: Any) -> str:
    """Text fit for any report: credentials redacted, characters XML cannot carry (NUL, escape codes) dropped."""
    return _XML_BAD.sub("", redact("" if value is None else str(value)))


def unique_case_names(cases: Iterable[SmokeCase]) -> list[tuple[str, SmokeCase]]:
    """Each smoke case with its label, numbered where two cases share one (as junit.xml and in-toto name them)."""
    seen: dict[str, int] = {}
    named = []
    for case in cases:
        name = case.label
        seen[name] = seen.get(name, 0) + 1
        named.append((name if seen[name] == 1 else f"{name} #{seen[name]}", case))
    return named


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _scrub(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, Mapping):
        return {str(k): _scrub(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_scrub(v) for v in value]
    return value


def _hostname_hash(hostname: str | None) -> str | None:
    return hashlib.sha256(hostname.encode()).hexdigest()[:12] if hostname else None


def _repository_of(ref: str) -> str:
    """`host:5000/rocmci:tag@sha256:..` -> `host:5000/rocmci`."""
    name = ref.split("@", 1)[0]
    slash = name.rfind("/")
    colon = name.rfind(":")
    return name[:colon] if colon > slash else name


@dataclass
class EntryReport:
    entry: dict[str, Any]
    verdict: Verdict
    evidence: Evidence
    k_norm: KNormFigure | None
    published: tuple[str, str] | None = None  # (repository, digest) from publish.json: the image the report names

    @property
    def id(self) -> str:
        return str(self.entry.get("id"))

    @property
    def label(self) -> str:
        return cell_label(self.verdict, self.k_norm)

    @property
    def image_digest(self) -> str | None:
        """The registry digest of the image: the one published, else the one validated (a pull by digest), else None."""
        if self.published:
            return self.published[1]
        result = self.evidence.result if not self.evidence.not_run else None
        return result.image.digest if result else None

    def record(self, report_time: str, subject: tuple[str, str] | None = None) -> dict[str, Any]:
        """The per-entry compat record (one element of compat.json's `entries`, and the published report)."""
        result = self.evidence.result if not self.evidence.not_run else None
        image: dict[str, Any] | None = None
        host: dict[str, Any] | None = None
        if result is not None:
            image = {"ref": result.image.ref, "id": result.image.id, "digest": result.image.digest}
            host = {
                "gpu_name": result.host.gpu_name,
                "gfx": result.host.gfx,
                "gpu_devices": list(result.host.gpu_devices),
                "hostname_hash": _hostname_hash(result.host.hostname),
            }
        subject_doc = None
        subject = subject or self.published
        if subject is not None:
            repository, digest = subject
            subject_doc = {"name": repository, "digest": digest}
            image = {**(image or {"id": None}), "ref": f"{repository}:{self.entry.get('tag')}", "digest": digest}
        elif image and image.get("digest") and _DIGEST.match(str(image["digest"])):
            subject_doc = {"name": _repository_of(image["ref"]), "digest": image["digest"]}
        steps = {}
        for name in ("probe", "smoke"):
            step = self.evidence.step(name) if result is not None else None
            doc = self.evidence.probe if name == "probe" else self.evidence.smoke
            steps[name] = (
                None
                if step is None
                else {
                    "exit_code": step.exit_code,
                    "wall_s": step.wall_s,
                    "skipped": step.skipped,
                    "status": doc.status if doc else None,
                }
            )
        return _scrub(
            {
                "entry": self.entry,
                "image": image,
                "subject": subject_doc,
                "host": host,
                "verdict": self.verdict.verdict,
                "scope": self.verdict.scope,
                "label": self.label,
                "fixture": self.verdict.fixture,
                "reasons": list(self.verdict.reasons),
                "notes": list(self.verdict.notes),
                "k_norm": self.k_norm.to_json() if self.k_norm else None,
                "k_norm_speedup": self.k_norm.speedup_vs_torch_upcast if self.k_norm else None,
                "steps": steps,
                "started": result.started if result else None,
                "finished": result.finished if result else None,
                "report_time": report_time,
            }
        )


@dataclass
class CompatReport:
    generated_at: str
    rocmci_version: str
    entries: list[EntryReport]

    def with_publish_records(self) -> CompatReport:
        """The same verdicts, each entry naming what its publish.json (read now: publish may have run since) says."""
        entries = [replace(item, published=published_subject(item)) for item in self.entries]
        return replace(self, entries=entries)

    def counts(self) -> dict[str, int]:
        counts = {name: 0 for name in VERDICT_ORDER}
        for item in self.entries:
            counts[item.verdict.verdict] += 1
        return counts

    def to_json(self) -> dict[str, Any]:
        """compat.json, checked against its contract (rocmci.contracts.CompatDoc) before anything is written."""
        doc = {
            "schema": COMPAT_SCHEMA,
            "generated_at": self.generated_at,
            "rocmci_version": self.rocmci_version,
            "summary": {**self.counts(), "total": len(self.entries)},
            "entries": [item.record(self.generated_at) for item in self.entries],
        }
        CompatDoc.model_validate(doc)
        return doc


@dataclass(frozen=True)
class ReportPaths:
    compat_json: Path
    compat_md: Path
    junit_xml: Path
    index_html: Path
    intoto: dict[str, Path]
    report: CompatReport


def _entry_dir(reports_dir: Path, entry_id: str) -> Path:
    if not _ENTRY_ID.match(entry_id):
        raise ReportError(f"entry id {entry_id!r} is not a safe directory name")
    return reports_dir / entry_id


def entry_report(entry_dir: Path, entry: Mapping[str, Any] | None = None) -> EntryReport:
    ev = load_evidence(entry_dir, entry)
    verdict = judge(ev)
    figure = k_norm_figure(ev.smoke) if not ev.not_run else None
    return EntryReport(dict(entry) if entry else ev.entry, verdict, ev, figure)


def collect(reports_dir: Path, entries: Sequence[Mapping[str, Any]], generated_at: str | None = None) -> CompatReport:
    """One EntryReport per planned entry (Entry.summary() dicts), in plan order; an entry without a result is not-run.
    Each names the image its publish.json says was pushed, where publish left one."""
    items = [entry_report(_entry_dir(Path(reports_dir), str(entry.get("id"))), entry) for entry in entries]
    return CompatReport(generated_at or _now(), __version__, items).with_publish_records()


def published_subject(item: EntryReport) -> tuple[str, str] | None:
    """(repository, digest) from the entry's publish.json (publish's own file); None where nothing was published. A
    record that cannot be read, or names another entry or another image than the one validated, stops the report."""
    ev = item.evidence
    path = ev.entry_dir / "publish.json"
    if ev.not_run or ev.result is None or not path.exists():
        return None
    record, problem = parse_document(PublishRecord, path, PUBLISH_SCHEMA)
    if record is None:
        raise ReportError(f"{path.parent}/{problem}")
    if record.entry_id != item.id:
        raise ReportError(f"{path}: entry_id: the record is for {record.entry_id!r}, not {item.id!r}")
    validated = ev.result.image.digest
    if validated and validated != record.digest:
        raise ReportError(f"{path}: digest: {record.digest} was published, but the run validated {validated}")
    return redact(record.repository), record.digest


# ---------------------------------------------------------------- in-toto test-result statements


def _test_outcomes(item: EntryReport) -> tuple[list[str], list[str], list[str]]:
    """(passed, warned, failed) test names, named as in junit.xml."""
    passed: list[str] = []
    warned: list[str] = []
    failed: list[str] = []
    ev = item.evidence
    if ev.probe is not None:
        for finding in ev.probe.findings:
            name = f"probe/{finding.code}"
            {"error": failed, "warning": warned}.get(finding.severity, passed).append(name)
    if ev.smoke is not None:
        for name, case in unique_case_names(ev.smoke.cases):
            if case.status == "pass":
                passed.append(f"smoke/{name}")
            elif case.status in ("fail", "error"):
                failed.append(f"smoke/{name}")
        for gate in ev.smoke.gates:
            (passed if gate.passed else failed).append(f"gate/{gate.name}")
    verdict = item.verdict
    if verdict.passed:
        (warned if verdict.notes else passed).append("verdict")
        warned.extend(f"note/{note}" for note in verdict.notes)
    else:
        failed.append("verdict")
    return passed, warned, failed


def intoto_statement(item: EntryReport, subject: tuple[str, str] | None = None, url: str | None = None) -> dict[str, Any]:
    """in-toto Statement v1 with a test-result v0.1 predicate. The subject is the pushed image (repository, sha256:..);
    without a known digest the subject list is empty until publish fills it (entry_documents)."""
    result = item.evidence.result
    subject = subject or item.published
    if subject is None and result is not None and result.image.digest and _DIGEST.match(result.image.digest):
        subject = (_repository_of(result.image.ref), result.image.digest)
    subjects = []
    if subject is not None:
        match = _DIGEST.match(subject[1])
        if match:
            subjects.append({"name": subject[0], "digest": {"sha256": match.group(1)}})
    passed, warned, failed = _test_outcomes(item)
    outcome = "FAILED" if not item.verdict.passed else "WARNED" if warned else "PASSED"
    entry = item.entry
    configuration: list[dict[str, Any]] = [
        {"name": "matrix.yaml", "annotations": {"rocmci.entry": entry, "rocmci.hash_scheme": "rocmci-tag/v1"}},
        {"name": f"{subject[0]}:{entry.get('tag')}" if subject else (result.image.ref if result else str(entry.get("tag")))}
        | ({"digest": {"sha256": subjects[0]["digest"]["sha256"]}} if subjects else {})
        | {"annotations": {"rocmci.image_id": result.image.id if result else None}},
    ]
    if entry.get("base_image"):
        configuration.append({"name": str(entry["base_image"]), "annotations": {"rocmci.role": "base image"}})
    predicate: dict[str, Any] = {
        "result": outcome,
        "configuration": configuration,
        "passedTests": passed,
        "warnedTests": warned,
        "failedTests": failed,
    }
    run_url = url or _ci_run_url()
    if run_url:
        predicate["url"] = run_url
    return _scrub(
        {"_type": INTOTO_STATEMENT_TYPE, "subject": subjects, "predicateType": TEST_RESULT_PREDICATE, "predicate": predicate}
    )


def _ci_run_url() -> str | None:
    server, repo, run = (os.environ.get(k) for k in ("GITHUB_SERVER_URL", "GITHUB_REPOSITORY", "GITHUB_RUN_ID"))
    return f"{server}/{repo}/actions/runs/{run}" if server and repo and run else None


def entry_documents(
    entry_dir: Path, image_digest: str, repository: str, report_time: str | None = None, url: str | None = None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """For the publisher, after it pushed the image: (compat record with subject = repository@image_digest and
    report_time, in-toto statement with that subject). The verdict is computed from the result files."""
    return documents_of(entry_report(Path(entry_dir)), image_digest, repository, report_time, url)


def documents_of(
    item: EntryReport, image_digest: str, repository: str, report_time: str | None = None, url: str | None = None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """entry_documents for an entry judged already (the pipeline judges each entry once, before it publishes)."""
    if not _DIGEST.match(image_digest):
        raise ReportError(f"image digest {image_digest!r} is not sha256:<64 hex>")
    repository = redact(repository)
    result = item.evidence.result
    if result is not None and result.image.digest and result.image.digest != image_digest:
        raise ReportError(
            f"{item.id}: the run validated {result.image.digest}, not {image_digest}: refusing to attach its report to another image"
        )
    subject = (repository, image_digest)
    record = item.record(report_time or _now(), subject)
    CompatRecord.model_validate(record)  # the contract of the report publish attaches (rocmci.contracts)
    return record, intoto_statement(item, subject, url)
