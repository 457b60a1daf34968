"""A node's reads: its telemetry over a time range, recent results, warnings, OTA progress and rollouts."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from dashboard.models import Classification, ModelRelease, Rollout, RolloutTarget, Telemetry, UpdateEvent, WarningEvent


def telemetry_series(
    session: Session, device_id: str, since: datetime, until: datetime, max_points: int = 500
) -> list[Telemetry]:
    """Telemetry rows in [since, until) (the end excluded, as everywhere), oldest first, at most max_points evenly spaced."""
    rows = list(
        session.scalars(
            select(Telemetry)
            .where(Telemetry.device_id == device_id, Telemetry.sent_at >= since, Telemetry.sent_at < until)
            .order_by(Telemetry.sent_at)
        )
    )
    if len(rows) <= max_points:
        return rows
    step = len(rows) / max_points
    return [rows[int(i * step)] for i in range(max_points)]


def node_results(session: Session, device_id: str, limit: int = 20) -> list[Classification]:
    """A node's most recent results."""
    query = select(Classification).where(Classification.device_id == device_id)
    return list(session.scalars(query.order_by(Classification.sent_at.desc(), Classification.id.desc()).limit(limit)).all())


def node_warnings(session: Session, device_id: str, limit: int = 20) -> list[WarningEvent]:
    """A node's most recent warnings."""
    query = select(WarningEvent).where(WarningEvent.device_id == device_id).order_by(WarningEvent.sent_at.desc())
    return list(session.scalars(query.limit(limit)).all())


def node_rollout_targets(session: Session, device_id: str, limit: int = 20) -> list[tuple[RolloutTarget, Rollout, ModelRelease]]:
    """The rollouts a node took part in, newest first, with their release."""
    query = (
        select(RolloutTarget, Rollout, ModelRelease)
        .join(Rollout, RolloutTarget.rollout_id == Rollout.id)
        .join(ModelRelease, Rollout.release_id == ModelRelease.id)
        .where(RolloutTarget.device_id == device_id)
        .order_by(Rollout.id.desc())
        .limit(limit)
    )
    return [tuple(row) for row in session.execute(query).all()]  # type: ignore[misc]


def node_updates(session: Session, device_id: str, limit: int = 30) -> list[UpdateEvent]:
    """A node's most recent OTA progress reports."""
    query = select(UpdateEvent).where(UpdateEvent.device_id == device_id).order_by(UpdateEvent.sent_at.desc(), UpdateEvent.id.desc())
    return list(session.scalars(query.limit(limit)).all())


def latest_telemetry_id(session: Session, device_id: str) -> int:
    """Id of the node's newest telemetry row, 0 when it has none."""
    query = select(Telemetry.id).where(Telemetry.device_id == device_id).order_by(Telemetry.id.desc()).limit(1)
    return int(session.scalar(query) or 0)


def telemetry_after(session: Session, device_id: str, last_id: int, limit: int = 200) -> list[Telemetry]:
    """The node's telemetry rows stored after last_id, oldest first (the node stream's poll)."""
    query = select(Telemetry).where(Telemetry.device_id == device_id, Telemetry.id > last_id).order_by(Telemetry.id)
    return list(session.scalars(query.limit(limit)).all())
