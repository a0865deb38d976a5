"""`invoke validate --pull`: validate exactly the image `invoke build --push` recorded.

For each build of the selected entries: read `<reports>/builds/<build id>.json`, resolve the recorded tag in the
staging repository (a HEAD of its manifest), refuse when the registry's digest is not the recorded one (the tag was
pushed again since: what would be validated is not what was built), then pull `<repo>@<digest>` and validate that.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from rocmci.errors import RunError
from rocmci.plan import Entry
from rocmci.progress import Progress
from rocmci.validate.entries import RunOptions
from rocmci.validate.results import discard

if TYPE_CHECKING:
    from rocmci.contracts import BuildRecord


class DigestMismatch(RunError):
    """The staging tag no longer names the image the build pushed."""


def record_path(reports_dir: Path, build_id: str) -> Path:
    return reports_dir / "builds" / f"{build_id}.json"


def read_record(path: Path) -> BuildRecord:
    """The build record, or one line naming the file and field that is wrong."""
    from pydantic import ValidationError

    from rocmci.contracts import BuildRecord

    try:
        text = path.read_text()
    except FileNotFoundError:
        raise RunError(
            f"{path}: no build record: run `invoke build --push` for this entry first (it writes the record)"
        ) from None
    except OSError as exc:
        raise RunError(f"{path}: cannot read the build record: {exc.strerror}") from None
    try:
        return BuildRecord.model_validate_json(text)
    except ValidationError as exc:
        error = exc.errors()[0]
        field = ".".join(str(part) for part in error["loc"]) or "(document)"
        raise RunError(f"{path}: {field}: {error['msg']}") from None


def _split_reference(path: Path, reference: str) -> tuple[str, str]:
    repository, _, tag = reference.rpartition(":")
    if not repository or "/" in tag or "@" in reference:
        raise RunError(f"{path}: reference: {reference!r} is not <repository>:<tag>")
    return repository, tag


def resolve_recorded(entry: Entry, path: Path, record: BuildRecord, insecure: bool | None = None) -> str:
    """`<repo>@<digest>` of the recorded image, after checking the registry still has that digest under the tag."""
    from rocmci.oci import client_for

    repository, tag = _split_reference(path, record.reference)
    if entry.id not in record.entries:
        raise RunError(f"{path}: entries: {entry.id} is not among the entries this build was for ({', '.join(record.entries)})")
    if tag != entry.tag:
        raise RunError(
            f"{path}: reference: the build pushed tag {tag}, but {entry.id} now has tag {entry.tag} "
            "(matrix.yaml changed since the build): build and push again"
        )
    client, name = client_for(repository, insecure)
    found = client.head_manifest(name, tag)
    if found is None:
        raise RunError(f"{record.reference}: not in the registry, although {path} records it as pushed")
    if found.digest != record.digest:
        raise DigestMismatch(
            f"{record.reference}: the registry has {found.digest}, but the build recorded {record.digest} ({path}): "
            "the tag was pushed again after the build; refusing to validate an image that is not the one built"
        )
    return f"{repository}@{record.digest}"


def _pull(reference: str, progress: Progress, entry_id: str) -> None:
    from docker.errors import APIError, NotFound

    from rocmci.engine import docker_client

    progress.line(entry_id, "pulling", reference)
    client = docker_client()
    try:
        image = client.images.pull(reference)
    except (APIError, NotFound) as exc:
        raise RunError(f"{reference}: pull failed: {exc.explanation or exc}") from None
    digest = reference.split("@", 1)[1]
    if not any(d.endswith("@" + digest) for d in image.attrs.get("RepoDigests") or []):
        raise DigestMismatch(f"{reference}: the engine pulled an image without that digest ({image.id})")


def pull_recorded(entries: Sequence[Entry], options: RunOptions, progress: Progress) -> RunOptions:
    """Options that validate each entry by the digest its build recorded, every such image pulled first."""
    refs: dict[str, str] = {}
    pulled: set[str] = set()
    for entry in entries:
        discard(options.reports_dir / entry.id)  # refused or not, no earlier result stands in for this run
        path = record_path(options.reports_dir, entry.build_id)
        reference = resolve_recorded(entry, path, read_record(path))
        if reference not in pulled:
            _pull(reference, progress, entry.id)
            pulled.add(reference)
        refs[entry.id] = reference
    return dataclasses.replace(options, image_refs={**options.image_refs, **refs}, pull_missing=False)
