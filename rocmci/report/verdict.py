"""THE verdict of an entry: `judge` is a pure function of typed evidence; `verdict_for` reads a directory and judges it.
Everything else (records, Markdown, JUnit, HTML, publish, pull, bisect, bump) renders or acts on what it returns."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from rocmci.contracts import Scope, SmokeDoc, is_pass
from rocmci.plan import PIN_LABELS
from rocmci.report.evidence import Evidence, load_evidence

CPU_ONLY_NOTE = "CPU only: no aiter kernel ran"
FIXTURE_NOTE = "fixture image: its aiter is a test double, not a real aiter build"

_VERSION_PIN = re.compile(r"\d+\.\d+")  # as checks/probe.py: a release pin; anything else is a git ref
_GIT_HASH_IN_VERSION = re.compile(r"\+g([0-9a-f]{7,40})")


class VerdictName(StrEnum):
    """The four verdicts; a str, so records and annotations carry the plain words."""

    PASS = "pass"
    FAIL = "fail"
    ERROR = "error"
    NOT_RUN = "not-run"


VERDICT_ORDER: tuple[VerdictName, ...] = tuple(VerdictName)


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
        return is_pass(self.verdict)


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
        return Verdict(VerdictName.NOT_RUN, intended, [ev.not_run], notes, fixture, kind)
    errors = list(ev.problems)
    doc_errors, failures = _doc_failures(ev)
    errors += doc_errors
    if ev.result is not None:
        failures += _pin_failures(ev)
        failures += _cpu_run_failures(ev) if kind == "cpu" else _gpu_run_failures(ev)
    verdict = VerdictName.ERROR if errors else VerdictName.FAIL if failures else VerdictName.PASS
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
