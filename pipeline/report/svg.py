"""Small inline SVG charts, written by hand: horizontal bars and lines over time.

The report must open offline, years later, on a machine with no network:
plain SVG elements inside the HTML need no script, font or library, and
drawing two kinds of chart takes less code than configuring a plotting
package (and renders the same in every browser).  Every label goes through
XML escaping; the numbers are the model's own.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape

from pipeline.report.model import Count

WIDTH = 680
_BAR = 22
_GAP = 6
_LABEL = 200
_PALETTE = (
    "#4477aa",
    "#ee6677",
    "#228833",
    "#ccbb44",
    "#66ccee",
    "#aa3377",
    "#bbbbbb",
    "#000000",
)  # fmt: skip  (Paul Tol's colour-blind safe set)


def _text(x: float, y: float, text: str, *, anchor: str = "start", size: int = 12) -> str:
    return (
        f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" text-anchor="{anchor}" '
        f'font-family="sans-serif">{escape(text)}</text>'
    )


def _open(title: str, height: float, kind: str) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart {kind}" role="img" '
        f'width="{WIDTH}" height="{height:.0f}" viewBox="0 0 {WIDTH} {height:.0f}" '
        f'aria-label="{escape(title)}"><title>{escape(title)}</title>'
    )


def bar_chart(title: str, counts: Sequence[Count], *, unit: str = "") -> str:
    """Horizontal bars, one per count, labelled with its value."""
    top = 26
    height = top + max(1, len(counts)) * (_BAR + _GAP) + 10
    parts = [_open(title, height, "bars"), _text(0, 16, title, size=14)]
    if not counts:
        parts.append(_text(_LABEL, top + _BAR - 6, "nothing to show"))
    largest = max((c.count for c in counts), default=0) or 1
    room = WIDTH - _LABEL - 70
    for index, count in enumerate(counts):
        y = top + index * (_BAR + _GAP)
        width = max(1.0, room * count.count / largest) if count.count else 0.0
        colour = _PALETTE[index % len(_PALETTE)]
        parts.append(_text(_LABEL - 8, y + _BAR - 6, count.label, anchor="end"))
        parts.append(
            f'<rect class="bar" x="{_LABEL}" y="{y}" width="{width:.1f}" height="{_BAR}" '
            f'fill="{colour}"><title>{escape(count.label)}: {count.count}</title></rect>'
        )
        parts.append(_text(_LABEL + width + 6, y + _BAR - 6, f"{count.count:g}{unit}"))
    parts.append("</svg>")
    return "".join(parts)


def line_chart(title: str, labels: Sequence[str], series: Mapping[str, Sequence[float]]) -> str:
    """One line per series over the points ``labels`` name, with a legend."""
    left, right, top, bottom = 56, 20, 30, 48
    legend = 18 * len(series)
    plot_h = 200
    height = top + plot_h + bottom + legend
    plot_w = WIDTH - left - right
    parts = [_open(title, height, "lines"), _text(0, 16, title, size=14)]
    largest = max((v for values in series.values() for v in values), default=0) or 1
    steps = max(1, len(labels) - 1)

    def x(i: int) -> float:
        return left + plot_w * (i / steps if len(labels) > 1 else 0.5)

    def y(v: float) -> float:
        return top + plot_h - plot_h * v / largest

    parts.append(
        f'<line x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top + plot_h}" '
        'stroke="#444"/>'
        f'<line x1="{left}" y1="{top}" x2="{left}" y2="{top + plot_h}" stroke="#444"/>'
    )
    for tick in (0.0, largest / 2, float(largest)):
        parts.append(_text(left - 6, y(tick) + 4, f"{tick:g}", anchor="end", size=11))
    every = max(1, len(labels) // 10)
    for i, label in enumerate(labels):
        if i % every == 0 or i == len(labels) - 1:
            parts.append(_text(x(i), top + plot_h + 16, label, anchor="middle", size=11))
    for index, (name, values) in enumerate(series.items()):
        colour = _PALETTE[index % len(_PALETTE)]
        points = " ".join(f"{x(i):.1f},{y(v):.1f}" for i, v in enumerate(values))
        parts.append(
            f'<polyline class="series" fill="none" stroke="{colour}" stroke-width="2" '
            f'points="{points}"><title>{escape(name)}</title></polyline>'
        )
        for i, v in enumerate(values):
            parts.append(
                f'<circle cx="{x(i):.1f}" cy="{y(v):.1f}" r="3" fill="{colour}">'
                f"<title>{escape(name)} at {escape(labels[i])}: {v:g}</title></circle>"
            )
        ly = top + plot_h + bottom - 10 + index * 18
        parts.append(f'<rect x="{left}" y="{ly - 10}" width="12" height="12" fill="{colour}"/>')
        parts.append(_text(left + 18, ly, name))
    parts.append("</svg>")
    return "".join(parts)
