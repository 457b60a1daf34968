"""Audit log page: every admin action, who and when, newest first."""
from __future__ import annotations

from typing import Any

from flask import Blueprint, render_template, request

from dashboard.db import get_db
from dashboard.limits import db_int
from dashboard.reads.history import audit_entries
from dashboard.web.common import require_login
from dashboard.web.forms import AuditFilterForm

bp = require_login(Blueprint("audit", __name__))
PER_PAGE = 100


@bp.route("/audit")
def index() -> Any:
    """A keyset page of audit entries."""
    form = AuditFilterForm(request.args)
    form.validate()
    actor = (form.actor.data or "").strip() if not form.actor.errors else ""
    action = (form.action.data or "").strip() if not form.action.errors else ""
    before = db_int(request.args.get("before"))
    with get_db().session(readonly=True) as session:
        entries = audit_entries(session, actor or None, action or None, before, PER_PAGE + 1)
    next_before = entries[PER_PAGE - 1].id if len(entries) > PER_PAGE else None
    filter_args = {k: v for k, v in (("actor", actor), ("action", action)) if v}
    return render_template(
        "audit.html", entries=entries[:PER_PAGE], form=form, before=before, next_before=next_before,
        filter_args=filter_args,
    )
