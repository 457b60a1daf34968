"""Chart data of a node: columnar telemetry with gaps marked, and a default range that fits the data."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from statistics import median
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from dashboard.models import Telemetry
from dashboard.reads.telemetry_rollups import chart_series

# (field, title, unit, fixed axis maximum)
CHART_FIELDS: tuple[tuple[str, str, str, float | None], ...] = (
    ("cpu_percent", "CPU", "%", 100.0),
    ("memory_percent", "Memory", "%", 100.0),
    ("disk_percent", "Disk", "%", 100.0),
    ("temperature_c", "Temperature", "°C", None),
    ("inference_ms_mean", "Inference latency", "ms", None),
    ("outbox_depth", "Outbox depth", "messages", None),
)
PRESETS = {"1h": timedelta(hours=1), "24h": timedelta(hours=24), "7d": timedelta(days=7)}
# A silence longer than this many usual sample spacings is a gap, not a straight line.
GAP_FACTOR = 3.0
MIN_GAP_S = 3.0
MAX_POINTS = 240


@dataclass(frozen=True)
class ChartData:
    """Sample times (epoch seconds) and one value list per field; None marks a gap or a missing value."""

    start: datetime
    end: datetime
    times: list[float]
    values: dict[str, list[float | None]]
    gap_s: float
    samples: int

    def as_json(self) -> dict[str, Any]:
        """JSON-ready form for the charts' script."""
        return {
            "start": self.start.timestamp(), "end": self.end.timestamp(), "gap_s": self.gap_s, "t": self.times,
            "series": self.values,
            "fields": [{"field": f, "title": t, "unit": u, "max": m} for f, t, u, m in CHART_FIELDS],
        }


def gap_threshold(times: list[float]) -> float:
    """Seconds between two samples past which the chart shows a gap: a few usual spacings."""
    deltas = [b - a for a, b in zip(times, times[1:]) if b > a]
    return max(MIN_GAP_S, GAP_FACTOR * median(deltas)) if deltas else MIN_GAP_S


def chart_data(session: Session, device_id: str, start: datetime, end: datetime) -> ChartData:
    """The node's telemetry in [start, end), thinned, with a None row inserted wherever samples stop for a while."""
    rows = chart_series(session, device_id, start, end, MAX_POINTS)
    raw = [row.sent_at.timestamp() for row in rows]
    limit = gap_threshold(raw)
    times: list[float] = []
    values: dict[str, list[float | None]] = {field: [] for field, *_ in CHART_FIELDS}
    for index, row in enumerate(rows):
        if index and raw[index] - raw[index - 1] > limit:
            times.append((raw[index] + raw[index - 1]) / 2)
            for column in values.values():
                column.append(None)
        times.append(raw[index])
        for field, column in values.items():
            value = getattr(row, field)
            column.append(None if value is None else float(value))
    return ChartData(start, end, times, values, limit, len(rows))


def fit_range(session: Session, device_id: str, now: datetime) -> tuple[datetime, datetime]:
    """Default range: the last 24 h cut to where the node's data starts; its last hour if it is silent since."""
    day_ago = now - PRESETS["24h"]
    first = session.scalar(
        select(func.min(Telemetry.sent_at)).where(Telemetry.device_id == device_id, Telemetry.sent_at >= day_ago)
    )
    if first is not None:
        margin = max(timedelta(seconds=30), (now - first) * 0.05)
        return max(day_ago, first - margin), now
    last = session.scalar(select(func.max(Telemetry.sent_at)).where(Telemetry.device_id == device_id))
    if last is not None and last < now:
        return last - timedelta(hours=1), last + timedelta(minutes=5)
    return day_ago, now


def chart_range(
    session: Session, device_id: str, choice: str | None, since: datetime | None, until: datetime | None, now: datetime
) -> tuple[datetime, datetime, str]:
    """The range to chart and its key: 'custom' (From/To), a preset, or 'fit' (the default)."""
    if since is not None and until is not None and since < until:
        return since, until, "custom"
    if choice in PRESETS:
        return now - PRESETS[choice], now, choice
    start, end = fit_range(session, device_id, now)
    return start, end, "fit"
