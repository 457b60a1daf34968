"""Telemetry at the resolution a chart's range needs: raw rows, or per-minute or per-hour roll-ups."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import select
from sqlalchemy.orm import Session

from dashboard.models import RetentionState, Telemetry, TelemetryHour, TelemetryMinute
from dashboard.reads.nodes import telemetry_series

MINUTE = timedelta(minutes=1)
HOUR = timedelta(hours=1)
# Longest range charted from raw rows, then from minute roll-ups; longer ranges use hours.
RAW_MAX_SPAN = timedelta(hours=6)
MINUTE_MAX_SPAN = timedelta(days=4)
MEAN_FIELDS = ("cpu_percent", "memory_percent", "disk_percent", "temperature_c", "inference_ms_mean", "outbox_depth")
RAW_COLUMNS = (Telemetry.device_id, Telemetry.sent_at, *(getattr(Telemetry, f) for f in MEAN_FIELDS))
ROLLUP_MODELS: dict[timedelta, type[TelemetryMinute] | type[TelemetryHour]] = {MINUTE: TelemetryMinute, HOUR: TelemetryHour}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
T = TypeVar("T")


@dataclass(frozen=True)
class Point:
    """One node's telemetry over one bucket, computed from raw rows: means, peaks and how many samples."""

    device_id: str
    sent_at: datetime
    samples: int
    cpu_percent: float
    memory_percent: float
    disk_percent: float
    temperature_c: float | None
    inference_ms_mean: float | None
    outbox_depth: float
    max_temperature_c: float | None
    max_outbox_depth: int

    def row(self) -> dict[str, Any]:
        """Column values of a roll-up table row."""
        values = {k: v for k, v in vars(self).items() if k != "sent_at"}
        return {**values, "bucket": self.sent_at}


def floor_to(moment: datetime, width: timedelta) -> datetime:
    """The start of the bucket of the given width holding moment (buckets are aligned to the Unix epoch, UTC)."""
    return moment - (moment - _EPOCH) % width


def _mean(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return sum(present) / len(present) if present else None


def aggregate(rows: Iterable[Sequence[Any]], width: timedelta) -> list[Point]:
    """Raw rows (the RAW_COLUMNS, in any order) as one Point per device and bucket, oldest first."""
    groups: dict[tuple[str, datetime], list[Sequence[Any]]] = {}
    for row in rows:
        groups.setdefault((row[0], floor_to(row[1], width)), []).append(row)
    points = []
    for (device_id, bucket), members in sorted(groups.items(), key=lambda item: (item[0][1], item[0][0])):
        cpu, memory, disk, temperature, inference, outbox = (list(c) for c in list(zip(*members))[2:])
        present = [t for t in temperature if t is not None]
        points.append(Point(
            device_id, bucket, len(members), _mean(cpu) or 0.0, _mean(memory) or 0.0, _mean(disk) or 0.0,
            _mean(temperature), _mean(inference), _mean(outbox) or 0.0,
            max(present) if present else None, max(int(v) for v in outbox),
        ))
    return points


def raw_rows(session: Session, device_id: str, since: datetime, until: datetime) -> list[Sequence[Any]]:
    """A node's raw telemetry in [since, until) as RAW_COLUMNS tuples."""
    query = select(*RAW_COLUMNS).where(
        Telemetry.device_id == device_id, Telemetry.sent_at >= since, Telemetry.sent_at < until
    )
    return [tuple(row) for row in session.execute(query)]


def resolution(state: RetentionState | None, start: datetime, end: datetime) -> timedelta | None:
    """The bucket width to chart [start, end) with (None: raw rows), coarser where the finer data was pruned."""
    span = end - start

    def kept(pruned_before: datetime | None) -> bool:
        return pruned_before is None or start >= pruned_before

    if span <= RAW_MAX_SPAN and kept(state.raw_pruned_before if state else None):
        return None
    if span <= MINUTE_MAX_SPAN and kept(state.minute_pruned_before if state else None):
        return MINUTE
    return HOUR


def thin(rows: list[T], max_points: int) -> list[T]:
    """At most max_points rows, evenly spaced."""
    if len(rows) <= max_points:
        return rows
    step = len(rows) / max_points
    return [rows[int(i * step)] for i in range(max_points)]


def chart_series(session: Session, device_id: str, start: datetime, end: datetime, max_points: int) -> list[Any]:
    """A node's telemetry in [start, end) for a chart: raw rows for short ranges, else roll-ups, at most max_points.

    Roll-ups cover what the retention job has seen; the newer tail is bucketed from raw rows on the fly.
    """
    state = session.get(RetentionState, 1)
    width = resolution(state, start, end)
    if width is None:
        return telemetry_series(session, device_id, start, end, max_points)
    model = ROLLUP_MODELS[width]
    boundary = min(end, max(start, floor_to(state.rolled_up_to, width))) if state and state.rolled_up_to else start
    stored = list(session.scalars(
        select(model).where(model.device_id == device_id, model.bucket >= start, model.bucket < boundary)
        .order_by(model.bucket)
    ))
    tail = aggregate(raw_rows(session, device_id, boundary, end), width)
    return thin([*stored, *tail], max_points)
