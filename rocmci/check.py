"""`invoke check --image`: validate an image rocmci did not build, report on it, and optionally attach the report to
the image's digest in its registry. An orchestration over validate (rocmci.validate.external), report and the
registry's report artifacts, like bisect and bump (stage 10 of the layers in docs/DESIGN.md)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from rocmci import report as compat
from rocmci.plan import Plan
from rocmci.progress import Progress
from rocmci.validate import RunResult
from rocmci.validate.external import CheckError, Expectations, ExternalEntry, ImageReference, check_entry_id, check_image


@dataclass(frozen=True)
class CheckRequest:
    image: str
    gpu: str
    expect_torch: str | None = None
    expect_aiter: str | None = None
    expect_rocm: str | None = None
    reports_dir: Path = Path("reports/check")
    attach: bool = False


@dataclass(frozen=True)
class Attached:
    reference: str  # repository@sha256:... the report is attached to
    report_digest: str


@dataclass
class CheckOutcome:
    entry: ExternalEntry
    result: RunResult
    paths: compat.ReportPaths
    attached: Attached | None = None

    @property
    def item(self) -> compat.EntryReport:
        return self.paths.report.entries[0]


def external_entry(plan: Plan, request: CheckRequest) -> ExternalEntry:
    """Every input checked before the engine is asked anything (one line per problem)."""
    reference = ImageReference.parse(request.image)
    plan.select(request.gpu)  # an unknown GPU target: one line naming the known ones
    target = plan.matrix.targets[request.gpu]
    expect = Expectations.parse(target, request.expect_torch, request.expect_aiter, request.expect_rocm)
    if request.attach and not _has_host(reference.repository):
        raise CheckError(f"--attach: {reference.text} names no registry host: push it to a registry and check that reference")
    gates = target.gates or plan.matrix.gates
    return ExternalEntry(check_entry_id(request.gpu, reference), request.gpu, target, gates, reference, expect)


def _has_host(repository: str) -> bool:
    first, _, rest = repository.partition("/")
    return bool(rest) and ("." in first or ":" in first or first == "localhost")


def run_check(plan: Plan, request: CheckRequest, progress: Progress | None = None) -> CheckOutcome:
    entry = external_entry(plan, request)
    progress = progress or Progress(width=len(entry.id))
    entry, result = check_image(entry, request.reports_dir, progress)
    attached = None
    if request.attach:
        attached = attach(request.reports_dir / entry.id, entry.reference, result, lambda line: progress.line(entry.id, line))
    # Rendered once, after attach, so every report names the registry digest attach recorded in publish.json.
    paths = compat.write_all(request.reports_dir, [entry.summary()])
    return CheckOutcome(entry, result, paths, attached)


def attach(entry_dir: Path, reference: ImageReference, result: RunResult, log: Callable[[str], None]) -> Attached:
    """The report (compat record + in-toto statement) as an OCI artifact on the image's manifest digest in its own
    registry, only once that manifest is shown to be the image that was checked.

    Every registry call of `invoke check` is here; what it attached is recorded in publish.json, as publish does."""
    from rocmci import oci
    from rocmci.contracts import PublishRecord
    from rocmci.engine import docker_client
    from rocmci.publish.attach import publisher_time
    from rocmci.publish.record import now_iso, write_publish_record

    client, name = oci.client_for(reference.repository)
    manifest = client.get_manifest(name, reference.registry_reference)
    if oci.config_digest(manifest) is None and manifest.media_type not in (oci.OCI_MANIFEST, oci.DOCKER_MANIFEST):
        raise CheckError(
            f"--attach: {reference.text} is a multi-platform index ({manifest.digest}): check the platform's manifest by "
            "its digest (name@sha256:...) and attach to that"
        )
    image_id = result.image.get("id") or ""
    mismatch = oci.image_mismatch(manifest, image_id, oci.image_store(docker_client().info()))
    if mismatch:
        raise CheckError(
            f"--attach: {reference.repository}@{manifest.digest} is not the image that was checked ({mismatch}): "
            "the tag moved since; check again"
        )
    report_time = oci.format_time(publisher_time(client, log))
    documents = compat.entry_documents(entry_dir, manifest.digest, reference.repository, report_time=report_time)
    artifact = oci.attach_report(reference.repository, manifest.descriptor, documents, client=client)
    record = PublishRecord(
        entry_id=entry_dir.name,
        repository=reference.repository,
        digest=manifest.digest,
        report_digest=artifact.digest,
        finished=now_iso(),
    )
    write_publish_record(entry_dir, record)
    log(f"report ({documents[0]['verdict']}) attached to {reference.repository}@{manifest.digest}: {artifact.digest}")
    return Attached(f"{reference.repository}@{manifest.digest}", artifact.digest)
