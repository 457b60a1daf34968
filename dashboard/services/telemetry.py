"""Telemetry series of a node over a time range, thinned for charts."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from dashboard.models import Telemetry

SERIES_FIELDS = ("cpu_percent", "memory_percent", "disk_percent", "temperature_c", "outbox_depth", "inference_ms_mean")


def series(
    session: Session, device_id: str, since: datetime, until: datetime, max_points: int = 500
) -> list[Telemetry]:
    """Telemetry rows in [since, until), oldest first, keeping at most max_points evenly spaced."""
    rows = list(
        session.scalars(
            select(Telemetry)
            .where(Telemetry.device_id == device_id, Telemetry.sent_at >= since, Telemetry.sent_at < until)
            .order_by(Telemetry.sent_at)
        )
    )
    if len(rows) <= max_points:
        return rows
    step = len(rows) / max_points
    return [rows[int(i * step)] for i in range(max_points)]


def to_dict(row: Telemetry) -> dict[str, Any]:
    """A telemetry row as JSON-ready data."""
    data: dict[str, Any] = {name: getattr(row, name) for name in SERIES_FIELDS}
    data.update(sent_at=row.sent_at.isoformat(), uptime_s=row.uptime_s, inference_count=row.inference_count,
                model_version=row.model_version)
    return data
