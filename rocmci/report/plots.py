"""SVG plots for index.html, built as XML elements (the serializer escapes every label): latency and bandwidth per
entry, the k_norm overview across GPUs, and each GPU's history over report time."""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rocmci.contracts import SmokeCase, SmokeDoc, short_dtype
from rocmci.report.figures import K_NORM_HIDDEN, K_NORM_KIND, K_NORM_TOKENS, bandwidth_frac, is_bf16
from rocmci.report.records import CompatReport, printable
from rocmci.report.verdict import is_pass

if TYPE_CHECKING:
    from rocmci.history import History

SVG_NS = "http://www.w3.org/2000/svg"
IMPL_COLOURS = {"aiter-ck": "#cf222e", "aiter-triton": "#e16f24", "torch": "#0969da", "torch-upcast": "#6e7781"}
_EXTRA_COLOURS = ("#8250df", "#1a7f37", "#bf3989", "#953800", "#0a3069")


class _Svg:
    """One plot: an <svg> element and helpers that add children; `text` and `title` content goes in as text nodes."""

    def __init__(self, width: int, height: int, title: str, kind: str = "plot") -> None:
        self.root = ET.Element(
            "svg",
            {
                "xmlns": SVG_NS,
                "class": kind,
                "width": str(width),
                "height": str(height),
                "viewBox": f"0 0 {width} {height}",
                "role": "img",
                "aria-label": printable(title),
            },
        )

    def add(self, tag: str, attrs: Mapping[str, Any], tooltip: str | None = None) -> ET.Element:
        element = ET.SubElement(self.root, tag, {k: str(v) for k, v in attrs.items()})
        if tooltip is not None:
            ET.SubElement(element, "title").text = printable(tooltip)
        return element

    def text(self, x: Any, y: Any, text: str, kind: str, anchor: str | None = None, transform: str | None = None) -> None:
        attrs: dict[str, Any] = {"transform": transform} if transform else {"x": x, "y": y}
        attrs["class"] = kind
        if anchor:
            attrs["text-anchor"] = anchor
        self.add("text", attrs).text = printable(text)

    def render(self) -> str:
        return ET.tostring(self.root, encoding="unicode")


def colour(impl: str, order: Sequence[str]) -> str:
    if impl in IMPL_COLOURS:
        return IMPL_COLOURS[impl]
    extras = [i for i in order if i not in IMPL_COLOURS]
    return _EXTRA_COLOURS[extras.index(impl) % len(_EXTRA_COLOURS)] if impl in extras else _EXTRA_COLOURS[0]


def _nice_step(raw: float) -> float:
    if raw <= 0:
        return 1.0
    exponent = math.floor(math.log10(raw))
    for factor in (1, 2, 2.5, 5, 10):
        if raw <= factor * 10**exponent * (1 + 1e-9):
            return factor * 10**exponent
    return 10 ** (exponent + 1)


def ticks(top: float, count: int = 5) -> list[float]:
    step = _nice_step(top / count if top > 0 else 1)
    n = max(1, math.ceil(top / step - 1e-9))
    return [round(step * i, 10) for i in range(n + 1)]


def _num(value: float) -> str:
    if value >= 1000:
        return f"{value / 1000:g}k"
    return f"{value:g}" if abs(value) >= 10 or value == 0 else f"{value:.3g}"


def _legend(svg: _Svg, impls: Sequence[str], x: float, y: float, order: Sequence[str]) -> None:
    for i, impl in enumerate(impls):
        yy = y + i * 20
        svg.add("rect", {"x": x, "y": yy - 9, "width": 14, "height": 10, "rx": 2, "fill": colour(impl, order)})
        svg.text(x + 20, yy, impl, "lg")


def _frame(width: int, height: int, title: str, yticks: list[tuple[float, str]], left: float, plot_width: float) -> _Svg:
    """The opening of a plot: the svg element, its title, and a grid line with its label per y tick."""
    svg = _Svg(width, height, title)
    svg.text(8, 20, title, "pt")
    for y, label in yticks:
        svg.add("line", {"x1": left, "x2": left + plot_width, "y1": f"{y:.1f}", "y2": f"{y:.1f}", "class": "grid"})
        svg.text(left - 6, f"{y + 4:.1f}", label, "tk", "end")
    return svg


def _axis_labels(
    svg: _Svg, x_label: str | None, y_label: str, left: float, top: float, pw: float, ph: float, height: int
) -> None:
    svg.add("rect", {"x": left, "y": top, "width": pw, "height": ph, "class": "frame"})
    if x_label:
        svg.text(left + pw / 2, height - 10, x_label, "al", "middle")
    svg.text(None, None, y_label, "al", "middle", transform=f"translate(16 {top + ph / 2}) rotate(-90)")


def empty_plot(title: str, message: str, width: int) -> str:
    svg = _Svg(width, 90, title, "plot empty")
    svg.text(12, 24, title, "pt")
    svg.text(12, 56, message, "tk")
    return svg.render()


def svg_line_plot(
    series: Mapping[str, Sequence[tuple[float, float]]],
    *,
    title: str,
    x_label: str,
    y_label: str,
    y_unit: str = "",
    width: int = 500,
    height: int = 330,
) -> str:
    """Lines with markers, log10 x axis (positive x), linear y axis from 0; legend on the right."""
    left, right, top, bottom = 60, 130, 34, 50
    points = [p for pts in series.values() for p in pts if p[0] > 0]
    if not points:
        return empty_plot(title, "no latency figures", width)
    lo = math.floor(math.log10(min(p[0] for p in points)))
    hi = max(math.ceil(math.log10(max(p[0] for p in points))), lo + 1)
    yticks = ticks(max(p[1] for p in points) * 1.05)
    ymax = yticks[-1]
    pw, ph = width - left - right, height - top - bottom

    def sx(v: float) -> float:
        return left + (math.log10(v) - lo) / (hi - lo) * pw

    def sy(v: float) -> float:
        return top + ph - v / ymax * ph

    order = list(series)
    svg = _frame(width, height, title, [(sy(t), _num(t)) for t in yticks], left, pw)
    for decade in range(lo, hi + 1):
        x = f"{sx(10.0**decade):.1f}"
        svg.add("line", {"x1": x, "x2": x, "y1": top, "y2": top + ph, "class": "grid"})
        svg.text(x, top + ph + 16, _num(10.0**decade), "tk", "middle")
        for minor in (2, 5):
            if decade < hi:
                mx = f"{sx(minor * 10.0**decade):.1f}"
                svg.add("line", {"x1": mx, "x2": mx, "y1": top + ph, "y2": top + ph + 4, "class": "axis"})
    for impl, pts in series.items():
        pts = sorted(p for p in pts if p[0] > 0)
        stroke = colour(impl, order)
        path = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in pts)
        svg.add("polyline", {"points": path, "fill": "none", "stroke": stroke, "stroke-width": 2.2})
        for x, y in pts:
            tooltip = f"{impl}: {_num(x)} tokens, {y:.3g} {y_unit}"
            svg.add("circle", {"cx": f"{sx(x):.1f}", "cy": f"{sy(y):.1f}", "r": 3.4, "fill": stroke}, tooltip)
    _axis_labels(svg, x_label, y_label, left, top, pw, ph, height)
    _legend(svg, order, left + pw + 16, top + 12, order)
    return svg.render()


def svg_bar_plot(
    groups: Sequence[tuple[Sequence[str], Sequence[tuple[str, float]]]],
    *,
    title: str,
    y_label: str,
    y_format: Callable[[float], str],
    reference: tuple[float, str] | None = None,
    width: int = 700,
    height: int = 330,
    min_top: float = 0.0,
) -> str:
    """Clustered vertical bars: one cluster per group (label lines), one bar per implementation."""
    if not groups:
        return empty_plot(title, "no figures", width)
    left, right, top, bottom = 60, 130, 34, 58
    order: list[str] = []
    for _, bars in groups:
        order += [impl for impl, _ in bars if impl not in order]
    peak = max([v for _, bars in groups for _, v in bars] + [min_top, reference[0] if reference else 0.0])
    yticks = ticks(peak * 1.05 if peak > 0 else 1.0)
    ymax = yticks[-1]
    pw, ph = width - left - right, height - top - bottom
    slot = pw / len(groups)
    bar = min(16.0, (slot - 10) / max(len(order), 1))

    def sy(v: float) -> float:
        return top + ph - max(v, 0.0) / ymax * ph

    svg = _frame(width, height, title, [(sy(t), y_format(t)) for t in yticks], left, pw)
    for i, (label_lines, bars) in enumerate(groups):
        x0 = left + i * slot + (slot - bar * len(bars)) / 2
        for j, (impl, value) in enumerate(bars):
            y = sy(value)
            attrs = {
                "x": f"{x0 + j * bar:.1f}",
                "y": f"{y:.1f}",
                "width": f"{max(bar - 1.5, 1):.1f}",
                "height": f"{top + ph - y:.1f}",
                "fill": colour(impl, order),
            }
            svg.add("rect", attrs, f"{' '.join(label_lines)} · {impl}: {y_format(value)}")
        cx = f"{left + (i + 0.5) * slot:.1f}"
        for k, line in enumerate(label_lines[:2]):
            svg.text(cx, top + ph + 15 + 13 * k, line, "tk", "middle")
    if reference is not None:
        y = sy(reference[0])
        svg.add("line", {"x1": left, "x2": left + pw, "y1": f"{y:.1f}", "y2": f"{y:.1f}", "class": "ref"})
        svg.text(left + pw + 6, f"{y + 4:.1f}", reference[1], "tk")
    _axis_labels(svg, None, y_label, left, top, pw, ph, height)
    _legend(svg, order, left + pw + 16, top + 12, order)
    return svg.render()


def latency_plot(smoke: SmokeDoc) -> str:
    """Latency vs tokens per implementation at the k_norm shape (hidden 128, bf16, contiguous)."""
    cases = [
        c
        for c in smoke.cases
        if c.kind == K_NORM_KIND and c.hidden == K_NORM_HIDDEN and is_bf16(c.dtype) and c.layout == "contiguous" and c.tokens
    ]
    metric = "graph_us" if any(c.graph_us is not None for c in cases) else "eager_us"
    series: dict[str, list[tuple[float, float]]] = {}
    for case in cases:
        value = getattr(case, metric)
        if value is not None and case.status in ("pass", "fail") and case.tokens:
            series.setdefault(case.impl, []).append((float(case.tokens), float(value)))
    what = "CUDA-graph replay" if metric == "graph_us" else "eager; no CUDA graphs"
    title = f"k_norm latency, tokens x {K_NORM_HIDDEN} bf16 ({what})"
    return svg_line_plot(series, title=title, x_label="tokens (log scale)", y_label="µs per call", y_unit="µs")


def _case_group(case: SmokeCase) -> tuple[str, str]:
    head = case.kind + ("" if is_bf16(case.dtype) else f" {short_dtype(case.dtype)}")
    return head, f"{case.shape}" + (" strided" if case.layout != "contiguous" and case.kind != "strided" else "")


def _fraction_plot(smoke: SmokeDoc, frac_of: Callable[[SmokeCase], float | None], title: str, y_label: str, empty: str) -> str:
    """One bar per implementation and case group: a bandwidth fraction in percent."""
    groups: dict[tuple[str, str], list[tuple[str, float]]] = {}
    for case in smoke.cases:
        frac = frac_of(case)
        if frac is not None and case.status in ("pass", "fail"):
            groups.setdefault(_case_group(case), []).append((case.impl, frac))
    if not groups:
        return empty_plot(title, empty, 700)
    return svg_bar_plot(
        [(list(key), bars) for key, bars in groups.items()],
        title=title,
        y_label=y_label,
        y_format=lambda v: f"{v * 100:.3g}%",
        min_top=0.1,
    )


def bandwidth_plot(smoke: SmokeDoc, peak_gbs: float | None) -> str:
    peak = smoke.peak_bandwidth_gbs or peak_gbs
    title = "bandwidth, fraction of peak" + (f" ({peak / 1000:g} TB/s)" if peak else "")
    empty = "no bandwidth figures (a CPU-only run has no GPU peak to compare with)"
    return _fraction_plot(smoke, lambda case: bandwidth_frac(case, smoke, peak_gbs), title, "% of peak HBM bandwidth", empty)


def ceiling_plot(smoke: SmokeDoc) -> str:
    """Bandwidth as a fraction of the device-to-device copy ceiling the smoke test measured in the same run."""
    ceiling = smoke.copy_ceiling_gbs
    title = "bandwidth, fraction of the measured copy ceiling" + (f" ({ceiling / 1000:.3g} TB/s)" if ceiling else "")
    empty = "no copy ceiling measured (it needs a GPU)"
    return _fraction_plot(smoke, lambda case: case.bandwidth_ceiling_frac, title, "% of measured copy bandwidth", empty)


def overview_plot(report: CompatReport) -> str | None:
    """Speedup over torch-upcast at the k_norm shape for every implementation, per entry that ran on a GPU."""
    groups = []
    for item in report.entries:
        smoke = item.evidence.smoke
        if smoke is None or item.verdict.scope != "gpu":
            continue
        bars = [
            (c.impl, c.speedup_vs_torch_upcast)
            for c in smoke.cases
            if c.kind == K_NORM_KIND
            and c.tokens == K_NORM_TOKENS
            and c.hidden == K_NORM_HIDDEN
            and is_bf16(c.dtype)
            and c.layout == "contiguous"
            and c.status in ("pass", "fail")
            and c.speedup_vs_torch_upcast is not None
        ]
        if bars:
            groups.append(([str(item.entry.get("gpu")), str(item.entry.get("stack"))], bars))
    if not groups:
        return None
    return svg_bar_plot(
        groups,
        title=f"k_norm {K_NORM_TOKENS}x{K_NORM_HIDDEN} bf16: speedup over torch with fp32 params (higher is better)",
        y_label="speedup (x)",
        y_format=lambda v: f"{v:.3g}x",
        reference=(1.0, "1x = torch-upcast"),
        width=min(1240, max(760, 300 + 170 * len(groups))),
    )


@dataclass(frozen=True)
class HistoryMetric:
    field: str
    title: str
    axis: str
    scale: float  # plotted value = figure x scale
    unit: str


HISTORY_METRICS = (
    HistoryMetric("graph_us", "k_norm latency", "µs per call", 1.0, "µs"),
    HistoryMetric("bandwidth_frac", "k_norm bandwidth", "% of peak bandwidth", 100.0, "% of peak"),
)


def history_plot(history: History, metric: HistoryMetric) -> str:
    """One line per pin over report time (x: report time, labelled with the first and last dates)."""
    points = [(row, getattr(row, metric.field) * metric.scale) for row in history.rows if getattr(row, metric.field) is not None]
    title = f"{metric.title} over report time, {history.gpu} (8192x128 bf16, graph replay)"
    if not points:
        return empty_plot(title, "no reports with fused-kernel figures", 700)
    width, height, left, right, top, bottom = 820, 330, 60, 270, 34, 58
    pw, ph = width - left - right, height - top - bottom
    times = [row.reported().timestamp() for row, _ in points]
    span = (max(times) - min(times)) or 1.0
    yticks = ticks(max(value for _, value in points) * 1.1)
    pins = list(dict.fromkeys(row.pin for row, _ in points))
    labels = [pin.removeprefix(f"{history.gpu}-") for pin in pins]  # the section is per GPU already

    def sx(t: float) -> str:
        return f"{left + 10 + (t - min(times)) / span * (pw - 20):.1f}"

    def sy(v: float) -> float:
        return top + ph - v / yticks[-1] * ph

    svg = _frame(width, height, title, [(sy(t), _num(t)) for t in yticks], left, pw)
    for pin, label in zip(pins, labels, strict=True):
        mine = [(t, row, value) for t, (row, value) in zip(times, points, strict=True) if row.pin == pin]
        stroke = colour(label, labels)
        path = " ".join(f"{sx(t)},{sy(value):.1f}" for t, _, value in mine)
        svg.add("polyline", {"points": path, "fill": "none", "stroke": stroke, "stroke-width": 2})
        for t, row, value in mine:
            fill = stroke if is_pass(row.verdict) else "#ffffff"
            tooltip = f"{row.report_time} {pin}: {row.verdict}, {value:.3g} {metric.unit}"
            svg.add("circle", {"cx": sx(t), "cy": f"{sy(value):.1f}", "r": 4, "fill": fill, "stroke": stroke}, tooltip)
    for t in sorted({min(times), max(times)}):
        label = next(row.report_time[:10] for tt, (row, _) in zip(times, points, strict=True) if tt == t)
        svg.text(sx(t), top + ph + 16, label, "tk", "middle")
    _axis_labels(svg, "report time (hollow: not a pass)", metric.axis, left, top, pw, ph, height)
    _legend(svg, labels, left + pw + 16, top + 12, labels)
    return svg.render()
