"""The audit log: every admin action, who did it and when."""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from dashboard.models import AuditLog

logger = logging.getLogger(__name__)


def record(
    session: Session,
    actor: str,
    action: str,
    target: str | None = None,
    details: dict[str, Any] | None = None,
    remote_addr: str | None = None,
) -> AuditLog:
    """Add an audit entry in the caller's transaction, so it commits with the action itself."""
    entry = AuditLog(actor=actor, action=action, target=target, details=details or {}, remote_addr=remote_addr)
    session.add(entry)
    logger.info("audit: %s %s %s", actor, action, target or "")
    return entry


def list_entries(session: Session, page: int = 1, per_page: int = 50, actor: str | None = None) -> tuple[list[AuditLog], int]:
    """A page of audit entries, newest first, with the total count."""
    query = select(AuditLog)
    if actor:
        query = query.where(AuditLog.actor == actor)
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = session.scalars(query.order_by(AuditLog.at.desc(), AuditLog.id.desc()).limit(per_page).offset((page - 1) * per_page))
    return list(rows), int(total)
