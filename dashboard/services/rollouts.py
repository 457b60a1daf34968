"""Rollouts: creation with targets, a canary group and phases, and halt/resume/rollback intents the engine carries out."""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from dashboard.models import Device, ModelRelease, Rollout, RolloutTarget, utcnow
from dashboard.services import audit
from dashboard.services.rollout_phases import PhaseError, assign, parse_phases, progress
from dashboard.services.rollout_states import ALLOWED, FAILED, FINISHED, RUNNING, RolloutState, TargetState

TARGET_KINDS = ("all", "zone", "devices")
INTENTS = ("halt", "resume", "rollback")
MAX_SOAK_S = 7 * 24 * 3600
__all__ = ["ALLOWED", "FINISHED", "RUNNING", "RolloutError", "create_rollout", "failures", "model_changes", "request"]


class RolloutError(ValueError):
    """A rollout that cannot be created or changed as asked."""


def _resolve_targets(session: Session, kind: str, value: str | list[str] | None) -> list[Device]:
    """The devices a target choice designates."""
    if kind == "all":
        devices = list(session.scalars(select(Device).order_by(Device.id)))
    elif kind == "zone":
        if not isinstance(value, str) or not value:
            raise RolloutError("choose a zone")
        devices = list(session.scalars(select(Device).where(Device.zone == value).order_by(Device.id)))
    elif kind == "devices":
        ids = [value] if isinstance(value, str) else list(value or [])
        devices = list(session.scalars(select(Device).where(Device.id.in_(ids)).order_by(Device.id)))
        if missing := sorted(set(ids) - {d.id for d in devices}):
            raise RolloutError(f"unknown devices: {', '.join(missing)}")
    else:
        raise RolloutError(f"targets must be one of {', '.join(TARGET_KINDS)}")
    if not devices:
        raise RolloutError("no device matches the chosen targets")
    return devices


def _command_id(rollout_id: int, kind: str) -> str:
    """An id unique to one command, reused on every resend so nodes can dedupe."""
    return f"r{rollout_id}-{kind}-{uuid.uuid4().hex[:16]}"


def model_changes(session: Session, release: ModelRelease, devices: Sequence[Device]) -> list[str]:
    """How the release differs from the models these nodes serve now: classes and input specification."""
    versions = {d.model_version for d in devices if d.model_version and d.model_version != release.version}
    if not versions:
        return []
    current = session.scalars(select(ModelRelease).where(ModelRelease.version.in_(versions))).all()
    changes = []
    for other in sorted(current, key=lambda r: r.version):
        if list(other.classes) != list(release.classes):
            changes.append(f"classes differ from {other.version}: {', '.join(map(str, other.classes))} → "
                           f"{', '.join(map(str, release.classes))}")
        if (other.manifest or {}).get("input") != (release.manifest or {}).get("input"):
            changes.append(f"input specification differs from {other.version}")
    return changes


def _check_numbers(canary_size: Any, failure_threshold: Any, soak_s: Any) -> None:
    """Whole numbers in range, or RolloutError."""
    for value, what in ((canary_size, "canary size"), (failure_threshold, "failure threshold")):
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise RolloutError(f"{what} must be a whole number ≥ 0")
    if not isinstance(soak_s, int) or isinstance(soak_s, bool) or not 0 <= soak_s <= MAX_SOAK_S:
        raise RolloutError(f"soak time must be whole seconds between 0 and {MAX_SOAK_S}")


def create_rollout(
    session: Session,
    release_id: int,
    target_kind: str,
    target_value: str | list[str] | None,
    canary_size: int,
    failure_threshold: int,
    actor: str,
    remote_addr: str | None = None,
    *,
    phases: str | Sequence[str] | None = None,
    soak_s: int = 0,
    health_gate: bool = False,
    scheduled_at: datetime | None = None,
    confirm_model_change: bool = False,
) -> Rollout:
    """Create a rollout: canary first (online nodes first), then each phase, then the rest."""
    release = session.get(ModelRelease, release_id)
    if release is None:
        raise RolloutError(f"no release {release_id}")
    _check_numbers(canary_size, failure_threshold, soak_s)
    try:
        phase_list = parse_phases(phases)
    except PhaseError as exc:
        raise RolloutError(str(exc)) from None
    if scheduled_at is not None and scheduled_at.tzinfo is None:
        raise RolloutError("the start time needs a time zone")
    devices = _resolve_targets(session, target_kind, target_value)
    busy = session.scalars(
        select(RolloutTarget.device_id).join(Rollout).where(
            Rollout.state.in_(RUNNING), RolloutTarget.device_id.in_([d.id for d in devices])
        )
    ).all()
    if busy:
        raise RolloutError(f"devices already in an unfinished rollout: {', '.join(sorted(set(busy)))}")
    changes = model_changes(session, release, devices)
    if changes and not confirm_model_change:
        raise RolloutError("this release changes the model the nodes serve (" + "; ".join(changes)
                           + "); confirm the change to roll it out")
    stored_value = json.dumps(sorted(target_value)) if isinstance(target_value, list) else target_value
    scheduled = scheduled_at is not None and scheduled_at > utcnow()
    rollout = Rollout(
        release_id=release.id, target_kind=target_kind, target_value=stored_value,
        canary_size=min(canary_size, len(devices)), failure_threshold=failure_threshold,
        state=RolloutState.SCHEDULED if scheduled else RolloutState.PENDING, created_by=actor,
        phases=phase_list, soak_s=soak_s, health_gate=bool(health_gate), scheduled_at=scheduled_at if scheduled else None,
        model_change_confirmed=bool(changes), phase_log=[],
    )
    session.add(rollout)
    session.flush()
    ordered = sorted(devices, key=lambda d: (d.state != "ONLINE", d.id))
    for device, phase in zip(ordered, assign(len(ordered), phase_list, rollout.canary_size), strict=True):
        session.add(RolloutTarget(
            rollout_id=rollout.id, device_id=device.id, is_canary=phase == 0, phase=phase, state=TargetState.PENDING,
            command_id=_command_id(rollout.id, "u"), rollback_command_id=_command_id(rollout.id, "b"),
        ))
    audit.record(session, actor, "rollout.create", f"rollout {rollout.id}", {
        "release": f"{release.name} {release.version}", "targets": target_kind, "value": stored_value,
        "devices": len(devices), "canary_size": rollout.canary_size, "failure_threshold": failure_threshold,
        "phases": phase_list, "soak_s": soak_s, "health_gate": bool(health_gate),
        "scheduled_at": scheduled_at.isoformat() if scheduled else None, "model_changes": changes,
    }, remote_addr)
    session.flush()
    return rollout


def request(session: Session, rollout_id: int, intent: str, actor: str, remote_addr: str | None = None) -> Rollout:
    """Record an admin's halt/resume/rollback; the engine carries it out on its next tick."""
    if intent not in INTENTS:
        raise RolloutError(f"intent must be one of {', '.join(INTENTS)}")
    rollout = session.get(Rollout, rollout_id)
    if rollout is None:
        raise RolloutError(f"no rollout {rollout_id}")
    if rollout.state not in ALLOWED[intent]:
        raise RolloutError(f"cannot {intent} a rollout that is {rollout.state}")
    rollout.intent, rollout.updated_at = intent, utcnow()
    audit.record(session, actor, f"rollout.{intent}", f"rollout {rollout_id}", {"state": rollout.state}, remote_addr)
    return rollout


def failures(rollout: Rollout) -> int:
    """Failed targets counted against the threshold (those before the last resume excluded)."""
    return sum(t.state in FAILED for t in rollout.targets) - rollout.failure_baseline


def to_dict(rollout: Rollout, with_targets: bool = True) -> dict[str, Any]:
    """A rollout as JSON-ready data, with its progress (counts, percent, phases, durations)."""
    figures = progress(rollout)
    data: dict[str, Any] = {
        "id": rollout.id, "release_id": rollout.release_id, "version": rollout.release.version,
        "target_kind": rollout.target_kind, "target_value": rollout.target_value, "canary_size": rollout.canary_size,
        "failure_threshold": rollout.failure_threshold, "state": rollout.state, "intent": rollout.intent,
        "reason": rollout.reason, "created_by": rollout.created_by, "created_at": rollout.created_at.isoformat(),
        "phases": list(rollout.phases or []), "soak_s": rollout.soak_s, "health_gate": rollout.health_gate,
        "scheduled_at": rollout.scheduled_at.isoformat() if rollout.scheduled_at else None,
        "counts": figures["by_state"], "progress": figures,
    }
    if with_targets:
        data["targets"] = [
            {"device": t.device_id, "canary": t.is_canary, "phase": t.phase, "state": t.state, "command_id": t.command_id,
             "sends": t.sends, "reason": t.reason,
             "reported_at": t.reported_at.isoformat() if t.reported_at else None}
            for t in rollout.targets
        ]
    return data
