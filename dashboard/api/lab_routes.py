"""API views of the laboratory workflow: specimens, the review queue, FHIR DiagnosticReports, Prometheus metrics."""

from __future__ import annotations

from datetime import UTC, datetime, time
from typing import Any

from flask import Blueprint, Response, current_app, g, jsonify, request

from contracts.specimens import Verdict
from dashboard.api import api_blueprint as api
from dashboard.db import get_db
from dashboard.models import utcnow
from dashboard.services import fhir, metrics, review, specimens
from dashboard.services.auth import api_auth

metrics_blueprint = Blueprint("metrics", __name__)
FHIR_JSON = "application/fhir+json"
DATE_PREFIXES = ("ge", "gt", "le", "lt", "eq")


class _Bad(ValueError):
    """A query the API cannot use."""


@api.errorhandler(_Bad)
def _bad(exc: _Bad) -> tuple[Response, int]:
    return jsonify(error="bad_request", message=str(exc)), 400


def _dashboard() -> Any:
    return current_app.config["CONFS"].dashboard


def _date_bound(value: str) -> tuple[str, datetime]:
    """A FHIR date search value (ge2025-01-01, le2025-01-02T10:00:00Z, 2025-01-01) as (prefix, aware datetime)."""
    prefix = value[:2] if value[:2] in DATE_PREFIXES else "eq"
    text = value[2:] if value[:2] in DATE_PREFIXES else value
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise _Bad("date must be a FHIR date or date-time, optionally prefixed with ge, gt, le, lt or eq") from None
    if len(text) == 10:
        parsed = datetime.combine(parsed.date(), time(), tzinfo=UTC)
    if parsed.tzinfo is None:
        raise _Bad("a date-time must carry a time zone")
    return prefix, parsed


def _specimen_filter() -> specimens.SpecimenFilter:
    since = until = None
    for value in request.args.getlist("date"):
        prefix, when = _date_bound(value)
        day_only = len(value) - (2 if value[:2] in DATE_PREFIXES else 0) == 10
        end = when.replace(hour=23, minute=59, second=59, microsecond=999999) if day_only else when
        if prefix in ("ge", "gt", "eq"):
            since = when
        if prefix in ("le", "lt", "eq"):
            until = end if prefix != "lt" else when
    verdict = request.args.get("verdict")
    if verdict is not None and verdict not in {v.value for v in Verdict}:
        raise _Bad(f"verdict must be one of {', '.join(v.value for v in Verdict)}")
    return specimens.SpecimenFilter(
        verdict=Verdict(verdict) if verdict else None, device=request.args.get("device") or None, since=since, until=until,
    )


@api.get("/specimens")
@api_auth()
def list_specimens() -> Response:
    """Specimens with their verdicts, most recently active first."""
    with get_db().session(readonly=True) as session:
        found = specimens.list_specimens(session, _dashboard().specimens, utcnow(), _specimen_filter())
        return jsonify(specimens=[s.as_dict() for s in found])


@api.get("/fhir/DiagnosticReport")
@api_auth()
def search_reports() -> Response:
    """FHIR search: `specimen=<id>` and/or `date=ge...&date=le...` (the specimen's last field), as a searchset Bundle."""
    specimen_id = request.args.get("specimen")
    now = utcnow()
    rule = _dashboard().specimens
    with get_db().session(readonly=True) as session:
        if specimen_id:
            one = specimens.get_specimen(session, specimen_id, rule, now)
            found = [one] if one is not None else []
            filters = _specimen_filter()
            found = [s for s in found if (filters.since is None or s.last_at >= filters.since)
                     and (filters.until is None or s.last_at <= filters.until)]
        else:
            found = specimens.list_specimens(session, rule, now, _specimen_filter(), limit=100)
        reports = [fhir.diagnostic_report(s, fhir.model_names(session, s.models), now) for s in found]
    base = request.url_root.rstrip("/") + "/api/v1/fhir"
    response = jsonify(fhir.search_bundle(reports, request.url, base))
    response.mimetype = FHIR_JSON
    return response


@api.get("/fhir/DiagnosticReport/<report_id>")
@api_auth()
def read_report(report_id: str) -> Response | tuple[Response, int]:
    """One report by its id (the id the push uses)."""
    now = utcnow()
    with get_db().session(readonly=True) as session:
        for s in specimens.list_specimens(session, _dashboard().specimens, now, limit=10_000):
            if fhir.report_id(s.specimen_id) == report_id:
                response = jsonify(fhir.diagnostic_report(s, fhir.model_names(session, s.models), now))
                response.mimetype = FHIR_JSON
                return response
    outcome = {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "not-found"}]}
    return jsonify(outcome), 404


@api.get("/review/queue")
@api_auth()
def review_queue() -> Response:
    """Results waiting for a reviewer."""
    share = _dashboard().review.sample_share
    with get_db().session(readonly=True) as session:
        rows = review.queue(session, share, limit=200, device=request.args.get("device") or None)
        return jsonify(length=review.queue_length(session, share), results=[{
            "id": r.id, "device": r.device_id, "sample_id": r.sample_id, "specimen_id": r.specimen_id, "label": r.label,
            "confidence": r.confidence, "uncertain": r.uncertain, "out_of_distribution": r.out_of_distribution,
            "model_version": r.model_version, "reason": review.reason(r, share), "sent_at": r.sent_at.isoformat(),
        } for r in rows])


@api.post("/review/<int:result_id>")
@api_auth("reviewer")
def submit_review(result_id: int) -> tuple[Response, int]:
    """A reviewer's label for one result: {label, comment?}; confirming when it is the model's label."""
    body = request.get_json(silent=True)
    if not isinstance(body, dict) or not isinstance(body.get("label"), str):
        raise _Bad("send a JSON object with a label")
    comment = body.get("comment")
    if comment is not None and not isinstance(comment, str):
        raise _Bad("comment must be a string")
    with get_db().session() as session:
        try:
            done = review.submit(session, result_id, str(g.api_user.username), body["label"], comment,
                                 _dashboard().review, request.remote_addr)
        except review.ReviewError as exc:
            raise _Bad(str(exc)) from None
        return jsonify(id=done.review.id, agrees=done.review.agrees, label=done.review.label, alerts=done.alerts), 201


@metrics_blueprint.get("/metrics")
@api_auth()
def prometheus_metrics() -> Response:
    """Prometheus text format; needs an API bearer token like the rest of the API."""
    confs = _dashboard()
    with get_db().session(readonly=True) as session:
        body, content_type = metrics.exposition(session, utcnow(), current_app.config["OFFLINE_AFTER_S"], confs.review.sample_share)
    return Response(body, content_type=content_type, headers={"Cache-Control": "no-store"})
