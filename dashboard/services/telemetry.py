"""How a telemetry row is shown in the API; the reads are in dashboard.reads.nodes."""

from __future__ import annotations

from typing import Any

from dashboard.models import Telemetry

SERIES_FIELDS = ("cpu_percent", "memory_percent", "disk_percent", "temperature_c", "outbox_depth", "inference_ms_mean")


def to_dict(row: Telemetry) -> dict[str, Any]:
    """A telemetry row as JSON-ready data."""
    data: dict[str, Any] = {name: getattr(row, name) for name in SERIES_FIELDS}
    data.update(sent_at=row.sent_at.isoformat(), uptime_s=row.uptime_s, inference_count=row.inference_count,
                model_version=row.model_version)
    return data
