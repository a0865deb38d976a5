"""What checks/probe.py (`rocmci.probe/v1`) and checks/smoke_layernorm.py (`rocmci.smoke/v1`) print inside an image."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from rocmci.contracts.base import Scope, _Doc, short_dtype


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
        dtype = short_dtype(self.dtype)
        params = short_dtype(self.param_dtype) if self.param_dtype else dtype
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
