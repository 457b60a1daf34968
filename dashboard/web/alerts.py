"""Alerts page: open and acknowledged alerts; admins acknowledge them, recorded with who and when."""
from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_login import current_user

from dashboard.db import get_db
from dashboard.models import Alert
from dashboard.services import alerts as alerts_service
from dashboard.services.auth import role_required
from dashboard.reads import history
from dashboard.web.common import require_login
from dashboard.web.forms import ActionForm, AlertFilterForm

bp = require_login(Blueprint("alerts", __name__))


@bp.route("/alerts")
def index() -> Any:
    """Alerts, open first by default."""
    form = AlertFilterForm(request.args)
    state = form.state.data if form.state.data in ("open", "acknowledged", "all") else "open"
    with get_db().session(readonly=True) as session:
        rows = history.alerts(session, state)
    return render_template("alerts.html", alerts=rows, form=form, action_form=ActionForm())


@bp.route("/alerts/<int:alert_id>/acknowledge", methods=["POST"])
@role_required("admin")
def acknowledge(alert_id: int) -> Any:
    """Mark an alert as seen by the signed-in admin."""
    if not ActionForm().validate_on_submit():
        abort(400)
    with get_db().session() as session:
        if session.get(Alert, alert_id) is None:
            abort(404)
        alerts_service.acknowledge(session, alert_id, current_user.username, request.remote_addr)
    flash(f"Alert #{alert_id} acknowledged.", "success")
    return redirect(url_for("alerts.index"))
