"""Summarise a smoke_layernorm.py JSON document from a GPU run: what benchmarks/RESULTS.md records.

Usage: python gpu_smoke_summary.py SMOKE.json [--brief]. Standard library only (it runs on the lent GPU machine).
"""

from __future__ import annotations

import json
import sys
from typing import Any

SPREAD_BOUND_PCT = 3.0
GRAPH_VS_KERNEL_BOUND_PCT = 10.0


def under(value: float | None, bound: float) -> bool:
    return value is not None and value < bound


def within(value: float | None, bound: float) -> bool:
    return value is not None and abs(value) <= bound


def counts(doc: dict[str, Any]) -> dict[str, int]:
    timed = [c for c in doc["cases"] if c.get("graph_us")]
    before = [c for c in timed if c["kind"] != "prefill"]  # the 90 timed cases issue 4 counted
    return {
        "timed": len(timed),
        "spread_under_3pct": sum(under(c.get("spread_pct"), SPREAD_BOUND_PCT) for c in timed),
        "graph_vs_kernel_within_10pct": sum(within(c.get("graph_vs_profiler_pct"), GRAPH_VS_KERNEL_BOUND_PCT) for c in timed),
        "graph_vs_span_within_10pct": sum(within(c.get("graph_vs_span_pct"), GRAPH_VS_KERNEL_BOUND_PCT) for c in timed),
        "timed_without_prefill": len(before),
        "of_those_spread_under_3pct": sum(under(c.get("spread_pct"), SPREAD_BOUND_PCT) for c in before),
        "of_those_graph_vs_kernel_within_10pct": sum(
            within(c.get("graph_vs_profiler_pct"), GRAPH_VS_KERNEL_BOUND_PCT) for c in before
        ),
        "non_pass": sum(c["status"] != "pass" for c in doc["cases"]),
    }


def brief(doc: dict[str, Any]) -> str:
    gates = ", ".join(f"{g['name']} {'pass' if g['passed'] else 'FAIL'}" for g in doc["gates"])
    return (
        f"status {doc['status']}, wall_s {doc['wall_s']}, cases {len(doc['cases'])}, copy ceiling {doc.get('copy_ceiling_gbs')} GB/s, "
        f"counts {counts(doc)}, phase_s {doc.get('phase_s')}, case_step_s {doc.get('case_step_s')}, gates: {gates}"
    )


def row(c: dict[str, Any]) -> str:
    def g(key: str) -> float:
        return c.get(key) or 0

    return (
        f"{c['impl'][:7]:7} {c['dtype'][:4]:4} {c['tokens']:>5}x{c['hidden']:<5} {c['kind'][:8]:8} {g('graph_us'):8.2f} "
        f"{g('profiler_kernel_us'):8.2f} {g('graph_vs_profiler_pct'):5.1f} {g('profiler_span_us'):8.2f} {g('graph_vs_span_pct'):5.1f} "
        f"{g('gap_us_per_kernel'):4.2f} {g('spread_pct'):5.2f} {g('kernels_per_call'):3.0f} {g('eager_us'):7.0f} {g('bandwidth_gbs'):5.0f} "
        f"{g('bandwidth_frac'):5.3f} {g('bandwidth_ceiling_frac'):5.3f} {g('speedup_vs_torch_upcast'):4.2f} {c['status'][:4]}"
    )


def full(doc: dict[str, Any]) -> list[str]:
    lines = [
        brief(doc),
        f"device {doc['device'].get('name')} {doc['device'].get('arch')}, peak {doc.get('peak_bandwidth_gbs')} GB/s",
    ]
    lines += [f"gate {g['name']} {g['passed']}: {g['detail']}" for g in doc["gates"]]
    head = (
        f"{'impl':7} {'dt':4} {'shape':>11} {'kind':8} {'graph':>8} {'kern':>8} {'g-k%':>5} {'span':>8} {'g-s%':>5} {'gap':>4} "
        f"{'sprd%':>5} {'n':>3} {'eager':>7} {'GB/s':>5} {'peak':>5} {'ceil':>5} {'xUp':>4} st"
    )
    lines += [head] + [row(c) for c in doc["cases"]]
    bad = [(c["impl"], c["kind"], c["tokens"], c["hidden"], c["reason"]) for c in doc["cases"] if c["status"] != "pass"]
    lines.append(f"non-pass cases: {bad}")
    return lines


def main(argv: list[str]) -> int:
    with open(argv[0]) as f:
        doc = json.load(f)
    if "cases" not in doc or doc.get("status") == "error":
        print(f"smoke error: {doc.get('error')}")
        return 1
    print(brief(doc) if "--brief" in argv else "\n".join(full(doc)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
