"""Server-rendered SVG line charts: no JavaScript, no external library, CSP-safe (no inline styles)."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from markupsafe import Markup, escape

WIDTH, HEIGHT = 560, 180
LEFT, RIGHT, TOP, BOTTOM = 48, 12, 12, 26


@dataclass(frozen=True)
class Series:
    """A named time series of (time, value) points; values may be missing."""

    title: str
    unit: str
    points: Sequence[tuple[datetime, float | None]]
    fixed_max: float | None = None


def _nice_ceiling(value: float) -> float:
    """A round axis maximum at or above value."""
    if value <= 0:
        return 1.0
    magnitude = 10 ** (len(str(int(value))) - 1)
    for step in (1, 2, 2.5, 5, 10):
        if value <= step * magnitude:
            return float(step * magnitude)
    return float(10 * magnitude)


def _format_value(value: float) -> str:
    if value >= 10 or value == int(value):
        return f"{value:.0f}"
    return f"{value:.2f}".rstrip("0").rstrip(".")


def _format_time(moment: datetime, span_s: float) -> str:
    return moment.strftime("%H:%M" if span_s <= 36 * 3600 else "%d %b %H:%M")


def line_chart(series: Series, start: datetime, end: datetime) -> Markup:
    """An accessible SVG line chart of one series between start and end."""
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    span = max((end - start).total_seconds(), 1.0)
    values = [v for _, v in series.points if v is not None]
    label = f"{series.title} ({series.unit})" if series.unit else series.title
    parts = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{escape(label)}" '
        f'xmlns="http://www.w3.org/2000/svg" preserveAspectRatio="xMidYMid meet">',
        f"<title>{escape(label)}</title>",
    ]
    top = series.fixed_max if series.fixed_max is not None else _nice_ceiling(max(values) if values else 1.0)
    for fraction in (0.0, 0.25, 0.5, 0.75, 1.0):
        y = TOP + plot_h * (1 - fraction)
        parts.append(f'<line class="grid-line" x1="{LEFT}" y1="{y:.1f}" x2="{WIDTH - RIGHT}" y2="{y:.1f}"/>')
        parts.append(f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">{escape(_format_value(top * fraction))}</text>')
    parts.append(f'<line class="axis" x1="{LEFT}" y1="{TOP + plot_h}" x2="{WIDTH - RIGHT}" y2="{TOP + plot_h}"/>')
    for fraction, anchor in ((0.0, "start"), (0.5, "middle"), (1.0, "end")):
        moment = start + (end - start) * fraction
        x = LEFT + plot_w * fraction
        parts.append(
            f'<text x="{x:.1f}" y="{HEIGHT - 8}" text-anchor="{anchor}">{escape(_format_time(moment, span))}</text>'
        )
    if not values:
        parts.append(
            f'<text class="no-data" x="{LEFT + plot_w / 2:.1f}" y="{TOP + plot_h / 2:.1f}" '
            f'text-anchor="middle">No data in this range</text>'
        )
    for segment in _segments(series.points):
        coords = [
            (LEFT + plot_w * min(max((t - start).total_seconds() / span, 0.0), 1.0),
             TOP + plot_h * (1 - min(max(v / top, 0.0), 1.0)))
            for t, v in segment
        ]
        path = " ".join(f"{x:.1f},{y:.1f}" for x, y in coords)
        if len(coords) == 1:
            x, y = coords[0]
            parts.append(f'<circle class="series" cx="{x:.1f}" cy="{y:.1f}" r="2"/>')
            continue
        base = TOP + plot_h
        parts.append(f'<polygon class="area" points="{coords[0][0]:.1f},{base} {path} {coords[-1][0]:.1f},{base}"/>')
        parts.append(f'<polyline class="series" points="{path}"/>')
    parts.append("</svg>")
    return Markup("".join(parts))


def _segments(points: Sequence[tuple[datetime, float | None]]) -> list[list[tuple[datetime, float]]]:
    """Split a series at missing values so gaps show as gaps."""
    segments: list[list[tuple[datetime, float]]] = [[]]
    for moment, value in points:
        if value is None:
            if segments[-1]:
                segments.append([])
            continue
        segments[-1].append((moment, float(value)))
    return [s for s in segments if s]
