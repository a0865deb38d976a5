"""What publish and promote write (`<reports>/<entry>/publish.json`, `PublishRecord`) and what promotion reads
(`<reports>/builds/<build_id>.json`, `BuildRecord`, written by `invoke build --push`). Writer and reader share these
models; strict JSON only."""

from __future__ import annotations

import os
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from rocmci.errors import RocmciError

PUBLISH_FILE = "publish.json"
Digest = Annotated[str, Field(pattern=r"^sha256:[0-9a-f]{64}$")]


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False, populate_by_name=True)


class PublishRecord(_Record):
    """What one publish or promotion put in the release repository for one entry."""

    schema_id: Literal["rocmci.publish/v1"] = Field("rocmci.publish/v1", alias="schema")
    entry_id: str
    repository: str
    digest: Digest
    report_digest: Digest
    tags_moved: list[str]
    signed: bool
    finished: str


class BuildRecord(_Record):
    """What `invoke build --push` pushed to staging for one build (`pushed` false: the tag existed, not rebuilt)."""

    schema_id: Literal["rocmci.build/v1"] = Field("rocmci.build/v1", alias="schema")
    build_id: str
    entries: list[str]
    reference: str  # <staging repository>:<content tag>
    digest: Digest  # the manifest digest
    image_id: Digest  # the config digest
    pushed: bool
    finished: str


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def write_publish_record(entry_dir: Path, record: PublishRecord) -> Path:
    """publish.json through a temporary file renamed into place: never half-written."""
    entry_dir.mkdir(parents=True, exist_ok=True)
    path = entry_dir / PUBLISH_FILE
    handle, temporary = tempfile.mkstemp(dir=entry_dir, prefix=".publish-", suffix=".tmp")
    try:
        with os.fdopen(handle, "w") as out:
            out.write(record.model_dump_json(by_alias=True, indent=2) + "\n")
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def read_publish_record(entry_dir: Path) -> PublishRecord | None:
    """The entry's publish.json, None when there is none; an unreadable one is an error naming the file."""
    path = entry_dir / PUBLISH_FILE
    if not path.is_file():
        return None
    try:
        return PublishRecord.model_validate_json(path.read_bytes())
    except (OSError, ValidationError) as exc:
        raise RocmciError(f"{path}: {_first(exc)} (not a rocmci.publish/v1 record)") from None


def read_build_record(path: Path) -> BuildRecord:
    try:
        return BuildRecord.model_validate_json(path.read_bytes())
    except FileNotFoundError:
        raise RocmciError(f"{path}: no build record (run invoke build --push first)") from None
    except (OSError, ValidationError) as exc:
        raise RocmciError(f"{path}: {_first(exc)} (not a rocmci.build/v1 record)") from None


def _first(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        error = exc.errors()[0]
        return f"{'.'.join(str(p) for p in error['loc']) or '(document)'}: {error['msg']}"
    return str(exc)
