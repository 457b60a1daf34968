"""Server-sent event streams: cheap database polls, changes only, bounded lifetime (EventSource reconnects)."""
from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from flask import Blueprint, Response, abort, current_app, request, stream_with_context
from flask_login import current_user

from dashboard.db import Database, get_db
from dashboard.limits import db_int
from dashboard.models import Rollout
from dashboard.services.rollout_phases import phase_name, phase_row, progress, progress_counts
from dashboard.reads import fleet as fleet_reads
from dashboard.reads.live import shared_reads
from dashboard.reads.results import latest_result_id, results_newer_than
from dashboard.services.results import verdict
from dashboard.web.common import offline_after_s, require_login, utc_now
from dashboard.web.fleet import fleet_summary
from dashboard.web.results import parse_filters, per_page_of

bp = require_login(Blueprint("streams", __name__, url_prefix="/stream"))

DEFAULT_LIFETIME_S = 55.0
DEFAULT_POLL_S = 1.0
KEEPALIVE_S = 15.0
RECONNECT_MS = 1500
# Open streams one user may hold per worker, and in all per worker: a viewer's tabs cannot exhaust the server.
DEFAULT_MAX_PER_USER = 6
DEFAULT_MAX_TOTAL = 400
_open: dict[str, int] = {}
_open_lock = threading.Lock()


def _take_slot(user: str) -> bool:
    """Count one more open stream for user, unless that would pass a bound."""
    per_user = int(current_app.config.get("SSE_MAX_PER_USER", DEFAULT_MAX_PER_USER))
    total = int(current_app.config.get("SSE_MAX_TOTAL", DEFAULT_MAX_TOTAL))
    with _open_lock:
        if _open.get(user, 0) >= per_user or sum(_open.values()) >= total:
            return False
        _open[user] = _open.get(user, 0) + 1
        return True


def _release_slot(user: str) -> None:
    with _open_lock:
        left = _open.get(user, 0) - 1
        if left > 0:
            _open[user] = left
        else:
            _open.pop(user, None)


def _too_many() -> Response:
    """429 with a Retry-After a browser's EventSource honours by retrying later."""
    response = Response("too many open live streams\n", status=429, mimetype="text/plain")
    response.headers["Retry-After"] = "30"
    return response


def sse(event: str, data: dict[str, Any], event_id: int | str | None = None) -> str:
    """One SSE frame; JSON on one line so no data can forge frame boundaries."""
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {event}\ndata: {json.dumps(data, separators=(',', ':'), default=str)}\n\n"


def _stream(poll: Callable[[], list[str]]) -> Response:
    """Run poll every interval for the configured lifetime, sending what it returns and keep-alives."""
    lifetime = float(current_app.config.get("SSE_LIFETIME_S", DEFAULT_LIFETIME_S))
    interval = float(current_app.config.get("SSE_POLL_S", DEFAULT_POLL_S))
    user = str(current_user.get_id()).partition(":")[0]
    if not _take_slot(user):
        return _too_many()
    released = threading.Event()

    def release() -> None:
        if not released.is_set():
            released.set()
            _release_slot(user)

    def generate() -> Iterator[str]:
        yield f"retry: {RECONNECT_MS}\n\n"
        deadline = time.monotonic() + lifetime
        last_sent = time.monotonic()
        while True:
            frames = poll()
            if frames:
                yield "".join(frames)
                last_sent = time.monotonic()
            elif time.monotonic() - last_sent > KEEPALIVE_S:
                yield ": keep-alive\n\n"
                last_sent = time.monotonic()
            if time.monotonic() + interval > deadline:
                return
            time.sleep(interval)

    response = Response(
        stream_with_context(generate()),
        mimetype="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )
    response.call_on_close(release)
    return response


@bp.route("/fleet")
def fleet() -> Response:
    """`node` events: a node's row whenever anything shown about it changes (going silent too); `summary`: the tiles."""
    db, limit, shared = get_db(), offline_after_s(), shared_reads(current_app)
    shown: dict[str, dict[str, Any]] = {}

    def snapshot() -> tuple[list[dict[str, Any]], dict[str, int]]:
        with db.session(readonly=True) as session:
            rows = fleet_reads.fleet_rows(session, utc_now(), limit)
            summary = fleet_summary(rows, fleet_reads.open_alert_count(session))
        return [row.as_event() for row in rows], summary

    def poll() -> list[str]:
        events, summary = shared.get(("fleet", limit), snapshot)
        frames = []
        for event in events:
            if shown.get(event["device_id"]) != event:
                shown[event["device_id"]] = event
                frames.append(sse("node", event))
        if shown.get("__summary__") != summary:
            shown["__summary__"] = summary
            frames.append(sse("summary", summary))
        return frames

    return _stream(poll)


@bp.route("/results")
def results() -> Response:
    """`result` events: the newest results stored since the last poll that match the page's filters."""
    form, filters, _ = parse_filters(request.args)
    limit = per_page_of(form)
    db, shared = get_db(), shared_reads(current_app)
    resume = db_int(request.headers.get("Last-Event-ID"))
    with db.session(readonly=True) as session:
        start = resume if resume is not None and resume >= 0 else latest_result_id(session)
    cursor = {"last_id": start}

    def newest() -> int:
        with db.session(readonly=True) as session:
            return latest_result_id(session)

    def rows_upto(last_id: int, upto: int) -> list[tuple[int, dict[str, Any]]]:
        with db.session(readonly=True) as session:
            return [(row.id, result_event(row)) for row in results_newer_than(session, filters, last_id, upto, limit)]

    def poll() -> list[str]:
        upto = shared.get(("results-newest",), newest)
        if upto <= cursor["last_id"]:
            return []
        # Bounded by the shared probe, so tabs with the same filters share one query and then one cursor.
        rows = shared.get(("results", filters, cursor["last_id"], upto, limit), lambda: rows_upto(cursor["last_id"], upto))
        cursor["last_id"] = upto
        return [sse("result", event, ident) for ident, event in rows]

    return _stream(poll)


def result_event(row: Any) -> dict[str, Any]:
    """JSON-ready form of a Classification for the results stream."""
    return {
        "id": row.id,
        "received_at": row.sent_at.strftime("%Y-%m-%d %H:%M:%S"),
        "device_id": row.device_id,
        "sample_id": row.sample_id,
        "label": row.label,
        "verdict": verdict(row),
        "out_of_distribution": bool(row.out_of_distribution),
        "ood_score": None if row.ood_score is None else f"{row.ood_score:.2f}",
        "confidence": f"{row.confidence:.3f}",
        "uncertain": bool(row.uncertain),
        "model_version": row.model_version,
        "inference_ms": f"{row.inference_ms:.1f}",
    }


Snapshot = tuple[dict[str, Any], list[dict[str, Any]], list[dict[str, Any]]]


def rollout_snapshot(db: Database, rollout_id: int) -> Snapshot | None:
    """The rollout's status with per-state counts, each target's row and each phase's row."""
    with db.session(readonly=True) as session:
        rollout = session.get(Rollout, rollout_id)
        if rollout is None:
            return None
        figures = progress(rollout)
        counts = progress_counts(figures, rollout.reason)
        rows = []
        for target in rollout.targets:
            rows.append({
                "device_id": target.device_id,
                "state": target.state,
                "stage": phase_name(target.phase),
                "updated_at": (target.reported_at or target.sent_at).strftime("%Y-%m-%d %H:%M:%S")
                if (target.reported_at or target.sent_at) else None,
                "reason": target.reason or "",
                "sends": target.sends,
            })
        status = {"status": rollout.state, "intent": rollout.intent, "reason": rollout.reason or "", "counts": counts}
        phases = [phase_row(phase, rollout.state) for phase in figures["phases"]]
    return status, rows, phases


@bp.route("/rollouts/<int:rollout_id>")
def rollout(rollout_id: int) -> Response:
    """`rollout`, `target` and `phase` events whenever the rollout, one of its nodes or one of its phases changes."""
    db = get_db()
    if rollout_snapshot(db, rollout_id) is None:
        abort(404)
    shown: dict[str, Any] = {}
    shared = shared_reads(current_app)

    def poll() -> list[str]:
        snapshot = shared.get(("rollout", rollout_id), lambda: rollout_snapshot(db, rollout_id))
        if snapshot is None:
            return []
        status, rows, phases = snapshot
        frames = []
        if shown.get("__rollout__") != status:
            shown["__rollout__"] = status
            frames.append(sse("rollout", status))
        for row in rows:
            if shown.get(row["device_id"]) != row:
                shown[row["device_id"]] = row
                frames.append(sse("target", row))
        for phase in phases:
            key = f"__phase_{phase['index']}__"
            if shown.get(key) != phase:
                shown[key] = phase
                frames.append(sse("phase", phase))
        return frames

    return _stream(poll)
