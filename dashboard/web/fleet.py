"""Fleet page: every node with its status and latest telemetry, searchable and sortable."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from flask import Blueprint, render_template

from dashboard.db import get_db
from dashboard.reads import fleet as fleet_reads
from dashboard.web.common import offline_after_s, require_login, utc_now

bp = require_login(Blueprint("fleet", __name__))


@bp.app_template_filter("duration")
def duration(seconds: float | None) -> str:
    """Seconds as a short duration (3d 4h, 5h 12m, 42m, 15s), or a dash."""
    if seconds is None:
        return "—"
    s = int(seconds)
    days, hours, minutes = s // 86400, s % 86400 // 3600, s % 3600 // 60
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes}m"
    return f"{minutes}m" if minutes else f"{s}s"


def fleet_summary(nodes: Sequence[fleet_reads.NodeRow], open_alerts: int) -> dict[str, int]:
    """The summary tiles: the page and the live stream count the same way."""
    online = sum(1 for n in nodes if n.shown == "ONLINE")
    return {"total": len(nodes), "online": online, "offline": len(nodes) - online, "open_alerts": open_alerts}


@bp.route("/")
def index() -> Any:
    """The fleet table with summary cards; the table then updates itself over /stream/fleet."""
    limit = offline_after_s()
    with get_db().session(readonly=True) as session:
        nodes = fleet_reads.fleet_rows(session, utc_now(), limit)
        open_alerts = fleet_reads.open_alert_count(session)
    return render_template("fleet.html", nodes=nodes, summary=fleet_summary(nodes, open_alerts), offline_after_s=limit)
