"""The build record: what `invoke build --push` put in staging, read back from the registry, for validate and promote.

`<reports>/builds/<build_id>.json`, through `rocmci.contracts.BuildRecord`: the model validate reads it with.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterable
from pathlib import Path

from rocmci.build.options import BuildResult
from rocmci.contracts import BuildRecord
from rocmci.errors import BuildError, RegistryError

INDEX_TYPES = ("application/vnd.oci.image.index.v1+json", "application/vnd.docker.distribution.manifest.list.v2+json")


def record_path(reports_dir: Path, build_id: str) -> Path:
    return reports_dir / "builds" / f"{build_id}.json"


def read_record(path: Path) -> BuildRecord:
    return BuildRecord.model_validate_json(path.read_bytes())


def staged_image(reference: str) -> tuple[str, str]:
    """(manifest digest, config digest) that `<repository>:<tag>` names in the registry now. For an image index (a
    multi-platform or attested push) the digest is the index's and the config is that of its one image manifest."""
    from rocmci.oci import client_for

    repository, tag = reference.rsplit(":", 1)
    client, name = client_for(repository)
    manifest = client.get_manifest(name, tag)
    document = manifest.json
    if manifest.media_type in INDEX_TYPES:
        images = [m for m in document.get("manifests", []) if (m.get("platform") or {}).get("os") != "unknown"]
        if len(images) != 1:
            raise RegistryError(f"{reference}: an index of {len(images)} images, expected one image manifest")
        document = client.get_manifest(name, images[0]["digest"]).json
    config = (document.get("config") or {}).get("digest", "")
    if not isinstance(config, str) or not config.startswith("sha256:"):
        raise RegistryError(f"{reference}: the manifest {manifest.digest} names no config digest")
    return manifest.digest, config


def record_for(result: BuildResult) -> BuildRecord:
    """The record of a pushed (or already staged) build, from what the registry serves under its tag now."""
    try:
        digest, image_id = staged_image(result.image_ref)
    except RegistryError as exc:
        raise BuildError(f"{result.image_ref}: cannot read the pushed image back: {exc}") from None
    if result.digest and result.digest != digest:
        raise BuildError(f"{result.image_ref}: the registry serves {digest}, the push reported {result.digest}")
    return BuildRecord(
        build_id=result.build_id,
        entries=list(result.entries or (result.entry_id,)),
        reference=result.image_ref,
        digest=digest,
        image_id=image_id,
        pushed=result.status == "built",
        finished=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    )


def write_records(records: Iterable[BuildRecord], failed_build_ids: Iterable[str], reports_dir: Path) -> list[Path]:
    """Writes each record whole (temporary file, then rename); a failed build's earlier record is removed, so that no
    record names an image this run did not stage."""
    written = []
    try:
        for build_id in failed_build_ids:
            record_path(reports_dir, build_id).unlink(missing_ok=True)
        for record in records:
            path = record_path(reports_dir, record.build_id)
            path.parent.mkdir(parents=True, exist_ok=True)
            partial = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            partial.write_text(record.to_json())
            partial.replace(path)
            written.append(path)
    except OSError as exc:
        raise BuildError(f"--reports {reports_dir}: cannot write the build records: {exc.strerror} ({exc.filename})") from None
    return written
