"""A node page's live parts: its chart data as JSON and a stream of its status, alerts and new telemetry."""
from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from flask import Blueprint, Response, abort, current_app, jsonify, request

from dashboard.db import get_db
from dashboard.models import Device, Telemetry
from dashboard.reads.charts import CHART_FIELDS, chart_data, chart_range
from dashboard.reads import fleet, nodes
from dashboard.reads.live import shared_reads
from dashboard.web.common import offline_after_s, require_login, utc_now
from dashboard.web.streams import _stream, sse

bp = require_login(Blueprint("node_live", __name__))
MAX_SPAN_S = 400 * 24 * 3600


def _epoch(name: str) -> datetime | None:
    """A query argument in epoch seconds as an aware UTC datetime; None when absent or unusable."""
    try:
        value = float(request.args.get(name, ""))
    except ValueError:
        return None
    return datetime.fromtimestamp(value, UTC) if 0 <= value < 4e9 else None


@bp.route("/nodes/<device_id>/series.json")
def series(device_id: str) -> Response:
    """Chart data of [start, end] (epoch seconds), or of the range that fits the data when they are absent."""
    start, end = _epoch("start"), _epoch("end")
    with get_db().session(readonly=True) as session:
        if session.get(Device, device_id) is None:
            abort(404)
        if start is None or end is None or not start < end or (end - start).total_seconds() > MAX_SPAN_S:
            start, end, _ = chart_range(session, device_id, request.args.get("range"), None, None, utc_now())
        data = chart_data(session, device_id, start, end)
    return jsonify(data.as_json())


def telemetry_event(row: Telemetry) -> dict[str, Any]:
    """One new sample for the live charts."""
    return {"t": row.sent_at.timestamp(), **{f: getattr(row, f) for f, *_ in CHART_FIELDS}}


@bp.route("/stream/nodes/<device_id>")
def stream(device_id: str) -> Response:
    """`node` events when anything shown about the node changes (silence included), `telemetry` per new sample."""
    db, limit = get_db(), offline_after_s()
    with db.session(readonly=True) as session:
        if session.get(Device, device_id) is None:
            abort(404)
        last = nodes.latest_telemetry_id(session, device_id)
    cursor: dict[str, Any] = {"last_id": last, "shown": None}
    shared = shared_reads(current_app)

    def snapshot() -> tuple[dict[str, Any] | None, int]:
        with db.session(readonly=True) as session:
            device = session.get(Device, device_id)
            if device is None:
                return None, 0
            alerts = fleet.open_alerts_by_device(session, device_id).get(device_id, (0, None))
            return fleet.node_row(device, utc_now(), limit, alerts).as_event(), nodes.latest_telemetry_id(session, device_id)

    def samples_after(last_id: int) -> list[tuple[int, dict[str, Any]]]:
        with db.session(readonly=True) as session:
            return [(row.id, telemetry_event(row)) for row in nodes.telemetry_after(session, device_id, last_id)]

    def poll() -> list[str]:
        event, newest = shared.get(("node", device_id, limit), snapshot)
        if event is None:
            return []
        samples: list[dict[str, Any]] = []
        if newest > cursor["last_id"]:
            rows = shared.get(("telemetry", device_id, cursor["last_id"]), lambda: samples_after(cursor["last_id"]))
            samples = [sample for _, sample in rows]
            if rows:
                cursor["last_id"] = rows[-1][0]
        frames = []
        if event != cursor["shown"]:
            cursor["shown"] = event
            frames.append(sse("node", event))
        frames += [sse("telemetry", sample) for sample in samples]
        return frames

    return _stream(poll)
