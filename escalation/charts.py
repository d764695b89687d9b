"""Server-rendered SVG charts for the manager pages: a bar chart, a confidence histogram, a
reliability diagram and a line chart (with an optional threshold).

Every piece of markup goes through django.utils.html.format_html / format_html_join, so any
text (an agent name in a title, a label) is escaped. No inline styles and no scripts: colours
and strokes are SVG presentation attributes (fill, stroke...), which the CSP (style-src 'self')
allows. The numbers are also shown beside each chart by the templates, for people who would
rather read than look (and for screen readers, with each chart's <title>).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

BAR = "#3b6fb6"
ERROR = "#c0392b"
AXIS = "#777777"
GRID = "#dddddd"
INK = "#333333"

_W, _H = 480, 200
_LEFT, _RIGHT, _TOP, _BOTTOM = 40, 10, 12, 30


def _n(x: float) -> str:
    return f"{x:.1f}"


def _svg(title: str, body: SafeString, width: int = _W, height: int = _H) -> SafeString:
    return format_html(
        '<svg xmlns="http://www.w3.org/2000/svg" class="chart" viewBox="0 0 {w} {h}" '
        'width="{w}" height="{h}" role="img" aria-label="{t}"><title>{t}</title>{body}</svg>',
        w=width,
        h=height,
        t=title,
        body=body,
    )


def _frame(top_value: float, *, percent: bool = False) -> SafeString:
    """Y axis, x axis and two grid lines labelled 0, half and top."""
    x0, x1 = _LEFT, _W - _RIGHT
    y0, y1 = _H - _BOTTOM, _TOP
    ticks = []
    for frac in (0.0, 0.5, 1.0):
        y = y0 - frac * (y0 - y1)
        value = top_value * frac
        label = f"{value:.0%}" if percent else (f"{value:g}" if value % 1 else f"{int(value)}")
        ticks.append((_n(x0), _n(x1), _n(y), _n(x0 - 4), _n(y + 4), label))
    lines = format_html_join(
        "",
        '<line x1="{0}" x2="{1}" y1="{2}" y2="{2}" stroke="' + GRID + '" stroke-width="1"/>'
        '<text x="{3}" y="{4}" font-size="10" text-anchor="end" fill="' + INK + '">{5}</text>',
        ticks,
    )
    axes = format_html(
        '<line x1="{x0}" y1="{y0}" x2="{x1}" y2="{y0}" stroke="{c}" stroke-width="1"/>'
        '<line x1="{x0}" y1="{y0}" x2="{x0}" y2="{y1}" stroke="{c}" stroke-width="1"/>',
        x0=x0,
        x1=x1,
        y0=y0,
        y1=y1,
        c=AXIS,
    )
    return format_html("{}{}", lines, axes)


def _nice_top(value: float) -> float:
    """The smallest of 1, 2, 5 x 10^k at or above value (at least 1), the y axis top."""
    scale = 1.0
    while True:
        for mult in (1.0, 2.0, 5.0):
            if scale * mult >= value:
                return scale * mult
        scale *= 10.0


def bar_chart(points: Sequence[tuple[str, int]], title: str, *, label_every: int = 0) -> SafeString:
    """Vertical bars, one per (label, value), e.g. cases per day. `label_every` labels every
    n-th bar on the x axis (0: choose so about 8 labels show)."""
    count = max(1, len(points))
    top = _nice_top(max((v for _, v in points), default=0))
    plot_w = _W - _LEFT - _RIGHT
    plot_h = _H - _TOP - _BOTTOM
    slot = plot_w / count
    every = label_every or max(1, -(-count // 8))
    bars = []
    labels = []
    for i, (label, value) in enumerate(points):
        h = plot_h * value / top
        x = _LEFT + i * slot
        bars.append((_n(x + slot * 0.1), _n(_H - _BOTTOM - h), _n(slot * 0.8), _n(h), label, value))
        if i % every == 0:
            labels.append((_n(x + slot / 2), _n(_H - _BOTTOM + 14), label))
    body = format_html(
        "{}{}{}",
        _frame(top),
        format_html_join(
            "",
            '<rect x="{}" y="{}" width="{}" height="{}" fill="' + BAR + '">'
            "<title>{}: {}</title></rect>",
            bars,
        ),
        format_html_join(
            "",
            '<text x="{}" y="{}" font-size="10" text-anchor="middle" fill="' + INK + '">{}</text>',
            labels,
        ),
    )
    return _svg(title, body)


def histogram(counts: Sequence[int], title: str) -> SafeString:
    """The confidence histogram: one bar per band 0.0–0.1 ... 0.9–1.0."""
    bands = len(counts)
    points = [(f"{i / bands:.1f}–{(i + 1) / bands:.1f}", n) for i, n in enumerate(counts)]
    return bar_chart(points, title, label_every=2)


def reliability_diagram(points: Sequence[dict[str, Any]], title: str) -> SafeString:
    """Mean confidence (x) against share approved as is (y) per non-empty band, with the
    diagonal a perfectly calibrated agent lies on. `points` are calibration reliability rows
    (mean_confidence, accuracy, n, band); a dot's area grows with the band's cases."""
    size = 240
    pad = 30
    span = size - 2 * pad

    def px(v: float) -> str:
        return _n(pad + v * span)

    def py(v: float) -> str:
        return _n(size - pad - v * span)

    biggest = max((p["n"] for p in points), default=1) or 1
    ticks = [(px(v), py(v), _n(size - pad + 14), _n(pad - 4), f"{v:.1f}") for v in (0, 0.5, 1)]
    frame = format_html(
        '<rect x="{p}" y="{p}" width="{s}" height="{s}" fill="none" stroke="{a}"/>'
        '<line x1="{x0}" y1="{y0}" x2="{x1}" y2="{y1}" stroke="{g}" stroke-width="1.5" '
        'stroke-dasharray="4 3"/>'
        "{ticks}"
        '<text x="{cx}" y="{bottom}" font-size="10" text-anchor="middle" fill="{ink}">'
        "confidence</text>"
        '<text x="10" y="{cy}" font-size="10" text-anchor="middle" fill="{ink}" '
        'transform="rotate(-90 10 {cy})">approved as is</text>',
        p=pad,
        s=span,
        a=AXIS,
        g=AXIS,
        x0=px(0),
        y0=py(0),
        x1=px(1),
        y1=py(1),
        ink=INK,
        cx=_n(size / 2),
        cy=_n(size / 2),
        bottom=size - 4,
        ticks=format_html_join(
            "",
            '<text x="{0}" y="{2}" font-size="10" text-anchor="middle" fill="' + INK + '">{4}'
            '</text><text x="{3}" y="{1}" font-size="10" text-anchor="end" fill="'
            + INK
            + '">{4}</text>',
            ticks,
        ),
    )
    dots = format_html_join(
        "",
        '<circle cx="{}" cy="{}" r="{}" fill="{}" fill-opacity="0.75" stroke="'
        + INK
        + '" stroke-width="0.5"><title>band {}: {} cases, confidence {}, approved {}</title>'
        "</circle>",
        (
            (
                px(p["mean_confidence"]),
                py(p["accuracy"]),
                _n(3 + 7 * (p["n"] / biggest) ** 0.5),
                BAR if p["accuracy"] >= p["mean_confidence"] else ERROR,
                p.get("label") or f"{p['lo']:.1f}–{p['hi']:.1f}",
                p["n"],
                f"{p['mean_confidence']:.3f}",
                f"{p['accuracy']:.1%}",
            )
            for p in points
        ),
    )
    return _svg(title, format_html("{}{}", frame, dots), width=size, height=size)


def line_chart(
    series: Sequence[tuple[str, Sequence[float], str]],
    title: str,
    *,
    threshold: float | None = None,
    threshold_label: str = "",
) -> SafeString:
    """Lines over x = 1..n (e.g. the CUSUM after each QA sample), each (name, values, colour),
    named in a legend under the x axis, and an optional dashed horizontal threshold (e.g. the
    CUSUM's h). Dots mark the points while there are few enough to tell apart."""
    n = max((len(values) for _, values, _ in series), default=0)
    top = _nice_top(max([v for _, values, _ in series for v in values] + [threshold or 0]))
    plot_w = _W - _LEFT - _RIGHT
    plot_h = _H - _TOP - _BOTTOM

    def x(i: int) -> str:
        return _n(_LEFT + (plot_w / 2 if n <= 1 else i * plot_w / (n - 1)))

    def y(v: float) -> str:
        return _n(_H - _BOTTOM - plot_h * v / top)

    lines = []
    for name, values, colour in series:
        points = " ".join(f"{x(i)},{y(v)}" for i, v in enumerate(values))
        lines.append(
            format_html(
                '<polyline points="{}" fill="none" stroke="{}" stroke-width="1.5">'
                "<title>{}</title></polyline>",
                points,
                colour,
                name,
            )
        )
        if len(values) <= 60:
            lines.append(
                format_html_join(
                    "",
                    '<circle cx="{}" cy="{}" r="2.5" fill="{}"><title>{} {}: {}</title></circle>',
                    ((x(i), y(v), colour, name, i + 1, f"{v:g}") for i, v in enumerate(values)),
                )
            )
    marks = []
    if threshold is not None:
        marks.append(
            format_html(
                '<line x1="{x0}" x2="{x1}" y1="{y}" y2="{y}" stroke="{c}" stroke-width="1.5" '
                'stroke-dasharray="5 3"/><text x="{x1}" y="{ty}" font-size="10" '
                'text-anchor="end" fill="{c}">{label}</text>',
                x0=_LEFT,
                x1=_W - _RIGHT,
                y=y(threshold),
                ty=_n(float(y(threshold)) - 3),
                c=ERROR,
                label=threshold_label,
            )
        )
    if n:
        ends = [(x(0), "1")] + ([(x(n - 1), str(n))] if n > 1 else [])
        marks.append(
            format_html_join(
                "",
                '<text x="{}" y="' + _n(_H - _BOTTOM + 12) + '" font-size="10" '
                'text-anchor="middle" fill="' + INK + '">{}</text>',
                ends,
            )
        )
    legend = format_html_join(
        "",
        '<rect x="{}" y="{}" width="10" height="3" fill="{}"/>'
        '<text x="{}" y="{}" font-size="10" fill="' + INK + '">{}</text>',
        (
            (_LEFT + 150 * i, _H - 7, colour, _LEFT + 150 * i + 14, _H - 3, name)
            for i, (name, _, colour) in enumerate(series)
        ),
    )
    parts = format_html_join("", "{}", ((part,) for part in [*lines, *marks, legend]))
    body = format_html("{}{}", _frame(top), parts)
    return _svg(title, body)
