"""Report history per GPU from the registry, and the regression gate on promotion.

History: every compat report attached to any image of the repository (OCI referrers or the `sha256-<hex>` fallback
index; each one read back and checked by its manifest, so cosign's objects never pass for a report), for one GPU,
in report-time order, with the verdict and the fused kernel's figures at the gate shape (k_norm, 8192x128 bf16):
graph-replay latency and bandwidth as a fraction of the GPU's peak.

Regression gate: before `<gpu>-validated` moves, the candidate's figures are compared with those of the image the
tag points at now (same GPU model: the tag and the report are per GPU). Slower, or lower bandwidth, by more than the
target's `max_regression_pct` (matrix.yaml) and the tag stays; the comparison is written into the published record.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from rocmci.contracts import is_pass
from rocmci.errors import RocmciError
from rocmci.labels import HISTORY_SCHEMA

if TYPE_CHECKING:
    from rocmci.oci import AttachedReport, RegistryClient, ReportDocuments
    from rocmci.plan import Plan

Log = Callable[[str], None]


class HistoryError(RocmciError):
    pass


class Figures(BaseModel):
    """The fused kernel's figures at the gate shape, as a record's `k_norm` carries them."""

    model_config = ConfigDict(extra="ignore", allow_inf_nan=False)
    impl: str | None = None
    graph_us: float | None = None
    bandwidth_frac: float | None = None

    @classmethod
    def of(cls, record: Mapping[str, Any]) -> Figures | None:
        k_norm = record.get("k_norm")
        return cls.model_validate(k_norm) if isinstance(k_norm, Mapping) else None

    def describe(self) -> str:
        latency = f"{self.graph_us:.2f} us" if self.graph_us is not None else "no latency"
        bandwidth = f"{self.bandwidth_frac:.1%} of peak" if self.bandwidth_frac is not None else "no bandwidth"
        return f"{latency}, {bandwidth}"


class HistoryRow(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    report_time: str
    pin: str  # the entry id: GPU, ROCm, torch and aiter pins
    torch: str | None = None
    aiter: str | None = None
    digest: str
    tags: list[str]
    verdict: str
    graph_us: float | None = None
    bandwidth_frac: float | None = None
    report_digest: str

    def reported(self) -> datetime:
        from rocmci import oci

        return oci.parse_time(self.report_time)


class History(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, populate_by_name=True)
    schema_: str = Field(default=HISTORY_SCHEMA, alias="schema")
    repository: str
    gpu: str
    rows: list[HistoryRow]


# ---------------------------------------------------------------- reading the registry


def _image_tags(client: RegistryClient, name: str) -> dict[str, list[str]]:
    """digest -> its tags; the referrers fallback indexes and cosign's `.att`/`.sig` tags (all `sha256-...`) are skipped."""
    by_digest: dict[str, list[str]] = {}
    for tag in sorted(client.list_tags(name)):
        if tag.startswith(("sha256-", "sha512-")):
            continue
        head = client.head_manifest(name, tag)
        if head:
            by_digest.setdefault(head.digest, []).append(tag)
    return by_digest


def reports_on(client: RegistryClient, name: str, digest: str) -> tuple[list[AttachedReport], list[str]]:
    """Every rocmci report referring to `digest`, told apart from other referrers by its manifest's artifactType, never
    by the index entry: cosign 3.x keeps its attestations in the same `sha256-<hex>` index, under entries that say
    `application/vnd.oci.empty.v1+json`, and another writer may leave an entry's artifactType out."""
    from rocmci import oci

    reports: list[AttachedReport] = []
    skipped: list[str] = []
    for descriptor in client.referrers(name, digest):
        if descriptor.media_type != oci.OCI_MANIFEST:
            continue
        kind = client.get_manifest(name, descriptor.digest).json.get("artifactType")
        if kind != oci.REPORT_ARTIFACT_TYPE:
            continue
        try:
            reports.append(oci.read_report(client, name, digest, descriptor))
        except oci.RegistryError as exc:
            skipped.append(f"rejected: {exc}")
    return reports, skipped


def collect(repository: str, gpu: str, *, client: RegistryClient | None = None, log: Log | None = None) -> History:
    """Every verified report on `gpu` attached to the repository's images, oldest first."""
    from rocmci import oci

    client, name = (client, oci.split_repository(repository)[1]) if client else oci.client_for(repository)
    rows: list[HistoryRow] = []
    images = _image_tags(client, name)
    for number, (digest, tags) in enumerate(images.items(), 1):
        reports, skipped = reports_on(client, name, digest)
        if log:
            log(f"history: [{number}/{len(images)}] {tags[0]}@{digest[:19]}: {len(reports)} report(s)")
            for why in skipped:
                log(f"history:   skipped: {why}")
        for report in reports:
            if report.entry.get("gpu") != gpu:
                continue
            figures = Figures.of(report.documents.record) or Figures()
            rows.append(
                HistoryRow(
                    report_time=report.report_time.isoformat().replace("+00:00", "Z"),
                    pin=str(report.entry.get("id")),
                    torch=report.entry.get("torch"),
                    aiter=report.entry.get("aiter"),
                    digest=digest,
                    tags=tags,
                    verdict=report.verdict,
                    graph_us=figures.graph_us,
                    bandwidth_frac=figures.bandwidth_frac,
                    report_digest=report.artifact.digest,
                )
            )
    rows.sort(key=lambda r: (oci.parse_time(r.report_time), r.digest, r.report_digest))
    return History(repository=repository, gpu=gpu, rows=rows)


def table_rows(history: History) -> list[tuple[str, ...]]:
    return [
        (
            row.report_time,
            row.pin,
            row.verdict,
            f"{row.graph_us:.2f}" if row.graph_us is not None else "-",
            f"{row.bandwidth_frac:.1%}" if row.bandwidth_frac is not None else "-",
            row.digest[:19],
        )
        for row in history.rows
    ]


TABLE_HEADERS = ("report time", "pin", "verdict", "k_norm us", "bandwidth", "image")
PIN_HEADERS = ("pin", "reports", "passes", "first", "last", "latest verdict", "k_norm us first -> last")


def pin_rows(history: History) -> list[tuple[str, ...]]:
    """Per pin: how many reports, the first and last report time, the latest verdict, and how latency moved."""
    rows = []
    for pin in dict.fromkeys(row.pin for row in history.rows):
        mine = [row for row in history.rows if row.pin == pin]  # already in report-time order
        timed = [row.graph_us for row in mine if row.graph_us is not None]
        moved = f"{timed[0]:.2f} -> {timed[-1]:.2f} ({timed[-1] / timed[0] - 1:+.1%})" if timed and timed[0] else "-"
        passes = sum(is_pass(row.verdict) for row in mine)
        rows.append((pin, str(len(mine)), str(passes), mine[0].report_time, mine[-1].report_time, mine[-1].verdict, moved))
    return rows


def history_path(reports_dir: Path, gpu: str) -> Path:
    return Path(reports_dir) / f"history-{gpu}.json"


def write(history: History, reports_dir: Path) -> Path:
    path = history_path(reports_dir, history.gpu)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(history.model_dump(by_alias=True), indent=2) + "\n")
    tmp.replace(path)
    return path


def saved(reports_dir: Path) -> list[History]:
    """Every `history-<gpu>.json` that `invoke history` (or the pipeline) left in the reports directory, by GPU name."""
    found = []
    for path in sorted(Path(reports_dir).glob("history-*.json")):
        try:
            found.append(History.model_validate_json(path.read_text()))
        except (OSError, ValueError) as exc:
            raise HistoryError(f"{path}: not a {HISTORY_SCHEMA} document: {str(exc).splitlines()[0]}") from None
    return found


# ---------------------------------------------------------------- regression gate


def _change(candidate: float | None, baseline: float | None) -> float | None:
    return (candidate / baseline - 1.0) if candidate is not None and baseline else None


@dataclass(frozen=True)
class RegressionGate:
    """Per-GPU thresholds (fractions) from matrix.yaml's targets (`max_regression_pct`)."""

    thresholds: Mapping[str, float]

    @classmethod
    def from_plan(cls, plan: Plan) -> RegressionGate:
        return cls({name: target.max_regression_pct / 100.0 for name, target in plan.matrix.targets.items()})

    def compare(self, gpu: str, candidate: Figures | None, baseline: Figures | None) -> tuple[dict[str, Any], str | None]:
        """(the comparison for the record, why promotion is blocked or None)."""
        threshold = self.thresholds.get(gpu)
        if threshold is None:
            raise HistoryError(f"no regression threshold for GPU target {gpu!r} in the matrix")
        latency = _change(candidate.graph_us if candidate else None, baseline.graph_us if baseline else None)
        bandwidth = _change(candidate.bandwidth_frac if candidate else None, baseline.bandwidth_frac if baseline else None)
        comparison = {
            "threshold_pct": round(threshold * 100, 6),
            "candidate": candidate.model_dump() if candidate else None,
            "baseline": baseline.model_dump() if baseline else None,
            "latency_change_pct": None if latency is None else round(latency * 100, 3),
            "bandwidth_change_pct": None if bandwidth is None else round(bandwidth * 100, 3),
        }
        have_baseline = baseline is not None and (baseline.graph_us is not None or baseline.bandwidth_frac is not None)
        worse = []
        if have_baseline and (candidate is None or (candidate.graph_us is None and candidate.bandwidth_frac is None)):
            worse.append("the candidate has no fused-kernel figures at the gate shape, the validated image has")
        if latency is not None and latency > threshold:
            worse.append(f"k_norm latency {latency:+.1%}")
        if bandwidth is not None and -bandwidth > threshold:
            worse.append(f"bandwidth {bandwidth:+.1%}")
        figures = (
            f"candidate {candidate.describe() if candidate else 'no figures'} vs validated "
            f"{baseline.describe() if baseline else 'no figures'}, threshold {threshold:.1%}"
        )
        comparison["summary"] = figures
        comparison["regressed"] = bool(worse)
        return comparison, (f"regression: {'; '.join(worse)} ({figures})" if worse else None)

    def check(
        self, client: RegistryClient, name: str, gpu: str, digest: str, docs: ReportDocuments, log: Log
    ) -> tuple[ReportDocuments, str | None]:
        """Compare a passing candidate with the image `<gpu>-<stack>-validated` (`<gpu>-validated` for a record without a
        stack) points at now; the record gains `regression`."""
        from rocmci import oci
        from rocmci.plan import validated_tag_for

        if not is_pass(docs.verdict) or docs.entry.get("gpu") != gpu:
            return docs, None
        stack = docs.entry.get("stack") or None  # the baseline is this stack's validated image, never another stack's
        current = client.head_manifest(name, validated_tag_for(gpu, stack))
        if current is None or current.digest == digest:
            return docs, None
        theirs = oci.newest_passing_report(client, name, current.digest, gpu, stack=stack)
        baseline = Figures.of(theirs.documents.record) if theirs else None
        comparison, blocked = self.compare(gpu, Figures.of(docs.record), baseline)
        comparison["baseline_image"] = current.digest
        log(f"regression gate on {gpu}: {comparison['summary']}: {'blocked' if blocked else 'ok'}")
        record = {**docs.record, "regression": comparison}
        return oci.ReportDocuments(record, docs.statement), blocked
