"""Rollout transitions from Updates: the target a command id names moves to the state its node reports."""

from __future__ import annotations

import logging

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from contracts.messages import TERMINAL_UPDATE_STATES, UpdateMessage, UpdateState
from dashboard.ingest import alert_hooks
from dashboard.models import Device, RolloutTarget
from dashboard.services.rollout_states import ROLLBACK, TargetState

logger = logging.getLogger(__name__)
T = TargetState


def apply_update(session: Session, device: Device, m: UpdateMessage) -> None:
    """Move the rollout target addressed by the command id; an alert when its update failed."""
    target = session.scalar(
        select(RolloutTarget).where(
            RolloutTarget.device_id == device.id,
            or_(RolloutTarget.command_id == m.command_id, RolloutTarget.rollback_command_id == m.command_id),
        )
    )
    applied: str | None = None
    if target is None:
        logger.info("update %s for unknown command %s from %s", m.state, m.command_id, device.id)
    elif target.reported_at is None or m.sent_at >= target.reported_at:
        applied = target_state(target, m)
        if applied is not None:
            if applied == T.ACTIVE and target.activated_at is None:
                target.activated_at = m.sent_at
            target.state, target.reported_at, target.reason = applied, m.sent_at, m.reason
    # A repeated command's answer after a rollback says ACTIVE again: it must not undo the rollback's version.
    if m.state == UpdateState.ACTIVE and m.version and (target is None or applied == T.ACTIVE):
        device.model_version = m.version
    if target is not None and m.command_id == target.command_id:
        alert_hooks.on_update_outcome(session, device, m)


def target_state(target: RolloutTarget, m: UpdateMessage) -> str | None:
    """The target's new state for this update, or None when the update is stale for it."""
    if m.command_id == target.rollback_command_id:
        if m.state == UpdateState.FAILED:
            return T.ROLLBACK_FAILED
        return T.ROLLED_BACK if m.state in TERMINAL_UPDATE_STATES else T.ROLLBACK_SENT
    if target.state in ROLLBACK or target.state == T.SKIPPED:
        return None
    # A node that fell back to its old model after trying the new one has failed this update.
    state = T.FAILED if m.state in (UpdateState.FAILED, UpdateState.ROLLED_BACK) else T(m.state.value)
    if target.state in (T.ACTIVE, T.FAILED) and state not in (T.ACTIVE, T.FAILED):
        return None
    return state
