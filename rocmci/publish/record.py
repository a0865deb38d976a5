"""Reading and writing the records of publish and promote: `<reports>/<entry>/publish.json` (`PublishRecord`, written
here) and `<reports>/builds/<build_id>.json` (`BuildRecord`, written by `invoke build --push`, read by promotion).
The models are rocmci.contracts'; writer and reader share them."""

from __future__ import annotations

import os
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from pydantic import ValidationError

from rocmci.contracts import BuildRecord, PublishRecord
from rocmci.errors import RocmciError
from rocmci.labels import BUILD_SCHEMA, PUBLISH_SCHEMA

PUBLISH_FILE = "publish.json"

__all__ = ["PUBLISH_FILE", "BuildRecord", "PublishRecord", "now_iso", "read_build_record", "read_publish_record"]


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def write_publish_record(entry_dir: Path, record: PublishRecord) -> Path:
    """publish.json through a temporary file renamed into place: never half-written."""
    entry_dir.mkdir(parents=True, exist_ok=True)
    path = entry_dir / PUBLISH_FILE
    handle, temporary = tempfile.mkstemp(dir=entry_dir, prefix=".publish-", suffix=".tmp")
    try:
        with os.fdopen(handle, "w") as out:
            out.write(record.to_json())
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
        raise RocmciError(f"{path}: {_first(exc)} (not a {PUBLISH_SCHEMA} record)") from None


def read_build_record(path: Path) -> BuildRecord:
    try:
        return BuildRecord.model_validate_json(path.read_bytes())
    except FileNotFoundError:
        raise RocmciError(f"{path}: no build record (run invoke build --push first)") from None
    except (OSError, ValidationError) as exc:
        raise RocmciError(f"{path}: {_first(exc)} (not a {BUILD_SCHEMA} record)") from None


def _first(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        error = exc.errors()[0]
        return f"{'.'.join(str(p) for p in error['loc']) or '(document)'}: {error['msg']}"
    return str(exc)
