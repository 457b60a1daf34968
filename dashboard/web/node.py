"""Node page: live status, telemetry charts over a chosen range, recent results, warnings and OTA history."""
from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from flask import Blueprint, abort, render_template, request

from dashboard.db import get_db
from dashboard.models import Device
from dashboard.reads.charts import CHART_FIELDS, chart_data, chart_range
from dashboard.reads import fleet, nodes
from dashboard.web.charts import Series, line_chart
from dashboard.web.common import offline_after_s, require_login, utc_now
from dashboard.web.forms import RangeForm

bp = require_login(Blueprint("node", __name__))


def _aware(value: datetime | None) -> datetime | None:
    """Form datetimes are naive and meant as UTC (the page's script converts local times before sending)."""
    return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value


@bp.route("/nodes/<device_id>")
def detail(device_id: str) -> Any:
    """One node's page; its status, cards and charts then update themselves over /stream/nodes/<id>."""
    form = RangeForm(request.args)
    form.validate()
    now = utc_now()
    since, until = _aware(form.since.data), _aware(form.until.data)
    choice = request.args.get("range")
    with get_db().session(readonly=True) as session:
        device = session.get(Device, device_id)
        if device is None:
            abort(404)
        start, end, range_key = chart_range(session, device_id, choice, since, until, now)
        alerts = fleet.open_alerts_by_device(session, device_id).get(device_id, (0, None))
        node = fleet.node_row(device, now, offline_after_s(), alerts)
        data = chart_data(session, device_id, start, end)
        results = nodes.node_results(session, device_id)
        warnings = nodes.node_warnings(session, device_id)
        ota = nodes.node_rollout_targets(session, device_id)
        updates = nodes.node_updates(session, device_id)
    moments = [datetime.fromtimestamp(t, UTC) for t in data.times]
    charts = [
        (field, f"{title} ({unit})", line_chart(Series(title, unit, list(zip(moments, data.values[field])), top), start, end))
        for field, title, unit, top in CHART_FIELDS
    ]
    if form.since.data is None:
        form.since.data = start.replace(tzinfo=None, second=0, microsecond=0)
    if form.until.data is None:
        form.until.data = end.replace(tzinfo=None, second=0, microsecond=0)
    return render_template(
        "node.html", node=node, form=form, charts=charts, start=start, end=end,
        point_count=data.samples, range_key=range_key, custom_range=range_key == "custom", live=range_key != "custom",
        results=results, warnings=warnings, ota=ota, updates=updates,
    )
