"""Alert, audit and API token reads of the pages and the API."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from dashboard.models import Alert, ApiToken, AuditLog, User


def alerts(session: Session, state: str, limit: int = 200) -> list[Alert]:
    """Alerts, newest first: 'open' (unacknowledged), 'acknowledged' or 'all'."""
    query = select(Alert)
    if state == "open":
        query = query.where(Alert.acknowledged_at.is_(None))
    elif state == "acknowledged":
        query = query.where(Alert.acknowledged_at.is_not(None))
    return list(session.scalars(query.order_by(Alert.created_at.desc(), Alert.id.desc()).limit(limit)).all())


def open_alerts(session: Session, limit: int = 200) -> list[Alert]:
    """Alerts neither resolved nor acknowledged, newest first (the API's open=true)."""
    query = select(Alert).where(Alert.resolved_at.is_(None), Alert.acknowledged_at.is_(None))
    return list(session.scalars(query.order_by(Alert.created_at.desc(), Alert.id.desc()).limit(limit)))


def audit_entries(session: Session, actor: str | None, action: str | None, before_id: int | None, limit: int) -> list[AuditLog]:
    """Audit entries newest first, optionally by actor and action, keyset-paged on id."""
    query = select(AuditLog)
    if actor:
        query = query.where(AuditLog.actor == actor)
    if action:
        query = query.where(AuditLog.action == action)
    if before_id:
        query = query.where(AuditLog.id < before_id)
    return list(session.scalars(query.order_by(AuditLog.id.desc()).limit(limit)).all())


def api_tokens(session: Session) -> list[tuple[ApiToken, User]]:
    """Every API token with its owner, newest first (the admin page)."""
    query = select(ApiToken, User).join(User).order_by(ApiToken.id.desc())
    return [(token, user) for token, user in session.execute(query).all()]
