"""LayerNorm smoke test: correctness against float64 and GPU performance per implementation (rocmci.smoke/v1 JSON).

Runs inside the image under test, so it imports only the standard library, torch and aiter.
Run it as `python -P checks/smoke_layernorm.py --json ...`. Exit status: 0 pass, 1 fail, 2 error.
Implementations: aiter-ck (aiter.layernorm2d_fwd), aiter-triton (aiter's Triton layer_norm), torch (F.layer_norm in the
input dtype) and torch-upcast (sglang's forward_native: fp32 params, x.float() -> F.layer_norm -> .to(dtype)).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import importlib
import importlib.machinery
import importlib.metadata
import importlib.util
import json
import math
import os
import platform
import re
import statistics
import sys
import threading
import time
import traceback
import types
import zlib
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_T0 = time.perf_counter()  # wall_s counts the torch import below

try:
    import torch
    import torch.nn.functional as F
except ImportError:  # reported as status "error" by main()
    torch = None  # type: ignore[assignment]
_T_IMPORTED = time.perf_counter()

SCHEMA = "rocmci.smoke/v1"
EPS = 1e-5
K_NORM_TOKENS = (1, 7, 83, 1024, 8192)
K_NORM_HIDDEN = 128
HIDDEN_SIZES = (512, 1536, 4096, 5120, 5125, 7168, 8192, 16384)
HIDDEN_TOKENS = 83
STRIDED_SHAPES = ((1024, 128), (83, 5125))  # column slices of a tensor twice as wide, as aiter's test uses torch.split
TRAP_SHAPES = ((1024, 128), (83, 4096))
# Prefill-scale shapes (bf16, GPU only): 235-537 MB moved per call, so they are bandwidth-bound, unlike every shape above.
PREFILL_SHAPES = ((8192, 7168), (8192, 8192), (16384, 7168), (16384, 8192))
PREFILL_DTYPE = "bfloat16"
QUICK_K_NORM_TOKENS = (1, 83, 8192)
QUICK_HIDDEN_SIZES = (512, 5125, 16384)
QUICK_PREFILL_SHAPES = PREFILL_SHAPES[-1:]
GATE_SHAPE = (8192, K_NORM_HIDDEN)
CEILING_GATE_SHAPE = PREFILL_SHAPES[-1]  # the largest: the fused kernel's fraction of the copy ceiling is gated here
DTYPES = ("bfloat16", "float16")
DEFAULT_IMPLS = ("aiter-ck", "aiter-triton", "torch", "torch-upcast")
DEFAULT_TRITON_ARCH = "gfx942"
ARCH_INFO_MODULE = "aiter.ops.triton.utils._triton.arch_info"
TRITON_NORM_MODULES = ("aiter.ops.triton.normalization.norm", "aiter.ops.triton.norm")  # >= 0.1.10, older

# Timing: each repeat replays the graph for >= REPEAT_TARGET_MS; the graph calls the impl once per rotating input set,
# with enough sets that their bytes exceed L2 twice over (so the figures are HBM, not L2, bandwidth; capped for tiny shapes).
REPEATS = 7
REPEAT_TARGET_MS = 4.0  # on an H200, 2 ms left 87-101 of 102 cases under 3% spread, 4 ms 98-102
SPIN_US = 50.0  # the GPU spins this long before each timed repeat, so the CPU's launches are queued when timing starts
EAGER_REPEATS = 3
EAGER_CALLS = 16  # eager calls per repeat (eager time is launch-bound: it needs no rotation past the cache)
MAX_ROTATING_SETS = 64
MIN_PROFILED_CALLS = 16
DEVICE_WORK = frozenset({"kernel", "gpu_memcpy", "gpu_memset"})  # kineto activity types that are device work
WARMUP_S = 0.3
WARMUP_ROUND_MS = 10.0
# MI300/MI350 put a 256 MB Infinity Cache (MALL) behind L2 that torch does not report: rotate inputs past it too.
HIP_LAST_LEVEL_CACHE_BYTES = 256 << 20
COPY_CEILING_BYTES = 1 << 30  # buffer copied device-to-device to measure the copy ceiling (bytes read + written)
COPY_CEILING_REPEATS = 20
JIT_WARM_UP_THREADS = 8  # Triton compiles partly outside the GIL: 8 threads took 4.8 s where 1 took 10.7 s (H200, 20 kernels)


@dataclass(frozen=True)
class Tolerance:
    atol: float
    rtol: float
    max_mismatch_frac: float


# Every element must satisfy |y - ref| <= atol + rtol*|ref| (ref: float64 from the same rounded inputs and params).
# aiter's own test allows rtol=atol=1e-2 with up to 5% of elements out, sglang's allclose atol=1e-2, rtol=1e-3 with none out.
# We take aiter's rtol for bf16 (one bf16 ulp is 2^-7 relative, so rounding the output alone can reach 2^-8 relative) and
# sglang's for fp16 (ulp 2^-10), and allow no element out: a kernel wrong only in the tail of a 5125-wide row touches
# < 0.1% of elements and would hide under a 5% allowance. Inputs are randn, weight 1+0.25*randn, bias 0.25*randn, so
# |y| < ~10 and a correctly rounded fp32 computation stays well inside these bounds.
TOLERANCES = {
    "bfloat16": Tolerance(atol=1e-2, rtol=1e-2, max_mismatch_frac=0.0),
    "float16": Tolerance(atol=1e-2, rtol=1e-3, max_mismatch_frac=0.0),
}

LayerNormFn = Callable[[Any, Any, Any, float], Any]


@dataclass(frozen=True)
class CaseSpec:
    kind: str  # k_norm | hidden | strided | param-trap | prefill
    dtype: str
    param_dtype: str
    tokens: int
    hidden: int
    layout: str = "contiguous"


@dataclass
class Impl:
    name: str
    fn: LayerNormFn
    fused: bool
    param_dtype: str | None = None  # fixed parameter dtype (torch-upcast keeps fp32 params); None: the input's dtype
    info: dict[str, Any] = field(default_factory=dict)
    jit: bool = False  # compiles a kernel per specialization at first call (Triton): warmed up in parallel before timing


class Unavailable(Exception):
    """The implementation cannot run here; the message says why."""


@dataclass
class Context:
    device: Any
    hip: bool
    triton_arch: str | None
    aiter_import: tuple[Any, str | None] | None = None  # (module or None, error text), cached


class UsageError(Exception):
    pass


# ---------------------------------------------------------------- implementations


def import_aiter(ctx: Context) -> Any:
    if ctx.aiter_import is None:
        try:
            import aiter

            ctx.aiter_import = (aiter, None)
        except Exception as exc:  # aiter's import can fail with anything (no ROCm, ABI, missing deps)
            ctx.aiter_import = (None, f"{type(exc).__name__}: {exc}")
    module, error = ctx.aiter_import
    if module is None:
        raise Unavailable(f"import aiter failed: {error}")
    return module


def load_torch(ctx: Context) -> Impl:
    def fn(x: Any, w: Any, b: Any, eps: float) -> Any:
        return F.layer_norm(x, (x.shape[-1],), w, b, eps)

    return Impl("torch", fn, fused=False)


def load_torch_upcast(ctx: Context) -> Impl:
    def fn(x: Any, w: Any, b: Any, eps: float) -> Any:
        return F.layer_norm(x.float(), (x.shape[-1],), w, b, eps).to(x.dtype)

    return Impl("torch-upcast", fn, fused=False, param_dtype="float32")


def load_aiter_ck(ctx: Context) -> Impl:
    if not ctx.hip:
        raise Unavailable(
            f"aiter's CK kernels need an AMD GPU and a ROCm torch (device {ctx.device.type}, torch {torch.__version__})"
        )
    aiter = import_aiter(ctx)
    ln = getattr(aiter, "layernorm2d_fwd", None)
    if ln is None:
        raise Unavailable("aiter has no layernorm2d_fwd")

    def fn(x: Any, w: Any, b: Any, eps: float) -> Any:
        return ln(x, w, b, eps)

    return Impl("aiter-ck", fn, fused=True, info={"version": getattr(aiter, "__version__", None)})


def aiter_package_dir() -> Path:
    spec = importlib.util.find_spec("aiter")
    if spec is not None and spec.submodule_search_locations:
        return Path(next(iter(spec.submodule_search_locations)))
    for dist in ("amd-aiter", "aiter"):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            return Path(str(importlib.metadata.distribution(dist).locate_file("aiter")))
    raise Unavailable("aiter is not installed")


def install_aiter_stub(package_dir: Path) -> None:
    """A bare `aiter` package entry whose __path__ is the installed aiter, so its submodules import without
    running aiter/__init__.py (which needs ROCm)."""
    for name in [m for m in sys.modules if m == "aiter" or m.startswith("aiter.")]:
        del sys.modules[name]
    spec = importlib.machinery.ModuleSpec("aiter", None, is_package=True)
    spec.submodule_search_locations = [str(package_dir)]
    stub = types.ModuleType("aiter")
    stub.__path__ = [str(package_dir)]
    stub.__spec__ = spec
    sys.modules["aiter"] = stub


def override_triton_arch(package_dir: Path, arch: str) -> bool:
    """Load aiter's arch lookup before any aiter Triton module, and make it answer `arch` (on NVIDIA Triton gives an int)."""
    path = package_dir / "ops" / "triton" / "utils" / "_triton" / "arch_info.py"
    if not path.is_file():
        return False
    spec = importlib.util.spec_from_file_location(ARCH_INFO_MODULE, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.get_arch = lambda: arch
    sys.modules[ARCH_INFO_MODULE] = module
    parent = importlib.import_module(ARCH_INFO_MODULE.rpartition(".")[0])
    parent.arch_info = module
    return True


def load_aiter_triton(ctx: Context) -> Impl:
    if ctx.device.type != "cuda":
        raise Unavailable("Triton kernels need a GPU")
    info: dict[str, Any] = {"loaded_via": "package", "arch_lookup_overridden": False, "arch": None, "amd_result": ctx.hip}
    package_error = None if ctx.hip else "not tried: aiter/__init__.py needs ROCm and this torch is not a ROCm build"
    if ctx.hip:
        try:
            import_aiter(ctx)
        except Unavailable as exc:
            package_error = str(exc)
    if package_error:
        install_aiter_stub(aiter_package_dir())
        info.update(loaded_via="stub", package_import=package_error)
    if not ctx.hip:
        arch = ctx.triton_arch or DEFAULT_TRITON_ARCH
        if not override_triton_arch(aiter_package_dir(), arch):
            raise Unavailable("aiter's Triton arch lookup (arch_info.get_arch) not found: cannot run it on a non-AMD GPU")
        info.update(
            arch_lookup_overridden=True,
            arch=arch,
            note=f"aiter's Triton arch lookup was overridden to {arch} on a non-AMD GPU: this is NOT an AMD result.",
        )
    errors = []
    for name in TRITON_NORM_MODULES:
        try:
            layer_norm = importlib.import_module(name).layer_norm
        except (ImportError, AttributeError) as exc:
            errors.append(f"{name}: {type(exc).__name__}: {exc}")
            continue
        info["module"] = name

        def fn(x: Any, w: Any, b: Any, eps: float, _ln: Callable[..., Any] = layer_norm) -> Any:
            return _ln(x, w, b, eps)

        return Impl("aiter-triton", fn, fused=True, info=info, jit=True)
    raise Unavailable("aiter's Triton layer_norm did not import: " + "; ".join(errors))


IMPLS: dict[str, Callable[[Context], Impl]] = {
    "aiter-ck": load_aiter_ck,
    "aiter-triton": load_aiter_triton,
    "torch": load_torch,
    "torch-upcast": load_torch_upcast,
}


# ---------------------------------------------------------------- cases


def case_specs(quick: bool, impl: Impl, gpu: bool = True) -> list[CaseSpec]:
    k_tokens = QUICK_K_NORM_TOKENS if quick else K_NORM_TOKENS
    hidden_sizes = QUICK_HIDDEN_SIZES if quick else HIDDEN_SIZES
    strided = STRIDED_SHAPES[-1:] if quick else STRIDED_SHAPES
    specs = []
    for dtype in DTYPES:
        params = impl.param_dtype or dtype
        specs += [CaseSpec("k_norm", dtype, params, t, K_NORM_HIDDEN) for t in k_tokens]
        specs += [CaseSpec("hidden", dtype, params, HIDDEN_TOKENS, h) for h in hidden_sizes]
        specs += [CaseSpec("strided", dtype, params, t, h, layout="strided") for t, h in strided]
    if gpu:
        prefill = QUICK_PREFILL_SHAPES if quick else PREFILL_SHAPES
        specs += [CaseSpec("prefill", PREFILL_DTYPE, impl.param_dtype or PREFILL_DTYPE, t, h) for t, h in prefill]
    if impl.fused:  # bf16 input with fp32 weight/bias: aiter < 0.1.20 returns wrong values without an error
        trap = TRAP_SHAPES[:1] if quick else TRAP_SHAPES
        specs += [CaseSpec("param-trap", "bfloat16", "float32", t, h) for t, h in trap]
    return specs


def make_inputs(spec: CaseSpec, device: Any, sets: int = 1, values: bool = True) -> tuple[list[Any], Any, Any]:
    """`sets` input tensors for the case (a column slice when strided) and its weight and bias, seeded by the case.
    values=False: the same shapes, dtypes and strides, left unset (enough for a JIT to compile its specialization)."""
    gen = torch.Generator(device=device).manual_seed(zlib.crc32(repr(spec).encode()))
    dtype, width = getattr(torch, spec.dtype), spec.hidden * (2 if spec.layout == "strided" else 1)
    param = getattr(torch, spec.param_dtype)
    if not values:
        base = torch.empty((spec.tokens, width), dtype=dtype, device=device)
        x = base[:, : spec.hidden] if spec.layout == "strided" else base
        w, b = (torch.empty((spec.hidden,), dtype=param, device=device) for _ in range(2))
        return [x] * sets, w, b
    xs = []
    for _ in range(sets):
        base = torch.randn((spec.tokens, width), generator=gen, device=device).to(dtype)
        xs.append(base[:, : spec.hidden] if spec.layout == "strided" else base)
    w = (1 + 0.25 * torch.randn((spec.hidden,), generator=gen, device=device)).to(param)
    b = (0.25 * torch.randn((spec.hidden,), generator=gen, device=device)).to(param)
    return xs, w, b


def finite(value: float | None, digits: int = 6) -> float | None:
    return round(value, digits) if value is not None and math.isfinite(value) else None


def compare(y: Any, ref: Any, spec: CaseSpec, tol: Tolerance) -> dict[str, Any]:
    if tuple(y.shape) != tuple(ref.shape):
        return {"status": "fail", "reason": f"output shape {tuple(y.shape)} != {tuple(ref.shape)}"}
    ok_values = torch.isfinite(y)
    err = (y.double() - ref).abs()
    bad = ~ok_values | (err > tol.atol + tol.rtol * ref.abs())
    mismatch = bad.double().mean().item()
    rel_mask = ok_values & (ref.abs() > tol.atol)  # relative error where |ref| is not ~0
    result = {
        "max_abs_err": finite(err[ok_values].max().item()) if ok_values.any() else None,
        "max_rel_err": finite((err[rel_mask] / ref.abs()[rel_mask]).max().item()) if rel_mask.any() else None,
        "mismatch_frac": finite(mismatch),
    }
    problems = []
    if str(y.dtype).removeprefix("torch.") != spec.dtype:
        problems.append(f"output dtype {y.dtype} != {spec.dtype}")
    if not ok_values.all():
        problems.append(f"{int((~ok_values).sum())} non-finite outputs")
    if mismatch > tol.max_mismatch_frac:
        problems.append(
            f"{mismatch:.2%} of elements outside atol={tol.atol} rtol={tol.rtol} (max abs err {result['max_abs_err']}; allowed {tol.max_mismatch_frac:.0%})"
        )
    if spec.kind == "param-trap" and problems:
        problems.append(
            "bf16 input with fp32 weight/bias gives wrong values (aiter < 0.1.20 does this silently): use matching dtypes or aiter >= 0.1.20"
        )
    return {**result, "status": "fail" if problems else "pass", "reason": "; ".join(problems) or None}


def check_case(impl: Impl, spec: CaseSpec, inputs: tuple[list[Any], Any, Any]) -> dict[str, Any]:
    xs, w, b = inputs
    ref = F.layer_norm(xs[0].double(), (spec.hidden,), w.double(), b.double(), EPS)
    try:
        y = impl.fn(xs[0], w, b, EPS)
    except Exception as exc:  # an impl that raises is a result, not a crash of the smoke test
        if spec.kind == "param-trap":  # refusing mixed dtypes is the fix (aiter >= 0.1.20 asserts); sglang then upcasts
            return {"status": "pass", "reason": f"refused fp32 params with bf16 input: {type(exc).__name__}: {exc}"}
        traceback.print_exc(file=sys.stderr)
        return {"status": "error", "reason": f"{type(exc).__name__}: {exc}"}
    return compare(y, ref, spec, TOLERANCES[spec.dtype])


# ---------------------------------------------------------------- performance (GPU)


def bytes_per_call(spec: CaseSpec) -> int:
    act = torch.finfo(getattr(torch, spec.dtype)).bits // 8
    par = torch.finfo(getattr(torch, spec.param_dtype)).bits // 8
    return 2 * spec.tokens * spec.hidden * act + 2 * spec.hidden * par  # read x, w, b; write y


def rotating_sets(spec: CaseSpec, l2_bytes: int) -> int:
    return max(1, min(MAX_ROTATING_SETS, math.ceil(2 * l2_bytes / bytes_per_call(spec))))


@dataclass
class StepClock:
    """Seconds spent per step of the cases, summed over cases (where the run's time goes)."""

    seconds: dict[str, float] = field(default_factory=dict)

    @contextlib.contextmanager
    def step(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - started


def event_ms(work: Callable[[], None]) -> float:
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    work()
    end.record()
    end.synchronize()
    return start.elapsed_time(end)


def spread_pct(samples: list[float]) -> float:
    return (max(samples) - min(samples)) / statistics.median(samples) * 100


def capture_graph(calls: Callable[[], list[Any]], warm_up: Callable[[], Any]) -> tuple[Any, list[Any]]:
    """Capture `calls` on a side stream after `warm_up` ran there. CUDAGraph's own capture_begin/end: the torch.cuda.graph
    context manager also runs gc.collect() and empty_cache() on every capture, which costs more than the capture."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.stream(side):
        warm_up()
        side.synchronize()
        graph.capture_begin()
        try:
            outputs = calls()
        finally:
            graph.capture_end()
    torch.cuda.current_stream().wait_stream(side)
    return graph, outputs


@dataclass(frozen=True)
class Timing:
    repeat_ms: float
    spin_cycles: int = 0  # GPU clock cycles of torch.cuda._sleep before each timed repeat (0: none)


def calibrate_spin(target_us: float) -> int:
    """Clock cycles of torch.cuda._sleep that keep the GPU busy for about `target_us`; 0 where torch lacks it."""
    sleep = getattr(torch.cuda, "_sleep", None)
    if sleep is None or target_us <= 0:
        return 0
    cycles = 100_000
    try:
        sleep(cycles)
        elapsed_us = event_ms(lambda: sleep(cycles)) * 1e3
    except (AttributeError, RuntimeError):  # a build without the spin kernel: time without it
        traceback.print_exc(file=sys.stderr)
        return 0
    return max(1, round(cycles * target_us / max(elapsed_us, 1e-3)))


def timed_ms(work: Callable[[], None], spin_cycles: int) -> float:
    """Device ms of `work`. A spin first keeps the GPU busy while the CPU queues the work, so the time excludes the
    launch latency before the first kernel (a per-repeat cost, not a per-call one)."""
    if spin_cycles:
        torch.cuda._sleep(spin_cycles)
    return event_ms(work)


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """No garbage collection while repeats are timed: a collection stalls the launches and the GPU idles (as timeit)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def replay_times(graph: Any, n_calls: int, timing: Timing) -> list[float]:
    """Device us per call for each of REPEATS repeats; a repeat replays the graph for >= timing.repeat_ms."""
    graph.replay()
    replays = max(1, math.ceil(timing.repeat_ms / max(event_ms(graph.replay), 1e-3)))

    def repeat() -> None:
        for _ in range(replays):
            graph.replay()

    with gc_paused():
        return [timed_ms(repeat, timing.spin_cycles) * 1e3 / (replays * n_calls) for _ in range(REPEATS)]


def device_profiler() -> Any:
    """The autograd profiler, recording device activity only. Not torch.profiler.profile: its start evaluates
    hasattr(torch, "_inductor"), which imports Inductor, Dynamo and sympy (5 s on an H200 machine without bytecode)."""
    return torch.autograd.profiler.profile(use_device="cuda", use_cpu=False, use_kineto=True)


def device_work(prof: Any) -> list[tuple[str, int, int]]:
    """(name, start ns, end ns) of each kernel, memcpy and memset the profiler recorded on the device."""
    from torch.autograd import DeviceType

    def is_work(e: Any) -> bool:  # activity_type() is missing from older torch; device_type() then has to do
        kind = getattr(e, "activity_type", None)
        return kind() in DEVICE_WORK if kind else e.device_type() == DeviceType.CUDA

    return [(e.name(), e.start_ns(), e.end_ns()) for e in prof.kineto_results.events() if is_work(e)]


def profile_replays(graph: Any, n_calls: int) -> dict[str, Any]:
    """Kernels per call, their summed time per call, and the span from the first kernel's start to the last one's end
    per call (kernel time plus the dispatch gaps between graph nodes), over graph replays under the torch profiler."""
    replays = math.ceil(MIN_PROFILED_CALLS / n_calls)
    with device_profiler() as prof:
        for _ in range(replays):
            graph.replay()
        torch.cuda.synchronize()
    work = device_work(prof)
    if not work:
        raise RuntimeError("the profiler recorded no device work for the graph replays")
    total = replays * n_calls
    kernel_us = sum(end - start for _, start, end in work) / 1e3 / total
    span_us = (max(end for *_, end in work) - min(start for _, start, _ in work)) / 1e3 / total
    return {
        "kernels_per_call": len(work) / total,
        "profiler_kernel_us": kernel_us,
        "profiler_span_us": span_us,
        "kernel_names": sorted({name[:80] for name, *_ in work}),
    }


def pct_diff(value: float, reference: float) -> float | None:
    return finite((value - reference) / reference * 100, 2) if reference else None


def measure_case(
    impl: Impl, spec: CaseSpec, inputs: tuple[list[Any], Any, Any], clock: StepClock, timing: Timing
) -> dict[str, Any]:
    xs, w, b = inputs
    n_sets = len(xs)

    def calls() -> list[Any]:
        return [impl.fn(x, w, b, EPS) for x in xs]

    def eager_calls() -> None:
        for x in xs[:EAGER_CALLS]:
            impl.fn(x, w, b, EPS)

    with clock.step("capture"):  # the check already called impl on this input: one call warms the capture stream
        graph, outputs = capture_graph(calls, lambda: impl.fn(xs[0], w, b, EPS))
    with clock.step("time_graph"):
        samples = replay_times(graph, n_sets, timing)
    graph_us = statistics.median(samples)
    with clock.step("profile"):  # before the eager calls, which leave their few input sets in L2
        prof = profile_replays(graph, n_sets)
    with clock.step("time_eager"):
        eager_us = statistics.median(event_ms(eager_calls) * 1e3 / min(n_sets, EAGER_CALLS) for _ in range(EAGER_REPEATS))
    del graph, outputs
    kernels = prof["kernels_per_call"]
    return {
        "graph_us": finite(graph_us, 3),
        "eager_us": finite(eager_us, 3),
        "spread_pct": finite(spread_pct(samples), 2),
        "kernels_per_call": finite(kernels, 3),
        "profiler_kernel_us": finite(prof["profiler_kernel_us"], 3),
        "profiler_span_us": finite(prof["profiler_span_us"], 3),
        "graph_vs_profiler_pct": pct_diff(graph_us, prof["profiler_kernel_us"]),
        "graph_vs_span_pct": pct_diff(graph_us, prof["profiler_span_us"]),
        "gap_us_per_kernel": finite((prof["profiler_span_us"] - prof["profiler_kernel_us"]) / kernels, 3) if kernels else None,
        "bandwidth_gbs": finite(bytes_per_call(spec) / (graph_us * 1e-6) / 1e9, 2),
        "rotating_sets": n_sets,
        "kernel_names": prof["kernel_names"],
    }


def measure_copy_ceiling(device: Any) -> float:
    """GB/s of a device-to-device copy of COPY_CEILING_BYTES random bytes, counting bytes read plus bytes written: the
    bandwidth a memory-bound kernel can reach on this device (METHOD: measure the ceiling, not the datasheet)."""
    src = torch.randint(0, 256, (COPY_CEILING_BYTES,), dtype=torch.uint8, device=device)
    dst = torch.empty_like(src)
    for _ in range(3):
        dst.copy_(src)

    def copies() -> None:
        for _ in range(COPY_CEILING_REPEATS):
            dst.copy_(src)

    best_ms = min(event_ms(copies) for _ in range(3))
    return 2 * COPY_CEILING_BYTES * COPY_CEILING_REPEATS / (best_ms * 1e-3) / 1e9


def warm_up_jit(impl: Impl, specs: list[CaseSpec], device: Any) -> None:
    """Call `impl` once per case in parallel threads so Triton compiles (or loads from its cache) every specialization
    before anything is timed; the first call runs alone, because Triton sets up its per-device state on it."""

    def call(spec: CaseSpec) -> None:
        with torch.no_grad(), contextlib.suppress(Exception):  # a failing case reports itself when it runs
            call_on_unset_inputs(impl, spec, device)

    if specs:
        call(specs[0])
    with ThreadPoolExecutor(JIT_WARM_UP_THREADS) as pool:
        list(pool.map(call, specs[1:]))
    torch.cuda.synchronize()


def call_on_unset_inputs(impl: Impl, spec: CaseSpec, device: Any) -> None:
    xs, w, b = make_inputs(spec, device, values=False)  # what is compiled depends on shapes, not values
    impl.fn(xs[0], w, b, EPS)


def specialization_key(spec: CaseSpec) -> tuple[Any, ...]:
    """What a Triton kernel called on the case's tensors is compiled for: dtypes, the block size aiter's wrapper derives
    from the row length (next power of two), and each integer argument as Triton specializes it (== 1, divisible by 16,
    other). Cases with the same key share one compile; a wrong guess costs a duplicate compile or a lazy one, never a result."""
    act_bytes = torch.finfo(getattr(torch, spec.dtype)).bits // 8
    block = min(65536 // act_bytes, 1 << (spec.hidden - 1).bit_length())
    row_stride = spec.hidden * (2 if spec.layout == "strided" else 1)

    def as_specialized(n: int) -> int:
        return 1 if n == 1 else 16 if n % 16 == 0 else 0

    return (spec.dtype, spec.param_dtype, block, *(as_specialized(n) for n in (spec.tokens, spec.hidden, row_stride)))


def distinct_specializations(specs: list[CaseSpec]) -> list[CaseSpec]:
    """The first case of each specialization key, in case order."""
    first: dict[tuple[Any, ...], CaseSpec] = {}
    for spec in specs:
        first.setdefault(specialization_key(spec), spec)
    return list(first.values())


def warm_up_profiler(device: Any) -> None:
    """One profiler session over an eager kernel: the first session in a process pays the profiler's set-up."""
    x = torch.ones(1024, device=device)
    with device_profiler():
        x.add_(1)
        torch.cuda.synchronize()


def warm_up_gpu(device: Any, until: threading.Event | None = None) -> None:
    """Keep the GPU busy for at least WARMUP_S, and on until `until` is set, so clocks have ramped before the first timed
    case. Each round queues about WARMUP_ROUND_MS of matrix products before it waits: few GIL round trips, so it
    barely slows the compiles running beside it."""
    a = torch.randn((4096, 4096), device=device, dtype=torch.bfloat16)
    a @ a
    per_product_ms = event_ms(lambda: a @ a)
    products = max(1, round(WARMUP_ROUND_MS / max(per_product_ms, 1e-3)))
    deadline = time.perf_counter() + WARMUP_S
    while time.perf_counter() < deadline or (until is not None and not until.is_set()):
        for _ in range(products):
            a @ a
        torch.cuda.synchronize()


# ---------------------------------------------------------------- gates and report


def attach_speedups(cases: list[dict[str, Any]], peak_gbs: float | None, ceiling_gbs: float | None = None) -> None:
    baseline = {
        (c["dtype"], c["tokens"], c["hidden"], c["layout"]): c["graph_us"]
        for c in cases
        if c["impl"] == "torch-upcast" and c["kind"] != "param-trap" and c.get("graph_us")
    }
    for c in cases:
        base = baseline.get((c["dtype"], c["tokens"], c["hidden"], c["layout"]))
        c["speedup_vs_torch_upcast"] = finite(base / c["graph_us"], 3) if base and c.get("graph_us") else None
        c["bandwidth_frac"] = finite(c["bandwidth_gbs"] / peak_gbs, 4) if peak_gbs and c.get("bandwidth_gbs") else None
        bandwidth = c.get("bandwidth_gbs")
        c["bandwidth_ceiling_frac"] = finite(bandwidth / ceiling_gbs, 4) if ceiling_gbs and bandwidth else None


def is_gate_case(case: dict[str, Any]) -> bool:
    return (
        case["kind"] == "k_norm"
        and (case["tokens"], case["hidden"]) == GATE_SHAPE
        and case["dtype"] == "bfloat16"
        and case["param_dtype"] == "bfloat16"
    )


def is_ceiling_gate_case(case: dict[str, Any]) -> bool:
    return case["kind"] == "prefill" and (case["tokens"], case["hidden"]) == CEILING_GATE_SHAPE and case["dtype"] == PREFILL_DTYPE


def ceiling_gate(name: str, case: dict[str, Any] | None, min_frac: float, ceiling_gbs: float | None) -> dict[str, Any]:
    """The fused impl's bandwidth at the largest prefill shape, as a fraction of the copy ceiling measured in this run."""
    shape = f"{CEILING_GATE_SHAPE[0]}x{CEILING_GATE_SHAPE[1]} bf16"
    frac = case.get("bandwidth_ceiling_frac") if case else None
    if frac is None:
        why = "copy ceiling not measured" if case and case.get("bandwidth_gbs") else "not measured"
        return {
            "name": f"{name}.bandwidth_ceiling_frac",
            "passed": False,
            "detail": f"{name} at {shape}: {why} (gate >= {min_frac})",
        }
    figures = f"{case['bandwidth_gbs']:.0f} GB/s = {frac:.3f} of the measured copy ceiling {ceiling_gbs:.0f} GB/s"
    return {
        "name": f"{name}.bandwidth_ceiling_frac",
        "passed": frac >= min_frac,
        "detail": f"{name} at {shape}: {figures} (gate >= {min_frac})",
    }


def evaluate_gates(
    cases: list[dict[str, Any]],
    fused: list[str],
    max_kernels: int | None,
    min_speedup: float | None,
    min_ceiling_frac: float | None = None,
    ceiling_gbs: float | None = None,
) -> list[dict[str, Any]]:
    """Gates on each fused impl at the k_norm shape 8192x128 bf16 and at the largest prefill shape; a missing
    measurement fails its gate."""
    gates = []
    shape = f"{GATE_SHAPE[0]}x{GATE_SHAPE[1]} bf16"
    for name in fused:
        case = next((c for c in cases if c["impl"] == name and is_gate_case(c)), None)
        kernels = case.get("kernels_per_call") if case else None
        speedup = case.get("speedup_vs_torch_upcast") if case else None
        if max_kernels is not None:
            passed = kernels is not None and kernels <= max_kernels
            detail = (
                f"{name} at {shape}: {kernels if kernels is not None else 'not measured'} kernels/call (gate <= {max_kernels})"
            )
            gates.append({"name": f"{name}.kernels_per_call", "passed": passed, "detail": detail})
        if min_speedup is not None:
            passed = speedup is not None and speedup >= min_speedup
            figures = f"graph {case.get('graph_us')} us, speedup {speedup}x over torch-upcast" if case else "not measured"
            gates.append(
                {
                    "name": f"{name}.speedup_vs_torch_upcast",
                    "passed": passed,
                    "detail": f"{name} at {shape}: {figures} (gate >= {min_speedup}x)",
                }
            )
        if min_ceiling_frac is not None:
            prefill = next((c for c in cases if c["impl"] == name and is_ceiling_gate_case(c)), None)
            gates.append(ceiling_gate(name, prefill, min_ceiling_frac, ceiling_gbs))
    return gates


def device_info(device: Any) -> dict[str, Any]:
    info: dict[str, Any] = {"type": device.type, "name": platform.processor() or "cpu", "hip": False, "gfx": None, "arch": None}
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        arch = props.gcnArchName if torch.version.hip else f"sm_{props.major}{props.minor}"
        info.update(
            name=props.name,
            hip=torch.version.hip is not None,
            gfx=arch.split(":", 1)[0] if arch.startswith("gfx") else None,
            arch=arch,
            l2_bytes=getattr(props, "L2_cache_size", None),
        )
    return info


def versions() -> dict[str, Any]:
    found: dict[str, Any] = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_hip": torch.version.hip,
        "torch_cuda": torch.version.cuda,
    }
    for key, dist in (("triton", "triton"), ("aiter_dist", "amd-aiter")):
        try:
            found[key] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            found[key] = None
    return found


def resolve_device(choice: str, cpu_only: bool) -> Any:
    if cpu_only or choice == "cpu":
        return torch.device("cpu")
    if choice == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda but torch sees no GPU")
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def load_impls(names: list[str], ctx: Context, skipped: list[dict[str, Any]]) -> tuple[list[Impl], dict[str, Any]]:
    impls, table = [], {}
    for name in names:
        try:
            impl = IMPLS[name](ctx)
        except Unavailable as exc:
            # aiter missing on an AMD GPU is a failure, not a skip: the image exists to run it
            blocking = ctx.hip and name.startswith("aiter")
            skipped.append({"what": f"impl {name}", "reason": str(exc), "blocking": blocking})
            table[name] = {"available": False, "reason": str(exc), "blocking": blocking}
            continue
        impls.append(impl)
        table[name] = {"available": True, "fused": impl.fused, "param_dtype": impl.param_dtype, **impl.info}
    return impls, table


def run_impl(
    impl: Impl, args: argparse.Namespace, device: Any, cache_bytes: int, clock: StepClock, timing: Timing
) -> list[dict[str, Any]]:
    cases = []
    gpu = device.type == "cuda"
    for spec in case_specs(args.quick, impl, gpu):
        started = time.perf_counter()
        case = {
            "impl": impl.name,
            **{k: getattr(spec, k) for k in ("dtype", "param_dtype", "tokens", "hidden", "layout", "kind")},
        }
        timed = gpu and spec.kind != "param-trap"
        with clock.step("inputs"):  # the timed sets' first one is also the checked input (same seed, same values)
            inputs = make_inputs(spec, device, sets=rotating_sets(spec, cache_bytes) if timed else 1)
        with clock.step("check"):
            case.update(check_case(impl, spec, inputs))
        if timed and case["status"] != "error":
            try:
                case.update(measure_case(impl, spec, inputs, clock, timing))
            except Exception as exc:  # a timing failure (e.g. not graph-capturable) fails the case with the reason
                traceback.print_exc(file=sys.stderr)
                case.update(status="error", reason=f"performance: {type(exc).__name__}: {exc}")
        del inputs
        print(
            f"[smoke] {impl.name:13} {spec.kind:10} {spec.dtype:8} {spec.tokens}x{spec.hidden} {spec.layout:10} {case['status']} ({time.perf_counter() - started:.2f} s)",
            file=sys.stderr,
        )
        cases.append(case)
    return cases


RESULT_FIELDS = ("reason", "max_abs_err", "max_rel_err", "mismatch_frac")
PERF_FIELDS = (
    "graph_us",
    "eager_us",
    "kernels_per_call",
    "bandwidth_gbs",
    "bandwidth_frac",
    "bandwidth_ceiling_frac",
    "speedup_vs_torch_upcast",
    "spread_pct",
    "profiler_kernel_us",
)


def gates_or_skips(
    args: argparse.Namespace,
    gpu: bool,
    impl_table: dict[str, Any],
    cases: list[dict[str, Any]],
    skipped: list[dict[str, Any]],
    ceiling_gbs: float | None = None,
) -> list[dict[str, Any]]:
    """The evaluated gates, or the reasons (appended to `skipped`) why performance and gates could not be judged."""
    asked = any(g is not None for g in (args.gate_max_kernels, args.gate_min_speedup, args.gate_min_ceiling_frac))
    fused = [n for n in args.impl if impl_table[n].get("fused") or impl_table[n].get("blocking")]
    if not gpu:
        skipped.append({"what": "performance", "reason": "no GPU: graph/eager timing, kernel counts and bandwidth need one"})
        skipped.append(
            {
                "what": "prefill shapes",
                "reason": "no GPU: the bandwidth-bound prefill shapes "
                + ", ".join(f"{t}x{h}" for t, h in PREFILL_SHAPES)
                + " run only on a GPU (on a CPU they take minutes and check nothing the other shapes do not)",
            }
        )
        if asked:
            skipped.append({"what": "gates", "reason": "no GPU: performance gates cannot be evaluated"})
        return []
    if asked and not fused:
        skipped.append({"what": "gates", "reason": "no fused implementation (aiter-ck, aiter-triton) was run"})
        return []
    return evaluate_gates(cases, fused, args.gate_max_kernels, args.gate_min_speedup, args.gate_min_ceiling_frac, ceiling_gbs)


def measurement(timing: Timing) -> dict[str, Any]:
    return {**MEASUREMENT, "repeat_target_ms": timing.repeat_ms, "spin_cycles_before_repeat": timing.spin_cycles}


MEASUREMENT = {
    "method": "CUDA/HIP graph replay, median of repeats; inputs rotate over sets whose bytes exceed 2x L2 (capped);"
    " kernel counts, kernel time and span from the torch profiler over the same graph's replays;"
    " copy ceiling: best of 3 timings of repeated device-to-device copies of 1 GiB, bytes read plus written",
    "repeats": REPEATS,
    "repeat_target_ms": REPEAT_TARGET_MS,
    "spin_us_before_repeat": SPIN_US,
    "max_rotating_sets": MAX_ROTATING_SETS,
    "eager_repeats": EAGER_REPEATS,
    "eager_calls": EAGER_CALLS,
    "copy_ceiling_bytes": COPY_CEILING_BYTES,
    "copy_ceiling_repeats": COPY_CEILING_REPEATS,
}


def cache_bytes_to_defeat(info: dict[str, Any]) -> int:
    """The cache size the rotating input sets must exceed (twice over) for the timings to be HBM, not cache, figures."""
    l2 = info.get("l2_bytes") or 64 << 20
    return max(l2, HIP_LAST_LEVEL_CACHE_BYTES) if info.get("hip") else l2


def prepare_gpu(impls: list[Impl], args: argparse.Namespace, device: Any, phase_s: dict[str, float]) -> tuple[float, Timing]:
    """Everything before the first timed case: Triton's compiles in parallel, one per distinct specialization, while the
    profiler sets itself up on one thread and the GPU is kept busy on another (so its clocks have ramped when timing
    starts); then the copy ceiling measured and the pre-timing spin calibrated."""
    profiler_s: list[float] = []

    def profiler_set_up() -> None:
        started = time.perf_counter()
        try:
            warm_up_profiler(device)
        except Exception:  # only a warm-up: the cases' own profiling reports any real failure
            traceback.print_exc(file=sys.stderr)
        profiler_s.append(time.perf_counter() - started)

    started = time.perf_counter()
    jit_done = threading.Event()
    threads = [
        threading.Thread(target=profiler_set_up, name="profiler-warm-up"),
        threading.Thread(target=warm_up_gpu, args=(device, jit_done), name="clock-warm-up"),
    ]
    for thread in threads:
        thread.start()
    try:
        for impl in impls:
            if impl.jit:
                warm_up_jit(impl, distinct_specializations(case_specs(args.quick, impl, True)), device)
    finally:
        jit_done.set()
        phase_s["jit_warm_up"] = time.perf_counter() - started
        for thread in threads:
            thread.join()
    phase_s["profiler_warm_up"] = profiler_s[0] if profiler_s else 0.0
    phase_s["jit_and_profiler_warm_up"] = time.perf_counter() - started
    started = time.perf_counter()
    ceiling = measure_copy_ceiling(device)
    timing = Timing(repeat_ms=REPEAT_TARGET_MS, spin_cycles=calibrate_spin(SPIN_US))
    phase_s["clocks_and_copy_ceiling"] = time.perf_counter() - started
    return ceiling, timing


def run_smoke(args: argparse.Namespace) -> dict[str, Any]:
    device = resolve_device(args.device, args.cpu_only)
    ctx = Context(device=device, hip=device.type == "cuda" and torch.version.hip is not None, triton_arch=args.triton_arch)
    skipped: list[dict[str, Any]] = []
    started = time.perf_counter()
    impls, impl_table = load_impls(args.impl, ctx, skipped)
    gpu = device.type == "cuda"
    info = device_info(device)
    phase_s: dict[str, float] = {"import": _T_IMPORTED - _T0}
    ceiling_gbs, timing = prepare_gpu(impls, args, device, phase_s) if gpu else (None, Timing(repeat_ms=REPEAT_TARGET_MS))
    if gpu:
        gc.collect()  # the compiles' garbage, once, rather than in collections during the timed cases
        gc.freeze()
    loaded = time.perf_counter()
    phase_s["load_and_warm_up"] = loaded - started
    clock = StepClock()
    cases = []
    with torch.no_grad():
        for impl in impls:
            cases += run_impl(impl, args, device, cache_bytes_to_defeat(info), clock, timing)
            if gpu:
                torch.cuda.empty_cache()  # the captured graphs' memory pools, before the next impl's
    phase_s["cases"] = time.perf_counter() - loaded
    for case in cases:
        for key in RESULT_FIELDS + PERF_FIELDS:
            case.setdefault(key, None)
    attach_speedups(cases, args.peak_bandwidth_gbs, ceiling_gbs)
    gates = gates_or_skips(args, gpu, impl_table, cases, skipped, ceiling_gbs)
    failed = (
        any(c["status"] in ("fail", "error") for c in cases)
        or any(not g["passed"] for g in gates)
        or any(s.get("blocking") for s in skipped)
        or not cases
    )
    aiter_ran = any(c["impl"].startswith("aiter") and c["status"] in ("pass", "fail") for c in cases)
    doc = {
        "schema": SCHEMA,
        "status": "fail" if failed else "pass",
        "scope": "gpu" if gpu else "cpu-only",
        "device": info,
        "versions": versions(),
        "peak_bandwidth_gbs": args.peak_bandwidth_gbs,
        "copy_ceiling_gbs": finite(ceiling_gbs, 1),
        "tolerances": {k: vars(v) for k, v in TOLERANCES.items()},
        "reference": "float64 F.layer_norm on the same device from the same rounded inputs and params",
        "impls": impl_table,
        "aiter_kernel_ran": aiter_ran,
        "amd_result": ctx.hip,  # False on NVIDIA: aiter-triton there ran with an overridden arch lookup
        "measurement": measurement(timing) if gpu else None,
        "phase_s": {k: round(v, 3) for k, v in phase_s.items()},
        "case_step_s": {k: round(v, 3) for k, v in clock.seconds.items()},
        "cases": cases,
        "gates": gates,
        "skipped": skipped,
    }
    if not gpu:
        doc["note"] = "CPU-only run: correctness on the CPU only; no GPU performance was measured" + (
            "" if aiter_ran else " and no aiter kernel ran"
        )
    if not cases:
        doc["note"] = "no implementation could run: nothing was verified"
    doc["wall_s"] = round(time.perf_counter() - _T0, 3)
    return doc


# ---------------------------------------------------------------- CLI


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(message)


def impl_list(values: list[str] | None) -> list[str]:
    names = [n.strip() for v in (values or [",".join(DEFAULT_IMPLS)]) for n in v.split(",") if n.strip()]
    unknown = [n for n in names if n not in IMPLS]
    if unknown:
        raise UsageError(f"unknown --impl {', '.join(unknown)}; known: {', '.join(IMPLS)}")
    return list(dict.fromkeys(names))


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = _Parser(description=__doc__)
    p.add_argument("--json", action="store_true", help="print the JSON document on stdout (always done; kept for the contract)")
    p.add_argument(
        "--impl", action="append", help=f"implementations, repeatable or comma-separated (default: {','.join(DEFAULT_IMPLS)})"
    )
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--peak-bandwidth-gbs", type=float, help="the target's peak memory bandwidth, for bandwidth_frac")
    p.add_argument("--gate-max-kernels", type=int, help="fused impls must launch at most N kernels per call at 8192x128 bf16")
    p.add_argument(
        "--gate-min-speedup", type=float, help="fused impls must be at least X times faster than torch-upcast at 8192x128 bf16"
    )
    p.add_argument(
        "--gate-min-ceiling-frac",
        type=float,
        help="fused impls must reach at least this fraction of the measured copy ceiling at the largest prefill shape",
    )
    p.add_argument("--quick", action="store_true", help="fewer shapes, for CI")
    p.add_argument(
        "--cpu-only", action="store_true", help="CPU-only image: run correctness on the CPU and never claim GPU results"
    )
    p.add_argument(
        "--triton-arch",
        metavar="GFX",
        help=f"gfx name aiter's Triton arch lookup returns on a non-AMD GPU (default {DEFAULT_TRITON_ARCH})",
    )
    args = p.parse_args(argv)
    args.impl = impl_list(args.impl)
    if args.cpu_only and args.device == "cuda":
        raise UsageError("--cpu-only contradicts --device cuda")
    if args.gate_min_ceiling_frac is not None and not 0 < args.gate_min_ceiling_frac <= 1:
        raise UsageError(f"--gate-min-ceiling-frac must be in (0, 1], got {args.gate_min_ceiling_frac}")
    if args.triton_arch and not re.fullmatch(r"gfx[0-9a-f]+", args.triton_arch):
        raise UsageError(f"--triton-arch must look like gfx942, got {args.triton_arch!r}")
    return args


@contextlib.contextmanager
def stdout_to_stderr() -> Iterator[int]:
    """Send everything written to fd 1 (C extensions included) to stderr; yields a fd for the real stdout."""
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        yield saved
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def error_document(message: str, argv: list[str]) -> dict[str, Any]:
    """The document printed when the check itself could not run; its scope is what the caller asked for."""
    return {
        "schema": SCHEMA,
        "status": "error",
        "scope": "cpu-only" if "--cpu-only" in argv else "gpu",
        "error": message,
        "cases": [],
        "gates": [],
        "skipped": [],
        "wall_s": round(time.perf_counter() - _T0, 3),
    }


def main(argv: list[str] | None = None) -> int:
    arguments = sys.argv[1:] if argv is None else argv
    with stdout_to_stderr() as real_stdout:
        try:
            if torch is None:
                raise RuntimeError("torch is not importable")
            doc = run_smoke(parse_args(arguments))
            code = 0 if doc["status"] == "pass" else 1
        except UsageError as exc:
            doc, code = error_document(f"bad arguments: {exc}", arguments), 2
        except Exception as exc:  # the smoke test itself broke
            traceback.print_exc(file=sys.stderr)
            doc, code = error_document(f"{type(exc).__name__}: {exc}", arguments), 2
        with open(real_stdout, "w", closefd=False) as out:
            out.write(json.dumps(doc, indent=2, allow_nan=False) + "\n")
    print(f"[smoke] done: {time.perf_counter() - _T0:.2f} s since the torch import began", file=sys.stderr)
    return code


if __name__ == "__main__":
    exit_code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    # Everything is written: leave without the interpreter's teardown of torch, CUDA and Triton (0.4-1.2 s on an H200).
    os._exit(exit_code)
