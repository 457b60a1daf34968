"""Review pages: the queue, one result with its image fetched from the node, and agreement with reviewers."""
from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, abort, current_app, flash, jsonify, redirect, render_template, request, url_for
from flask_login import current_user

from dashboard.db import get_db
from dashboard.models import Classification, Review
from dashboard.services import agreement, review
from dashboard.services.auth import role_required
from dashboard.services.node_images import ImageUnavailable, NodeImages
from dashboard.web.common import require_login

bp = require_login(Blueprint("review", __name__))


def _confs() -> Any:
    return current_app.config["CONFS"].dashboard.review


def node_images() -> NodeImages:
    """The app's image fetcher (one per process, so its short cache is shared by requests)."""
    images = current_app.extensions.get("node_images")
    if images is None:
        images = current_app.extensions["node_images"] = NodeImages.from_confs(_confs())
    return images  # type: ignore[no-any-return]


@bp.route("/review")
def queue() -> Any:
    """Results waiting for a reviewer: out of distribution, uncertain, and the random share."""
    share = _confs().sample_share
    with get_db().session(readonly=True) as session:
        rows = review.queue(session, share, limit=200, device=request.args.get("node") or None)
        length = review.queue_length(session, share)
        reasons = {r.id: review.reason(r, share) for r in rows}
    can_review = current_user.role in ("reviewer", "admin")
    return render_template("review_queue.html", rows=rows, length=length, reasons=reasons, share=share, can_review=can_review)


@bp.route("/review/<int:result_id>", methods=["GET", "POST"])
@role_required("reviewer")
def item(result_id: int) -> Any:
    """One result: the image, the model's probabilities, and the form to confirm or correct."""
    if request.method == "POST":
        label, comment = request.form.get("label", ""), request.form.get("comment")
        with get_db().session() as session:
            try:
                done = review.submit(session, result_id, current_user.username, label, comment, _confs(), request.remote_addr)
            except review.ReviewError as exc:
                flash(str(exc), "error")
                return redirect(url_for("review.item", result_id=result_id))
            flash(("Confirmed " if done.review.agrees else "Corrected to ") + done.review.label, "success")
        return redirect(url_for("review.queue"))
    share = _confs().sample_share
    with get_db().session(readonly=True) as session:
        result = session.get(Classification, result_id)
        if result is None:
            abort(404)
        done = session.query(Review).filter_by(classification_id=result_id).one_or_none()
        why = review.reason(result, share)
    return render_template("review_item.html", r=result, done=done, why=why)


@bp.route("/review/<int:result_id>/image")
@role_required("reviewer")
def image(result_id: int) -> Response:
    """The result's image, fetched from its node now (never stored by the dashboard beyond a short cache)."""
    with get_db().session(readonly=True) as session:
        result = session.get(Classification, result_id)
        if result is None:
            abort(404)
        device, sha256 = result.device_id, result.image_sha256
    try:
        found = node_images().fetch(device, sha256)
    except ImageUnavailable as exc:
        return Response(str(exc), status=404, mimetype="text/plain", headers={"Cache-Control": "no-store"})
    return Response(found.data, mimetype=found.content_type, headers={"Cache-Control": "no-store, private"})


@bp.route("/review/agreement")
def agreement_page() -> Any:
    """Agreement with reviewers per node or model version, charted with its confidence interval."""
    scope = "model" if request.args.get("by") == "model" else "device"
    with get_db().session(readonly=True) as session:
        keys = agreement.keys(session, scope)  # type: ignore[arg-type]
        key = request.args.get("key") if request.args.get("key") in keys else (keys[0] if keys else None)
        points = agreement.series(session, scope, key) if key else []  # type: ignore[arg-type]
        agree, total = agreement.recent(session, scope, key, _confs().agreement_window) if key else (0, 0)  # type: ignore[arg-type]
    low, high = agreement.wilson(agree, total)
    return render_template(
        "agreement.html", scope=scope, keys=keys, key=key, points=points, agree=agree, total=total, low=low, high=high,
        confs=_confs(),
    )


@bp.route("/review/agreement.json")
def agreement_series() -> Response:
    """The chart's data: daily estimate, interval bounds and agreement over every review."""
    scope = "model" if request.args.get("by") == "model" else "device"
    key = request.args.get("key", "")[:64]
    with get_db().session(readonly=True) as session:
        points = agreement.series(session, scope, key)  # type: ignore[arg-type]
    return jsonify(scope=scope, key=key, threshold=_confs().agreement_alert_below, points=[p.as_dict() for p in points])
