"""checks/smoke_layernorm.py: the CPU correctness path passes, planted wrong implementations fail, the JSON keeps its contract."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import pytest

from tests.helpers import require_module

torch = require_module("torch", "pip install -e '.[checks]' for the smoke test's CPU path")
F = torch.nn.functional

REPO = Path(__file__).resolve().parents[1]
SMOKE = REPO / "checks" / "smoke_layernorm.py"
CASE_KEYS = {
    "impl",
    "dtype",
    "param_dtype",
    "tokens",
    "hidden",
    "layout",
    "kind",
    "status",
    "reason",
    "max_abs_err",
    "max_rel_err",
    "mismatch_frac",
    "graph_us",
    "eager_us",
    "kernels_per_call",
    "bandwidth_gbs",
    "bandwidth_frac",
    "bandwidth_ceiling_frac",
    "speedup_vs_torch_upcast",
    "spread_pct",
    "profiler_kernel_us",
}


@pytest.fixture(scope="module")
def smoke() -> Iterator[ModuleType]:
    spec = importlib.util.spec_from_file_location("rocmci_checks_smoke", SMOKE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the file executes
    spec.loader.exec_module(module)
    yield module
    del sys.modules[spec.name]


def assert_smoke_contract(doc: dict[str, Any]) -> None:
    assert doc["schema"] == "rocmci.smoke/v1"
    assert doc["status"] in {"pass", "fail", "error"} and doc["scope"] in {"gpu", "cpu-only"}
    assert set(doc["device"]) >= {"type", "name", "hip", "gfx"} and doc["device"]["type"] in {"cuda", "cpu"}
    for dtype in ("bfloat16", "float16"):
        assert set(doc["tolerances"][dtype]) == {"atol", "rtol", "max_mismatch_frac"}
    assert "peak_bandwidth_gbs" in doc and "copy_ceiling_gbs" in doc and isinstance(doc["wall_s"], float)
    for case in doc["cases"]:
        assert set(case) >= CASE_KEYS
        assert case["status"] in {"pass", "fail", "skipped", "error"}
        assert case["kind"] in {"k_norm", "hidden", "strided", "param-trap", "prefill"}
        assert case["layout"] in {"contiguous", "strided"}
    for gate in doc["gates"]:
        assert set(gate) >= {"name", "passed", "detail"} and isinstance(gate["passed"], bool)
    for skip in doc["skipped"]:
        assert set(skip) >= {"what", "reason"} and skip["reason"]


def register(monkeypatch: pytest.MonkeyPatch, smoke: ModuleType, name: str, fn: Callable[..., Any], fused: bool = False) -> None:
    monkeypatch.setitem(smoke.IMPLS, name, lambda ctx: smoke.Impl(name, fn, fused=fused))


@pytest.fixture
def few_shapes(smoke: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    """Fewer quick shapes for the in-process runs; 5125 stays, so a bug in a row's tail is still exercised."""
    monkeypatch.setattr(smoke, "QUICK_K_NORM_TOKENS", (1, 83))
    monkeypatch.setattr(smoke, "QUICK_HIDDEN_SIZES", (5125,))


def run_cpu(smoke: ModuleType, *impls: str) -> dict[str, Any]:
    doc = smoke.run_smoke(smoke.parse_args(["--device", "cpu", "--quick", "--impl", ",".join(impls)]))
    assert_smoke_contract(doc)
    return doc


# -------------------------------------------------------------- the CPU path, as CI and the local image run it


def test_cpu_only_run_passes_and_claims_nothing_for_the_gpu() -> None:
    cmd = [
        sys.executable,
        "-P",
        str(SMOKE),
        "--json",
        "--quick",
        "--cpu-only",
        "--gate-max-kernels",
        "1",
        "--gate-min-speedup",
        "2",
        "--gate-min-ceiling-frac",
        "0.4",
    ]
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False, env=env)
    doc = json.loads(proc.stdout)
    assert_smoke_contract(doc)
    assert proc.returncode == 0 and doc["status"] == "pass" and doc["scope"] == "cpu-only"
    assert {c["impl"] for c in doc["cases"]} == {"torch", "torch-upcast"}
    assert {c["kind"] for c in doc["cases"]} == {"k_norm", "hidden", "strided"}
    assert {c["dtype"] for c in doc["cases"]} == {"bfloat16", "float16"}
    assert all(c["status"] == "pass" and c["graph_us"] is None and c["kernels_per_call"] is None for c in doc["cases"])
    assert {c["param_dtype"] for c in doc["cases"] if c["impl"] == "torch-upcast"} == {"float32"}
    skipped = {s["what"]: s["reason"] for s in doc["skipped"]}
    assert "need an AMD GPU" in skipped["impl aiter-ck"]
    assert {"impl aiter-triton", "performance", "gates"} <= set(skipped)
    assert "16384x8192" in skipped["prefill shapes"] and doc["copy_ceiling_gbs"] is None
    assert all(c["bandwidth_ceiling_frac"] is None for c in doc["cases"])
    assert doc["gates"] == [] and doc["aiter_kernel_ran"] is False and "no aiter kernel ran" in doc["note"]


@pytest.mark.parametrize(
    ("argv", "named"), [(["--impl", "no-such-impl"], "no-such-impl"), (["--gate-min-ceiling-frac", "1.5"], "ceiling-frac")]
)
def test_bad_arguments_exit_2_with_a_json_error(
    smoke: ModuleType, capfd: pytest.CaptureFixture[str], argv: list[str], named: str
) -> None:
    assert smoke.main(["--json", *argv]) == 2
    doc = json.loads(capfd.readouterr().out)
    assert doc["status"] == "error" and named in doc["error"]


# -------------------------------------------------------------- planted wrong implementations


def forgets_bias(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor, eps: float) -> torch.Tensor:
    return F.layer_norm(x, (x.shape[-1],), w, None, eps)


def returns_fp32(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor, eps: float) -> torch.Tensor:
    return F.layer_norm(x.float(), (x.shape[-1],), w.float(), b.float(), eps)


def wrong_last_column(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor, eps: float) -> torch.Tensor:
    y = F.layer_norm(x, (x.shape[-1],), w, b, eps)
    y[:, -1] += 0.5
    return y


def garbage(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor, eps: float) -> torch.Tensor:
    return torch.randn_like(x)


@pytest.mark.usefixtures("few_shapes")
@pytest.mark.parametrize("wrong", [forgets_bias, returns_fp32, wrong_last_column, garbage], ids=lambda f: f.__name__)
def test_planted_wrong_impl_fails(smoke: ModuleType, monkeypatch: pytest.MonkeyPatch, wrong: Callable[..., Any]) -> None:
    register(monkeypatch, smoke, "planted", wrong)
    doc = run_cpu(smoke, "planted", "torch")
    planted = [c for c in doc["cases"] if c["impl"] == "planted"]
    assert doc["status"] == "fail"
    assert planted and all(c["status"] == "fail" and c["reason"] for c in planted)
    assert all(c["status"] == "pass" for c in doc["cases"] if c["impl"] == "torch")


@pytest.mark.usefixtures("few_shapes")
def test_planted_impl_that_raises_is_an_error_case(smoke: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    def raises(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor, eps: float) -> torch.Tensor:
        raise RuntimeError("HIP error: invalid device function")

    register(monkeypatch, smoke, "raises", raises)
    doc = run_cpu(smoke, "raises")
    assert doc["status"] == "fail" and all(
        c["status"] == "error" and "invalid device function" in c["reason"] for c in doc["cases"]
    )


def reads_fp32_params_as_input_dtype(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor, eps: float) -> torch.Tensor:
    """What aiter's CK layernorm2d_fwd does before 0.1.20 with fp32 weight/bias and bf16 input: reads their bytes as bf16."""
    hidden = x.shape[-1]
    return F.layer_norm(x, (hidden,), w.view(x.dtype)[:hidden], b.view(x.dtype)[:hidden], eps)


@pytest.mark.usefixtures("few_shapes")
def test_param_trap_catches_the_pre_0_1_20_bug(smoke: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    register(monkeypatch, smoke, "old-aiter", reads_fp32_params_as_input_dtype, fused=True)
    doc = run_cpu(smoke, "old-aiter")
    trap = [c for c in doc["cases"] if c["kind"] == "param-trap"]
    assert trap and all(c["status"] == "fail" and c["param_dtype"] == "float32" and "0.1.20" in c["reason"] for c in trap)
    assert all(c["status"] == "pass" for c in doc["cases"] if c["kind"] != "param-trap")
    assert doc["status"] == "fail"


@pytest.mark.usefixtures("few_shapes")
def test_param_trap_passes_a_fused_impl_that_refuses_fp32_params(smoke: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    def asserts_dtypes(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor, eps: float) -> torch.Tensor:
        assert w.dtype == x.dtype, "weight dtype must match input"  # what aiter >= 0.1.20 does
        return F.layer_norm(x, (x.shape[-1],), w, b, eps)

    register(monkeypatch, smoke, "aiter-0.1.20", asserts_dtypes, fused=True)
    doc = run_cpu(smoke, "aiter-0.1.20")
    trap = [c for c in doc["cases"] if c["kind"] == "param-trap"]
    assert doc["status"] == "pass" and trap and all("refused" in c["reason"] for c in trap)


@pytest.mark.usefixtures("few_shapes")
def test_param_trap_passes_a_fused_impl_that_handles_fp32_params(smoke: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    def mixed_ok(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor, eps: float) -> torch.Tensor:
        return F.layer_norm(x.float(), (x.shape[-1],), w.float(), b.float(), eps).to(x.dtype)

    register(monkeypatch, smoke, "fused-ok", mixed_ok, fused=True)
    doc = run_cpu(smoke, "fused-ok")
    assert doc["status"] == "pass" and any(c["kind"] == "param-trap" for c in doc["cases"])


# -------------------------------------------------------------- gates and measurement bookkeeping


def gate_case(impl: str, graph_us: float, kernels: float) -> dict[str, Any]:
    return {
        "impl": impl,
        "kind": "k_norm",
        "dtype": "bfloat16",
        "param_dtype": "float32" if impl == "torch-upcast" else "bfloat16",
        "tokens": 8192,
        "hidden": 128,
        "layout": "contiguous",
        "graph_us": graph_us,
        "kernels_per_call": kernels,
        "bandwidth_gbs": 500.0,
    }


def test_gates_pass_and_fail_with_the_figures(smoke: ModuleType) -> None:
    cases = [gate_case("torch-upcast", 22.5, 5), gate_case("aiter-triton", 7.5, 1), gate_case("aiter-ck", 15.0, 2)]
    smoke.attach_speedups(cases, peak_gbs=5300.0)
    gates = {g["name"]: g for g in smoke.evaluate_gates(cases, ["aiter-triton", "aiter-ck"], max_kernels=1, min_speedup=2.0)}
    assert gates["aiter-triton.kernels_per_call"]["passed"] and gates["aiter-triton.speedup_vs_torch_upcast"]["passed"]
    assert not gates["aiter-ck.kernels_per_call"]["passed"] and "2 kernels/call" in gates["aiter-ck.kernels_per_call"]["detail"]
    failed_speedup = gates["aiter-ck.speedup_vs_torch_upcast"]
    assert not failed_speedup["passed"] and "1.5x" in failed_speedup["detail"] and "15.0 us" in failed_speedup["detail"]
    assert cases[1]["speedup_vs_torch_upcast"] == 3.0 and cases[1]["bandwidth_frac"] == round(500 / 5300, 4)


def test_a_gate_without_a_measurement_fails(smoke: ModuleType) -> None:
    gates = smoke.evaluate_gates([gate_case("torch-upcast", 22.5, 5)], ["aiter-ck"], max_kernels=1, min_speedup=2.0)
    assert [g["passed"] for g in gates] == [False, False] and all("not measured" in g["detail"] for g in gates)


def test_rotating_sets_exceed_l2_twice(smoke: ModuleType) -> None:
    k_norm = smoke.CaseSpec("k_norm", "bfloat16", "bfloat16", 8192, 128)
    assert smoke.bytes_per_call(k_norm) == 2 * 8192 * 128 * 2 + 2 * 128 * 2
    sets = smoke.rotating_sets(k_norm, l2_bytes=50 << 20)
    assert sets * smoke.bytes_per_call(k_norm) >= 2 * (50 << 20) > (sets - 1) * smoke.bytes_per_call(k_norm)
    assert (
        smoke.rotating_sets(smoke.CaseSpec("k_norm", "bfloat16", "bfloat16", 1, 128), l2_bytes=50 << 20)
        == smoke.MAX_ROTATING_SETS
    )


def test_full_case_list_covers_the_issue_shapes(smoke: ModuleType) -> None:
    fused = smoke.Impl("x", forgets_bias, fused=True)
    specs = smoke.case_specs(False, fused)
    assert {s.tokens for s in specs if s.kind == "k_norm"} == {1, 7, 83, 1024, 8192}
    prefill = {(s.tokens, s.hidden, s.dtype) for s in specs if s.kind == "prefill"}
    assert prefill == {(t, h, "bfloat16") for t in (8192, 16384) for h in (7168, 8192)}
    assert all(smoke.bytes_per_call(s) > 200e6 for s in specs if s.kind == "prefill")  # bandwidth-bound, not latency-bound
    assert not any(s.kind == "prefill" for s in smoke.case_specs(False, fused, gpu=False))
    assert [(s.tokens, s.hidden) for s in smoke.case_specs(True, fused) if s.kind == "prefill"] == [smoke.CEILING_GATE_SHAPE]
    assert {s.hidden for s in specs if s.kind == "hidden"} == {512, 1536, 4096, 5120, 5125, 7168, 8192, 16384}
    assert any(s.layout == "strided" for s in specs)
    assert {(s.dtype, s.param_dtype) for s in specs if s.kind == "param-trap"} == {("bfloat16", "float32")}
    assert not any(s.kind == "param-trap" for s in smoke.case_specs(False, smoke.Impl("t", forgets_bias, fused=False)))


class FakeKinetoEvent:
    def __init__(self, kind: str, name: str, start: int, end: int) -> None:
        self._kind, self._name, self._start, self._end = kind, name, start, end

    def activity_type(self) -> str:
        return self._kind

    def name(self) -> str:
        return self._name

    def start_ns(self) -> int:
        return self._start

    def end_ns(self) -> int:
        return self._end


def test_profiled_graph_replays_give_kernels_time_and_span(smoke: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    # 16 calls of 2 kernels each: 1000 ns kernels, 300 ns dispatch gaps; runtime and sync activities are not device work
    events = [FakeKinetoEvent("kernel", f"k{i % 2}", i * 1300, i * 1300 + 1000) for i in range(32)]
    events += [
        FakeKinetoEvent("cuda_runtime", "cudaGraphLaunch", 0, 500),
        FakeKinetoEvent("cuda_sync", "Device Synchronize", 0, 99999),
    ]
    fake_prof = SimpleNamespace(kineto_results=SimpleNamespace(events=lambda: events))
    asked: list[dict[str, Any]] = []

    @contextlib.contextmanager
    def fake_profile(**kwargs: Any) -> Iterator[Any]:
        asked.append(kwargs)
        yield fake_prof

    replays: list[int] = []
    monkeypatch.setattr(torch.autograd.profiler, "profile", fake_profile)
    monkeypatch.setattr(torch.cuda, "synchronize", lambda: None)
    got = smoke.profile_replays(SimpleNamespace(replay=lambda: replays.append(1)), n_calls=16)
    assert replays == [1] and asked == [{"use_device": "cuda", "use_cpu": False, "use_kineto": True}]  # device work only
    assert got["kernels_per_call"] == 2 and got["profiler_kernel_us"] == pytest.approx(2.0)
    assert got["profiler_span_us"] == pytest.approx((31 * 1300 + 1000) / 16 / 1e3) and got["kernel_names"] == ["k0", "k1"]


# -------------------------------------------------------------- copy ceiling, its gate, and where that gate ends up


def prefill_case(impl: str, bandwidth_gbs: float | None) -> dict[str, Any]:
    return {
        "impl": impl,
        "kind": "prefill",
        "dtype": "bfloat16",
        "param_dtype": "float32" if impl == "torch-upcast" else "bfloat16",
        "tokens": 16384,
        "hidden": 8192,
        "layout": "contiguous",
        "graph_us": 250.0 if bandwidth_gbs else None,
        "kernels_per_call": 1,
        "bandwidth_gbs": bandwidth_gbs,
    }


def ceiling_gates(smoke: ModuleType, cases: list[dict[str, Any]], ceiling_gbs: float | None) -> dict[str, dict[str, Any]]:
    smoke.attach_speedups(cases, peak_gbs=4800.0, ceiling_gbs=ceiling_gbs)
    gates = smoke.evaluate_gates(cases, ["aiter-triton", "aiter-ck"], None, None, min_ceiling_frac=0.4, ceiling_gbs=ceiling_gbs)
    return {g["name"]: g for g in gates}


def test_ceiling_gate_passes_a_fast_kernel_and_fails_a_slow_one(smoke: ModuleType) -> None:
    cases = [prefill_case("aiter-triton", 2140.0), prefill_case("aiter-ck", 550.0), prefill_case("torch-upcast", 546.0)]
    gates = ceiling_gates(smoke, cases, ceiling_gbs=4264.0)
    fast, slow = gates["aiter-triton.bandwidth_ceiling_frac"], gates["aiter-ck.bandwidth_ceiling_frac"]
    assert fast["passed"] and "0.502 of the measured copy ceiling 4264 GB/s" in fast["detail"] and "16384x8192" in fast["detail"]
    assert not slow["passed"] and "550 GB/s = 0.129" in slow["detail"] and "(gate >= 0.4)" in slow["detail"]
    assert cases[0]["bandwidth_ceiling_frac"] == round(2140 / 4264, 4) and cases[0]["bandwidth_frac"] == round(2140 / 4800, 4)
    assert len(gates) == 2  # fused impls only: torch-upcast is the baseline, not gated


def test_ceiling_gate_without_a_measurement_fails(smoke: ModuleType) -> None:
    no_ceiling = ceiling_gates(smoke, [prefill_case("aiter-triton", 2140.0)], ceiling_gbs=None)
    assert not no_ceiling["aiter-triton.bandwidth_ceiling_frac"]["passed"]
    assert "copy ceiling not measured" in no_ceiling["aiter-triton.bandwidth_ceiling_frac"]["detail"]
    no_case = ceiling_gates(smoke, [prefill_case("torch-upcast", 546.0)], ceiling_gbs=4264.0)
    assert [g["passed"] for g in no_case.values()] == [False, False]
    assert all("not measured" in g["detail"] for g in no_case.values())


def test_a_failed_ceiling_gate_fails_the_verdict_and_is_plotted(smoke: ModuleType) -> None:
    from rocmci.report import Evidence, SmokeDoc, ceiling_plot, judge

    cases = [prefill_case("aiter-triton", 900.0), prefill_case("torch-upcast", 546.0)]
    gates = ceiling_gates(smoke, cases, ceiling_gbs=4264.0)
    for case in cases:
        case["status"] = "pass"
    doc = {
        "schema": smoke.SCHEMA,
        "status": "fail",
        "scope": "gpu",
        "device": {"type": "cuda", "name": "AMD Instinct MI300X", "hip": True, "gfx": "gfx942"},
        "copy_ceiling_gbs": 4264.0,
        "cases": cases,
        "gates": list(gates.values()),
    }
    parsed = SmokeDoc.model_validate(json.loads(json.dumps(doc)))
    verdict = judge(Evidence(entry_dir=Path("unused"), entry={"kind": "amd", "gfx": "gfx942"}, smoke=parsed))
    assert verdict.verdict == "fail"
    assert any(
        r.startswith("smoke gate aiter-triton.bandwidth_ceiling_frac: aiter-triton at 16384x8192") for r in verdict.reasons
    )
    svg = ceiling_plot(parsed)
    assert "fraction of the measured copy ceiling (4.26 TB/s)" in svg and svg.count("<rect") >= 3
    assert "21.1%" in svg and "12.8%" in svg  # 900 and 546 GB/s of 4264
    assert "no copy ceiling measured" in ceiling_plot(SmokeDoc.model_validate({**doc, "cases": [], "copy_ceiling_gbs": None}))


def test_rotating_sets_defeat_the_infinity_cache_on_amd(smoke: ModuleType) -> None:
    assert smoke.cache_bytes_to_defeat({"hip": False, "l2_bytes": 60 << 20}) == 60 << 20
    assert smoke.cache_bytes_to_defeat({"hip": True, "l2_bytes": 4 << 20}) == 256 << 20  # MI300: 4 MB L2, 256 MB MALL
    prefill = smoke.CaseSpec("prefill", "bfloat16", "bfloat16", 8192, 7168)
    assert smoke.rotating_sets(prefill, 60 << 20) == 1 and smoke.rotating_sets(prefill, 256 << 20) == 3


def test_jit_warm_up_calls_every_case_once_and_survives_failures(smoke: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    def signature(*tensors: torch.Tensor) -> tuple[Any, ...]:
        return tuple((tuple(t.shape), t.stride(), t.dtype) for t in tensors)

    specs = smoke.case_specs(False, smoke.Impl("jit", forgets_bias, fused=True), gpu=False)
    real = set()
    for spec in specs:  # what the cases themselves pass: warm-up inputs must specialize a JIT the same way
        xs, w, b = smoke.make_inputs(spec, torch.device("cpu"))
        real.add(signature(xs[0], w, b))
    seen: list[tuple[Any, ...]] = []

    def records(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor, eps: float) -> torch.Tensor:
        seen.append(signature(x, w, b))
        if x.shape[0] == 7:
            raise RuntimeError("a case that fails reports itself when it runs")
        return x

    monkeypatch.setattr(torch.cuda, "synchronize", lambda: None)
    smoke.warm_up_jit(smoke.Impl("jit", records, fused=True, jit=True), specs, torch.device("cpu"))
    assert len(seen) == len(specs) and set(seen) == real
    assert seen[0][0][0] == (specs[0].tokens, specs[0].hidden)  # the first call ran first, alone
