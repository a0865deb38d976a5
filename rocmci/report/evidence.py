"""Reading one reports/<entry id>/ directory into typed evidence: result.json, probe.json and smoke.json, strictly.

Whatever is wrong with a document (missing, not strict JSON, another schema, a status that contradicts the step's
exit code) becomes a `problem` of the entry, never a crash of the report: the verdict turns it into an error."""

from __future__ import annotations

import json
import math
import signal
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from rocmci.contracts import ProbeDoc, ResultDoc, SmokeDoc, StepRecord
from rocmci.labels import PROBE_SCHEMA, RESULT_SCHEMA, SMOKE_SCHEMA

MAX_DOCUMENT_BYTES = 64 << 20  # a smoke.json of every case is well under 1 MiB
LOG_TAIL_LINES = 40
LOG_TAIL_BYTES = 8_000

_Model = TypeVar("_Model", bound=BaseModel)


@dataclass
class Evidence:
    """Everything read from one reports/<entry id>/ directory, parsed; `problems` are reasons for an error verdict."""

    entry_dir: Path
    entry: dict[str, Any]
    result: ResultDoc | None = None
    probe: ProbeDoc | None = None
    smoke: SmokeDoc | None = None
    problems: list[str] = field(default_factory=list)
    not_run: str | None = None

    def step(self, name: str) -> StepRecord | None:
        return self.result.steps.get(name) if self.result else None


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"the number {text} is out of range")
    return value


def _no_constant(name: str) -> float:
    raise ValueError(f"{name} is not a JSON number")


def read_json(path: Path) -> tuple[Any, str | None]:
    """Strict JSON only: NaN/Infinity (and numbers that overflow to them), nesting that blows the stack and documents no
    check writes at this size are problems of the document, never a crash of the report."""
    try:
        info = path.stat()
        size = info.st_size
        if not stat.S_ISREG(info.st_mode):
            return None, f"{path.name} is not a regular file"
        if size > MAX_DOCUMENT_BYTES:
            return None, f"{path.name} is {size} bytes, more than the {MAX_DOCUMENT_BYTES} a rocmci document may have"
        return json.loads(path.read_text(encoding="utf-8"), parse_constant=_no_constant, parse_float=_finite), None
    except FileNotFoundError:
        return None, f"{path.name} is missing"
    except json.JSONDecodeError as exc:
        return None, f"{path.name} is not valid JSON (line {exc.lineno} column {exc.colno}: {exc.msg})"
    except (OSError, UnicodeDecodeError) as exc:
        return None, f"{path.name} cannot be read: {exc}"
    except RecursionError:
        return None, f"{path.name} is nested too deeply to be a rocmci document"
    except ValueError as exc:
        return None, f"{path.name} is not strict JSON: {exc}"


def parse_document(model: type[_Model], path: Path, schema: str) -> tuple[_Model | None, str | None]:
    """(the document, None) or (None, one line saying what is wrong with it)."""
    data, problem = read_json(path)
    if problem:
        return None, problem
    if not isinstance(data, dict):
        return None, f"{path.name} is not a JSON object"
    if data.get("schema") != schema:
        return None, f"{path.name} has schema {data.get('schema')!r}, expected {schema!r}"
    try:
        return model.model_validate(data), None
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(document)"
        more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        return None, f"{path.name} does not follow {schema}: {where}: {first['msg']}{more}"


def exit_text(code: int) -> str:
    if code > 128:
        try:
            return f"{code} (killed by {signal.Signals(code - 128).name})"
        except ValueError:
            return f"{code} (killed by signal {code - 128})"
    return str(code)


def _load_step(ev: Evidence, name: str, model: type[ProbeDoc] | type[SmokeDoc], schema: str) -> None:
    step = ev.step(name)
    if step is None:
        ev.problems.append(f"{name}: result.json records no {name} step")
        return
    if step.skipped:
        return
    if step.exit_code is None:
        ev.problems.append(f"{name}: no exit code recorded (the step did not finish)")
        return
    doc, problem = parse_document(model, ev.entry_dir / f"{name}.json", schema)
    if step.exit_code not in (0, 1, 2):
        ev.problems.append(f"{name} exited {exit_text(step.exit_code)}" + ("" if doc else f" and wrote no usable {name}.json"))
    elif problem:
        ev.problems.append(f"{name}: {problem} (the step exited {step.exit_code})")
    if doc is None:
        return
    expected_status = {0: "pass", 1: "fail", 2: "error"}.get(step.exit_code)
    if expected_status and doc.status != expected_status:
        ev.problems.append(f"{name}.json says {doc.status} but the {name} step exited {step.exit_code}")
    if isinstance(doc, ProbeDoc):
        ev.probe = doc
    else:
        ev.smoke = doc


def load_evidence(entry_dir: Path, entry: Mapping[str, Any] | None = None) -> Evidence:
    """Read and parse reports/<id>/. `entry` is the plan's Entry.summary(); a result for another tag is stale (not-run)."""
    ev = Evidence(entry_dir=entry_dir, entry=dict(entry) if entry else {"id": entry_dir.name})
    result_path = entry_dir / "result.json"
    if not result_path.exists():
        ev.not_run = f"no result: {entry_dir.name}/result.json does not exist (the entry was not validated)"
        return ev
    result, problem = parse_document(ResultDoc, result_path, RESULT_SCHEMA)
    if result is None:
        ev.problems.append(f"result: {problem}")
        return ev
    ev.result = result
    ran = result.entry
    if entry is None:
        ev.entry = dict(ran)
    elif ran.get("id") != entry.get("id"):
        ev.problems.append(f"result.json is for entry {ran.get('id')!r}, not {entry.get('id')!r}")
        return ev
    elif entry.get("tag") and ran.get("tag") != entry.get("tag"):
        ev.not_run = f"stale result: it validated tag {ran.get('tag')!r}, the plan now builds {entry.get('tag')!r}"
        return ev
    if result.error:
        ev.problems.append(f"run error: {result.error}")
    _load_step(ev, "probe", ProbeDoc, PROBE_SCHEMA)
    _load_step(ev, "smoke", SmokeDoc, SMOKE_SCHEMA)
    return ev


def log_tail(ev: Evidence, step_name: str) -> str | None:
    """The last lines of a step's log, read only from inside the entry directory."""
    step = ev.step(step_name)
    if step is None or not step.log:
        return None
    root = ev.entry_dir.resolve()
    path = (ev.entry_dir / step.log).resolve()
    if not path.is_relative_to(root) or not path.is_file():
        return None
    try:
        with open(path, "rb") as handle:
            handle.seek(max(path.stat().st_size - LOG_TAIL_BYTES, 0))
            text = handle.read().decode("utf-8", errors="replace")
    except OSError:
        return None
    return "\n".join(text.splitlines()[-LOG_TAIL_LINES:])
