"""Compatibility reports: verdicts from reports/<entry>/ results, then compat.json, compat.md, junit.xml, index.html and
per-entry in-toto test-result statements.

`verdict_for` is the one place a verdict is computed; everything else renders what it returns.
"""

from __future__ import annotations

import hashlib
import html
import json
import math
import os
import re
import signal
import stat
import tempfile
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from rocmci import __version__
from rocmci.errors import RocmciError
from rocmci.plan import PIN_LABELS

RESULT_SCHEMA = "rocmci.result/v1"
PROBE_SCHEMA = "rocmci.probe/v1"
SMOKE_SCHEMA = "rocmci.smoke/v1"
COMPAT_SCHEMA = "rocmci.compat/v1"
INTOTO_STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
TEST_RESULT_PREDICATE = "https://in-toto.io/attestation/test-result/v0.1"

CPU_ONLY_NOTE = "CPU only: no aiter kernel ran"
FIXTURE_NOTE = "fixture image: its aiter is a test double, not a real aiter build"
STEP_SUMMARY_LIMIT = 1_000_000  # bytes; GitHub refuses a job step summary over 1 MiB
MAX_DOCUMENT_BYTES = 64 << 20  # a smoke.json of every case is well under 1 MiB
LOG_TAIL_LINES = 40
LOG_TAIL_BYTES = 8_000

# The k_norm figure shown in the matrix: sglang's NSA indexer k_norm shape.
K_NORM_KIND, K_NORM_TOKENS, K_NORM_HIDDEN, K_NORM_DTYPE = "k_norm", 8192, 128, "bfloat16"
K_NORM_IMPLS = ("aiter-ck", "aiter-triton")

VerdictName = Literal["pass", "fail", "error", "not-run"]
Scope = Literal["gpu", "cpu-only"]
VERDICT_ORDER: tuple[VerdictName, ...] = ("pass", "fail", "error", "not-run")

_ENTRY_ID = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
_DIGEST = re.compile(r"^sha256:([0-9a-f]{64})$")
_USERINFO = re.compile(r"(?<=://)[^/@\s]+@")
_VERSION_PIN = re.compile(r"\d+\.\d+")  # as checks/probe.py: a release pin; anything else is a git ref
_GIT_HASH_IN_VERSION = re.compile(r"\+g([0-9a-f]{7,40})")
_XML_BAD = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff\ufffe\uffff]")


class ReportError(RocmciError):
    """A report cannot be produced as asked (bad entry id, digest that does not match the run)."""


# ---------------------------------------------------------------- input documents (contracts in docs/DESIGN.md)


class _Doc(BaseModel):
    # allow_inf_nan=False: pydantic would otherwise read the string "NaN" as a float (and write NaN as null).
    model_config = ConfigDict(extra="ignore", populate_by_name=True, allow_inf_nan=False)


_D = TypeVar("_D", bound=_Doc)


class StepRecord(_Doc):
    exit_code: int | None = None
    wall_s: float | None = None
    log: str | None = None
    skipped: str | None = None


class ImageInfo(_Doc):
    ref: str = ""
    id: str | None = None
    digest: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)


class HostInfo(_Doc):
    hostname: str | None = None
    gpu_devices: list[str] = Field(default_factory=list)
    gpu_name: str | None = None
    gfx: str | None = None


class ResultDoc(_Doc):
    schema_: str = Field(alias="schema")
    entry: dict[str, Any]
    image: ImageInfo = Field(default_factory=ImageInfo)
    host: HostInfo = Field(default_factory=HostInfo)
    started: str | None = None
    finished: str | None = None
    steps: dict[str, StepRecord] = Field(default_factory=dict)
    error: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _legacy_exits(cls, data: Any) -> Any:
        """Older run.py wrote `probe_exit`/`smoke_exit` instead of `steps`."""
        if isinstance(data, dict) and "steps" not in data and ("probe_exit" in data or "smoke_exit" in data):
            data = {**data, "steps": {s: {"exit_code": data.get(f"{s}_exit"), "log": f"{s}.log"} for s in ("probe", "smoke")}}
        return data


class Finding(_Doc):
    code: str
    severity: Literal["error", "warning", "info", "expected"]
    message: str = ""


class ProbeGpu(_Doc):
    present: bool = False
    count: int = 0
    gfx: str | None = None
    arch_full: str | None = None
    name: str | None = None


class ProbeDoc(_Doc):
    schema_: str = Field(alias="schema")
    status: Literal["pass", "fail", "error"]
    scope: Scope
    versions: dict[str, Any] = Field(default_factory=dict)
    gpu: ProbeGpu = Field(default_factory=ProbeGpu)
    aiter: dict[str, Any] = Field(default_factory=dict)
    first_call_ms: float | None = None
    findings: list[Finding] = Field(default_factory=list)
    expect: dict[str, Any] | None = None


class SmokeDevice(_Doc):
    type: str = "cpu"
    name: str | None = None
    hip: bool | None = None
    gfx: str | None = None


class SmokeCase(_Doc):
    impl: str
    dtype: str = ""
    param_dtype: str | None = None
    tokens: int | None = None
    hidden: int | None = None
    layout: str = "contiguous"
    kind: str = ""
    status: Literal["pass", "fail", "skipped", "error"]
    reason: str | None = None
    max_abs_err: float | None = None
    max_rel_err: float | None = None
    mismatch_frac: float | None = None
    graph_us: float | None = None
    eager_us: float | None = None
    kernels_per_call: float | None = None
    bandwidth_gbs: float | None = None
    bandwidth_frac: float | None = None
    bandwidth_ceiling_frac: float | None = None
    speedup_vs_torch_upcast: float | None = None
    spread_pct: float | None = None
    profiler_kernel_us: float | None = None

    @property
    def shape(self) -> str:
        return f"{self.tokens}x{self.hidden}"

    @property
    def label(self) -> str:
        """e.g. `aiter-ck k_norm 8192x128 bf16` or `aiter-ck param-trap 83x128 bf16/fp32 params strided`."""
        dtype = _short_dtype(self.dtype)
        params = _short_dtype(self.param_dtype) if self.param_dtype else dtype
        text = f"{self.impl} {self.kind} {self.shape} {dtype}"
        if params != dtype:
            text += f"/{params} params"
        if self.layout != "contiguous" and self.layout != self.kind:
            text += f" {self.layout}"
        return text


class Gate(_Doc):
    name: str
    passed: bool
    detail: str | None = None


class SkippedItem(_Doc):
    what: str
    reason: str = ""
    blocking: bool = False


class SmokeDoc(_Doc):
    schema_: str = Field(alias="schema")
    status: Literal["pass", "fail", "error"]
    scope: Scope
    device: SmokeDevice = Field(default_factory=SmokeDevice)
    versions: dict[str, Any] = Field(default_factory=dict)
    peak_bandwidth_gbs: float | None = None
    copy_ceiling_gbs: float | None = None
    tolerances: dict[str, Any] = Field(default_factory=dict)
    cases: list[SmokeCase] = Field(default_factory=list)
    gates: list[Gate] = Field(default_factory=list)
    skipped: list[SkippedItem] = Field(default_factory=list)
    wall_s: float | None = None
    error: str | None = None


# ---------------------------------------------------------------- evidence and verdicts


@dataclass(frozen=True)
class Verdict:
    """What a run shows. `reasons` say why it is not a pass; `notes` are caveats every output repeats."""

    verdict: VerdictName
    scope: Scope
    reasons: list[str]
    notes: list[str] = field(default_factory=list)
    fixture: bool = False
    kind: str = "amd"

    @property
    def passed(self) -> bool:
        return self.verdict == "pass"


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


def _read_json(path: Path) -> tuple[Any, str | None]:
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


def _parse(model: type[_D], path: Path, schema: str) -> tuple[_D | None, str | None]:
    data, problem = _read_json(path)
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


def _exit_text(code: int) -> str:
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
    doc, problem = _parse(model, ev.entry_dir / f"{name}.json", schema)
    if step.exit_code not in (0, 1, 2):
        ev.problems.append(f"{name} exited {_exit_text(step.exit_code)}" + ("" if doc else f" and wrote no usable {name}.json"))
    elif problem:
        ev.problems.append(f"{name}: {problem} (the step exited {step.exit_code})")
    if doc is None:
        return
    expected_status = {0: "pass", 1: "fail", 2: "error"}.get(step.exit_code)
    if expected_status and doc.status != expected_status:
        ev.problems.append(f"{name}.json says {doc.status} but the {name} step exited {step.exit_code}")
    if name == "probe":
        ev.probe = doc  # type: ignore[assignment]
    else:
        ev.smoke = doc  # type: ignore[assignment]


def load_evidence(entry_dir: Path, entry: Mapping[str, Any] | None = None) -> Evidence:
    """Read and parse reports/<id>/. `entry` is the plan's Entry.summary(); a result for another tag is stale (not-run)."""
    ev = Evidence(entry_dir=entry_dir, entry=dict(entry) if entry else {"id": entry_dir.name})
    result_path = entry_dir / "result.json"
    if not result_path.exists():
        ev.not_run = f"no result: {entry_dir.name}/result.json does not exist (the entry was not validated)"
        return ev
    result, problem = _parse(ResultDoc, result_path, RESULT_SCHEMA)
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


def _achieved_scope(ev: Evidence, intended: Scope) -> Scope:
    if ev.smoke is not None:
        on_gpu = ev.smoke.scope == "gpu" and ev.smoke.device.type == "cuda"
        return "gpu" if on_gpu else "cpu-only"
    if ev.probe is not None:
        return ev.probe.scope
    return intended


def _doc_failures(ev: Evidence) -> tuple[list[str], list[str]]:
    """(error reasons, failure reasons) from the probe and smoke documents' evidence: findings, cases and gates. A
    document's own status only ever makes things worse; a `pass` that its evidence contradicts is a fail saying so."""
    errors: list[str] = []
    failures: list[str] = []
    if ev.probe is not None:
        bad = [f"probe: {f.code}: {f.message}" for f in ev.probe.findings if f.severity == "error"]
        if ev.probe.status == "error":
            errors.extend(bad or ["probe: status error (the probe could not run)"])
        else:
            if ev.probe.status == "pass" and bad:
                failures.append(f"contradiction: probe.json says pass but records {len(bad)} error finding(s)")
            failures.extend(bad)
            if ev.probe.status == "fail" and not bad:
                failures.append("probe: status fail")
    if ev.smoke is not None:
        smoke_errors, smoke_failures = _smoke_failures(ev.smoke)
        errors += smoke_errors
        failures += smoke_failures
    return errors, failures


def _smoke_failures(smoke: SmokeDoc) -> tuple[list[str], list[str]]:
    """What the smoke test's cases, gates and blocking skips show, whatever its `status` says."""
    bad_cases = [c for c in smoke.cases if c.status in ("fail", "error")]
    cases = [f"smoke: {c.label}: {c.status}" + (f": {c.reason}" if c.reason else "") for c in bad_cases]
    if smoke.status == "error":
        return cases or [f"smoke: {smoke.error or 'status error (the smoke test could not run)'}"], []
    gates = [f"smoke gate {g.name}: {g.detail or 'failed'}" for g in smoke.gates if not g.passed]
    blocking = [f"smoke: {s.what} could not run on this device: {s.reason}" for s in smoke.skipped if s.blocking]
    shown = cases + gates + blocking
    if not smoke.cases:
        shown.append("smoke: no case ran (smoke.json lists no cases): nothing was verified")
    elif all(c.status == "skipped" for c in smoke.cases):
        shown.append("smoke: every case was skipped: nothing was verified")
    if smoke.status == "pass" and shown:
        what = [
            f"{n} of {len(smoke.cases)} cases {st}ed" for st in ("fail", "error") if (n := sum(c.status == st for c in bad_cases))
        ]
        if gates:
            what.append(f"{len(gates)} gate(s) failed")
        if blocking:
            what.append("a required implementation could not run")
        return [], [f"contradiction: smoke.json says pass but {', '.join(what) or 'no case of it ran'}", *shown]
    if smoke.status == "fail" and not shown:
        return [], ["smoke: status fail"]
    return [], shown


def _version_matches(found: str, pinned: str) -> bool:
    """As checks/probe.py: a pin without a local part ('2.13.0') accepts any local build of it ('2.13.0+rocm7.2')."""
    return found == pinned if "+" in pinned else found.split("+", 1)[0] == pinned


def _aiter_mismatch(found: str, pinned: str) -> bool:
    if _VERSION_PIN.match(pinned):
        return not _version_matches(found, pinned)
    commit = _GIT_HASH_IN_VERSION.search(found)
    # A git pin is comparable only where the version carries the commit (setuptools-scm's +g<hash>).
    return bool(
        commit and re.fullmatch(r"[0-9a-f]{7,40}", pinned) and not (pinned.startswith(commit[1]) or commit[1].startswith(pinned))
    )


def _pin_failures(ev: Evidence) -> list[str]:
    """The versions the checks found inside the image, the pins they were run with and the image's own labels, each
    against the entry's pins: a document from another run or another image is no evidence for this one."""
    entry = ev.entry
    torch_pin, aiter_pin = entry.get("torch"), entry.get("aiter")
    reasons: list[str] = []
    for name, doc in (("probe", ev.probe), ("smoke", ev.smoke)):
        versions = doc.versions if doc is not None else {}
        if doc is None or (name == "smoke" and not versions):
            continue  # older smoke.json files carry no versions; the probe's always do
        torch_found = versions.get("torch")
        if torch_pin and not isinstance(torch_found, str):
            reasons.append(f"{name}.json names no torch version: the pin torch {torch_pin} is not shown to be in the image")
        elif torch_pin and not _version_matches(torch_found, str(torch_pin)):
            reasons.append(
                f"{name}.json found torch {torch_found} but the entry pins {torch_pin}: it is not evidence for this image"
            )
        aiter_found = [v for k in ("aiter_dist", "aiter_import") if isinstance(v := versions.get(k), str)]
        if aiter_pin and name == "probe" and not aiter_found:
            reasons.append(f"probe.json names no aiter version: the pin aiter {aiter_pin} is not shown to be in the image")
        wrong = sorted({v for v in aiter_found if aiter_pin and _aiter_mismatch(v, str(aiter_pin))})
        if wrong:
            reasons.append(
                f"{name}.json found aiter {', '.join(wrong)} but the entry pins {aiter_pin}: it is not evidence for this image"
            )
    expect = ev.probe.expect if ev.probe is not None and ev.probe.expect is not None else {}
    for key in ("torch", "aiter", "gfx"):
        if key in expect and expect[key] != entry.get(key):
            reasons.append(f"probe.json was run expecting {key} {expect[key]!r} but the entry pins {entry.get(key)!r}")
    labels = ev.result.image.labels if ev.result is not None else {}
    for label, key in PIN_LABELS.items():
        pinned = "" if entry.get(key) is None else str(entry.get(key))
        if label in labels and labels[label] != pinned:
            reasons.append(f"the image validated is labelled {label}={labels[label]!r} but the entry has {key} {pinned!r}")
    return reasons


def _gpu_run_failures(ev: Evidence) -> list[str]:
    """An AMD entry passes only on evidence that aiter ran on an AMD GPU of the entry's gfx."""
    gfx = ev.entry.get("gfx")
    reasons: list[str] = []
    if ev.entry.get("fixture"):
        reasons.append("a fixture image (test-double aiter) can never pass for an AMD target")
    for name in ("probe", "smoke"):
        step = ev.step(name)
        if step is not None and step.skipped:
            reasons.append(f"no GPU run: the {name} step was skipped ({step.skipped})")
    if ev.probe is not None and ev.probe.scope != "gpu":
        reasons.append(f"no GPU run: the probe ran with scope {ev.probe.scope} (GPU present: {ev.probe.gpu.present})")
    smoke = ev.smoke
    if smoke is None:
        return reasons
    device = smoke.device
    where = f"{device.type} ({device.name})" if device.name else device.type
    if smoke.scope != "gpu":
        reasons.append(f"no GPU run: the smoke test ran with scope {smoke.scope} on {where}")
    elif device.type != "cuda":
        reasons.append(f"no GPU run: the smoke test ran on device {where}")
    elif device.hip is not True:
        reasons.append(f"no GPU run: the smoke test's device {where} is not a ROCm (HIP) device")
    else:
        ran_gfx = (device.gfx or (ev.probe.gpu.gfx if ev.probe else None) or "").split(":")[0]
        if not ran_gfx:
            reasons.append("no GPU run on the target: the smoke test did not report the GPU's gfx")
        elif gfx and ran_gfx != gfx:
            reasons.append(f"ran on a {ran_gfx} GPU but the entry targets {gfx}")
        if not any(c.impl.startswith("aiter") and c.status == "pass" and c.kind != "param-trap" for c in smoke.cases):
            skipped = sorted(
                {c.reason or "no reason given" for c in smoke.cases if c.impl.startswith("aiter") and c.status == "skipped"}
            )
            why = f" (aiter cases skipped: {'; '.join(skipped)})" if skipped else ""
            reasons.append(f"no aiter kernel ran on the GPU{why}")
    return reasons


def _cpu_run_failures(ev: Evidence) -> list[str]:
    reasons: list[str] = []
    for name in ("probe", "smoke"):
        step = ev.step(name)
        if step is not None and step.skipped:
            reasons.append(f"the {name} step did not run ({step.skipped})")
    for name, doc in (("probe", ev.probe), ("smoke", ev.smoke)):
        if doc is not None and doc.scope != "cpu-only":
            reasons.append(f"a cpu entry must run with scope cpu-only; the {name} reported scope {doc.scope}")
    return reasons


def _unpinned_notes(ev: Evidence) -> list[str]:
    """An image checked by `invoke check --image` pins nothing: what the probe found without an expectation is said,
    never compared (so never a match)."""
    if not ev.entry.get("external") or ev.probe is None:
        return []
    versions = ev.probe.versions
    found = {
        "torch": versions.get("torch"),
        "aiter": versions.get("aiter_import") or versions.get("aiter_dist"),
        "rocm": versions.get("torch_hip"),
    }
    if ev.entry.get("kind") == "cpu":
        del found["rocm"]  # nothing on a CPU target runs ROCm, nor can expect it
    unasked = [f"{name} {value or 'none'}" for name, value in found.items() if not ev.entry.get(name)]
    return [f"not pinned, so not compared: found {', '.join(unasked)}"] if unasked else []


def judge(ev: Evidence) -> Verdict:
    """The verdict rules (see module docs of verdict_for)."""
    kind = str(ev.entry.get("kind") or "amd")
    fixture = bool(ev.entry.get("fixture"))
    intended: Scope = "cpu-only" if kind == "cpu" else "gpu"
    notes = ([CPU_ONLY_NOTE] if kind == "cpu" else []) + ([FIXTURE_NOTE] if fixture else []) + _unpinned_notes(ev)
    if ev.not_run:
        return Verdict("not-run", intended, [ev.not_run], notes, fixture, kind)
    errors = list(ev.problems)
    doc_errors, failures = _doc_failures(ev)
    errors += doc_errors
    if ev.result is not None:
        failures += _pin_failures(ev)
        failures += _cpu_run_failures(ev) if kind == "cpu" else _gpu_run_failures(ev)
    verdict: VerdictName = "error" if errors else "fail" if failures else "pass"
    return Verdict(verdict, _achieved_scope(ev, intended), errors + failures, notes, fixture, kind)


def verdict_for(entry_dir: Path, entry: Mapping[str, Any] | None = None) -> Verdict:
    """THE verdict for one reports/<entry id>/ directory.

    - no result.json (or one for an older tag of the planned entry) -> not-run;
    - result.error, a probe/smoke status `error`, an exit code other than 0/1 (2, a signal), a missing or
      unparsable JSON document, or a document contradicting its exit code -> error;
    - a probe finding of severity error, a failed or errored smoke case, a failed gate, a blocking skip, no smoke case
      that ran, a probe/smoke status fail -> fail; a document saying `pass` against such evidence -> fail, "contradiction";
    - versions the checks found (torch, aiter), the pins the probe was run with, or the image's pin labels that differ
      from the entry's pins -> fail (the documents are from another run or another image);
    - an AMD entry passes only if the smoke test ran on a ROCm GPU of the entry's gfx with at least one aiter case
      passing there; a cpu-only scope, a skipped step, another gfx or a fixture image -> fail ("no GPU run: ...");
    - a cpu entry passes only with scope cpu-only, and always carries the note "CPU only: no aiter kernel ran".
    """
    return judge(load_evidence(entry_dir, entry))


# ---------------------------------------------------------------- figures


def _short_dtype(dtype: str | None) -> str:
    name = (dtype or "").removeprefix("torch.")
    return {"bfloat16": "bf16", "float16": "fp16", "float32": "fp32", "half": "fp16", "float": "fp32"}.get(name, name)


def _is_bf16(dtype: str | None) -> bool:
    return _short_dtype(dtype) == "bf16"


@dataclass(frozen=True)
class KNormFigure:
    impl: str
    tokens: int
    hidden: int
    dtype: str
    speedup_vs_torch_upcast: float
    graph_us: float | None
    kernels_per_call: float | None
    bandwidth_frac: float | None

    def to_json(self) -> dict[str, Any]:
        return {
            "impl": self.impl,
            "kind": K_NORM_KIND,
            "tokens": self.tokens,
            "hidden": self.hidden,
            "dtype": self.dtype,
            "speedup_vs_torch_upcast": self.speedup_vs_torch_upcast,
            "graph_us": self.graph_us,
            "kernels_per_call": self.kernels_per_call,
            "bandwidth_frac": self.bandwidth_frac,
        }


def k_norm_figure(smoke: SmokeDoc | None) -> KNormFigure | None:
    """aiter's speedup over torch-with-fp32-params at 8192x128 bf16, from a passing GPU case (aiter-ck, else aiter-triton)."""
    if smoke is None or smoke.scope != "gpu":
        return None
    for impl in K_NORM_IMPLS:
        for case in smoke.cases:
            if (
                case.impl == impl
                and case.kind == K_NORM_KIND
                and case.tokens == K_NORM_TOKENS
                and case.hidden == K_NORM_HIDDEN
                and _is_bf16(case.dtype)
                and case.layout == "contiguous"
                and case.status == "pass"
                and case.speedup_vs_torch_upcast is not None
            ):
                return KNormFigure(
                    impl,
                    K_NORM_TOKENS,
                    K_NORM_HIDDEN,
                    K_NORM_DTYPE,
                    case.speedup_vs_torch_upcast,
                    case.graph_us,
                    case.kernels_per_call,
                    _bandwidth_frac(case, smoke),
                )
    return None


def _bandwidth_frac(case: SmokeCase, smoke: SmokeDoc, peak_gbs: float | None = None) -> float | None:
    if case.bandwidth_frac is not None:
        return case.bandwidth_frac
    peak = smoke.peak_bandwidth_gbs or peak_gbs
    return case.bandwidth_gbs / peak if case.bandwidth_gbs is not None and peak else None


def _qualifiers(verdict: Verdict) -> list[str]:
    qualifiers: list[str] = []
    if verdict.kind == "cpu":
        qualifiers.append("CPU only" if verdict.verdict == "not-run" else "CPU only, no aiter kernel ran")
    elif verdict.scope == "cpu-only" and verdict.verdict != "not-run":
        qualifiers.append("no GPU run")
    if verdict.fixture:
        qualifiers.append("fixture")
    return qualifiers


def _shows_speedup(verdict: Verdict, k_norm: KNormFigure | None) -> bool:
    return k_norm is not None and verdict.scope == "gpu" and verdict.verdict in ("pass", "fail")


def cell_label(verdict: Verdict, k_norm: KNormFigure | None) -> str:
    """Matrix cell text: `pass 2.9x`, `fail`, `not-run`, `pass (CPU only, no aiter kernel ran)`."""
    text = verdict.verdict
    if k_norm is not None and _shows_speedup(verdict, k_norm):
        text += f" {k_norm.speedup_vs_torch_upcast:.1f}x"
    qualifiers = _qualifiers(verdict)
    return f"{text} ({'; '.join(qualifiers)})" if qualifiers else text


# ---------------------------------------------------------------- the collected report


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _redact(text: str) -> str:
    """Drop URL userinfo (user:token@) so no credential embedded in a URL or reference reaches a report."""
    return _USERINFO.sub("", text)


def _scrub(value: Any) -> Any:
    if isinstance(value, str):
        return _redact(value)
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

    @property
    def id(self) -> str:
        return str(self.entry.get("id"))

    @property
    def label(self) -> str:
        return cell_label(self.verdict, self.k_norm)

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
    history_html: list[str] = field(default_factory=list)  # from `invoke history` (rocmci.history.html_sections)

    def counts(self) -> dict[str, int]:
        counts = {name: 0 for name in VERDICT_ORDER}
        for item in self.entries:
            counts[item.verdict.verdict] += 1
        return counts

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": COMPAT_SCHEMA,
            "generated_at": self.generated_at,
            "rocmci_version": self.rocmci_version,
            "summary": {**self.counts(), "total": len(self.entries)},
            "entries": [item.record(self.generated_at) for item in self.entries],
        }


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


def collect(reports_dir: Path, entries: list[dict[str, Any]], generated_at: str | None = None) -> CompatReport:
    """One EntryReport per planned entry (Entry.summary() dicts), in plan order; an entry without a result is not-run."""
    items = [entry_report(_entry_dir(Path(reports_dir), str(entry.get("id"))), entry) for entry in entries]
    return CompatReport(generated_at or _now(), __version__, items)


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
        for name, case in _unique_case_names(ev.smoke.cases):
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
    report_time, in-toto statement with that subject). The verdict is recomputed from the result files."""
    if not _DIGEST.match(image_digest):
        raise ReportError(f"image digest {image_digest!r} is not sha256:<64 hex>")
    repository = _redact(repository)
    item = entry_report(Path(entry_dir))
    result = item.evidence.result
    if result is not None and result.image.digest and result.image.digest != image_digest:
        raise ReportError(
            f"{item.id}: the run validated {result.image.digest}, not {image_digest}: refusing to attach its report to another image"
        )
    subject = (repository, image_digest)
    return item.record(report_time or _now(), subject), intoto_statement(item, subject, url)


# ---------------------------------------------------------------- markdown


def _md(text: Any) -> str:
    """Safe inside a markdown table cell: no newlines, pipes or raw HTML."""
    clean = _XML_BAD.sub("", _redact(str(text))).replace("\r", " ").replace("\n", " ")
    return html.escape(clean, quote=False).replace("|", "\\|")


def _columns(report: CompatReport) -> tuple[list[str], list[str], dict[tuple[str, str], EntryReport]]:
    gpus: list[str] = []
    stacks: list[str] = []
    cells: dict[tuple[str, str], EntryReport] = {}
    for item in report.entries:
        gpu, stack = str(item.entry.get("gpu")), str(item.entry.get("stack"))
        if gpu not in gpus:
            gpus.append(gpu)
        if stack not in stacks:
            stacks.append(stack)
        cells.setdefault((stack, gpu), item)
    return gpus, stacks, cells


def _gpu_heading(report: CompatReport, gpu: str) -> str:
    item = next(i for i in report.entries if str(i.entry.get("gpu")) == gpu)
    return f"{gpu} ({item.entry.get('gfx') or 'cpu'})"


def _stack_pins(entry: Mapping[str, Any]) -> str:
    parts = [
        f"ROCm {entry['rocm']}" if entry.get("rocm") else "no ROCm",
        f"Python {entry.get('python')}",
        f"torch {entry.get('torch') or 'not pinned'}",
    ]
    parts.append(f"aiter {entry.get('aiter') or 'not pinned'} ({entry.get('aiter_source')}, {entry.get('aiter_kernels')})")
    parts.append(f"base {entry.get('base_image')}")
    return ", ".join(parts)


def render_markdown(report: CompatReport) -> str:
    gpus, stacks, cells = _columns(report)
    counts = report.counts()
    summary = ", ".join(f"{n} {name}" for name, n in counts.items() if n)
    lines = [
        "# rocmci compatibility matrix",
        "",
        f"Generated {_md(report.generated_at)} by rocmci {_md(report.rocmci_version)}: {len(report.entries)} entries ({summary}).",
        "",
        "| stack | " + " | ".join(_md(_gpu_heading(report, g)) for g in gpus) + " |",
        "| --- | " + " | ".join("---" for _ in gpus) + " |",
    ]
    for stack in stacks:
        row = [_md(cells[(stack, g)].label) if (stack, g) in cells else "—" for g in gpus]
        lines.append(f"| {_md(stack)} | " + " | ".join(row) + " |")
    lines += [
        "",
        f"Speedup: aiter LayerNorm ({' or '.join(K_NORM_IMPLS)}) over torch with fp32 parameters (sglang's fallback) at the "
        f"{K_NORM_KIND} shape {K_NORM_TOKENS}x{K_NORM_HIDDEN} {_short_dtype(K_NORM_DTYPE)}, CUDA-graph replay. "
        "`—`: not in the plan.",
        "",
        "Stacks:",
        "",
    ]
    seen: set[str] = set()
    for item in report.entries:
        stack = str(item.entry.get("stack"))
        if stack not in seen:
            seen.add(stack)
            lines.append(f"- `{_md(stack)}`: {_md(_stack_pins(item.entry))}")
    failing = [i for i in report.entries if i.verdict.verdict in ("fail", "error")]
    if failing:
        lines += ["", "## Not passing", ""]
        for item in failing:
            lines.append(f"- **{_md(item.id)}**: {_md(item.label)}")
            lines += [f"  - {_md(reason)}" for reason in item.verdict.reasons]
    not_run = [i for i in report.entries if i.verdict.verdict == "not-run"]
    if not_run:
        lines += ["", "## Not run", ""]
        lines += [f"- **{_md(i.id)}**: {_md('; '.join(i.verdict.reasons))}" for i in not_run]
    noted = [i for i in report.entries if i.verdict.notes]
    if noted:
        lines += ["", "## Notes", ""]
        lines += [f"- **{_md(i.id)}**: {_md('; '.join(i.verdict.notes))}" for i in noted]
    return "\n".join(lines) + "\n"


def append_step_summary(md: str, path: str | os.PathLike[str] | None = None, limit: int = STEP_SUMMARY_LIMIT) -> bool:
    """Append `md` to $GITHUB_STEP_SUMMARY (or `path`) when set, keeping the file under `limit` bytes: a longer
    text is cut at a line and ends with a note saying so. Returns whether anything was written."""
    target = path if path is not None else os.environ.get("GITHUB_STEP_SUMMARY")
    if not target:
        return False
    try:
        existing = os.path.getsize(target)
    except OSError:
        existing = 0
    budget = limit - existing - 1
    data = md.encode("utf-8")
    if len(data) > budget:
        note = (
            f"\n\n> **Truncated**: this summary was cut to stay under GitHub's 1 MiB step summary limit "
            f"({len(data)} bytes in full); see reports/compat.md in the job's artifacts.\n"
        ).encode()
        room = max(budget - len(note), 0)
        head = data[:room]
        cut = head.rfind(b"\n")
        head = head[: cut + 1] if cut >= 0 else b""
        data = head.decode("utf-8", errors="ignore").encode("utf-8") + note
        if len(data) > budget:
            return False
    with open(target, "ab") as handle:
        handle.write(data)
    return True


# ---------------------------------------------------------------- JUnit XML


def _x(text: Any) -> str:
    return _XML_BAD.sub("", _redact("" if text is None else str(text)))


def _unique_case_names(cases: Iterable[SmokeCase]) -> list[tuple[str, SmokeCase]]:
    seen: dict[str, int] = {}
    named = []
    for case in cases:
        name = case.label
        seen[name] = seen.get(name, 0) + 1
        named.append((name if seen[name] == 1 else f"{name} #{seen[name]}", case))
    return named


def _log_tail(ev: Evidence, step_name: str) -> str | None:
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


def _testcase(suite: ET.Element, classname: str, name: str, time: float | None = None) -> ET.Element:
    attrs = {"classname": _x(classname), "name": _x(name)}
    if time is not None:
        attrs["time"] = f"{time:.6f}"
    return ET.SubElement(suite, "testcase", attrs)


def _outcome(case: ET.Element, tag: str, message: str, body: str | None = None, kind: str | None = None) -> None:
    attrs = {"message": _x(message)}
    if kind:
        attrs["type"] = kind
    element = ET.SubElement(case, tag, attrs)
    if body:
        element.text = _x(body)


def _suite_for(item: EntryReport) -> ET.Element:
    entry, ev, verdict = item.entry, item.evidence, item.verdict
    result = ev.result if not ev.not_run else None
    attrs = {"name": _x(item.id), "tests": "0", "failures": "0", "errors": "0", "skipped": "0"}
    if result is not None:
        wall = sum(s.wall_s or 0.0 for s in result.steps.values())
        attrs["time"] = f"{wall:.3f}"
        if result.started:
            attrs["timestamp"] = _x(result.started)
        if result.host.hostname:
            attrs["hostname"] = _x(result.host.hostname)
    suite = ET.Element("testsuite", attrs)
    props = ET.SubElement(suite, "properties")
    coordinates = (
        "gpu",
        "gfx",
        "kind",
        "stack",
        "rocm",
        "python",
        "torch",
        "aiter",
        "aiter_source",
        "aiter_kernels",
        "tag",
        "fixture",
    )
    values: list[tuple[str, Any]] = [(k, entry.get(k)) for k in coordinates]
    values += [("verdict", verdict.verdict), ("scope", verdict.scope)]
    if result is not None:
        values += [("image", result.image.ref), ("image_digest", result.image.digest), ("host_gpu", result.host.gpu_name)]
    for name, value in values:
        text = "" if value is None else str(value).lower() if isinstance(value, bool) else str(value)
        ET.SubElement(props, "property", {"name": name, "value": _x(text)})

    base = item.id
    overall = _testcase(suite, f"{base}.verdict", "verdict")
    detail = "\n".join(verdict.reasons + verdict.notes)
    if verdict.verdict == "not-run":
        _outcome(overall, "skipped", verdict.reasons[0] if verdict.reasons else "not run")
    elif verdict.verdict == "error":
        logs = "\n\n".join(f"--- {s}.log (tail)\n{t}" for s in ("probe", "smoke") if (t := _log_tail(ev, s)))
        _outcome(overall, "error", verdict.reasons[0], detail + ("\n\n" + logs if logs else ""), "rocmci.error")
    elif verdict.verdict == "fail":
        _outcome(overall, "failure", verdict.reasons[0], detail, "rocmci.fail")
    elif verdict.notes:
        ET.SubElement(overall, "system-out").text = _x("\n".join(verdict.notes))

    if ev.probe is not None:
        for finding in ev.probe.findings:
            case = _testcase(suite, f"{base}.probe", finding.code)
            if finding.severity == "error":
                _outcome(case, "failure", finding.message, None, "probe.error")
            else:
                ET.SubElement(case, "system-out").text = _x(f"{finding.severity}: {finding.message}")
    if ev.smoke is not None:
        for name, smoke_case in _unique_case_names(ev.smoke.cases):
            case = _testcase(suite, f"{base}.smoke", name)
            reason = smoke_case.reason or smoke_case.status
            if smoke_case.status == "fail":
                _outcome(case, "failure", reason, _case_figures(smoke_case), "smoke.fail")
            elif smoke_case.status == "error":
                _outcome(case, "error", reason, None, "smoke.error")
            elif smoke_case.status == "skipped":
                _outcome(case, "skipped", reason)
            else:
                ET.SubElement(case, "system-out").text = _x(_case_figures(smoke_case))
        for gate in ev.smoke.gates:
            case = _testcase(suite, f"{base}.gate", gate.name)
            if not gate.passed:
                _outcome(case, "failure", gate.detail or "gate failed", None, "smoke.gate")
            elif gate.detail:
                ET.SubElement(case, "system-out").text = _x(gate.detail)
    cases = suite.findall("testcase")
    suite.set("tests", str(len(cases)))
    for tag, attr in (("failure", "failures"), ("error", "errors"), ("skipped", "skipped")):
        suite.set(attr, str(sum(1 for c in cases if c.find(tag) is not None)))
    return suite


def _case_figures(case: SmokeCase) -> str:
    figures = {
        "graph_us": case.graph_us,
        "eager_us": case.eager_us,
        "kernels_per_call": case.kernels_per_call,
        "bandwidth_gbs": case.bandwidth_gbs,
        "bandwidth_frac": case.bandwidth_frac,
        "bandwidth_ceiling_frac": case.bandwidth_ceiling_frac,
        "speedup_vs_torch_upcast": case.speedup_vs_torch_upcast,
        "max_abs_err": case.max_abs_err,
        "mismatch_frac": case.mismatch_frac,
    }
    return " ".join(f"{k}={v}" for k, v in figures.items() if v is not None)


def render_junit(report: CompatReport) -> str:
    root = ET.Element("testsuites", {"name": "rocmci compatibility"})
    suites = [_suite_for(item) for item in report.entries]
    root.extend(suites)
    # Totals on <testsuites> only where the strictest reader (Jenkins' junit-10.xsd) allows them: no skipped/timestamp.
    for attr in ("tests", "failures", "errors"):
        root.set(attr, str(sum(int(s.get(attr, "0")) for s in suites)))
    root.set("time", f"{sum(float(s.get('time', '0')) for s in suites):.3f}")
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


# ---------------------------------------------------------------- HTML and SVG


def _h(text: Any) -> str:
    return html.escape(_XML_BAD.sub("", _redact("" if text is None else str(text))), quote=True)


def _slug(text: str) -> str:
    return "e-" + (re.sub(r"[^A-Za-z0-9_-]", "_", text) or "_") + "-" + hashlib.sha256(text.encode()).hexdigest()[:6]


IMPL_COLOURS = {"aiter-ck": "#cf222e", "aiter-triton": "#e16f24", "torch": "#0969da", "torch-upcast": "#6e7781"}
_EXTRA_COLOURS = ("#8250df", "#1a7f37", "#bf3989", "#953800", "#0a3069")


def _colour(impl: str, order: Sequence[str]) -> str:
    if impl in IMPL_COLOURS:
        return IMPL_COLOURS[impl]
    extras = [i for i in order if i not in IMPL_COLOURS]
    return _EXTRA_COLOURS[extras.index(impl) % len(_EXTRA_COLOURS)] if impl in extras else _EXTRA_COLOURS[0]


def _nice_step(raw: float) -> float:
    if raw <= 0:
        return 1.0
    exponent = math.floor(math.log10(raw))
    for factor in (1, 2, 2.5, 5, 10):
        if raw <= factor * 10**exponent * (1 + 1e-9):
            return factor * 10**exponent
    return 10 ** (exponent + 1)


def _ticks(top: float, count: int = 5) -> list[float]:
    step = _nice_step(top / count if top > 0 else 1)
    n = max(1, math.ceil(top / step - 1e-9))
    return [round(step * i, 10) for i in range(n + 1)]


def _num(value: float) -> str:
    if value >= 1000:
        return f"{value / 1000:g}k"
    return f"{value:g}" if abs(value) >= 10 or value == 0 else f"{value:.3g}"


def _legend(impls: Sequence[str], x: float, y: float, order: Sequence[str]) -> list[str]:
    parts = []
    for i, impl in enumerate(impls):
        yy = y + i * 20
        parts.append(f'<rect x="{x}" y="{yy - 9}" width="14" height="10" rx="2" fill="{_colour(impl, order)}"/>')
        parts.append(f'<text x="{x + 20}" y="{yy}" class="lg">{_h(impl)}</text>')
    return parts


def _svg_frame(width: int, height: int, title: str, yticks: list[tuple[float, str]], left: float, plot_width: float) -> list[str]:
    """The opening of a plot: the svg element, its title, and a grid line with its label per y tick."""
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="plot" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" aria-label="{_h(title)}">',
        f'<text x="8" y="20" class="pt">{_h(title)}</text>',
    ]
    for y, label in yticks:
        out.append(f'<line x1="{left}" x2="{left + plot_width}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>')
        out.append(f'<text x="{left - 6}" y="{y + 4:.1f}" class="tk" text-anchor="end">{_h(label)}</text>')
    return out


def svg_line_plot(
    series: Mapping[str, Sequence[tuple[float, float]]],
    *,
    title: str,
    x_label: str,
    y_label: str,
    y_unit: str = "",
    width: int = 500,
    height: int = 330,
) -> str:
    """Lines with markers, log10 x axis (positive x), linear y axis from 0; legend on the right."""
    left, right, top, bottom = 60, 130, 34, 50
    points = [p for pts in series.values() for p in pts if p[0] > 0]
    if not points:
        return _empty_plot(title, "no latency figures", width)
    lo = math.floor(math.log10(min(p[0] for p in points)))
    hi = max(math.ceil(math.log10(max(p[0] for p in points))), lo + 1)
    yticks = _ticks(max(p[1] for p in points) * 1.05)
    ymax = yticks[-1]
    pw, ph = width - left - right, height - top - bottom

    def sx(v: float) -> float:
        return left + (math.log10(v) - lo) / (hi - lo) * pw

    def sy(v: float) -> float:
        return top + ph - v / ymax * ph

    order = list(series)
    out = _svg_frame(width, height, title, [(sy(t), _num(t)) for t in yticks], left, pw)
    for decade in range(lo, hi + 1):
        x = sx(10.0**decade)
        out.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{top}" y2="{top + ph}" class="grid"/>')
        out.append(f'<text x="{x:.1f}" y="{top + ph + 16}" class="tk" text-anchor="middle">{_h(_num(10.0**decade))}</text>')
        for minor in (2, 5):
            if decade < hi:
                mx = sx(minor * 10.0**decade)
                out.append(f'<line x1="{mx:.1f}" x2="{mx:.1f}" y1="{top + ph}" y2="{top + ph + 4}" class="axis"/>')
    out.append(f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" class="frame"/>')
    for impl, pts in series.items():
        pts = sorted(p for p in pts if p[0] > 0)
        colour = _colour(impl, order)
        path = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in pts)
        out.append(f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2.2"/>')
        for x, y in pts:
            out.append(
                f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="3.4" fill="{colour}"><title>{_h(impl)}: {_h(_num(x))} tokens, '
                f"{_h(f'{y:.3g}')} {_h(y_unit)}</title></circle>"
            )
    out.append(f'<text x="{left + pw / 2}" y="{height - 10}" class="al" text-anchor="middle">{_h(x_label)}</text>')
    out.append(f'<text transform="translate(16 {top + ph / 2}) rotate(-90)" class="al" text-anchor="middle">{_h(y_label)}</text>')
    out += _legend(order, left + pw + 16, top + 12, order)
    out.append("</svg>")
    return "".join(out)


def svg_bar_plot(
    groups: Sequence[tuple[Sequence[str], Sequence[tuple[str, float]]]],
    *,
    title: str,
    y_label: str,
    y_format: Callable[[float], str],
    reference: tuple[float, str] | None = None,
    width: int = 700,
    height: int = 330,
    min_top: float = 0.0,
) -> str:
    """Clustered vertical bars: one cluster per group (label lines), one bar per implementation."""
    if not groups:
        return _empty_plot(title, "no figures", width)
    left, right, top, bottom = 60, 130, 34, 58
    order: list[str] = []
    for _, bars in groups:
        order += [impl for impl, _ in bars if impl not in order]
    peak = max([v for _, bars in groups for _, v in bars] + [min_top, reference[0] if reference else 0.0])
    yticks = _ticks(peak * 1.05 if peak > 0 else 1.0)
    ymax = yticks[-1]
    pw, ph = width - left - right, height - top - bottom
    slot = pw / len(groups)
    bar = min(16.0, (slot - 10) / max(len(order), 1))

    def sy(v: float) -> float:
        return top + ph - max(v, 0.0) / ymax * ph

    out = _svg_frame(width, height, title, [(sy(t), y_format(t)) for t in yticks], left, pw)
    for i, (label_lines, bars) in enumerate(groups):
        x0 = left + i * slot + (slot - bar * len(bars)) / 2
        for j, (impl, value) in enumerate(bars):
            y = sy(value)
            out.append(
                f'<rect x="{x0 + j * bar:.1f}" y="{y:.1f}" width="{max(bar - 1.5, 1):.1f}" height="{top + ph - y:.1f}" '
                f'fill="{_colour(impl, order)}"><title>{_h(" ".join(label_lines))} · {_h(impl)}: {_h(y_format(value))}</title></rect>'
            )
        cx = left + (i + 0.5) * slot
        for k, line in enumerate(label_lines[:2]):
            out.append(f'<text x="{cx:.1f}" y="{top + ph + 15 + 13 * k}" class="tk" text-anchor="middle">{_h(line)}</text>')
    if reference is not None:
        y = sy(reference[0])
        out.append(f'<line x1="{left}" x2="{left + pw}" y1="{y:.1f}" y2="{y:.1f}" class="ref"/>')
        out.append(f'<text x="{left + pw + 6}" y="{y + 4:.1f}" class="tk">{_h(reference[1])}</text>')
    out.append(f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" class="frame"/>')
    out.append(f'<text transform="translate(16 {top + ph / 2}) rotate(-90)" class="al" text-anchor="middle">{_h(y_label)}</text>')
    out += _legend(order, left + pw + 16, top + 12, order)
    out.append("</svg>")
    return "".join(out)


def _empty_plot(title: str, message: str, width: int) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="plot empty" width="{width}" height="90" viewBox="0 0 {width} 90" role="img" '
        f'aria-label="{_h(title)}"><text x="12" y="24" class="pt">{_h(title)}</text>'
        f'<text x="12" y="56" class="tk">{_h(message)}</text></svg>'
    )


def latency_plot(smoke: SmokeDoc) -> str:
    """Latency vs tokens per implementation at the k_norm shape (hidden 128, bf16, contiguous)."""
    cases = [
        c
        for c in smoke.cases
        if c.kind == K_NORM_KIND and c.hidden == K_NORM_HIDDEN and _is_bf16(c.dtype) and c.layout == "contiguous" and c.tokens
    ]
    metric = "graph_us" if any(c.graph_us is not None for c in cases) else "eager_us"
    series: dict[str, list[tuple[float, float]]] = {}
    for case in cases:
        value = getattr(case, metric)
        if value is not None and case.status in ("pass", "fail") and case.tokens:
            series.setdefault(case.impl, []).append((float(case.tokens), float(value)))
    what = "CUDA-graph replay" if metric == "graph_us" else "eager; no CUDA graphs"
    title = f"k_norm latency, tokens x {K_NORM_HIDDEN} bf16 ({what})"
    return svg_line_plot(series, title=title, x_label="tokens (log scale)", y_label="µs per call", y_unit="µs")


def _case_group(case: SmokeCase) -> tuple[str, str]:
    head = case.kind + ("" if _is_bf16(case.dtype) else f" {_short_dtype(case.dtype)}")
    return head, f"{case.shape}" + (" strided" if case.layout != "contiguous" and case.kind != "strided" else "")


def _fraction_plot(smoke: SmokeDoc, frac_of: Callable[[SmokeCase], float | None], title: str, y_label: str, empty: str) -> str:
    """One bar per implementation and case group: a bandwidth fraction in percent."""
    groups: dict[tuple[str, str], list[tuple[str, float]]] = {}
    for case in smoke.cases:
        frac = frac_of(case)
        if frac is not None and case.status in ("pass", "fail"):
            groups.setdefault(_case_group(case), []).append((case.impl, frac))
    if not groups:
        return _empty_plot(title, empty, 700)
    return svg_bar_plot(
        [(list(key), bars) for key, bars in groups.items()],
        title=title,
        y_label=y_label,
        y_format=lambda v: f"{v * 100:.3g}%",
        min_top=0.1,
    )


def bandwidth_plot(smoke: SmokeDoc, peak_gbs: float | None) -> str:
    peak = smoke.peak_bandwidth_gbs or peak_gbs
    title = "bandwidth, fraction of peak" + (f" ({peak / 1000:g} TB/s)" if peak else "")
    empty = "no bandwidth figures (a CPU-only run has no GPU peak to compare with)"
    return _fraction_plot(smoke, lambda case: _bandwidth_frac(case, smoke, peak_gbs), title, "% of peak HBM bandwidth", empty)


def ceiling_plot(smoke: SmokeDoc) -> str:
    """Bandwidth as a fraction of the device-to-device copy ceiling the smoke test measured in the same run."""
    ceiling = smoke.copy_ceiling_gbs
    title = "bandwidth, fraction of the measured copy ceiling" + (f" ({ceiling / 1000:.3g} TB/s)" if ceiling else "")
    empty = "no copy ceiling measured (it needs a GPU)"
    return _fraction_plot(smoke, lambda case: case.bandwidth_ceiling_frac, title, "% of measured copy bandwidth", empty)


def overview_plot(report: CompatReport) -> str | None:
    """Speedup over torch-upcast at the k_norm shape for every implementation, per entry that ran on a GPU."""
    groups = []
    for item in report.entries:
        smoke = item.evidence.smoke
        if smoke is None or item.verdict.scope != "gpu":
            continue
        bars = [
            (c.impl, c.speedup_vs_torch_upcast)
            for c in smoke.cases
            if c.kind == K_NORM_KIND
            and c.tokens == K_NORM_TOKENS
            and c.hidden == K_NORM_HIDDEN
            and _is_bf16(c.dtype)
            and c.layout == "contiguous"
            and c.status in ("pass", "fail")
            and c.speedup_vs_torch_upcast is not None
        ]
        if bars:
            groups.append(([str(item.entry.get("gpu")), str(item.entry.get("stack"))], bars))
    if not groups:
        return None
    return svg_bar_plot(
        groups,
        title=f"k_norm {K_NORM_TOKENS}x{K_NORM_HIDDEN} bf16: speedup over torch with fp32 params (higher is better)",
        y_label="speedup (x)",
        y_format=lambda v: f"{v:.3g}x",
        reference=(1.0, "1x = torch-upcast"),
        width=min(1240, max(760, 300 + 170 * len(groups))),
    )


_CSS = """
:root{--pass:#116329;--pass-bg:#d2f4dc;--fail:#a40e26;--fail-bg:#ffe1e0;--error:#7d4e00;--error-bg:#fff0b3;
--notrun:#57606a;--notrun-bg:#eaeef2;--cpu:#0a3069;--cpu-bg:#d8ecff;--line:#d0d7de;--muted:#57606a}
*{box-sizing:border-box}
body{margin:0;font:14px/1.45 "DejaVu Sans","Segoe UI",system-ui,-apple-system,sans-serif;color:#1f2328;background:#f6f8fa}
header{background:#1f2328;color:#fff;padding:18px 32px}
header h1{margin:0;font-size:22px}
header p{margin:4px 0 0;color:#c9d1d9}
main{max-width:1340px;margin:0 auto;padding:18px 32px 40px}
h2{font-size:18px;margin:26px 0 10px}
.pills span{display:inline-block;margin:8px 8px 0 0;padding:3px 10px;border-radius:12px;font-weight:600}
table.matrix{border-collapse:separate;border-spacing:6px;margin-left:-6px}
table.matrix th{text-align:left;font-weight:600;padding:4px 8px;vertical-align:bottom}
table.matrix th small,table.matrix td small{display:block;font-weight:400;color:var(--muted);font-size:12px}
table.matrix th.stack{min-width:230px;vertical-align:middle}
table.matrix td{min-width:170px;padding:0;border-radius:8px;vertical-align:top}
table.matrix td a{display:block;padding:10px 12px;color:inherit;text-decoration:none;height:100%}
td .v{font-weight:700;font-size:15px}
td .x{font-weight:700;font-size:15px;margin-left:6px}
td.none{background:transparent;color:#8c959f;text-align:center;border:1px dashed var(--line);padding:10px}
.v-pass{background:var(--pass-bg);color:var(--pass);border:1px solid #8fd5a3}
.v-fail{background:var(--fail-bg);color:var(--fail);border:1px solid #ffaba8}
.v-error{background:var(--error-bg);color:var(--error);border:1px solid #e9c46a}
.v-not-run{background:var(--notrun-bg);color:var(--notrun);border:1px solid var(--line)}
.v-pass.cpu{background:var(--cpu-bg);color:var(--cpu);border-color:#9ccaff}
.fixture{background-image:repeating-linear-gradient(135deg,transparent 0 9px,rgba(0,0,0,.06) 9px 18px)}
.legend span{display:inline-block;margin:6px 14px 0 0;font-size:12px;color:var(--muted)}
.legend i{display:inline-block;width:14px;height:14px;border-radius:3px;vertical-align:-2px;margin-right:5px}
.card{background:#fff;border:1px solid var(--line);border-radius:10px;padding:16px 20px;margin:14px 0}
.card h3{margin:0 0 8px;font-size:16px}
.badge{display:inline-block;padding:2px 10px;border-radius:12px;font-size:13px;margin-right:8px;font-weight:700}
.tag{display:inline-block;padding:1px 8px;border-radius:4px;font-size:12px;background:#fbefff;color:#6639ba;border:1px solid #d8b9ff;margin-left:6px}
.banner{margin:8px 0;padding:8px 12px;border-radius:6px;font-weight:600}
.banner.cpu{background:var(--cpu-bg);color:var(--cpu)}
.banner.fixture{background:#fbefff;color:#6639ba}
ul.reasons{margin:6px 0 10px;padding-left:20px}
ul.reasons li{margin:2px 0}
.facts{display:grid;grid-template-columns:1fr 1fr;gap:0 28px;margin:10px 0}
dl{display:grid;grid-template-columns:130px 1fr;margin:0;font-size:13px}
dt{color:var(--muted)}
dd{margin:0 0 3px;overflow-wrap:anywhere}
code{font:12px "DejaVu Sans Mono",monospace}
.plots{display:flex;flex-wrap:wrap;gap:10px 24px;margin:12px 0}
svg.plot{background:#fff;font-family:inherit}
svg .pt{font-size:13px;font-weight:700;fill:#1f2328}
svg .tk{font-size:11px;fill:#57606a}
svg .al{font-size:12px;fill:#1f2328}
svg .lg{font-size:12px;fill:#1f2328}
svg .grid{stroke:#eaeef2;stroke-width:1}
svg .axis{stroke:#8c959f;stroke-width:1}
svg .frame{fill:none;stroke:#8c959f;stroke-width:1}
svg .ref{stroke:#1f2328;stroke-width:1.2;stroke-dasharray:5 4}
details{margin:8px 0}
summary{cursor:pointer;font-weight:600}
table.data{border-collapse:collapse;font-size:12px;margin-top:6px;width:100%}
table.data th,table.data td{border-bottom:1px solid #eaeef2;padding:3px 6px;text-align:left;white-space:nowrap}
table.data td.num{text-align:right;font-variant-numeric:tabular-nums}
table.data td.wrap{white-space:normal}
.s-pass{color:var(--pass);font-weight:600}.s-fail,.s-error{color:var(--fail);font-weight:700}.s-skipped{color:var(--muted)}
pre{background:#f6f8fa;border:1px solid var(--line);border-radius:6px;padding:8px;font-size:12px;overflow:auto;max-height:360px}
footer{color:var(--muted);font-size:12px;margin-top:30px}
"""


def _cell_classes(item: EntryReport) -> str:
    classes = [f"v-{item.verdict.verdict}"]
    if item.verdict.kind == "cpu":
        classes.append("cpu")
    if item.verdict.fixture:
        classes.append("fixture")
    return " ".join(classes)


def _matrix_html(report: CompatReport) -> str:
    gpus, stacks, cells = _columns(report)
    head = ['<tr><th class="stack">stack</th>']
    for gpu in gpus:
        item = next(i for i in report.entries if str(i.entry.get("gpu")) == gpu)
        peak = item.entry.get("peak_bandwidth_gbs")
        sub = f"{item.entry.get('gfx') or 'cpu'}" + (f" · {float(peak) / 1000:g} TB/s" if peak else "")
        head.append(f"<th>{_h(gpu)}<small>{_h(sub)}</small></th>")
    head.append("</tr>")
    rows = []
    for stack in stacks:
        first = next(i for i in report.entries if str(i.entry.get("stack")) == stack)
        pins = [f"ROCm {first.entry.get('rocm')}" if first.entry.get("rocm") else "CPU", f"torch {first.entry.get('torch')}"]
        pins.append(f"aiter {first.entry.get('aiter')}")
        row = [f'<tr><th class="stack">{_h(stack)}<small>{_h(" · ".join(pins))}</small></th>']
        for gpu in gpus:
            item = cells.get((stack, gpu))
            if item is None:
                row.append('<td class="none" title="not in the plan">—</td>')
                continue
            verdict = item.verdict
            speed = ""
            if item.k_norm is not None and _shows_speedup(verdict, item.k_norm):
                speed = f'<span class="x">{item.k_norm.speedup_vs_torch_upcast:.1f}×</span>'
            qualifiers = _qualifiers(verdict)
            sub = f"<small>{_h('; '.join(qualifiers))}</small>" if qualifiers else ""
            sub += "<small>k_norm speedup</small>" if speed else ""
            title = "; ".join(verdict.reasons + verdict.notes) or "pass"
            row.append(
                f'<td class="{_cell_classes(item)}"><a href="#{_slug(item.id)}" title="{_h(title)}">'
                f'<span class="v">{_h(verdict.verdict)}</span>{speed}{sub}</a></td>'
            )
        row.append("</tr>")
        rows.append("".join(row))
    legend = (
        '<div class="legend">'
        '<span><i class="v-pass"></i>pass on the GPU</span>'
        '<span><i class="v-pass cpu"></i>pass, CPU only (no aiter kernel ran)</span>'
        '<span><i class="v-fail"></i>fail</span><span><i class="v-error"></i>error (the check could not run)</span>'
        '<span><i class="v-not-run"></i>not run</span><span><i class="v-not-run fixture"></i>fixture image</span>'
        f"<span>×: aiter k_norm speedup over torch with fp32 params, {K_NORM_TOKENS}×{K_NORM_HIDDEN} bf16</span></div>"
    )
    return f'<table class="matrix"><thead>{"".join(head)}</thead><tbody>{"".join(rows)}</tbody></table>{legend}'


def _dl(pairs: Iterable[tuple[str, Any]]) -> str:
    return "<dl>" + "".join(f"<dt>{_h(k)}</dt><dd>{_h(v)}</dd>" for k, v in pairs if v not in (None, "", [])) + "</dl>"


def _fmt(value: float | None, spec: str) -> str:
    return "" if value is None else format(value, spec)


def _cases_table(smoke: SmokeDoc, peak_gbs: float | None) -> str:
    head = (
        "<tr><th>impl</th><th>kind</th><th>shape</th><th>dtype</th><th>layout</th><th>status</th><th>graph µs</th>"
        "<th>eager µs</th><th>kernels</th><th>GB/s</th><th>% peak</th><th>speedup</th><th>max abs err</th><th>mismatch</th><th>reason</th></tr>"
    )
    rows = []
    for c in smoke.cases:
        frac = _bandwidth_frac(c, smoke, peak_gbs)
        dtype = _short_dtype(c.dtype) + (f"/{_short_dtype(c.param_dtype)}" if c.param_dtype and c.param_dtype != c.dtype else "")
        cells = [
            f"<td>{_h(c.impl)}</td><td>{_h(c.kind)}</td><td>{_h(c.shape)}</td><td>{_h(dtype)}</td><td>{_h(c.layout)}</td>",
            f'<td class="s-{_h(c.status)}">{_h(c.status)}</td>',
            f'<td class="num">{_fmt(c.graph_us, ".2f")}</td><td class="num">{_fmt(c.eager_us, ".1f")}</td>',
            f'<td class="num">{_fmt(c.kernels_per_call, "g")}</td><td class="num">{_fmt(c.bandwidth_gbs, ".0f")}</td>',
            f'<td class="num">{_fmt(frac * 100 if frac is not None else None, ".1f")}</td>',
            f'<td class="num">{_fmt(c.speedup_vs_torch_upcast, ".2f")}</td><td class="num">{_fmt(c.max_abs_err, ".3g")}</td>',
            f'<td class="num">{_fmt(c.mismatch_frac, ".3g")}</td><td class="wrap">{_h(c.reason)}</td>',
        ]
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return f'<table class="data">{head}{"".join(rows)}</table>'


def _entry_card(item: EntryReport) -> str:
    entry, ev, verdict = item.entry, item.evidence, item.verdict
    result = ev.result if not ev.not_run else None
    parts = [f'<section class="card" id="{_slug(item.id)}">']
    tags = '<span class="tag">FIXTURE</span>' if verdict.fixture else ""
    parts.append(f'<h3><span class="badge {_cell_classes(item)}">{_h(item.label)}</span>{_h(item.id)}{tags}</h3>')
    if verdict.kind == "cpu":
        parts.append(f'<div class="banner cpu">{_h(CPU_ONLY_NOTE)}</div>')
    if verdict.fixture:
        parts.append(f'<div class="banner fixture">{_h(FIXTURE_NOTE)}</div>')
    if verdict.reasons:
        parts.append('<ul class="reasons">' + "".join(f"<li>{_h(r)}</li>" for r in verdict.reasons) + "</ul>")
    pins = [
        ("GPU target", f"{entry.get('gpu')} ({entry.get('gfx') or 'cpu'})"),
        ("stack", entry.get("stack")),
        ("ROCm", entry.get("rocm") or "none"),
        ("Python", entry.get("python")),
        ("torch", f"{entry.get('torch') or 'not pinned'} from {entry.get('torch_index')}"),
        (
            "aiter",
            f"{entry.get('aiter') or 'not pinned'} ({entry.get('aiter_source')}: {entry.get('aiter_spec')}; {entry.get('aiter_kernels')})",
        ),
        ("base image", entry.get("base_image")),
        ("tag", entry.get("tag")),
    ]
    run: list[tuple[str, Any]] = []
    if result is not None:
        host = result.host
        run = [
            ("image", result.image.ref),
            ("image digest", result.image.digest or "not pushed yet"),
            ("host GPU", f"{host.gpu_name or 'none'} ({host.gfx or 'no gfx'})"),
            ("devices", ", ".join(host.gpu_devices) or "none"),
            ("host", host.hostname),
            ("run", f"{result.started} → {result.finished}"),
        ]
        for name in ("probe", "smoke"):
            step = result.steps.get(name)
            if step is not None:
                text = (
                    f"skipped: {step.skipped}"
                    if step.skipped
                    else f"exit {_exit_text(step.exit_code) if step.exit_code is not None else 'none'}"
                )
                text += f", {step.wall_s:.1f} s" if step.wall_s is not None else ""
                run.append((name, text))
        if ev.smoke is not None:
            device = ev.smoke.device
            run.append(("smoke device", f"{device.type} {device.name or ''} {device.gfx or ''}".strip()))
    parts.append(f'<div class="facts">{_dl(pins)}{_dl(run)}</div>')
    peak = entry.get("peak_bandwidth_gbs")
    if ev.smoke is not None:
        plots = latency_plot(ev.smoke) + bandwidth_plot(ev.smoke, peak) + ceiling_plot(ev.smoke)
        parts.append(f'<div class="plots">{plots}</div>')
        counts = {s: sum(1 for c in ev.smoke.cases if c.status == s) for s in ("pass", "fail", "error", "skipped")}
        summary = ", ".join(f"{n} {s}" for s, n in counts.items() if n)
        parts.append(
            f"<details><summary>smoke cases ({len(ev.smoke.cases)}: {_h(summary)})</summary>{_cases_table(ev.smoke, peak)}</details>"
        )
        if ev.smoke.gates:
            rows = "".join(
                f'<tr><td>{_h(g.name)}</td><td class="s-{"pass" if g.passed else "fail"}">{"pass" if g.passed else "fail"}</td>'
                f'<td class="wrap">{_h(g.detail)}</td></tr>'
                for g in ev.smoke.gates
            )
            parts.append(f'<details open><summary>gates</summary><table class="data">{rows}</table></details>')
        if ev.smoke.skipped:
            rows = "".join(f'<tr><td>{_h(s.what)}</td><td class="wrap">{_h(s.reason)}</td></tr>' for s in ev.smoke.skipped)
            parts.append(f'<details><summary>skipped</summary><table class="data">{rows}</table></details>')
    if ev.probe is not None and ev.probe.findings:
        rows = "".join(
            f'<tr><td>{_h(f.severity)}</td><td><code>{_h(f.code)}</code></td><td class="wrap">{_h(f.message)}</td></tr>'
            for f in ev.probe.findings
        )
        parts.append(
            f'<details><summary>probe findings ({len(ev.probe.findings)})</summary><table class="data">{rows}</table></details>'
        )
    if result is not None and not verdict.passed:
        for name in ("probe", "smoke"):
            tail = _log_tail(ev, name)
            if tail:
                opened = " open" if verdict.verdict == "error" else ""
                parts.append(f"<details{opened}><summary>{name} log (last lines)</summary><pre>{_h(tail)}</pre></details>")
    parts.append("</section>")
    return "".join(parts)


def render_html(report: CompatReport) -> str:
    counts = report.counts()
    pills = "".join(f'<span class="v-{name}">{n} {name}</span>' for name, n in counts.items() if n)
    ran = [i for i in report.entries if i.verdict.verdict != "not-run"]
    not_run = [i for i in report.entries if i.verdict.verdict == "not-run"]
    failing = [i for i in ran if not i.verdict.passed]
    body = [
        f"<header><h1>rocmci compatibility report</h1><p>generated {_h(report.generated_at)} · rocmci {_h(report.rocmci_version)} · "
        f"{len(report.entries)} entries</p></header><main>",
        f'<div class="pills">{pills}</div>',
        "<h2>Compatibility matrix</h2>",
        _matrix_html(report),
    ]
    if failing:
        items = "".join(
            f'<li><a href="#{_slug(i.id)}">{_h(i.id)}</a>: <b>{_h(i.label)}</b><ul>'
            + "".join(f"<li>{_h(r)}</li>" for r in i.verdict.reasons)
            + "</ul></li>"
            for i in failing
        )
        body.append(f'<h2>Not passing</h2><ul class="reasons">{items}</ul>')
    overview = overview_plot(report)
    if overview:
        body.append(f'<h2>k_norm across GPUs</h2><div class="plots">{overview}</div>')
    if ran:
        body.append("<h2>Entries</h2>" + "".join(_entry_card(i) for i in ran))
    if not_run:
        items = "".join(f'<li id="{_slug(i.id)}"><b>{_h(i.id)}</b>: {_h("; ".join(i.verdict.reasons))}</li>' for i in not_run)
        body.append(f'<h2>Not run ({len(not_run)})</h2><ul class="reasons">{items}</ul>')
    body.extend(report.history_html)  # rocmci.history's plots (issue 14)
    body.append(
        "<footer>Self-contained page: no scripts, no external resources. Verdicts come from rocmci.report.verdict_for over "
        "reports/&lt;entry&gt;/result.json, probe.json and smoke.json; compat.json holds the same data.</footer></main>"
    )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>rocmci compatibility report {_h(report.generated_at)}</title><style>{_CSS}</style></head><body>"
        + "".join(body)
        + "</body></html>\n"
    )


# ---------------------------------------------------------------- writing


def _umask() -> int:
    current = os.umask(0o022)
    os.umask(current)
    return current


def _stage(path: Path, text: str) -> Path:
    """Write `text` to a synced temp file beside `path` (same file system, so the final rename is atomic)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return Path(tmp)


def _replace_all(documents: Mapping[Path, str]) -> None:
    """Stage every file first, then rename each into place: a render or write that fails (a bad document, a full disk)
    leaves every previous file as it was, and no temp file behind."""
    staged: dict[Path, Path] = {}
    try:
        for path, text in documents.items():
            staged[path] = _stage(path, text)
        for path, tmp in list(staged.items()):
            os.replace(tmp, path)
            del staged[path]
    finally:
        for tmp in staged.values():
            tmp.unlink(missing_ok=True)


def _json_text(doc: Any) -> str:
    """Strict JSON (no NaN/Infinity): what every standard parser reads."""
    return json.dumps(doc, indent=2, sort_keys=False, ensure_ascii=False, allow_nan=False) + "\n"


def write_all(reports_dir: Path, entries: list[dict[str, Any]], generated_at: str | None = None) -> ReportPaths:
    """Write compat.json, compat.md, junit.xml, index.html and <id>/intoto.json under reports_dir.

    Everything is rendered before anything is written, and written through temp files renamed into place (compat.json
    last), so a failed report run leaves the previous report files intact."""
    reports_dir = Path(reports_dir)
    compat_json = reports_dir / "compat.json"
    report = collect(reports_dir, entries, generated_at)
    from rocmci.history import html_sections  # lazy: history reads the registry's reports (issue 14)

    report.history_html = html_sections(reports_dir)
    documents = {
        reports_dir / "compat.md": render_markdown(report),
        reports_dir / "junit.xml": render_junit(report),
        reports_dir / "index.html": render_html(report),
    }
    intoto: dict[str, Path] = {}
    stale: list[Path] = []
    for item in report.entries:
        path = item.evidence.entry_dir / "intoto.json"
        if item.verdict.verdict == "not-run":
            if item.evidence.entry_dir.is_dir():
                stale.append(path)
            continue
        documents[path] = _json_text(intoto_statement(item))
        intoto[item.id] = path
    documents[compat_json] = _json_text(report.to_json())
    _replace_all(documents)
    for path in stale:
        path.unlink(missing_ok=True)
    return ReportPaths(
        compat_json=compat_json,
        compat_md=reports_dir / "compat.md",
        junit_xml=reports_dir / "junit.xml",
        index_html=reports_dir / "index.html",
        intoto=intoto,
        report=report,
    )
