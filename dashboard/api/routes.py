"""API views: devices, results, telemetry, alerts, releases and rollouts; admin-only where they change things."""

from __future__ import annotations

import tempfile
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from flask import Response, current_app, g, jsonify, request

from dashboard.api import api_blueprint as api
from dashboard.api.openapi import openapi_document
from dashboard.db import get_db
from dashboard.limits import MAX_ID, db_int
from dashboard.models import Device, utcnow
from dashboard.reads import fleet, history, nodes
from dashboard.reads import rollouts as rollout_reads
from dashboard.reads.results import ResultFilter, numbered_page
from dashboard.services import alerts, releases, results, rollouts, telemetry
from dashboard.services.auth import api_auth


MAX_PAGE = 1_000_000_000


class BadRequest(ValueError):
    """A query or body the API cannot use."""


@api.errorhandler(BadRequest)
def _bad_request(exc: BadRequest) -> tuple[Response, int]:
    return jsonify(error="bad_request", message=str(exc)), 400


def _when(name: str) -> datetime | None:
    value = request.args.get(name)
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise BadRequest(f"{name} must be an ISO 8601 date-time") from None
    if parsed.tzinfo is None:
        raise BadRequest(f"{name} must carry a time zone, e.g. 2025-01-01T00:00:00Z")
    return parsed


def _number(name: str, kind: type = float, default: Any = None) -> Any:
    value = request.args.get(name)
    if value is None or value == "":
        return default
    if kind is int:
        number = db_int(value, minimum=-MAX_ID)
        if number is None:
            raise BadRequest(f"{name} must be an integer of at most {MAX_ID}")
        return number
    try:
        return kind(value)
    except ValueError:
        raise BadRequest(f"{name} must be a {kind.__name__}") from None


def _device_dict(entry: fleet.FleetEntry) -> dict[str, Any]:
    d: Device = entry.device
    return {
        "id": d.id, "location": d.location, "zone": d.zone, "state": d.state, "online": entry.online, "stale": entry.stale,
        "last_seen": d.last_seen.isoformat() if d.last_seen else None, "model_version": d.model_version,
        "software_version": d.software_version, "cpu_percent": d.cpu_percent, "memory_percent": d.memory_percent,
        "disk_percent": d.disk_percent, "temperature_c": d.temperature_c, "outbox_depth": d.outbox_depth,
    }


def _actor() -> str:
    return str(g.api_user.username)


@api.get("/openapi.json")
@api_auth()
def openapi() -> Response:
    """The OpenAPI 3 document of this API."""
    return jsonify(openapi_document())


@api.get("/devices")
@api_auth()
def list_devices() -> Response:
    """Every node with its latest state."""
    with get_db().session(readonly=True) as session:
        entries = fleet.fleet(session, current_app.config["OFFLINE_AFTER_S"], request.args.get("zone") or None)
        return jsonify(devices=[_device_dict(e) for e in entries])


@api.get("/devices/<device_id>")
@api_auth()
def get_device(device_id: str) -> Response | tuple[Response, int]:
    """One node."""
    with get_db().session(readonly=True) as session:
        device = fleet.get_device(session, device_id)
        if device is None:
            return jsonify(error="not_found", message="no such device"), 404
        return jsonify(_device_dict(fleet.fleet_entry(device, current_app.config["OFFLINE_AFTER_S"])))


@api.get("/devices/<device_id>/telemetry")
@api_auth()
def device_telemetry(device_id: str) -> Response:
    """A node's telemetry over [since, until), the end excluded as everywhere (default: the last 24 hours)."""
    until = _when("until") or utcnow()
    since = _when("since") or until - timedelta(hours=24)
    max_points = max(1, min(5000, _number("max_points", int, 500)))
    with get_db().session(readonly=True) as session:
        rows = nodes.telemetry_series(session, device_id, since, until, max_points)
        return jsonify(device=device_id, since=since.isoformat(), until=until.isoformat(),
                       points=[telemetry.to_dict(r) for r in rows])


@api.get("/results")
@api_auth()
def list_results() -> Response:
    """Classification results, newest first, filtered (since included, until excluded) and paginated."""
    uncertain, ood = request.args.get("uncertain"), request.args.get("out_of_distribution")
    if uncertain not in (None, "", "true", "false") or ood not in (None, "", "true", "false"):
        raise BadRequest("uncertain and out_of_distribution must be true or false")
    f = ResultFilter(
        device=request.args.get("device") or None, label=request.args.get("label") or None,
        min_confidence=_number("min_confidence"), max_confidence=_number("max_confidence"),
        since=_when("since"), until=_when("until"), uncertain=None if not uncertain else uncertain == "true",
        out_of_distribution=None if not ood else ood == "true",
    )
    page = max(1, _number("page", int, 1))
    if page > MAX_PAGE:
        raise BadRequest(f"page must be at most {MAX_PAGE}")
    per_page = _number("per_page", int, 50)
    with get_db().session(readonly=True) as session:
        found = numbered_page(session, f, page, per_page)
        return jsonify(page=found.page, per_page=found.per_page, has_next=found.has_next,
                       results=[results.to_dict(r) for r in found.items])


@api.get("/alerts")
@api_auth()
def list_alerts() -> Response:
    """Alerts, newest first (open=true for unresolved, unacknowledged ones)."""
    with get_db().session(readonly=True) as session:
        rows = history.open_alerts(session) if request.args.get("open") == "true" else history.alerts(session, "all")
        return jsonify(alerts=[{
            "id": a.id, "device": a.device_id, "kind": a.kind, "severity": a.severity, "message": a.message,
            "created_at": a.created_at.isoformat(), "resolved_at": a.resolved_at.isoformat() if a.resolved_at else None,
            "acknowledged_by": a.acknowledged_by,
            "acknowledged_at": a.acknowledged_at.isoformat() if a.acknowledged_at else None,
        } for a in rows])


@api.post("/alerts/<int:alert_id>/ack")
@api_auth("admin")
def acknowledge_alert(alert_id: int) -> Response | tuple[Response, int]:
    """Acknowledge an alert."""
    with get_db().session() as session:
        try:
            alert = alerts.acknowledge(session, alert_id, _actor(), request.remote_addr)
        except KeyError:
            return jsonify(error="not_found", message="no such alert"), 404
        return jsonify(id=alert.id, acknowledged_by=alert.acknowledged_by)


@api.get("/releases")
@api_auth()
def list_releases() -> Response:
    """Registered model releases with metrics and confusion matrices."""
    with get_db().session(readonly=True) as session:
        return jsonify(releases=[releases.to_dict(r, current_app.config["PUBLIC_URL"]) for r in rollout_reads.releases_by_version(session)])


@api.post("/releases")
@api_auth("admin")
def upload_release() -> tuple[Response, int]:
    """Upload a signed model package (multipart field `package`); it is verified before anything is kept."""
    upload = request.files.get("package")
    if upload is None:
        raise BadRequest("send the package as multipart form field 'package'")
    confs = current_app.config["CONFS"]
    with tempfile.TemporaryDirectory(prefix="upload-") as tmp:
        path = Path(tmp) / "upload.tar.gz"
        upload.save(path)
        with get_db().session() as session:
            try:
                release = releases.register_package(
                    session, path, current_app.config["PACKAGE_DIR"], confs.ota.trusted_public_keys,
                    confs.ota.max_package_bytes, _actor(), request.remote_addr,
                )
            except releases.ReleaseError as exc:
                refused = str(exc)
            else:
                return jsonify(releases.to_dict(release, current_app.config["PUBLIC_URL"])), 201
        with get_db().session() as session:  # its own transaction: the refused one may have been rolled back
            releases.record_refusal(session, _actor(), upload.filename or "upload", refused, request.remote_addr)
        raise BadRequest(refused)


@api.get("/rollouts")
@api_auth()
def list_rollouts() -> Response:
    """Rollouts, newest first, with per-node states."""
    with get_db().session(readonly=True) as session:
        return jsonify(rollouts=[rollouts.to_dict(r) for r in rollout_reads.list_rollouts(session, 100)])


@api.get("/rollouts/<int:rollout_id>")
@api_auth()
def get_rollout(rollout_id: int) -> Response | tuple[Response, int]:
    """One rollout with per-node states."""
    with get_db().session(readonly=True) as session:
        rollout = rollout_reads.get_rollout(session, rollout_id)
        if rollout is None:
            return jsonify(error="not_found", message="no such rollout"), 404
        return jsonify(rollouts.to_dict(rollout))


@api.post("/rollouts")
@api_auth("admin")
def create_rollout() -> tuple[Response, int]:
    """Create a rollout: {release_id, targets: all|zone|devices, zone?, devices?, canary_size, failure_threshold}."""
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise BadRequest("send a JSON object")
    kind = body.get("targets", "all")
    value = body.get("zone") if kind == "zone" else body.get("devices") if kind == "devices" else None
    for name in ("release_id", "canary_size", "failure_threshold"):
        if db_int(body.get(name, 0)) is None:
            raise BadRequest(f"{name} must be an integer from 0 to {MAX_ID}")
    if value is not None and not (isinstance(value, str) or (isinstance(value, list) and all(isinstance(v, str) for v in value))):
        raise BadRequest("zone must be a string and devices a list of strings")
    with get_db().session() as session:
        try:
            rollout = rollouts.create_rollout(session, body.get("release_id", 0), kind, value, body.get("canary_size", 1),
                                              body.get("failure_threshold", 0), _actor(), request.remote_addr)
        except rollouts.RolloutError as exc:
            raise BadRequest(str(exc)) from None
        return jsonify(rollouts.to_dict(rollout)), 201


def _intent(rollout_id: int, intent: str) -> Response:
    with get_db().session() as session:
        try:
            rollout = rollouts.request(session, rollout_id, intent, _actor(), request.remote_addr)
        except rollouts.RolloutError as exc:
            raise BadRequest(str(exc)) from None
        return jsonify(id=rollout.id, state=rollout.state, intent=rollout.intent)


@api.post("/rollouts/<int:rollout_id>/halt")
@api_auth("admin")
def halt_rollout(rollout_id: int) -> Response:
    """Ask the engine to halt a rollout."""
    return _intent(rollout_id, "halt")


@api.post("/rollouts/<int:rollout_id>/resume")
@api_auth("admin")
def resume_rollout(rollout_id: int) -> Response:
    """Ask the engine to resume a halted rollout."""
    return _intent(rollout_id, "resume")


@api.post("/rollouts/<int:rollout_id>/rollback")
@api_auth("admin")
def rollback_rollout(rollout_id: int) -> Response:
    """Ask the engine to roll a rollout back."""
    return _intent(rollout_id, "rollback")
