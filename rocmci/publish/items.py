"""What publish and promote work on: one item per entry (the validated image, its content tag, its reports dir),
one result per item, and the evidence (compat record + in-toto statement) for the digest it will have."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rocmci.errors import RocmciError
from rocmci.oci.artifacts import ReportDocuments
from rocmci.publish.record import read_publish_record

if TYPE_CHECKING:
    from rocmci.plan import Entry


@dataclass(frozen=True)
class PublishItem:
    """One entry to publish: the local image that was validated, the tag to push it as, and its reports dir."""

    entry_id: str
    gpu: str
    local_ref: str
    tag: str
    entry_dir: Path
    validated_image_id: str | None = None
    problem: str | None = None  # why this entry must not be published (stale or unreadable result)
    recorded_digest: str | None = None  # the registry digest an earlier publish recorded in publish.json
    stack: str | None = None  # the matrix stack: a pass also moves <gpu>-<stack>-validated


@dataclass(frozen=True)
class PublishResult:
    entry_id: str
    gpu: str
    status: str  # published | skipped | error
    reference: str | None = None  # <repository>@sha256:...
    tag: str | None = None
    verdict: str | None = None
    report_digest: str | None = None
    validated_tag: str | None = None
    moved: bool = False
    reason: str = ""
    moved_tags: tuple[str, ...] = ()  # every validated tag this publish moved (stack tag, GPU tag)
    attestation: str | None = None  # the predicate type signed (publish --sign)

    @property
    def ok(self) -> bool:
        return self.status != "error"


# (item, image digest, repository, report time) -> the compat record and in-toto statement for that image
DocumentsFor = Callable[[PublishItem, str, str, str], ReportDocuments | tuple[Mapping[str, Any], Mapping[str, Any]]]


def report_documents(
    item: PublishItem, digest: str, repository: str, report_time: str
) -> tuple[Mapping[str, Any], Mapping[str, Any]]:
    from rocmci import report  # lazy: tests may hand documents in directly

    return report.entry_documents(item.entry_dir, digest, repository, report_time=report_time)


def publish_items(entries: Iterable[Entry], reports_dir: Path, local_repository: str) -> list[PublishItem]:
    """Items for matrix entries: the image that was validated (result.json's image.ref/id). An entry whose result
    is unreadable, or was validated for another tag than the plan's (its inputs changed since), gets a problem
    and is never pushed: its report would otherwise be attached to an image under a tag it does not describe."""
    items = []
    for entry in entries:
        entry_dir = Path(reports_dir) / entry.id
        image, problem = validated_image(entry_dir, entry.tag)
        try:
            earlier = read_publish_record(entry_dir)
        except RocmciError as exc:
            earlier, problem = None, problem or str(exc)
        items.append(
            PublishItem(
                entry.id,
                entry.gpu,
                image.get("ref") or entry.image_ref(local_repository),
                entry.tag,
                entry_dir,
                image.get("id"),
                problem,
                earlier.digest if earlier else None,
                entry.stack_name,
            )
        )
    return items


def validated_image(entry_dir: Path, tag: str) -> tuple[dict[str, Any], str | None]:
    """result.json's `image` (ref, id), and why the entry must not be published: its result is unreadable, or was
    validated for another tag than the plan's (its inputs changed since). No result: no image, no problem here (the
    missing local image or evidence says it)."""
    result_path = entry_dir / "result.json"
    if not result_path.is_file():
        return {}, None
    try:
        result = json.loads(result_path.read_text())
        image = result.get("image") or {}
        validated_tag = (result.get("entry") or {}).get("tag")
    except (OSError, ValueError, AttributeError) as exc:
        return {}, f"unreadable {result_path}: {exc}"
    if validated_tag != tag:
        return image, (
            f"stale result: {result_path} is for tag {validated_tag}, the plan's tag is {tag} "
            "(its inputs changed since): build and validate it again"
        )
    return image, None
