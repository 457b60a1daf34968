"""Alert notifications: each new alert queued once per channel, sent by e-mail (SMTP) and webhook, retried, audited."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import smtplib
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.message import EmailMessage
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from contracts.alert_confs import NotifyConfs
from contracts.confs import read_secret
from dashboard.db import Database
from dashboard.models import Alert, Notification, utcnow
from dashboard.services import audit, retries

logger = logging.getLogger(__name__)
RANK = {"info": 0, "warning": 1, "critical": 2}
ACTOR = "notifier"
BATCH = 50


@dataclass(frozen=True)
class Outbound:
    """One notification claimed for sending, detached from its session."""

    id: int
    channel: str
    target: str
    attempts: int
    alert: dict[str, Any]


def alert_payload(alert: Alert, public_url: str) -> dict[str, Any]:
    """What every channel says about an alert."""
    return {
        "id": alert.id, "kind": alert.kind, "severity": alert.severity, "device": alert.device_id,
        "message": alert.message, "created_at": alert.created_at.isoformat(), "url": f"{public_url.rstrip('/')}/alerts",
    }


def enqueue(session: Session, confs: NotifyConfs, now: datetime) -> int:
    """Queue a notification per channel for every alert not yet queued; alerts below min_severity are only marked."""
    targets = [("email", address) for address in confs.email_to if confs.smtp_host]
    targets += [("webhook", confs.webhook_url)] if confs.webhook_url else []
    queued = 0
    for alert in session.scalars(select(Alert).where(Alert.notified.is_(False)).order_by(Alert.id).limit(BATCH)):
        alert.notified = True
        if alert.resolved_at is not None or RANK.get(alert.severity, 0) < RANK[confs.min_severity]:
            continue
        for channel, target in targets:
            session.add(Notification(alert_id=alert.id, channel=channel, target=target, state="pending",
                                     next_attempt_at=now, created_at=now))
            queued += 1
    return queued


def claim(session: Session, confs: NotifyConfs, public_url: str, now: datetime) -> list[Outbound]:
    """Due notifications, leased for one try so a slow server never holds a database transaction open."""
    due = session.scalars(
        select(Notification).where(Notification.state == "pending", Notification.next_attempt_at <= now)
        .order_by(Notification.id).limit(BATCH)
    ).all()
    claimed = []
    for row in due:
        row.next_attempt_at = now + timedelta(seconds=confs.timeout_s * 3)
        alert = session.get(Alert, row.alert_id)
        if alert is not None:
            claimed.append(Outbound(row.id, row.channel, row.target, row.attempts, alert_payload(alert, public_url)))
    return claimed


def send_email(confs: NotifyConfs, to: str, alert: dict[str, Any]) -> None:
    """One alert as a plain-text e-mail."""
    message = EmailMessage()
    message["From"], message["To"] = confs.email_from, to
    message["Subject"] = f"[ALL Fleet] {alert['severity'].upper()} {alert['kind']} on {alert['device'] or 'the fleet'}"
    message.set_content(
        f"{alert['message']}\n\nNode: {alert['device']}\nSeverity: {alert['severity']}\n"
        f"Raised: {alert['created_at']}\nAlert #{alert['id']}: {alert['url']}\n"
    )
    with smtplib.SMTP(confs.smtp_host or "", confs.smtp_port, timeout=confs.timeout_s) as smtp:
        if confs.smtp_starttls:
            smtp.starttls()
        password = read_secret("SMTP_PASSWORD", confs.smtp_password_file)
        if confs.smtp_username and password:
            smtp.login(confs.smtp_username, password)
        smtp.send_message(message)


def send_webhook(confs: NotifyConfs, url: str, alert: dict[str, Any]) -> None:
    """One alert as a JSON POST, signed with HMAC-SHA256 when a secret is configured; any non-2xx fails."""
    body = json.dumps({"event": "alert", "alert": alert}, separators=(",", ":")).encode()
    headers = {"Content-Type": "application/json", "User-Agent": "all-fleet-dashboard"}
    secret = read_secret("WEBHOOK_SECRET", confs.webhook_secret_file)
    if secret:
        headers["X-AllFleet-Signature"] = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    with urllib.request.urlopen(request, timeout=confs.timeout_s) as response:  # noqa: S310 (admin-configured URL)
        if not 200 <= response.status < 300:
            raise urllib.error.HTTPError(url, response.status, "not a 2xx answer", response.headers, None)


SENDERS = {"email": send_email, "webhook": send_webhook}


def record(session: Session, confs: NotifyConfs, item: Outbound, error: str | None, now: datetime) -> None:
    """Store one try's outcome: sent, retried later (backing off) or given up; final outcomes are audited."""
    row = session.get(Notification, item.id)
    if row is None:
        return
    row.attempts = item.attempts + 1
    details = {"alert_id": item.alert["id"], "channel": item.channel, "target": item.target, "attempts": row.attempts}
    outcome = retries.settle(row, error, now, confs.max_attempts, confs.retry_after_s)
    if outcome == "sent":
        audit.record(session, ACTOR, "alert.notify", f"alert {item.alert['id']}", details)
    elif outcome == "failed":
        audit.record(session, ACTOR, "alert.notify_failed", f"alert {item.alert['id']}", {**details, "error": (error or "")[:500]})
    else:
        logger.warning("notification %d (%s) failed, try %d: %s", row.id, item.channel, row.attempts, error)

def run_once(db: Database, confs: NotifyConfs, public_url: str, now: datetime | None = None) -> int:
    """Queue new alerts, then send what is due; returns how many were sent."""
    now = now or utcnow()
    with db.session() as session:
        enqueue(session, confs, now)
        claimed = claim(session, confs, public_url, now)
    sent = 0
    for item in claimed:
        try:
            SENDERS[item.channel](confs, item.target, item.alert)
            error = None
            sent += 1
        except (OSError, smtplib.SMTPException, ValueError) as exc:
            error = f"{type(exc).__name__}: {exc}"
        with db.session() as session:
            record(session, confs, item, error, now)
    return sent


def configured(confs: NotifyConfs) -> bool:
    """Whether any channel is set up."""
    return bool((confs.smtp_host and confs.email_to) or confs.webhook_url)


