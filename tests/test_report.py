"""rocmci.report: verdict rules, compat.json/compat.md/junit.xml/index.html/in-toto outputs, from the fixture results in
tests/data/reports/ (written by hand from the contracts in docs/DESIGN.md)."""

from __future__ import annotations

import json
import os
import re
import shutil
import struct
import subprocess
import sys
import xml.etree.ElementTree as ET
import zlib
from collections.abc import Callable
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from rocmci import __version__
from rocmci import report as rp
from rocmci.report import (
    CPU_ONLY_NOTE,
    ReportError,
    append_step_summary,
    collect,
    entry_documents,
    evidence,
    files,
    render_junit,
    render_markdown,
    verdict_for,
    write_all,
)
from tests.helpers import require_module, validate_on_host

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(__file__).parent / "data" / "reports"
PASS = "mi355x-rocm7.2-torch2.13.0-aiter0.1.20"
FAIL = "mi300x-rocm7.2-torch2.13.0-aiter0.1.20"
ERROR = "mi325x-rocm7.2-torch2.13.0-aiter0.1.20"
NOT_RUN = "mi350x-rocm7.2-torch2.13.0-aiter0.1.20"
LOCAL = "local-cpu-torch2.13.0-aiter0.1.7.post2.dev18"
DIGEST = "sha256:" + "ab" * 32
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(autouse=True)
def _no_ci_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("GITHUB_STEP_SUMMARY", "GITHUB_SERVER_URL", "GITHUB_REPOSITORY", "GITHUB_RUN_ID"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def reports(tmp_path: Path) -> Path:
    """A writable copy of the fixture reports directory."""
    target = tmp_path / "reports"
    shutil.copytree(DATA, target)
    return target


@pytest.fixture
def plan() -> list[dict[str, Any]]:
    return json.loads((DATA / "plan.json").read_text())


def entry_of(plan: list[dict[str, Any]], entry_id: str) -> dict[str, Any]:
    return next(e for e in plan if e["id"] == entry_id)


def edit(path: Path, change: Callable[[dict[str, Any]], None]) -> None:
    doc = json.loads(path.read_text())
    change(doc)
    path.write_text(json.dumps(doc))


def set_step(doc: dict[str, Any], step: str, **fields: Any) -> None:
    doc["steps"][step].update(fields)


# ---------------------------------------------------------------- verdict rules


@pytest.mark.parametrize(
    ("entry_id", "verdict", "scope"),
    [
        (PASS, "pass", "gpu"),
        (FAIL, "fail", "gpu"),
        (ERROR, "error", "gpu"),
        (NOT_RUN, "not-run", "gpu"),
        (LOCAL, "pass", "cpu-only"),
    ],
)
def test_fixture_verdicts(plan: list[dict[str, Any]], entry_id: str, verdict: str, scope: str) -> None:
    result = verdict_for(DATA / entry_id, entry_of(plan, entry_id))
    assert (result.verdict, result.scope) == (verdict, scope)
    assert bool(result.reasons) == (verdict != "pass")


def test_verdict_reasons_name_the_cause(plan: list[dict[str, Any]]) -> None:
    fail = verdict_for(DATA / FAIL, entry_of(plan, FAIL))
    assert any("aiter-ck strided 8192x128 bf16" in r and "31.3%" in r for r in fail.reasons)
    assert any(r.startswith("smoke gate k_norm_min_speedup:") for r in fail.reasons)
    error = verdict_for(DATA / ERROR, entry_of(plan, ERROR))
    assert error.reasons == ["smoke exited 139 (killed by SIGSEGV) and wrote no usable smoke.json"]


def test_verdict_without_plan_entry_uses_the_result_entry() -> None:
    assert verdict_for(DATA / PASS).verdict == "pass"
    assert verdict_for(DATA / LOCAL).notes == [CPU_ONLY_NOTE]


def test_missing_result_is_not_run(reports: Path, plan: list[dict[str, Any]]) -> None:
    assert verdict_for(reports / NOT_RUN, entry_of(plan, NOT_RUN)).verdict == "not-run"
    logs_only = reports / NOT_RUN
    logs_only.mkdir()
    (logs_only / "probe.log").write_text("started\n")
    verdict = verdict_for(logs_only, entry_of(plan, NOT_RUN))
    assert verdict.verdict == "not-run"
    assert "result.json does not exist" in verdict.reasons[0]


def test_result_for_an_older_tag_is_not_run(plan: list[dict[str, Any]]) -> None:
    entry = {**entry_of(plan, PASS), "tag": f"{PASS}-000000000000"}
    verdict = verdict_for(DATA / PASS, entry)
    assert verdict.verdict == "not-run"
    assert verdict.reasons[0].startswith("stale result:")


def _cpu_only_smoke(d: dict[str, Any]) -> None:
    d.update(scope="cpu-only", device={"type": "cpu", "name": "x86_64", "hip": False, "gfx": None})


def _cpu_only_probe(d: dict[str, Any]) -> None:
    d.update(scope="cpu-only", gpu={"present": False, "count": 0, "gfx": None, "arch_full": None, "name": None})


def _nvidia_smoke(d: dict[str, Any]) -> None:
    d["device"].update(name="NVIDIA H200", hip=False, gfx=None)


def _other_gfx(d: dict[str, Any]) -> None:
    d["device"]["gfx"] = "gfx942"


def _aiter_skipped(d: dict[str, Any]) -> None:
    for case in d["cases"]:
        if case["impl"].startswith("aiter"):
            case.update(status="skipped", reason="aiter import failed")


@pytest.mark.parametrize(
    ("file", "change", "reason"),
    [
        ("smoke.json", _cpu_only_smoke, "no GPU run: the smoke test ran with scope cpu-only"),
        ("probe.json", _cpu_only_probe, "no GPU run: the probe ran with scope cpu-only"),
        ("smoke.json", _nvidia_smoke, "is not a ROCm (HIP) device"),
        ("smoke.json", _other_gfx, "ran on a gfx942 GPU but the entry targets gfx950"),
        ("smoke.json", _aiter_skipped, "no aiter kernel ran on the GPU (aiter cases skipped: aiter import failed)"),
        (
            "result.json",
            lambda d: set_step(d, "smoke", exit_code=None, skipped="no /dev/kfd on this runner"),
            "no GPU run: the smoke",
        ),
    ],
)
def test_amd_entry_never_passes_without_a_gpu_run(
    reports: Path, plan: list[dict[str, Any]], file: str, change: Callable[[dict[str, Any]], None], reason: str
) -> None:
    edit(reports / PASS / file, change)
    verdict = verdict_for(reports / PASS, entry_of(plan, PASS))
    assert verdict.verdict == "fail"
    assert any(reason in r for r in verdict.reasons), verdict.reasons


def test_amd_entry_with_cpu_only_smoke_is_labelled_no_gpu_run(reports: Path, plan: list[dict[str, Any]]) -> None:
    edit(reports / PASS / "smoke.json", _cpu_only_smoke)
    item = collect(reports, [entry_of(plan, PASS)]).entries[0]
    assert item.verdict.scope == "cpu-only"
    assert item.label == "fail (no GPU run)"
    assert item.k_norm is None


def _finding_error(d: dict[str, Any]) -> None:
    d["findings"].append({"code": "aiter.module_norm.wrong_arch", "severity": "error", "message": "module_norm built for gfx942"})


@pytest.mark.parametrize(
    ("file", "change", "reason"),
    [
        ("probe.json", _finding_error, "probe: aiter.module_norm.wrong_arch: module_norm built for gfx942"),
        ("probe.json", lambda d: d.update(status="fail"), "probe.json says fail but the probe step exited 0"),
    ],
)
def test_probe_problems(
    reports: Path, plan: list[dict[str, Any]], file: str, change: Callable[[dict[str, Any]], None], reason: str
) -> None:
    edit(reports / PASS / file, change)
    verdict = verdict_for(reports / PASS, entry_of(plan, PASS))
    assert verdict.verdict in ("fail", "error")
    assert reason in verdict.reasons


def test_probe_error_finding_fails(reports: Path, plan: list[dict[str, Any]]) -> None:
    def change(d: dict[str, Any]) -> None:
        _finding_error(d)
        d["status"] = "fail"

    edit(reports / PASS / "probe.json", change)
    edit(reports / PASS / "result.json", lambda d: set_step(d, "probe", exit_code=1))
    verdict = verdict_for(reports / PASS, entry_of(plan, PASS))
    assert verdict.verdict == "fail"
    assert verdict.reasons == ["probe: aiter.module_norm.wrong_arch: module_norm built for gfx942"]


@pytest.mark.parametrize(
    ("file", "text_or_change", "reason"),
    [
        ("result.json", lambda d: d.update(error="container failed to start: no such device /dev/kfd"), "run error: container"),
        ("smoke.json", "{not json", "smoke: smoke.json is not valid JSON (line 1 column 2"),
        ("result.json", "[1, 2", "result: result.json is not valid JSON"),
        ("smoke.json", lambda d: d.update(schema="rocmci.smoke/v9"), "has schema 'rocmci.smoke/v9', expected 'rocmci.smoke/v1'"),
        (
            "smoke.json",
            lambda d: d["cases"][0].update(status="maybe"),
            "smoke.json does not follow rocmci.smoke/v1: cases.0.status",
        ),
        ("result.json", lambda d: set_step(d, "probe", exit_code=2), "probe.json says pass but the probe step exited 2"),
        ("result.json", lambda d: set_step(d, "smoke", exit_code=137), "smoke exited 137 (killed by SIGKILL)"),
        ("result.json", lambda d: set_step(d, "smoke", exit_code=None), "smoke: no exit code recorded"),
        ("result.json", lambda d: d.update(schema="rocmci.result/v0"), "expected 'rocmci.result/v1'"),
        ("result.json", lambda d: d["entry"].update(id="another-entry"), "result.json is for entry 'another-entry'"),
    ],
)
def test_error_results(reports: Path, plan: list[dict[str, Any]], file: str, text_or_change: Any, reason: str) -> None:
    path = reports / PASS / file
    if isinstance(text_or_change, str):
        path.write_text(text_or_change)
    else:
        edit(path, text_or_change)
    verdict = verdict_for(reports / PASS, entry_of(plan, PASS))
    assert verdict.verdict == "error"
    assert any(reason in r for r in verdict.reasons), verdict.reasons


def test_status_error_with_exit_2_is_error(reports: Path, plan: list[dict[str, Any]]) -> None:
    edit(reports / PASS / "smoke.json", lambda d: d.update(status="error"))
    edit(reports / PASS / "result.json", lambda d: set_step(d, "smoke", exit_code=2))
    verdict = verdict_for(reports / PASS, entry_of(plan, PASS))
    assert verdict.verdict == "error"
    assert verdict.reasons == ["smoke: status error (the smoke test could not run)"]


def test_legacy_result_layout_is_read(reports: Path, plan: list[dict[str, Any]]) -> None:
    def legacy(d: dict[str, Any]) -> None:
        d.pop("steps")
        d.update(probe_exit=0, smoke_exit=0)

    edit(reports / PASS / "result.json", legacy)
    assert verdict_for(reports / PASS, entry_of(plan, PASS)).verdict == "pass"


def test_cpu_entry_passes_only_cpu_only(reports: Path, plan: list[dict[str, Any]]) -> None:
    local = entry_of(plan, LOCAL)
    verdict = verdict_for(reports / LOCAL, local)
    assert (verdict.verdict, verdict.scope, verdict.notes) == ("pass", "cpu-only", [CPU_ONLY_NOTE])
    edit(reports / LOCAL / "smoke.json", lambda d: d.update(scope="gpu"))
    verdict = verdict_for(reports / LOCAL, local)
    assert verdict.verdict == "fail"
    assert "a cpu entry must run with scope cpu-only; the smoke reported scope gpu" in verdict.reasons
    assert verdict.notes == [CPU_ONLY_NOTE]


def test_fixture_image_never_passes_for_an_amd_target(plan: list[dict[str, Any]]) -> None:
    verdict = verdict_for(DATA / PASS, {**entry_of(plan, PASS), "fixture": True})
    assert verdict.verdict == "fail"
    assert "a fixture image (test-double aiter) can never pass for an AMD target" in verdict.reasons


def test_unsafe_entry_id_is_refused(reports: Path) -> None:
    with pytest.raises(ReportError, match="not a safe directory name"):
        collect(reports, [{"id": "../etc", "gpu": "x", "stack": "y"}])


# ---------------------------------------------------------------- compat.json


def test_the_pipeline_judges_each_entry_once(reports: Path, plan: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch) -> None:
    """What `invoke pipeline` does: collect (the verdicts), the documents publish attaches, then the rendered reports:
    one verdict per entry in all, and the same one everywhere."""
    from rocmci.report import records

    judged: list[str] = []

    def counting(ev: rp.Evidence) -> rp.Verdict:
        judged.append(str(ev.entry.get("id")))
        return rp.judge(ev)

    monkeypatch.setattr(records, "judge", counting)
    report = collect(reports, plan)
    item = next(i for i in report.entries if i.id == PASS)
    record, _statement = rp.documents_of(item, DIGEST, "ghcr.io/acme/rocmci", "2026-05-04T10:00:00Z")
    paths = write_all(reports, plan, judged=report)
    assert sorted(judged) == sorted(e["id"] for e in plan)
    assert record["verdict"] == "pass" and paths.report.counts() == report.counts()


def test_history_is_an_earlier_layer_than_report() -> None:
    code = "import sys, rocmci.history; print(sorted(m for m in sys.modules if m.startswith('rocmci.report')))"
    shown = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert shown.stdout.strip() == "[]"


def test_compat_json_fields(reports: Path, plan: list[dict[str, Any]]) -> None:
    paths = write_all(reports, plan, generated_at="2026-05-04T09:20:00Z")
    doc = json.loads(paths.compat_json.read_text())
    assert doc["schema"] == "rocmci.compat/v1"
    assert doc["generated_at"] == "2026-05-04T09:20:00Z"
    assert doc["rocmci_version"] == __version__
    assert doc["summary"] == {"pass": 2, "fail": 1, "error": 1, "not-run": 5, "total": 9}
    assert [e["entry"]["id"] for e in doc["entries"]] == [e["id"] for e in plan]
    by_id = {e["entry"]["id"]: e for e in doc["entries"]}
    record = by_id[PASS]
    assert set(record) >= {"entry", "image", "subject", "host", "verdict", "scope", "reasons", "notes", "label", "fixture"}
    assert set(record) >= {"k_norm", "k_norm_speedup", "steps", "started", "finished", "report_time"}
    assert record["entry"] == entry_of(plan, PASS)
    assert record["verdict"] == "pass" and record["scope"] == "gpu" and record["label"] == "pass 2.9x"
    assert record["k_norm_speedup"] == 2.92
    assert (
        record["k_norm"]["impl"] == "aiter-ck" and record["k_norm"]["tokens"] == 8192 and record["k_norm"]["dtype"] == "bfloat16"
    )
    assert record["image"]["ref"].endswith(entry_of(plan, PASS)["tag"]) and record["image"]["digest"] is None
    assert record["subject"] is None
    assert record["host"]["gpu_name"] == "AMD Instinct MI355X" and record["host"]["gfx"] == "gfx950"
    assert "mi355x-runner-03" not in json.dumps(record), "hostnames stay out of the published record"
    assert record["report_time"] == "2026-05-04T09:20:00Z"
    assert by_id[LOCAL]["label"] == "pass (CPU only, no aiter kernel ran)"
    assert by_id[LOCAL]["notes"] == [CPU_ONLY_NOTE]
    assert by_id[NOT_RUN]["verdict"] == "not-run" and by_id[NOT_RUN]["image"] is None
    assert by_id[ERROR]["steps"]["smoke"] == {"exit_code": 139, "wall_s": 9.7, "skipped": None, "status": None}


def test_k_norm_speedup_falls_back_to_aiter_triton(reports: Path, plan: list[dict[str, Any]]) -> None:
    def drop_ck(d: dict[str, Any]) -> None:
        d["cases"] = [c for c in d["cases"] if c["impl"] != "aiter-ck"]

    edit(reports / PASS / "smoke.json", drop_ck)
    item = collect(reports, [entry_of(plan, PASS)]).entries[0]
    assert item.k_norm is not None and item.k_norm.impl == "aiter-triton"
    assert item.label == "pass 2.5x"


# ---------------------------------------------------------------- compat.md and the step summary


def _row(md: str, stack: str) -> list[str]:
    line = next(line for line in md.splitlines() if line.startswith(f"| {stack} |"))
    return [cell.strip() for cell in re.split(r"(?<!\\)\|", line)[1:-1]]


def test_markdown_matrix_cells(reports: Path, plan: list[dict[str, Any]]) -> None:
    md = render_markdown(collect(reports, plan, "2026-05-04T09:20:00Z"))
    header = _row(md, "stack")
    assert header == ["stack", "mi300x (gfx942)", "mi325x (gfx942)", "mi350x (gfx950)", "mi355x (gfx950)", "local (cpu)"]
    assert _row(md, "rocm7.2-torch2.13") == ["rocm7.2-torch2.13", "fail 1.6x", "error", "not-run", "pass 2.9x", "—"]
    assert _row(md, "rocm7.1-torch2.12") == ["rocm7.1-torch2.12", "not-run", "not-run", "not-run", "not-run", "—"]
    assert _row(md, "local")[-1] == "pass (CPU only, no aiter kernel ran)"
    assert "## Not passing" in md
    assert f"- **{ERROR}**: error\n  - smoke exited 139 (killed by SIGSEGV) and wrote no usable smoke.json" in md
    assert f"- **{LOCAL}**: CPU only: no aiter kernel ran" in md


def test_step_summary_appends_when_set(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert append_step_summary("# hi\n") is False
    summary = tmp_path / "summary.md"
    summary.write_text("earlier step\n")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    assert append_step_summary("# matrix\n") is True
    assert summary.read_text() == "earlier step\n# matrix\n"


def test_step_summary_is_truncated_under_1mb(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    summary = tmp_path / "summary.md"
    summary.write_text("x" * 1000 + "\n")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    big = "".join(f"| row {i} | é | pass 2.9x |\n" for i in range(80_000))
    assert len(big.encode()) > 1_000_000
    assert append_step_summary(big) is True
    data = summary.read_bytes()
    assert len(data) < 1_000_000
    text = data.decode("utf-8")
    assert "**Truncated**" in text and "reports/compat.md" in text
    body = text.split("\n\n> **Truncated**")[0]
    assert body.endswith("|\n"), "cut at a line boundary"


# ---------------------------------------------------------------- junit.xml


def test_junit_structure(reports: Path, plan: list[dict[str, Any]]) -> None:
    root = ET.fromstring(render_junit(collect(reports, plan, "2026-05-04T09:20:00Z")))
    # The attribute and child sets the strictest common reader (Jenkins' junit-10.xsd) accepts.
    assert root.tag == "testsuites"
    assert set(root.attrib) <= {"name", "time", "tests", "failures", "errors"}
    assert all(child.tag == "testsuite" for child in root)
    suite_attrs = {"name", "tests", "failures", "errors", "group", "time", "skipped", "timestamp", "hostname", "id", "package"}
    suites = root.findall("testsuite")
    for suite in suites:
        assert set(suite.attrib) <= suite_attrs
        assert {child.tag for child in suite} <= {"testsuite", "properties", "testcase", "system-out", "system-err"}
        for case in suite.iter("testcase"):
            assert set(case.attrib) <= {"name", "time", "classname", "group"}
            assert {child.tag for child in case} <= {"skipped", "error", "failure", "system-out", "system-err"}
        for prop in suite.iter("property"):
            assert set(prop.attrib) == {"name", "value"}
    assert [s.get("name") for s in suites] == [e["id"] for e in plan]
    for suite in suites:
        cases = suite.findall("testcase")
        for attr in ("name", "tests", "failures", "errors", "skipped"):
            assert suite.get(attr) is not None, attr
        assert int(suite.get("tests", "")) == len(cases)
        for tag, attr in (("failure", "failures"), ("error", "errors"), ("skipped", "skipped")):
            assert int(suite.get(attr, "")) == sum(1 for c in cases if c.find(tag) is not None)
        assert next(iter(suite)).tag == "properties"
        props = {p.get("name"): p.get("value") for p in suite.find("properties") or []}
        assert {"gpu", "gfx", "stack", "rocm", "torch", "aiter", "tag"} <= set(props)
        for case in cases:
            assert case.get("name") and case.get("classname")
            assert len([c for c in case if c.tag in ("failure", "error", "skipped")]) <= 1
        if suite.get("time") is not None:
            assert re.fullmatch(r"[0-9]+\.[0-9]+", suite.get("time", ""))
    assert int(root.get("tests", "")) == sum(int(s.get("tests", "")) for s in suites)
    by_name = {s.get("name"): s for s in suites}
    props = {p.get("name"): p.get("value") for p in by_name[PASS].find("properties") or []}
    assert props["gpu"] == "mi355x" and props["gfx"] == "gfx950" and props["torch"] == "2.13.0" and props["fixture"] == "false"
    # one testcase per probe finding and per smoke case, plus gates and the overall verdict
    smoke = json.loads((DATA / PASS / "smoke.json").read_text())
    probe = json.loads((DATA / PASS / "probe.json").read_text())
    expected = 1 + len(probe["findings"]) + len(smoke["cases"]) + len(smoke["gates"])
    assert int(by_name[PASS].get("tests", "")) == expected
    fail_cases = {c.get("name"): c for c in by_name[FAIL].findall("testcase")}
    assert fail_cases["verdict"].find("failure") is not None
    assert fail_cases["aiter-ck strided 8192x128 bf16"].find("failure") is not None
    assert fail_cases["k_norm_min_speedup"].find("failure") is not None
    error_verdict = by_name[ERROR].find("testcase[@name='verdict']/error")
    assert error_verdict is not None and "Segmentation fault" in (error_verdict.text or "")
    assert by_name[NOT_RUN].find("testcase[@name='verdict']/skipped") is not None
    local_cases = {c.get("name"): c for c in by_name[LOCAL].findall("testcase")}
    assert local_cases["aiter-ck k_norm 8192x128 bf16"].find("skipped") is not None
    assert CPU_ONLY_NOTE in (local_cases["verdict"].findtext("system-out") or "")


def test_junit_parses_with_junitparser(reports: Path, plan: list[dict[str, Any]]) -> None:
    junitparser = require_module("junitparser", "pip install junitparser for the third-party JUnit reader check")
    paths = write_all(reports, plan, generated_at="2026-05-04T09:20:00Z")
    xml = junitparser.JUnitXml.fromfile(str(paths.junit_xml))
    suites = {suite.name: suite for suite in xml}
    assert suites[FAIL].failures == 3 and suites[ERROR].errors == 1 and suites[NOT_RUN].skipped == 1
    outcomes = {case.name: [type(r).__name__ for r in case.result] for case in suites[FAIL]}
    assert outcomes["verdict"] == ["Failure"]
    assert outcomes["aiter-ck k_norm 8192x128 bf16"] == []
    props = {p.name: p.value for p in suites[PASS].properties()}
    assert props["tag"] == entry_of(plan, PASS)["tag"]


# ---------------------------------------------------------------- in-toto


def test_intoto_statements(reports: Path, plan: list[dict[str, Any]]) -> None:
    paths = write_all(reports, plan, generated_at="2026-05-04T09:20:00Z")
    assert set(paths.intoto) == {PASS, FAIL, ERROR, LOCAL}
    assert not (reports / NOT_RUN).exists()
    statements = {k: json.loads(v.read_text()) for k, v in paths.intoto.items()}
    for statement in statements.values():
        assert statement["_type"] == "https://in-toto.io/Statement/v1"
        assert statement["predicateType"] == "https://in-toto.io/attestation/test-result/v0.1"
        assert statement["subject"] == []  # no digest before the push
        predicate = statement["predicate"]
        assert set(predicate) >= {"result", "configuration", "passedTests", "failedTests", "warnedTests"}
        assert predicate["configuration"][0]["name"] == "matrix.yaml"
    assert statements[PASS]["predicate"]["result"] == "PASSED"
    assert statements[FAIL]["predicate"]["result"] == "FAILED"
    assert "smoke/aiter-ck strided 8192x128 bf16" in statements[FAIL]["predicate"]["failedTests"]
    assert "probe/host.amdgpu.driver_old" in statements[FAIL]["predicate"]["warnedTests"]
    assert statements[ERROR]["predicate"]["result"] == "FAILED"
    assert statements[LOCAL]["predicate"]["result"] == "WARNED"
    assert f"note/{CPU_ONLY_NOTE}" in statements[LOCAL]["predicate"]["warnedTests"]


def test_entry_documents_fill_the_subject(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GITHUB_SERVER_URL", "https://github.com")
    monkeypatch.setenv("GITHUB_REPOSITORY", "acme/rocmci")
    monkeypatch.setenv("GITHUB_RUN_ID", "42")
    record, statement = entry_documents(DATA / PASS, DIGEST, "ghcr.io/acme/rocmci", report_time="2026-05-04T10:00:00Z")
    assert record["subject"] == {"name": "ghcr.io/acme/rocmci", "digest": DIGEST}
    assert record["image"]["digest"] == DIGEST and record["image"]["ref"].startswith("ghcr.io/acme/rocmci:")
    assert record["report_time"] == "2026-05-04T10:00:00Z" and record["verdict"] == "pass"
    assert statement["subject"] == [{"name": "ghcr.io/acme/rocmci", "digest": {"sha256": "ab" * 32}}]
    assert statement["predicate"]["url"] == "https://github.com/acme/rocmci/actions/runs/42"
    image = statement["predicate"]["configuration"][1]
    assert image["digest"] == {"sha256": "ab" * 32}


def test_entry_documents_refuse_bad_digests(reports: Path) -> None:
    with pytest.raises(ReportError, match="not sha256"):
        entry_documents(reports / PASS, "sha256:abc", "r/x")
    edit(reports / PASS / "result.json", lambda d: d["image"].update(digest="sha256:" + "cd" * 32))
    with pytest.raises(ReportError, match="refusing to attach"):
        entry_documents(reports / PASS, DIGEST, "r/x")


def _publish_record(entry_id: str, **fields: Any) -> str:
    """publish.json as publish writes it: through the same model the report reads it with."""
    from rocmci.contracts import PublishRecord

    values: dict[str, Any] = {"entry_id": entry_id, "repository": "ghcr.io/acme/rocmci", "digest": DIGEST}
    values |= {"report_digest": "sha256:" + "ef" * 32, "tags_moved": ["mi355x-validated"], "finished": "2026-05-04T10:00:00Z"}
    return PublishRecord(**(values | fields)).to_json()


def test_reports_name_the_image_publish_recorded(reports: Path, plan: list[dict[str, Any]]) -> None:
    (reports / PASS / "publish.json").write_text(_publish_record(PASS))
    theirs = {path: path.read_bytes() for path in (reports / PASS).iterdir()}
    paths = write_all(reports, plan)
    record = next(e for e in json.loads(paths.compat_json.read_text())["entries"] if e["entry"]["id"] == PASS)
    assert record["verdict"] == "pass" and record["subject"] == {"name": "ghcr.io/acme/rocmci", "digest": DIGEST}
    assert record["image"]["digest"] == DIGEST and record["image"]["ref"].startswith("ghcr.io/acme/rocmci:")
    statement = json.loads(paths.intoto[PASS].read_text())
    assert statement["subject"] == [{"name": "ghcr.io/acme/rocmci", "digest": {"sha256": "ab" * 32}}]
    assert f'<property name="image_digest" value="{DIGEST}" />' in paths.junit_xml.read_text()
    page = paths.index_html.read_text()
    assert "<dt>published to</dt><dd>ghcr.io/acme/rocmci</dd>" in page and f"<dd>{DIGEST}</dd>" in page
    assert {path: path.read_bytes() for path in theirs} == theirs, "the report writes nothing into validate's or publish's files"


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (lambda: _publish_record(PASS).replace(DIGEST, "sha256:abc"), "publish.json does not follow rocmci.publish/v1: digest:"),
        (lambda: _publish_record(FAIL), f"publish.json: entry_id: the record is for '{FAIL}', not '{PASS}'"),
        (lambda: "{", "publish.json is not valid JSON"),
    ],
)
def test_a_publish_record_that_does_not_fit_stops_the_report(
    reports: Path, plan: list[dict[str, Any]], text: Callable[[], str], problem: str
) -> None:
    before = write_all(reports, plan).compat_json.read_bytes()
    (reports / PASS / "publish.json").write_text(text())
    with pytest.raises(ReportError, match=re.escape(problem)):
        write_all(reports, plan, generated_at="2099-01-01T00:00:00Z")
    assert (reports / "compat.json").read_bytes() == before


def test_a_publish_record_for_another_image_than_the_one_validated_stops_the_report(
    reports: Path, plan: list[dict[str, Any]]
) -> None:
    edit(reports / PASS / "result.json", lambda d: d["image"].update(digest="sha256:" + "cd" * 32))
    (reports / PASS / "publish.json").write_text(_publish_record(PASS))
    with pytest.raises(
        ReportError, match=r"publish.json: digest: sha256:abab.* was published, but the run validated sha256:cdcd"
    ):
        write_all(reports, plan)


def test_credentials_in_references_never_reach_reports(reports: Path, plan: list[dict[str, Any]]) -> None:
    record, statement = entry_documents(reports / PASS, DIGEST, "https://bot:s3cr3t-token@registry.example/rocmci")
    assert "s3cr3t" not in json.dumps(record) + json.dumps(statement)
    edit(reports / PASS / "result.json", lambda d: d["image"].update(ref="https://u:s3cr3t-token@reg.example/rocmci:t"))
    paths = write_all(reports, plan)
    for path in (paths.compat_json, paths.compat_md, paths.junit_xml, paths.index_html, paths.intoto[PASS]):
        assert "s3cr3t" not in path.read_text(), path


# ---------------------------------------------------------------- index.html


HOSTILE = '<script>alert("x")</script><img src=x onerror=alert(1)>|\x1b[31m\x00'


def test_html_escapes_hostile_strings(reports: Path, plan: list[dict[str, Any]]) -> None:
    local = entry_of(plan, LOCAL)
    local["stack"] = "evil" + HOSTILE
    edit(reports / LOCAL / "result.json", lambda d: d["host"].update(hostname=HOSTILE, gpu_name=HOSTILE))
    edit(
        reports / LOCAL / "probe.json",
        lambda d: d["findings"].append({"code": HOSTILE, "severity": "warning", "message": HOSTILE}),
    )

    def hostile_case(d: dict[str, Any]) -> None:
        d["cases"][0]["impl"] = '"><svg onload=alert(2)>'
        d["cases"][1]["reason"] = HOSTILE

    edit(reports / LOCAL / "smoke.json", hostile_case)
    paths = write_all(reports, plan)
    page = paths.index_html.read_text()
    assert "<script" not in page.lower() and "<img" not in page and "<svg onload" not in page
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in page  # markupsafe writes a quote as &#34;
    assert "\x1b" not in page and "\x00" not in page
    ET.fromstring(paths.junit_xml.read_text())  # control characters stripped: still well-formed XML
    md = paths.compat_md.read_text()
    assert "<script" not in md
    row = next(line for line in md.splitlines() if line.startswith("| evil"))
    assert len(re.findall(r"(?<!\\)\|", row)) == len(re.findall(r"(?<!\\)\|", md.splitlines()[4]))


def _hostile(field: str) -> str:
    """Markup, both quote characters and an attribute break-out, marked with the field it was fed through."""
    return f'<script>alert("{field}")</script>\'" onmouseover="alert(\'{field}\')'


class _Page(HTMLParser):
    """Every element, attribute and text of a page, and whether its elements nest (each end tag closes the last open one)."""

    VOID = frozenset({"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"})

    def __init__(self, page: str) -> None:
        super().__init__(convert_charrefs=True)
        self.open: list[str] = []
        self.tags: list[str] = []
        self.attributes: list[tuple[str, str | None]] = []
        self.texts: list[str] = []
        self.problems: list[str] = []
        self.feed(page)
        self.close()
        self.problems += [f"<{tag}> never closed" for tag in self.open]

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_startendtag(tag, attrs)
        if tag not in self.VOID:
            self.open.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.attributes += attrs

    def handle_endtag(self, tag: str) -> None:
        if not self.open or self.open[-1] != tag:
            self.problems.append(f"</{tag}> while {self.open[-1:]} is open")
        else:
            self.open.pop()

    def handle_data(self, data: str) -> None:
        self.texts.append(data)

    def shows(self, text: str) -> bool:
        """Whether `text` reached the reader intact: inside one text node or one attribute value."""
        return any(text in t for t in self.texts) or any(value and text in value for _, value in self.attributes)


def test_every_user_controlled_field_is_escaped_in_the_page(reports: Path, plan: list[dict[str, Any]]) -> None:
    """Plan pins, the host, the run error, findings, smoke cases, gates, skips, logs and saved history: each carries
    markup and quotes into index.html and comes out as text (no element, no attribute of its own), in a page whose
    elements still nest."""
    fail = entry_of(plan, FAIL)
    fail.update({k: _hostile(k) for k in ("stack", "gpu", "torch", "aiter", "rocm", "python", "base_image", "torch_index")})

    def result(d: dict[str, Any]) -> None:
        d["entry"]["id"] = FAIL
        d["host"].update(hostname=_hostile("hostname"), gpu_name=_hostile("gpu_name"), gfx=_hostile("gfx"))
        d["image"]["ref"] = _hostile("image")
        d["error"] = _hostile("run error")

    def smoke(d: dict[str, Any]) -> None:
        d["cases"][0].update(impl=_hostile("impl"), status="fail", reason=_hostile("case reason"))
        d["gates"].append({"name": _hostile("gate"), "passed": False, "detail": _hostile("gate detail")})
        d["skipped"].append({"what": _hostile("skipped"), "reason": _hostile("skip reason")})
        d["device"]["name"] = _hostile("device")

    edit(reports / FAIL / "result.json", result)
    edit(
        reports / FAIL / "probe.json",
        lambda d: d["findings"].append({"code": _hostile("code"), "severity": "error", "message": _hostile("finding")}),
    )
    edit(reports / FAIL / "smoke.json", smoke)
    (reports / FAIL / "smoke.log").write_text(_hostile("log") + "\n")
    row = {"report_time": "2026-11-01T00:00:00Z", "pin": _hostile("pin"), "digest": DIGEST, "tags": [_hostile("tag")]}
    row |= {"verdict": _hostile("verdict"), "graph_us": 10.0, "bandwidth_frac": 0.5, "report_digest": DIGEST}
    saved = {"schema": "rocmci.history/v1", "repository": _hostile("repository"), "gpu": _hostile("history gpu"), "rows": [row]}
    (reports / "history-x.json").write_text(json.dumps(saved))

    page = _Page(write_all(reports, [fail]).index_html.read_text())
    assert not page.problems, page.problems[:5]
    assert "script" not in page.tags
    assert not [name for name, _ in page.attributes if name.startswith("on")]
    fields = [
        *("stack", "gpu", "torch", "aiter", "rocm", "python", "base_image", "torch_index", "hostname", "gpu_name", "gfx"),
        *("image", "run error", "impl", "case reason", "gate", "gate detail", "skipped", "skip reason", "device", "code"),
        *("finding", "log", "pin", "verdict", "repository", "history gpu"),
    ]
    assert [field for field in fields if not page.shows(_hostile(field))] == []
    with pytest.raises(ReportError, match="not a safe directory name"):  # an entry id is a directory name: never markup
        write_all(reports, [{**fail, "id": _hostile("id")}])


def test_html_is_self_contained(reports: Path, plan: list[dict[str, Any]]) -> None:
    page = write_all(reports, plan).index_html.read_text()
    assert "<script" not in page
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page)
    assert "@import" not in page and "url(" not in page
    assert page.count('<svg xmlns="http://www.w3.org/2000/svg" class="plot') >= 7  # overview + 2 per entry with smoke
    assert '<table class="matrix">' in page
    assert CPU_ONLY_NOTE in page


def test_logs_are_read_only_from_the_entry_dir(reports: Path, plan: list[dict[str, Any]], tmp_path: Path) -> None:
    secret = tmp_path / "outside.txt"
    secret.write_text("TOP-SECRET-OUTSIDE\n")
    edit(reports / ERROR / "result.json", lambda d: set_step(d, "smoke", log="../../outside.txt"))
    paths = write_all(reports, plan)
    assert "TOP-SECRET-OUTSIDE" not in paths.index_html.read_text() + paths.junit_xml.read_text()


# ---------------------------------------------------------------- nothing half-written


def _report_files(reports: Path) -> dict[str, bytes]:
    return {str(p.relative_to(reports)): p.read_bytes() for p in sorted(reports.rglob("*")) if p.is_file()}


def test_a_failed_report_run_leaves_the_previous_files_intact(
    reports: Path, plan: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    paths = write_all(reports, plan)
    before = _report_files(reports)
    assert paths.compat_json.exists()

    def boom(report: rp.CompatReport, histories: object) -> str:
        raise RuntimeError("render failed")

    monkeypatch.setattr(files, "render_html", boom)
    with pytest.raises(RuntimeError, match="render failed"):
        write_all(reports, plan)
    assert _report_files(reports) == before, "a failed render must not delete or change the previous report"
    monkeypatch.undo()

    real_fsync, calls = os.fsync, []

    def disk_full(fd: int) -> None:
        calls.append(fd)
        if len(calls) == 3:
            raise OSError(28, "No space left on device")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(OSError, match="No space left"):
        write_all(reports, plan, generated_at="2099-01-01T00:00:00Z")
    assert _report_files(reports) == before, "a full disk midway must leave every previous file as it was"
    assert not list(reports.rglob("*.tmp")), "temporary files are cleaned up"


def test_not_run_entries_lose_stale_intoto(reports: Path, plan: list[dict[str, Any]]) -> None:
    write_all(reports, plan)
    assert (reports / PASS / "intoto.json").exists()
    stale = {**entry_of(plan, PASS), "tag": f"{PASS}-000000000000"}
    write_all(reports, [stale if e["id"] == PASS else e for e in plan])
    assert not (reports / PASS / "intoto.json").exists()


def test_fixture_entry_is_labelled_everywhere(reports: Path, plan: list[dict[str, Any]]) -> None:
    local = {**entry_of(plan, LOCAL), "fixture": True}
    paths = write_all(reports, [local])
    record = json.loads(paths.compat_json.read_text())["entries"][0]
    assert record["fixture"] is True and record["verdict"] == "pass"
    assert record["label"] == "pass (CPU only, no aiter kernel ran; fixture)"
    assert any("fixture image" in note for note in record["notes"])
    assert "fixture" in paths.compat_md.read_text()
    assert "FIXTURE" in paths.index_html.read_text()
    assert '<property name="fixture" value="true" />' in paths.junit_xml.read_text()
    statement = json.loads(paths.intoto[LOCAL].read_text())
    assert statement["predicate"]["result"] == "WARNED"
    assert any(t.startswith("note/fixture image") for t in statement["predicate"]["warnedTests"])


# ---------------------------------------------------------------- headless Chromium


def _png_facts(path: Path) -> tuple[int, int, int]:
    """(width, height, distinct byte values in the decompressed image data): a blank page has very few."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    idat, pos = b"", 8
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        if kind == b"IDAT":
            idat += data[pos + 8 : pos + 8 + length]
        pos += 12 + length
    return width, height, len(set(zlib.decompress(idat)))


def _chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    assert CHROMIUM is not None
    command = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
        *args,
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=180, cwd=tmp_path, check=False)


@pytest.mark.chromium
@pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium is not installed (apt-get install -y chromium fonts-dejavu-core)")
def test_index_html_renders_in_headless_chromium(reports: Path, plan: list[dict[str, Any]], tmp_path: Path) -> None:
    paths = write_all(reports, plan, generated_at="2026-05-04T09:20:00Z")
    url = paths.index_html.resolve().as_uri()

    dom = _chromium(tmp_path, "--dump-dom", url)
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert '<table class="matrix">' in dom.stdout
    assert "pass" in dom.stdout and "2.9×" in dom.stdout
    assert dom.stdout.count("<svg") >= 7
    assert "<polyline" in dom.stdout and "<rect" in dom.stdout

    png = tmp_path / "report.png"
    shot = _chromium(tmp_path, f"--screenshot={png}", "--window-size=1400,2000", url)
    assert shot.returncode == 0, shot.stderr[-2000:]
    assert png.exists() and png.stat().st_size > 50_000
    width, height, distinct = _png_facts(png)
    assert (width, height) == (1400, 2000)
    assert distinct > 100, "the screenshot looks blank"
    if target := os.environ.get("ROCMCI_REPORT_SCREENSHOT"):
        shutil.copyfile(png, target)


# ---------------------------------------------------------------- evidence over a document's own status (issue 9)
# Real documents: the checks run on this host, whose venv holds the local entry's pins (torch 2.13.0 CPU, amd-aiter
# 0.1.7.post2.dev18), with the command lines run.py gives the image; result.json written by run.py's own writer. Each
# test then tampers with one document the way a stale or lying run would.


@pytest.fixture(scope="module")
def real_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    return validate_on_host(tmp_path_factory.mktemp("real"))


@pytest.fixture
def real(real_run: tuple[Path, dict[str, Any]], tmp_path: Path) -> tuple[Path, dict[str, Any]]:
    """A writable copy of the real run."""
    source, entry = real_run
    shutil.copytree(source, tmp_path / source.name)
    return tmp_path / source.name, entry


def test_the_real_untampered_run_passes(real: tuple[Path, dict[str, Any]]) -> None:
    entry_dir, entry = real
    smoke = json.loads((entry_dir / "smoke.json").read_text())
    assert smoke["status"] == "pass" and len(smoke["cases"]) > 10, "precondition: a real passing smoke.json"
    verdict = verdict_for(entry_dir, entry)
    assert (verdict.verdict, verdict.scope, verdict.reasons) == ("pass", "cpu-only", [])


def _all_cases(status: str) -> Callable[[dict[str, Any]], None]:
    def change(d: dict[str, Any]) -> None:
        for case in d["cases"]:
            case.update(status=status, reason="tampered")

    return change


def _failed_gate(d: dict[str, Any]) -> None:
    d["gates"] = [{"name": "k_norm_min_speedup", "passed": False, "detail": "aiter 1.1x torch-upcast, gate 2.0x"}]


def _blocking_skip(d: dict[str, Any]) -> None:
    d["skipped"].append({"what": "impl aiter-ck", "reason": "aiter lacks layernorm2d_fwd", "blocking": True})


@pytest.mark.parametrize(
    ("change", "contradiction", "evidence"),
    [
        (
            _all_cases("fail"),
            "smoke.json says pass but 60 of 60 cases failed",
            "smoke: torch k_norm 8192x128 bf16: fail: tampered",
        ),
        (_all_cases("error"), "smoke.json says pass but 60 of 60 cases errored", "smoke: torch k_norm 8192x128 bf16: error"),
        (_failed_gate, "smoke.json says pass but 1 gate(s) failed", "smoke gate k_norm_min_speedup: aiter 1.1x"),
        (lambda d: d.update(cases=[]), "smoke.json says pass but no case of it ran", "smoke.json lists no cases"),
        (_all_cases("skipped"), "smoke.json says pass but no case of it ran", "every case was skipped"),
        (_blocking_skip, "a required implementation could not run", "impl aiter-ck could not run on this device"),
    ],
    ids=["every-case-failed", "every-case-errored", "gate-failed", "no-cases", "all-skipped", "blocking-skip"],
)
def test_a_smoke_pass_its_evidence_contradicts_is_a_fail(
    real: tuple[Path, dict[str, Any]], change: Callable[[dict[str, Any]], None], contradiction: str, evidence: str
) -> None:
    entry_dir, entry = real
    edit(entry_dir / "smoke.json", change)
    assert json.loads((entry_dir / "smoke.json").read_text())["status"] == "pass"
    verdict = verdict_for(entry_dir, entry)
    assert verdict.verdict == "fail", verdict
    assert verdict.reasons[0].startswith("contradiction: ") and contradiction in verdict.reasons[0], verdict.reasons
    assert any(evidence in r for r in verdict.reasons), verdict.reasons


def test_a_probe_pass_with_an_error_finding_is_a_fail(real: tuple[Path, dict[str, Any]]) -> None:
    entry_dir, entry = real
    finding = {"code": "aiter.version_mismatch", "severity": "error", "message": "aiter is 0.1.6, the matrix pins 0.1.7"}
    edit(entry_dir / "probe.json", lambda d: d["findings"].append(finding))
    verdict = verdict_for(entry_dir, entry)
    assert verdict.verdict == "fail"
    assert verdict.reasons[:2] == [
        "contradiction: probe.json says pass but records 1 error finding(s)",
        "probe: aiter.version_mismatch: aiter is 0.1.6, the matrix pins 0.1.7",
    ]


def _older_probe(d: dict[str, Any]) -> None:
    d["versions"].update(torch="2.12.0+cpu", aiter_dist="0.1.6", aiter_import="0.1.6")
    d["expect"].update(torch="2.12.0", aiter="0.1.6")


@pytest.mark.parametrize(
    ("file", "change", "reasons"),
    [
        (
            "probe.json",
            _older_probe,
            [
                "probe.json found torch 2.12.0+cpu but the entry pins 2.13.0",
                "probe.json found aiter 0.1.6 but the entry pins 0.1.7.post2.dev18",
                "probe.json was run expecting torch '2.12.0' but the entry pins '2.13.0'",
                "probe.json was run expecting aiter '0.1.6' but the entry pins '0.1.7.post2.dev18'",
            ],
        ),
        ("probe.json", lambda d: d["versions"].update(torch=None), ["probe.json names no torch version"]),
        ("probe.json", lambda d: d["versions"].update(aiter_dist=None, aiter_import=None), ["probe.json names no aiter version"]),
        ("smoke.json", lambda d: d["versions"].update(torch="2.11.0+cpu"), ["smoke.json found torch 2.11.0+cpu"]),
        (
            "result.json",
            lambda d: d["image"]["labels"].update({"io.rocmci.torch": "2.12.0", "io.rocmci.content-hash": "0" * 64}),
            ["the image validated is labelled io.rocmci.content-hash='000", "labelled io.rocmci.torch='2.12.0'"],
        ),
    ],
    ids=["older-probe", "no-torch", "no-aiter", "smoke-torch", "image-labels"],
)
def test_versions_that_disagree_with_the_pins_are_a_fail(
    real: tuple[Path, dict[str, Any]], file: str, change: Callable[[dict[str, Any]], None], reasons: list[str]
) -> None:
    entry_dir, entry = real
    edit(entry_dir / file, change)
    verdict = verdict_for(entry_dir, entry)
    assert verdict.verdict == "fail", verdict
    for reason in reasons:
        assert any(reason in r for r in verdict.reasons), (reason, verdict.reasons)


def test_git_pins_compare_the_commit_in_the_version(real: tuple[Path, dict[str, Any]]) -> None:
    entry_dir, entry = real
    edit(entry_dir / "probe.json", lambda d: d["versions"].update(aiter_dist="0.1.21.dev3+g1234abcd", aiter_import=None))
    edit(entry_dir / "probe.json", lambda d: d.update(expect={}))
    edit(entry_dir / "result.json", lambda d: d["image"]["labels"].pop("io.rocmci.aiter"))
    assert verdict_for(entry_dir, {**entry, "aiter": "1234abcdef01"}).verdict == "pass"
    other = verdict_for(entry_dir, {**entry, "aiter": "feedbeef0000"})
    assert other.verdict == "fail" and "found aiter 0.1.21.dev3+g1234abcd but the entry pins feedbeef0000" in other.reasons[0]


# ---------------------------------------------------------------- garbage in, garbage never out (issue 9 item 5)


def _strict_loads(text: str) -> Any:
    def refuse(name: str) -> None:
        raise ValueError(f"non-standard JSON constant {name}")

    return json.loads(text, parse_constant=refuse)


@pytest.mark.parametrize(
    ("file", "raw", "reason"),
    [
        ("smoke.json", ('"graph_us": null', '"graph_us": NaN'), "smoke.json is not strict JSON: NaN is not a JSON number"),
        ("smoke.json", ('"graph_us": null', '"graph_us": -Infinity'), "not strict JSON: -Infinity is not a JSON number"),
        ("smoke.json", ('"graph_us": null', '"graph_us": 1e999'), "not strict JSON: the number 1e999 is out of range"),
        ("smoke.json", ('"graph_us": null', '"graph_us": "NaN"'), "cases.0.graph_us"),
        ("result.json", ('"wall_s": 1.0', '"wall_s": Infinity'), "result.json is not strict JSON"),
    ],
    ids=["nan", "minus-infinity", "overflow", "nan-string", "result-infinity"],
)
def test_non_finite_figures_are_an_error_of_the_entry(
    real: tuple[Path, dict[str, Any]], tmp_path: Path, file: str, raw: tuple[str, str], reason: str
) -> None:
    entry_dir, entry = real
    path = entry_dir / file
    text = path.read_text()
    assert raw[0] in text
    path.write_text(text.replace(raw[0], raw[1], 1))
    verdict = verdict_for(entry_dir, entry)
    assert verdict.verdict == "error" and any(reason in r for r in verdict.reasons), verdict.reasons
    paths = write_all(entry_dir.parent, [entry])
    compat = _strict_loads(paths.compat_json.read_text())
    assert compat["entries"][0]["verdict"] == "error"


def test_nan_figures_of_a_gpu_smoke_do_not_crash_the_report(reports: Path, plan: list[dict[str, Any]]) -> None:
    """The issue's crash: NaN speedup/bandwidth in a GPU smoke.json. The entry is an error; every file is written."""
    path = reports / PASS / "smoke.json"
    path.write_text(re.sub(r'"(speedup_vs_torch_upcast|bandwidth_gbs|graph_us)": [0-9.e+-]+', r'"\1": NaN', path.read_text()))
    assert "NaN" in path.read_text()
    paths = write_all(reports, plan)
    compat = _strict_loads(paths.compat_json.read_text())
    record = next(e for e in compat["entries"] if e["entry"]["id"] == PASS)
    assert record["verdict"] == "error" and "not strict JSON" in record["reasons"][0]
    _strict_loads(paths.intoto[PASS].read_text())


def test_a_deeply_nested_smoke_json_is_an_error_not_a_crash(real: tuple[Path, dict[str, Any]]) -> None:
    entry_dir, entry = real
    (entry_dir / "smoke.json").write_text("[" * 100_000 + "]" * 100_000)
    verdict = verdict_for(entry_dir, entry)
    assert verdict.verdict == "error"
    assert "smoke: smoke.json is nested too deeply to be a rocmci document (the step exited 0)" in verdict.reasons
    assert _strict_loads(write_all(entry_dir.parent, [entry]).compat_json.read_text())["summary"]["error"] == 1


def test_an_oversized_document_is_not_read(real: tuple[Path, dict[str, Any]], monkeypatch: pytest.MonkeyPatch) -> None:
    entry_dir, entry = real
    monkeypatch.setattr(evidence, "MAX_DOCUMENT_BYTES", 1000)
    verdict = verdict_for(entry_dir, entry)
    assert verdict.verdict == "error" and any("more than the 1000 a rocmci document may have" in r for r in verdict.reasons)


def test_a_fifo_as_document_is_an_error_without_waiting(real: tuple[Path, dict[str, Any]]) -> None:
    entry_dir, entry = real
    (entry_dir / "smoke.json").unlink()
    os.mkfifo(entry_dir / "smoke.json")
    verdict = verdict_for(entry_dir, entry)
    assert verdict.verdict == "error" and "smoke: smoke.json is not a regular file (the step exited 0)" in verdict.reasons
