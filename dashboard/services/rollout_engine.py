"""The rollout engine: each tick carries out intents, starts scheduled rollouts, sends commands phase by phase,
soaks and checks the health gate between phases, and halts on failures."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime, timedelta

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from contracts.messages import ModelUpdate, Rollback
from dashboard.db import Database
from dashboard.models import Device, Rollout, RolloutTarget, utcnow
from dashboard.publish import CommandSender
from dashboard.services import rollout_gate
from dashboard.services.releases import package_url
from dashboard.services.rollout_phases import last_phase, log_phase, phase_name, phase_targets
from dashboard.services.rollout_states import DONE, IN_FLIGHT, RUNNING, WAITING, RolloutState, TargetState
from dashboard.services.rollouts import failures

logger = logging.getLogger(__name__)
R, T = RolloutState, TargetState
CONNECTED = ("ONLINE", "NO_MODEL")  # NO_MODEL: connected, waiting for a model
GATE_RECHECK = timedelta(seconds=5)


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
        self._apply_intent(rollout, now)
        if rollout.state == R.SCHEDULED and (rollout.scheduled_at is None or rollout.scheduled_at <= now):
            rollout.state = R.PENDING
        if rollout.state == R.PENDING:
            self._start(rollout, now)
        if rollout.state in (R.CANARY, R.ROLLING, R.SOAKING) and failures(rollout) > rollout.failure_threshold:
            rollout.state = R.HALTED
            rollout.reason = f"{failures(rollout)} failure(s) exceed the threshold of {rollout.failure_threshold}"
        if rollout.state == R.SOAKING and (rollout.soak_until is None or rollout.soak_until <= now):
            self._gate(session, rollout, now)
        if rollout.state in (R.CANARY, R.ROLLING):
            self._dispatch(rollout, [t for t in rollout.targets if t.phase <= rollout.phase], devices, now)
            if self._phase_done(rollout):
                self._end_phase(rollout, now)
        if rollout.state == R.ROLLING_BACK:
            self._roll_back(rollout, devices, now)
        if rollout.state != before:
            rollout.updated_at = now
            logger.info("rollout %d: %s -> %s %s", rollout.id, before, rollout.state, rollout.reason or "")

    # phases ----------------------------------------------------------------------------------

    def _start(self, rollout: Rollout, now: datetime) -> None:
        """Begin with the first phase that has nodes (the canary, unless there is none)."""
        rollout.started_at = rollout.started_at or now
        rollout.phase = min((t.phase for t in rollout.targets), default=0)
        log_phase(rollout, rollout.phase, started_at=now)
        rollout.state = R.CANARY if rollout.phase == 0 else R.ROLLING

    def _phase_done(self, rollout: Rollout) -> bool:
        """Every node up to this phase has finished; the canary must be ACTIVE, later phases only finished."""
        members = [t for t in rollout.targets if t.phase <= rollout.phase]
        if rollout.phase == 0:
            return all(t.state == T.ACTIVE for t in members)
        return all(t.state in DONE for t in members)

    def _end_phase(self, rollout: Rollout, now: datetime) -> None:
        """A phase finished: complete, soak before the next, or go straight on."""
        log_phase(rollout, rollout.phase, done_at=now)
        if rollout.phase >= last_phase(rollout):
            rollout.state, rollout.completed_at, rollout.reason = R.COMPLETED, now, None
        elif rollout.soak_s or rollout.health_gate:
            rollout.state, rollout.soak_until = R.SOAKING, now + timedelta(seconds=rollout.soak_s)
            rollout.reason = f"soaking {rollout.soak_s} s after the {phase_name(rollout.phase)}"
        else:
            self._next_phase(rollout, now)

    def _next_phase(self, rollout: Rollout, now: datetime) -> None:
        """Open the next phase with nodes."""
        later = sorted({t.phase for t in rollout.targets if t.phase > rollout.phase})
        if not later:
            rollout.state, rollout.completed_at = R.COMPLETED, now
            return
        rollout.phase, rollout.soak_until, rollout.reason = later[0], None, None
        log_phase(rollout, rollout.phase, started_at=now)
        rollout.state = R.ROLLING

    def _gate(self, session: Session, rollout: Rollout, now: datetime) -> None:
        """After the soak: the health gate decides whether the next phase starts."""
        if not rollout.health_gate:
            self._next_phase(rollout, now)
            return
        entry = next((e for e in rollout.phase_log or [] if e.get("phase") == rollout.phase), {})
        since = datetime.fromisoformat(entry["started_at"]) if entry.get("started_at") else rollout.started_at or now
        verdict = rollout_gate.evaluate(session, rollout, phase_targets(rollout, rollout.phase), since)
        log_phase(rollout, rollout.phase, gate=verdict.as_dict())
        if verdict.status == "pass":
            self._next_phase(rollout, now)
        elif verdict.status == "fail":
            rollout.state = R.HALTED
            rollout.reason = f"health gate failed after the {phase_name(rollout.phase)}: {'; '.join(verdict.reasons)}"
        else:
            rollout.reason = f"health gate after the {phase_name(rollout.phase)}: {'; '.join(verdict.reasons)}"
            rollout.soak_until = now + GATE_RECHECK  # the gate's queries are not free: look again shortly

    # intents and rollback ----------------------------------------------------------------------

    def _apply_intent(self, rollout: Rollout, now: datetime) -> None:
        """Carry out an admin's halt, resume or rollback."""
        intent, rollout.intent = rollout.intent, None
        if intent == "halt" and rollout.state in (R.SCHEDULED, R.PENDING, R.CANARY, R.SOAKING, R.ROLLING):
            rollout.state, rollout.reason = R.HALTED, "halted by an admin"
        elif intent == "resume" and rollout.state == R.HALTED:
            rollout.failure_baseline = failures(rollout) + rollout.failure_baseline
            rollout.reason = None
            self._resume(rollout, now)
        elif intent == "rollback" and rollout.state != R.ROLLED_BACK:
            rollout.state, rollout.reason = R.ROLLING_BACK, "rolled back by an admin"

    def _resume(self, rollout: Rollout, now: datetime) -> None:
        """Pick up where the rollout stopped; resuming after a failed gate is the admin overriding it."""
        if rollout.started_at is None:
            rollout.state = R.SCHEDULED
            return
        if not self._phase_done(rollout):
            rollout.state = R.CANARY if rollout.phase == 0 else R.ROLLING
            return
        entry = next((e for e in rollout.phase_log or [] if e.get("phase") == rollout.phase), {})
        if (entry.get("gate") or {}).get("status") == "fail" or rollout.phase >= last_phase(rollout):
            self._next_phase(rollout, now)
        else:
            rollout.state = R.SOAKING

    def _roll_back(self, rollout: Rollout, devices: dict[str, Device], now: datetime) -> None:
        """Send rollback to nodes that installed the release; nodes still installing are waited for."""
        for target in rollout.targets:
            if target.state == T.ACTIVE:
                target.state, target.sent_at = T.ROLLBACK_SENT, None
            elif target.state in (T.PENDING, T.FAILED):
                target.state = T.SKIPPED
        pending = [t for t in rollout.targets if t.state == T.ROLLBACK_SENT]
        self._resend_rollbacks(pending, devices, now)
        if not pending and not any(t.state in IN_FLIGHT for t in rollout.targets):
            rollout.state, rollout.completed_at = R.ROLLED_BACK, now

    # sending -----------------------------------------------------------------------------------

    def _due(self, target: RolloutTarget, device: Device | None) -> bool:
        """Send now if the node is connected and either never got the command or reconnected since it was sent."""
        if device is None or device.state not in CONNECTED:
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
                    if target.state == T.PENDING:
                        target.state = T.SENT

    def _resend_rollbacks(self, targets: list[RolloutTarget], devices: dict[str, Device], now: datetime) -> None:
        """Send the rollback command to targets that have not confirmed it and are reachable."""
        command = Rollback(version=None)
        for target in targets:
            device = devices.get(target.device_id)
            if self._due(target, device):
                assert device is not None
                if self.sender.send(device.location, device.zone, device.id, target.rollback_command_id, command):
                    target.sent_at, target.sends = now, target.sends + 1
