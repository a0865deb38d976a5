"""compat.md: the matrix as a GitHub-flavoured Markdown table, and the job step summary it is appended to."""

from __future__ import annotations

import html
import os
from collections.abc import Mapping
from typing import Any

from rocmci.contracts import short_dtype
from rocmci.report.figures import K_NORM_DTYPE, K_NORM_HIDDEN, K_NORM_IMPLS, K_NORM_KIND, K_NORM_TOKENS
from rocmci.report.records import CompatReport, EntryReport, printable
from rocmci.report.verdict import VerdictName

STEP_SUMMARY_LIMIT = 1_000_000  # bytes; GitHub refuses a job step summary over 1 MiB


def _md(text: Any) -> str:
    """Safe inside a markdown table cell: no newlines, pipes or raw HTML."""
    clean = printable(text).replace("\r", " ").replace("\n", " ")
    return html.escape(clean, quote=False).replace("|", "\\|")


def columns(report: CompatReport) -> tuple[list[str], list[str], dict[tuple[str, str], EntryReport]]:
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
    gpus, stacks, cells = columns(report)
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
        f"{K_NORM_KIND} shape {K_NORM_TOKENS}x{K_NORM_HIDDEN} {short_dtype(K_NORM_DTYPE)}, CUDA-graph replay. "
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
    failing = [i for i in report.entries if i.verdict.verdict in (VerdictName.FAIL, VerdictName.ERROR)]
    if failing:
        lines += ["", "## Not passing", ""]
        for item in failing:
            lines.append(f"- **{_md(item.id)}**: {_md(item.label)}")
            lines += [f"  - {_md(reason)}" for reason in item.verdict.reasons]
    not_run = [i for i in report.entries if i.verdict.verdict == VerdictName.NOT_RUN]
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
