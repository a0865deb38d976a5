"""Export every document model's JSON Schema to rocmci/resources/schemas/
(one file per schema id); `python -m rocmci.contracts [--check]` writes them, or checks that they are current."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from rocmci.contracts import BuildRecord, CompatDoc, ProbeDoc, PublishRecord, ResultDoc, SmokeDoc, _Doc

SCHEMAS_DIR = Path(__file__).resolve().parent.parent / "resources" / "schemas"
JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
DOCUMENTS: tuple[type[_Doc], ...] = (ProbeDoc, SmokeDoc, ResultDoc, CompatDoc, BuildRecord, PublishRecord)


def schema_id(model: type[_Doc]) -> str:
    return str(model.model_fields["schema_"].default)


def file_name(model: type[_Doc]) -> str:
    """The schema id with `/` as `.`, plus `.json`."""
    return schema_id(model).replace("/", ".") + ".json"


def json_schema(model: type[_Doc]) -> dict[str, Any]:
    """The model's schema as read (validation mode), named by its schema id. `schema` has a default in the model (writers
    need not repeat it) but every document on disk names its schema, so the exported schema requires it."""
    body = model.model_json_schema(by_alias=True, mode="validation")
    required = body.get("required", [])
    return {
        "$schema": JSON_SCHEMA_DIALECT,
        "$id": schema_id(model),
        **body,
        "required": ["schema", *(name for name in required if name != "schema")],
    }


def rendered() -> dict[str, str]:
    return {file_name(model): json.dumps(json_schema(model), indent=2, sort_keys=False) + "\n" for model in DOCUMENTS}


def stale(directory: Path = SCHEMAS_DIR) -> list[str]:
    """Files under directory that are missing, differ from the models, or belong to no model."""
    expected = rendered()
    problems = [
        name for name, text in expected.items() if not (directory / name).is_file() or (directory / name).read_text() != text
    ]
    problems += [path.name for path in sorted(directory.glob("*.json")) if path.name not in expected]
    return problems


def write(directory: Path = SCHEMAS_DIR) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    for path in directory.glob("*.json"):
        path.unlink()
    written = []
    for name, text in rendered().items():
        (directory / name).write_text(text, encoding="utf-8")
        written.append(directory / name)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rocmci.contracts", description="Export the contract models' JSON Schemas.")
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 when an exported schema is not current")
    args = parser.parse_args(argv)
    if args.check:
        problems = stale()
        for name in problems:
            print(f"{SCHEMAS_DIR / name}: not current: run `python -m rocmci.contracts`", file=sys.stderr)
        return 1 if problems else 0
    for path in write():
        print(path)
    return 0
