"""Rollouts: creation with targets and a canary group, and halt/resume/rollback intents the engine carries out."""

from __future__ import annotations

import json
import uuid
from collections import Counter
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from dashboard.models import Device, ModelRelease, Rollout, RolloutTarget, utcnow
from dashboard.services import audit

TARGET_KINDS = ("all", "zone", "devices")
RUNNING = ("PENDING", "CANARY", "ROLLING", "HALTED", "ROLLING_BACK")
FINISHED = ("COMPLETED", "ROLLED_BACK")
INTENTS = ("halt", "resume", "rollback")
FAILED_TARGET_STATES = ("FAILED",)
DONE_TARGET_STATES = ("ACTIVE", "FAILED", "SKIPPED")


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


def create_rollout(
    session: Session,
    release_id: int,
    target_kind: str,
    target_value: str | list[str] | None,
    canary_size: int,
    failure_threshold: int,
    actor: str,
    remote_addr: str | None = None,
) -> Rollout:
    """Create a rollout; the canary group is the first canary_size targets, online nodes first."""
    release = session.get(ModelRelease, release_id)
    if release is None:
        raise RolloutError(f"no release {release_id}")
    if not isinstance(canary_size, int) or canary_size < 0:
        raise RolloutError("canary size must be a whole number ≥ 0")
    if not isinstance(failure_threshold, int) or failure_threshold < 0:
        raise RolloutError("failure threshold must be a whole number ≥ 0")
    devices = _resolve_targets(session, target_kind, target_value)
    busy = session.scalars(
        select(RolloutTarget.device_id).join(Rollout).where(
            Rollout.state.in_(RUNNING), RolloutTarget.device_id.in_([d.id for d in devices])
        )
    ).all()
    if busy:
        raise RolloutError(f"devices already in an unfinished rollout: {', '.join(sorted(set(busy)))}")
    stored_value = json.dumps(sorted(target_value)) if isinstance(target_value, list) else target_value
    rollout = Rollout(
        release_id=release.id, target_kind=target_kind, target_value=stored_value,
        canary_size=min(canary_size, len(devices)), failure_threshold=failure_threshold, state="PENDING",
        created_by=actor,
    )
    session.add(rollout)
    session.flush()
    ordered = sorted(devices, key=lambda d: (d.state != "ONLINE", d.id))
    for index, device in enumerate(ordered):
        session.add(RolloutTarget(
            rollout_id=rollout.id, device_id=device.id, is_canary=index < rollout.canary_size, state="PENDING",
            command_id=_command_id(rollout.id, "u"), rollback_command_id=_command_id(rollout.id, "b"),
        ))
    audit.record(session, actor, "rollout.create", f"rollout {rollout.id}", {
        "release": f"{release.name} {release.version}", "targets": target_kind, "value": stored_value,
        "devices": len(devices), "canary_size": rollout.canary_size, "failure_threshold": failure_threshold,
    }, remote_addr)
    session.flush()
    return rollout


ALLOWED = {"halt": ("PENDING", "CANARY", "ROLLING"), "resume": ("HALTED",), "rollback": ("PENDING", "CANARY", "ROLLING", "HALTED", "COMPLETED")}


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
    return sum(t.state in FAILED_TARGET_STATES for t in rollout.targets) - rollout.failure_baseline


def list_rollouts(session: Session, limit: int = 100) -> list[Rollout]:
    """Rollouts, newest first."""
    return list(session.scalars(select(Rollout).order_by(Rollout.id.desc()).limit(limit)))


def to_dict(rollout: Rollout, with_targets: bool = True) -> dict[str, Any]:
    """A rollout as JSON-ready data."""
    data: dict[str, Any] = {
        "id": rollout.id, "release_id": rollout.release_id, "version": rollout.release.version,
        "target_kind": rollout.target_kind, "target_value": rollout.target_value, "canary_size": rollout.canary_size,
        "failure_threshold": rollout.failure_threshold, "state": rollout.state, "intent": rollout.intent,
        "reason": rollout.reason, "created_by": rollout.created_by, "created_at": rollout.created_at.isoformat(),
        "counts": dict(Counter(t.state for t in rollout.targets)),
    }
    if with_targets:
        data["targets"] = [
            {"device": t.device_id, "canary": t.is_canary, "state": t.state, "command_id": t.command_id,
             "sends": t.sends, "reason": t.reason,
             "reported_at": t.reported_at.isoformat() if t.reported_at else None}
            for t in rollout.targets
        ]
    return data
