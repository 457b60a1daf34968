"""Fleet page: every node with its status and latest telemetry."""
from __future__ import annotations

from typing import Any

from flask import Blueprint, render_template

from dashboard.db import get_db
from dashboard.web import queries
from dashboard.web.common import offline_after_s, require_login, utc_now

bp = require_login(Blueprint("fleet", __name__))


@bp.route("/")
def index() -> Any:
    """The fleet table with summary cards; the table then updates itself over /stream/fleet."""
    limit = offline_after_s()
    with get_db().session() as session:
        nodes = queries.fleet_rows(session, utc_now(), limit)
        open_alerts = queries.open_alert_count(session)
    summary = {
        "total": len(nodes),
        "online": sum(1 for n in nodes if n.state == "ONLINE" and not n.stale),
        "open_alerts": open_alerts,
    }
    return render_template("fleet.html", nodes=nodes, summary=summary, offline_after_s=limit)
