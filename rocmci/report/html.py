"""index.html: Jinja2 templates (templates/*.html, autoescaped, undefined names refused) and the stylesheet
templates/report.css, inlined so that the page stays self-contained. This module only gathers what the templates show;
every text reaches the page through the template engine's escaping, the plots through the XML serializer's."""

from __future__ import annotations

import functools
import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import TYPE_CHECKING, Any

from rocmci.contracts import SmokeDoc, short_dtype
from rocmci.report.evidence import exit_text, log_tail
from rocmci.report.figures import K_NORM_HIDDEN, K_NORM_TOKENS, bandwidth_frac, qualifiers, shows_speedup
from rocmci.report.markdown import columns
from rocmci.report.plots import HISTORY_METRICS, bandwidth_plot, ceiling_plot, history_plot, latency_plot, overview_plot
from rocmci.report.records import CompatReport, EntryReport, printable
from rocmci.report.verdict import CPU_ONLY_NOTE, FIXTURE_NOTE, VerdictName

if TYPE_CHECKING:
    import jinja2
    from markupsafe import Markup

    from rocmci.history import History

CASE_STATUSES = ("pass", "fail", "error", "skipped")


def _finalize(value: Any) -> Any:
    """Every `{{ }}` value before it is escaped: credentials redacted, characters HTML cannot carry dropped."""
    from markupsafe import Markup

    return value if isinstance(value, Markup) else printable(value)


@functools.cache
def _environment() -> jinja2.Environment:
    import jinja2

    return jinja2.Environment(
        loader=jinja2.PackageLoader("rocmci.report", "templates"),
        autoescape=jinja2.select_autoescape(enabled_extensions=("html",), default_for_string=True, default=True),
        undefined=jinja2.StrictUndefined,
        finalize=_finalize,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def _svg(text: str) -> Markup:
    """A plot from rocmci.report.plots: XML its serializer already escaped."""
    from markupsafe import Markup

    return Markup(text)


def slug(text: str) -> str:
    return "e-" + (re.sub(r"[^A-Za-z0-9_-]", "_", text) or "_") + "-" + hashlib.sha256(text.encode()).hexdigest()[:6]


def _cell_classes(item: EntryReport) -> str:
    classes = [f"v-{item.verdict.verdict}"]
    if item.verdict.kind == "cpu":
        classes.append("cpu")
    if item.verdict.fixture:
        classes.append("fixture")
    return " ".join(classes)


def _fmt(value: float | None, spec: str) -> str:
    return "" if value is None else format(value, spec)


def _pairs(pairs: Iterable[tuple[str, Any]]) -> list[tuple[str, Any]]:
    """The rows of a definition list that have something to show."""
    return [(k, v) for k, v in pairs if v not in (None, "", [])]


@dataclass(frozen=True)
class _Cell:
    classes: str
    anchor: str
    title: str
    verdict: str
    speedup: str | None
    qualifiers: str


def _matrix(report: CompatReport) -> dict[str, Any]:
    gpus, stacks, cells = columns(report)
    heads = []
    for gpu in gpus:
        item = next(i for i in report.entries if str(i.entry.get("gpu")) == gpu)
        peak = item.entry.get("peak_bandwidth_gbs")
        heads.append((gpu, f"{item.entry.get('gfx') or 'cpu'}" + (f" · {float(peak) / 1000:g} TB/s" if peak else "")))
    rows = []
    for stack in stacks:
        first = next(i for i in report.entries if str(i.entry.get("stack")) == stack)
        pins = [f"ROCm {first.entry.get('rocm')}" if first.entry.get("rocm") else "CPU", f"torch {first.entry.get('torch')}"]
        pins.append(f"aiter {first.entry.get('aiter')}")
        row: list[_Cell | None] = []
        for gpu in gpus:
            item = cells.get((stack, gpu))
            if item is None:
                row.append(None)
                continue
            verdict = item.verdict
            speedup = None
            if item.k_norm is not None and shows_speedup(verdict, item.k_norm):
                speedup = f"{item.k_norm.speedup_vs_torch_upcast:.1f}×"
            title = "; ".join(verdict.reasons + verdict.notes) or "pass"
            row.append(_Cell(_cell_classes(item), slug(item.id), title, verdict.verdict, speedup, "; ".join(qualifiers(verdict))))
        rows.append((stack, " · ".join(pins), row))
    return {"heads": heads, "rows": rows}


def _case_rows(smoke: SmokeDoc, peak_gbs: float | None) -> list[dict[str, Any]]:
    rows = []
    for c in smoke.cases:
        frac = bandwidth_frac(c, smoke, peak_gbs)
        dtype = short_dtype(c.dtype) + (f"/{short_dtype(c.param_dtype)}" if c.param_dtype and c.param_dtype != c.dtype else "")
        rows.append(
            {
                "text": (c.impl, c.kind, c.shape, dtype, c.layout),
                "status": c.status,
                "figures": (
                    _fmt(c.graph_us, ".2f"),
                    _fmt(c.eager_us, ".1f"),
                    _fmt(c.kernels_per_call, "g"),
                    _fmt(c.bandwidth_gbs, ".0f"),
                    _fmt(frac * 100 if frac is not None else None, ".1f"),
                    _fmt(c.speedup_vs_torch_upcast, ".2f"),
                    _fmt(c.max_abs_err, ".3g"),
                    _fmt(c.mismatch_frac, ".3g"),
                ),
                "reason": c.reason,
            }
        )
    return rows


def _run_facts(item: EntryReport) -> list[tuple[str, Any]]:
    ev = item.evidence
    result = ev.result if not ev.not_run else None
    if result is None:
        return []
    host = result.host
    published = item.published
    run: list[tuple[str, Any]] = [
        ("image", result.image.ref),
        ("image digest", item.image_digest or "not pushed yet"),
        ("published to", published[0] if published else None),
        ("host GPU", f"{host.gpu_name or 'none'} ({host.gfx or 'no gfx'})"),
        ("devices", ", ".join(host.gpu_devices) or "none"),
        ("host", host.hostname),
        ("run", f"{result.started} → {result.finished}"),
    ]
    for name in ("probe", "smoke"):
        step = result.steps.get(name)
        if step is not None:
            text = (
                f"skipped: {step.skipped}"
                if step.skipped
                else f"exit {exit_text(step.exit_code) if step.exit_code is not None else 'none'}"
            )
            text += f", {step.wall_s:.1f} s" if step.wall_s is not None else ""
            run.append((name, text))
    if ev.smoke is not None:
        device = ev.smoke.device
        run.append(("smoke device", f"{device.type} {device.name or ''} {device.gfx or ''}".strip()))
    return run


def _card(item: EntryReport) -> dict[str, Any]:
    entry, ev, verdict = item.entry, item.evidence, item.verdict
    pins = [
        ("GPU target", f"{entry.get('gpu')} ({entry.get('gfx') or 'cpu'})"),
        ("stack", entry.get("stack")),
        ("ROCm", entry.get("rocm") or "none"),
        ("Python", entry.get("python")),
        ("torch", f"{entry.get('torch') or 'not pinned'} from {entry.get('torch_index')}"),
        (
            "aiter",
            f"{entry.get('aiter') or 'not pinned'} ({entry.get('aiter_source')}: {entry.get('aiter_spec')}; {entry.get('aiter_kernels')})",
        ),
        ("base image", entry.get("base_image")),
        ("tag", entry.get("tag")),
    ]
    card: dict[str, Any] = {
        "item": item,
        "anchor": slug(item.id),
        "classes": _cell_classes(item),
        "banners": ([("cpu", CPU_ONLY_NOTE)] if verdict.kind == "cpu" else [])
        + ([("fixture", FIXTURE_NOTE)] if verdict.fixture else []),
        "facts": (_pairs(pins), _pairs(_run_facts(item))),
        "smoke": ev.smoke,
        "findings": ev.probe.findings if ev.probe is not None else [],
        "logs": [],
        "logs_open": verdict.verdict == VerdictName.ERROR,
    }
    if ev.smoke is not None:
        peak = entry.get("peak_bandwidth_gbs")
        card["plots"] = [_svg(latency_plot(ev.smoke)), _svg(bandwidth_plot(ev.smoke, peak)), _svg(ceiling_plot(ev.smoke))]
        card["cases"] = _case_rows(ev.smoke, peak)
        counts = {s: sum(1 for c in ev.smoke.cases if c.status == s) for s in CASE_STATUSES}
        card["case_summary"] = ", ".join(f"{n} {s}" for s, n in counts.items() if n)
    if ev.result is not None and not ev.not_run and not verdict.passed:
        card["logs"] = [(name, tail) for name in ("probe", "smoke") if (tail := log_tail(ev, name))]
    return card


def _history(histories: Sequence[History]) -> list[dict[str, Any]]:
    return [
        {"history": history, "plots": [_svg(history_plot(history, metric)) for metric in HISTORY_METRICS]}
        for history in histories
    ]


def render_html(report: CompatReport, histories: Sequence[History] = ()) -> str:
    """The page: matrix, what does not pass, the k_norm overview, one card per entry that ran, what did not run, and
    each GPU's history that `invoke history` saved."""
    ran = [i for i in report.entries if i.verdict.verdict != VerdictName.NOT_RUN]
    overview = overview_plot(report)
    page = (
        _environment()
        .get_template("index.html")
        .render(
            report=report,
            css=_stylesheet(),
            counts=[(name, n) for name, n in report.counts().items() if n],
            matrix=_matrix(report),
            k_norm_shape=f"{K_NORM_TOKENS}×{K_NORM_HIDDEN}",
            failing=[(slug(i.id), i) for i in ran if not i.verdict.passed],
            overview=_svg(overview) if overview else None,
            cards=[_card(i) for i in ran],
            not_run=[
                (slug(i.id), i, "; ".join(i.verdict.reasons)) for i in report.entries if i.verdict.verdict == VerdictName.NOT_RUN
            ],
            histories=_history(histories),
        )
    )
    return page.rstrip("\n") + "\n"


@functools.cache
def _stylesheet() -> Markup:
    from markupsafe import Markup

    # Package data, not input: inlined raw (entities are not decoded inside <style>).
    return Markup(resources.files("rocmci.report").joinpath("templates", "report.css").read_text(encoding="utf-8"))
