"""Alert notifications: e-mail to a local SMTP sink, a webhook to a local receiver, retries, audit, severity floor."""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import timedelta
from pathlib import Path

from sqlalchemy import select

from contracts.alert_confs import NotifyConfs
from dashboard.db import Database
from dashboard.models import Alert, AuditLog, Notification, utcnow
from dashboard.services import alerts, notify
from support.sinks import smtp_sink, webhook_sink

PUBLIC = "http://dash.example:5000"


def raise_alert(db: Database, kind: str = "model_error", message: str = "no model loads") -> int:
    with db.session() as session:
        alert = alerts.raise_event_alert(session, None, kind, "critical", message)
        session.flush()
        return alert.id


def rows(db: Database) -> list[Notification]:
    with db.session(readonly=True) as session:
        return list(session.scalars(select(Notification).order_by(Notification.id)))


def audit_actions(db: Database) -> list[tuple[str, dict]]:  # type: ignore[type-arg]
    with db.session(readonly=True) as session:
        return [(a.action, a.details) for a in session.scalars(select(AuditLog).order_by(AuditLog.id))]


def test_an_alert_is_mailed_and_posted_once_and_audited(db: Database, tmp_path: Path) -> None:
    secret = tmp_path / "hook.key"
    secret.write_text("s3cret\n")
    with smtp_sink() as mail, webhook_sink() as hook:
        confs = NotifyConfs(smtp_host="127.0.0.1", smtp_port=mail.port, email_to=["lab@example.org", "it@example.org"],
                            webhook_url=hook.url, webhook_secret_file=str(secret))
        alert_id = raise_alert(db)
        assert notify.run_once(db, confs, PUBLIC) == 3
        assert notify.run_once(db, confs, PUBLIC) == 0, "each alert is sent once"
    assert sorted(m["To"] for m in mail.messages) == ["it@example.org", "lab@example.org"]
    assert "CRITICAL model_error" in mail.messages[0]["Subject"] and "no model loads" in mail.messages[0].get_payload()
    [body] = hook.bodies
    assert body["alert"]["id"] == alert_id and body["alert"]["url"] == PUBLIC + "/alerts"
    raw = json.dumps(body, separators=(",", ":")).encode()
    assert hook.headers[0]["x-allfleet-signature"] == "sha256=" + hmac.new(b"s3cret", raw, hashlib.sha256).hexdigest()
    assert [r.state for r in rows(db)] == ["sent"] * 3
    assert [a for a, _ in audit_actions(db)].count("alert.notify") == 3


def test_a_failing_webhook_is_retried_with_backoff_until_it_answers(db: Database) -> None:
    with webhook_sink(fail_first=2) as hook:
        confs = NotifyConfs(webhook_url=hook.url, retry_after_s=10)
        raise_alert(db)
        assert notify.run_once(db, confs, PUBLIC) == 0
        [row] = rows(db)
        assert row.state == "pending" and row.attempts == 1 and "500" in (row.last_error or "")
        assert notify.run_once(db, confs, PUBLIC) == 0, "not due before its retry time"
        later = utcnow() + timedelta(seconds=11)
        assert notify.run_once(db, confs, PUBLIC, now=later) == 0
        [row] = rows(db)
        assert row.attempts == 2 and row.next_attempt_at > later + timedelta(seconds=19), "the wait doubles"
        assert notify.run_once(db, confs, PUBLIC, now=later + timedelta(seconds=21)) == 1
    assert len(hook.bodies) == 1 and rows(db)[0].state == "sent"


def test_an_unreachable_smtp_server_is_given_up_after_max_attempts_and_audited(db: Database) -> None:
    confs = NotifyConfs(smtp_host="127.0.0.1", smtp_port=9, email_to=["lab@example.org"], max_attempts=2,
                        retry_after_s=1, timeout_s=2)
    raise_alert(db)
    notify.run_once(db, confs, PUBLIC)
    notify.run_once(db, confs, PUBLIC, now=utcnow() + timedelta(seconds=5))
    [row] = rows(db)
    assert row.state == "failed" and row.attempts == 2
    [(action, details)] = [e for e in audit_actions(db) if e[0].startswith("alert.notify")]
    assert action == "alert.notify_failed" and details["channel"] == "email" and "Error" in details["error"]


def test_alerts_below_the_severity_floor_or_already_resolved_are_not_sent(db: Database) -> None:
    with webhook_sink() as hook:
        confs = NotifyConfs(webhook_url=hook.url, min_severity="critical")
        raise_alert(db, "ota_failed", "update failed")  # a warning
        gone = raise_alert(db, "model_error", "flapped")
        with db.session() as session:
            session.get(Alert, gone).resolved_at = utcnow()  # type: ignore[union-attr]
        assert notify.run_once(db, confs, PUBLIC) == 0
    assert hook.bodies == [] and rows(db) == []
