"""The rollout engine: each tick carries out intents, sends commands, advances canary → rest, halts on failures."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from contracts.messages import ModelUpdate, Rollback
from dashboard.db import Database
from dashboard.models import Device, Rollout, RolloutTarget, utcnow
from dashboard.publish import CommandSender
from dashboard.services.releases import package_url
from dashboard.services.rollouts import DONE_TARGET_STATES, RUNNING, failures

logger = logging.getLogger(__name__)
PROGRESS = ("SENT", "DOWNLOADING", "DOWNLOADED", "VERIFIED", "INSTALLING", "SELF_TEST")
WAITING = ("PENDING", *PROGRESS)


class RolloutEngine:
    """Drives every unfinished rollout; idempotent, so ticking often is harmless."""

    def __init__(self, db: Database, sender: CommandSender, public_url: str) -> None:
        self.db = db
        self.sender = sender
        self.public_url = public_url

    def tick(self, now: datetime | None = None) -> None:
        """One pass over unfinished rollouts, each in its own transaction."""
        now = now or utcnow()
        with self.db.session(readonly=True) as session:
            wanted = or_(Rollout.state.in_(RUNNING), Rollout.intent.is_not(None))
            ids = list(session.scalars(select(Rollout.id).where(wanted).order_by(Rollout.id)))
        for rollout_id in ids:
            try:
                with self.db.session() as session:
                    rollout = session.get(Rollout, rollout_id)
                    if rollout is not None:
                        self._advance(session, rollout, now)
            except Exception:
                logger.exception("rollout %d: tick failed; will retry", rollout_id)

    def _advance(self, session: Session, rollout: Rollout, now: datetime) -> None:
        """Move one rollout as far as it can go now."""
        before = rollout.state
        devices = {d.id: d for d in session.scalars(select(Device).where(Device.id.in_([t.device_id for t in rollout.targets])))}
        self._apply_intent(rollout, devices, now)
        if rollout.state == "PENDING":
            rollout.state = "CANARY" if rollout.canary_size else "ROLLING"
        if rollout.state in ("CANARY", "ROLLING") and failures(rollout) > rollout.failure_threshold:
            rollout.state = "HALTED"
            rollout.reason = f"{failures(rollout)} failure(s) exceed the threshold of {rollout.failure_threshold}"
        if rollout.state == "CANARY":
            canary = [t for t in rollout.targets if t.is_canary]
            if all(t.state == "ACTIVE" for t in canary):
                rollout.state = "ROLLING"
            else:
                self._dispatch(rollout, canary, devices, now)
        if rollout.state == "ROLLING":
            self._dispatch(rollout, rollout.targets, devices, now)
            if all(t.state in DONE_TARGET_STATES for t in rollout.targets):
                rollout.state = "COMPLETED"
        if rollout.state == "ROLLING_BACK":
            self._roll_back(rollout, devices, now)
        if rollout.state != before:
            rollout.updated_at = now
            logger.info("rollout %d: %s -> %s %s", rollout.id, before, rollout.state, rollout.reason or "")

    def _apply_intent(self, rollout: Rollout, devices: dict[str, Device], now: datetime) -> None:
        """Carry out an admin's halt, resume or rollback."""
        intent, rollout.intent = rollout.intent, None
        if intent == "halt" and rollout.state in ("PENDING", "CANARY", "ROLLING"):
            rollout.state, rollout.reason = "HALTED", "halted by an admin"
        elif intent == "resume" and rollout.state == "HALTED":
            rollout.failure_baseline = failures(rollout) + rollout.failure_baseline
            canary_done = all(t.state == "ACTIVE" for t in rollout.targets if t.is_canary)
            rollout.state, rollout.reason = ("ROLLING" if canary_done else "CANARY"), None
        elif intent == "rollback" and rollout.state != "ROLLED_BACK":
            rollout.state, rollout.reason = "ROLLING_BACK", "rolled back by an admin"

    def _roll_back(self, rollout: Rollout, devices: dict[str, Device], now: datetime) -> None:
        """Send rollback to nodes that installed the release; nodes still installing are waited for."""
        for target in rollout.targets:
            if target.state == "ACTIVE":
                target.state, target.sent_at = "ROLLBACK_SENT", None
            elif target.state in ("PENDING", "FAILED"):
                target.state = "SKIPPED"
        pending = [t for t in rollout.targets if t.state == "ROLLBACK_SENT"]
        self._resend_rollbacks(rollout, pending, devices, now)
        if not pending and not any(t.state in PROGRESS for t in rollout.targets):
            rollout.state = "ROLLED_BACK"

    def _due(self, target: RolloutTarget, device: Device | None) -> bool:
        """Send now if the node is online and either never got the command or reconnected since it was sent."""
        if device is None or device.state != "ONLINE":
            return False
        if target.sent_at is None:
            return True
        last_heard = max(target.sent_at, target.reported_at or target.sent_at)
        return device.status_at is not None and device.status_at > last_heard

    def _dispatch(self, rollout: Rollout, targets: Iterable[RolloutTarget], devices: dict[str, Device], now: datetime) -> None:
        """Send the model_update to targets still waiting whose node is reachable."""
        release = rollout.release
        update = ModelUpdate(version=release.version, url=package_url(self.public_url, release), sha256=release.sha256,
                             size=release.size)
        for target in targets:
            device = devices.get(target.device_id)
            if target.state in WAITING and self._due(target, device):
                assert device is not None
                if self.sender.send(device.location, device.zone, device.id, target.command_id, update):
                    target.sent_at, target.sends = now, target.sends + 1
                    if target.state == "PENDING":
                        target.state = "SENT"

    def _resend_rollbacks(self, rollout: Rollout, targets: list[RolloutTarget], devices: dict[str, Device], now: datetime) -> None:
        """Send the rollback command to targets that have not confirmed it and are reachable."""
        command = Rollback(version=None)
        for target in targets:
            device = devices.get(target.device_id)
            if self._due(target, device):
                assert device is not None
                if self.sender.send(device.location, device.zone, device.id, target.rollback_command_id, command):
                    target.sent_at, target.sends = now, target.sends + 1
