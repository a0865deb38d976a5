"""Figures from the smoke test: the k_norm speedup a matrix cell shows, bandwidth fractions, and the cell's label."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rocmci.contracts import SmokeCase, SmokeDoc, short_dtype
from rocmci.report.verdict import Verdict, VerdictName

# The k_norm figure shown in the matrix: sglang's NSA indexer k_norm shape.
K_NORM_KIND, K_NORM_TOKENS, K_NORM_HIDDEN, K_NORM_DTYPE = "k_norm", 8192, 128, "bfloat16"
K_NORM_IMPLS = ("aiter-ck", "aiter-triton")


def is_bf16(dtype: str | None) -> bool:
    return short_dtype(dtype) == "bf16"


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
                and is_bf16(case.dtype)
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
                    bandwidth_frac(case, smoke),
                )
    return None


def bandwidth_frac(case: SmokeCase, smoke: SmokeDoc, peak_gbs: float | None = None) -> float | None:
    if case.bandwidth_frac is not None:
        return case.bandwidth_frac
    peak = smoke.peak_bandwidth_gbs or peak_gbs
    return case.bandwidth_gbs / peak if case.bandwidth_gbs is not None and peak else None


def qualifiers(verdict: Verdict) -> list[str]:
    """What a cell adds to its verdict: CPU only, no GPU run, fixture."""
    said: list[str] = []
    if verdict.kind == "cpu":
        said.append("CPU only" if verdict.verdict == VerdictName.NOT_RUN else "CPU only, no aiter kernel ran")
    elif verdict.scope == "cpu-only" and verdict.verdict != VerdictName.NOT_RUN:
        said.append("no GPU run")
    if verdict.fixture:
        said.append("fixture")
    return said


def shows_speedup(verdict: Verdict, k_norm: KNormFigure | None) -> bool:
    return k_norm is not None and verdict.scope == "gpu" and verdict.verdict in (VerdictName.PASS, VerdictName.FAIL)


def cell_label(verdict: Verdict, k_norm: KNormFigure | None) -> str:
    """Matrix cell text: `pass 2.9x`, `fail`, `not-run`, `pass (CPU only, no aiter kernel ran)`."""
    text = str(verdict.verdict)
    if k_norm is not None and shows_speedup(verdict, k_norm):
        text += f" {k_norm.speedup_vs_torch_upcast:.1f}x"
    shown = qualifiers(verdict)
    return f"{text} ({'; '.join(shown)})" if shown else text
