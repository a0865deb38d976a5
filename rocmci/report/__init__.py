"""Compatibility reports, rendered once from what is on disk.

- `verdict`: THE verdict of an entry (`judge`, pure, from typed evidence; `verdict_for` reads a directory), and the
  `VerdictName` enum every stage compares verdicts with;
- `evidence`: reading reports/<entry>/{result,probe,smoke}.json strictly; `figures`: the k_norm figure and cell labels;
- `records`: the collected report, the per-entry compat record and its in-toto statement (what publish attaches);
- `markdown`, `junit`, `html` (Jinja2 templates in templates/), `plots` (SVG); `files`: `write_all`, all or nothing.
"""

from __future__ import annotations

from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, model_validator

Scope = Literal["gpu", "cpu-only"]

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


# The package's API; the modules below read the documents above from this package, so they come after them.
from rocmci.report.evidence import Evidence, load_evidence  # noqa: E402
from rocmci.report.figures import short_dtype as _short_dtype  # noqa: E402
from rocmci.report.files import write_all  # noqa: E402
from rocmci.report.html import render_html  # noqa: E402
from rocmci.report.junit import render_junit  # noqa: E402
from rocmci.report.markdown import append_step_summary, render_markdown  # noqa: E402
from rocmci.report.plots import ceiling_plot  # noqa: E402
from rocmci.report.records import (  # noqa: E402
    CompatReport,
    EntryReport,
    ReportError,
    ReportPaths,
    collect,
    documents_of,
    entry_documents,
    entry_report,
)
from rocmci.report.verdict import CPU_ONLY_NOTE, FIXTURE_NOTE, Verdict, VerdictName, is_pass, judge, verdict_for  # noqa: E402

__all__ = [
    "CPU_ONLY_NOTE",
    "FIXTURE_NOTE",
    "CompatReport",
    "EntryReport",
    "Evidence",
    "ReportError",
    "ReportPaths",
    "SmokeDoc",
    "Verdict",
    "VerdictName",
    "append_step_summary",
    "ceiling_plot",
    "collect",
    "documents_of",
    "entry_documents",
    "entry_report",
    "is_pass",
    "judge",
    "load_evidence",
    "render_html",
    "render_junit",
    "render_markdown",
    "verdict_for",
    "write_all",
]
