"""Compatibility reports, rendered once from what is on disk.

- `verdict`: THE verdict of an entry (`judge`, pure, from typed evidence; `verdict_for` reads a directory), and the
  `VerdictName` enum every stage compares verdicts with;
- `evidence`: reading reports/<entry>/{result,probe,smoke}.json strictly; `figures`: the k_norm figure and cell labels;
- `records`: the collected report, the per-entry compat record and its in-toto statement (what publish attaches);
- `markdown`, `junit`, `html` (Jinja2 templates in templates/), `plots` (SVG); `files`: `write_all`, all or nothing.
"""

from __future__ import annotations

from rocmci.contracts import SmokeDoc
from rocmci.report.evidence import Evidence, load_evidence
from rocmci.report.files import write_all
from rocmci.report.html import render_html
from rocmci.report.junit import render_junit
from rocmci.report.markdown import append_step_summary, render_markdown
from rocmci.report.plots import ceiling_plot
from rocmci.report.records import (
    CompatReport,
    EntryReport,
    ReportError,
    ReportPaths,
    collect,
    documents_of,
    entry_documents,
    entry_report,
)
from rocmci.report.verdict import CPU_ONLY_NOTE, FIXTURE_NOTE, Verdict, VerdictName, is_pass, judge, verdict_for

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
