"""Node page: telemetry charts over a chosen range, recent results, warnings and OTA history."""
from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from flask import Blueprint, abort, render_template, request

from dashboard.db import get_db
from dashboard.models import Device
from dashboard.web import queries
from dashboard.web.charts import Series, line_chart
from dashboard.web.common import offline_after_s, require_login, utc_now
from dashboard.web.forms import RangeForm

bp = require_login(Blueprint("node", __name__))

CHARTS = (
    ("CPU", "%", "cpu_percent", 100.0),
    ("Memory", "%", "memory_percent", 100.0),
    ("Temperature", "°C", "temperature_c", None),
    ("Inference latency", "ms", "inference_ms_mean", None),
    ("Outbox depth", "messages", "outbox_depth", None),
)


def _aware(value: datetime | None) -> datetime | None:
    """Form datetimes are naive and meant as UTC."""
    return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value


@bp.route("/nodes/<device_id>")
def detail(device_id: str) -> Any:
    """One node's page."""
    form = RangeForm(request.args)
    form.validate()
    now = utc_now()
    since, until = _aware(form.since.data), _aware(form.until.data)
    custom = since is not None and until is not None and since < until
    start, end = queries.range_bounds(form.range.data or "24h", since, until, now)
    with get_db().session() as session:
        device = session.get(Device, device_id)
        if device is None:
            abort(404)
        node = queries.node_row(device, now, offline_after_s())
        points = queries.telemetry_points(session, device_id, start, end)
        results = queries.node_results(session, device_id)
        warnings = queries.node_warnings(session, device_id)
        ota = queries.node_rollout_targets(session, device_id)
        updates = queries.node_updates(session, device_id)
    charts = [
        (f"{title} ({unit})", line_chart(Series(title, unit, [(p.sent_at, getattr(p, attr)) for p in points], top), start, end))
        for title, unit, attr, top in CHARTS
    ]
    return render_template(
        "node.html", node=node, form=form, charts=charts, start=start, end=end, point_count=len(points),
        range_key=form.range.data or "24h", custom_range=custom, results=results, warnings=warnings, ota=ota,
        updates=updates,
    )
