"""Rollouts: create (admins) with phases, soak, health gate and a start time; progress; halt / resume / roll back."""
from __future__ import annotations

import logging
from datetime import UTC
from typing import Any

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_login import current_user

from dashboard.db import get_db
from dashboard.limits import db_int
from dashboard.models import Rollout
from dashboard.services import rollouts as engine
from dashboard.services.rollout_phases import phase_name, progress
from dashboard.services.rollout_states import ALLOWED
from dashboard.services.auth import role_required
from dashboard.reads import rollouts as rollout_reads
from dashboard.reads.fleet import device_ids, zones
from dashboard.web.common import require_login
from dashboard.web.forms import ActionForm, RolloutForm, options

logger = logging.getLogger(__name__)

bp = require_login(Blueprint("rollouts", __name__))


@bp.route("/rollouts")
def index() -> Any:
    """Every rollout, newest first, with progress."""
    with get_db().session(readonly=True) as session:
        rollouts = rollout_reads.list_rollouts(session)
        rows = [(r, progress(r)) for r in rollouts]
    return render_template("rollouts.html", rollouts=rows)


@bp.route("/rollouts/<int:rollout_id>")
def detail(rollout_id: int) -> Any:
    """A rollout with its phases and targets; the page then follows /stream/rollouts/<id>."""
    with get_db().session(readonly=True) as session:
        rollout = rollout_reads.get_rollout(session, rollout_id)
        if rollout is None:
            abort(404)
        figures = progress(rollout)
    return render_template(
        "rollout_detail.html", rollout=rollout, progress=figures, counts=figures["by_state"], action_form=ActionForm(),
        phase_name=phase_name, haltable=sorted(ALLOWED["halt"]), resumable=sorted(ALLOWED["resume"]),
        rollbackable=sorted(ALLOWED["rollback"]),
    )


@bp.route("/rollouts/new", methods=["GET", "POST"])
@role_required("admin")
def new() -> Any:
    """The rollout form; on a valid POST the rollout is created and the ingest engine takes it from there."""
    form = RolloutForm()
    with get_db().session(readonly=True) as session:
        releases = rollout_reads.releases_by_upload(session)
        form.release_id.choices = options(*[(r.id, f"{r.name} {r.version}") for r in releases])
        form.zone.choices = options(*[(z, z) for z in zones(session)])
        form.nodes.choices = options(*[(d, d) for d in device_ids(session)])
    if request.method == "GET" and db_int(request.args.get("release_id")):
        form.release_id.data = db_int(request.args.get("release_id"))
    if form.validate_on_submit():
        outcome = _create(form)
        if isinstance(outcome, int):
            flash(f"Rollout #{outcome} started.", "success")
            return redirect(url_for("rollouts.detail", rollout_id=outcome))
        flash(f"Rollout refused: {outcome}", "error")
    return render_template("rollout_new.html", form=form), 200 if request.method == "GET" else 400


def _create(form: RolloutForm) -> int | str:
    """Create the rollout through the rollouts service (which audits it); the new id, or why it was refused."""
    mode = form.target_mode.data or "all"
    value: str | list[str] | None = None
    if mode == "zone":
        value = form.zone.data or ""
    elif mode == "devices":
        value = list(form.nodes.data or [])
    start_at = form.start_at.data.replace(tzinfo=UTC) if form.start_at.data else None
    with get_db().session() as session:
        try:
            rollout = engine.create_rollout(
                session, form.release_id.data, mode, value, form.canary_size.data, form.failure_threshold.data,
                current_user.username, request.remote_addr, phases=form.phases.data or "", soak_s=form.soak_s.data or 0,
                health_gate=bool(form.health_gate.data), scheduled_at=start_at,
                confirm_model_change=bool(form.confirm_model_change.data),
            )
        except engine.RolloutError as exc:
            return str(exc)
        return rollout.id


def _act(rollout_id: int, verb: str) -> Any:
    """Halt, resume or roll back: the service records the intent (and audits it), ingest's engine carries it out."""
    if not ActionForm().validate_on_submit():
        abort(400)
    with get_db().session() as session:
        if session.get(Rollout, rollout_id) is None:
            abort(404)
        try:
            engine.request(session, rollout_id, verb, current_user.username, request.remote_addr)
        except engine.RolloutError as exc:
            flash(f"Cannot {verb.replace('rollback', 'roll back')}: {exc}", "error")
            return redirect(url_for("rollouts.detail", rollout_id=rollout_id))
    flash({"halt": "Rollout halted.", "resume": "Rollout resumed.", "rollback": "Rollback requested."}[verb], "success")
    return redirect(url_for("rollouts.detail", rollout_id=rollout_id))


@bp.route("/rollouts/<int:rollout_id>/halt", methods=["POST"])
@role_required("admin")
def halt(rollout_id: int) -> Any:
    """Stop sending updates to nodes that have not started."""
    return _act(rollout_id, "halt")


@bp.route("/rollouts/<int:rollout_id>/resume", methods=["POST"])
@role_required("admin")
def resume(rollout_id: int) -> Any:
    """Carry on a halted rollout."""
    return _act(rollout_id, "resume")


@bp.route("/rollouts/<int:rollout_id>/rollback", methods=["POST"])
@role_required("admin")
def rollback(rollout_id: int) -> Any:
    """Send every updated node back to its previous model."""
    return _act(rollout_id, "rollback")
