"""Checks beyond the contract, needing ingest's clock or the database: clock skew, classes, command ids."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from contracts.messages import SensorsMessage, StatusMessage, UpdateMessage
from dashboard.ingest.validate import Accepted, Rejection
from dashboard.models import ModelRelease, RolloutTarget

logger = logging.getLogger(__name__)
SCREEN_REASONS = ("clock_skew", "unknown_class", "unknown_command")


@dataclass(frozen=True)
class ClockBounds:
    """How far a device's clock may be from ingest's: ahead (skew) and behind (an outbox backlog's age)."""

    max_skew_s: float = 300.0
    max_age_s: float = 30 * 24 * 3600.0


def check_clock(item: Accepted, now: datetime, bounds: ClockBounds) -> Rejection | None:
    """A clock_skew rejection when the message's times lie outside the bounds around now."""
    m = item.message
    stamps = [("sent_at", m.sent_at)]
    if isinstance(m, StatusMessage) and m.session_started is not None:
        stamps.append(("session_started", m.session_started))
    for name, stamp in stamps:
        if stamp > now + timedelta(seconds=bounds.max_skew_s):
            ahead = (stamp - now).total_seconds()
            return Rejection("clock_skew", str(item.topic), f"{name} {stamp.isoformat()} is {ahead:.0f} s ahead of ingest")
        if stamp < now - timedelta(seconds=bounds.max_age_s):
            behind = (now - stamp).total_seconds()
            return Rejection("clock_skew", str(item.topic), f"{name} {stamp.isoformat()} is {behind:.0f} s in the past")
    return None


def _release_classes(session: Session, versions: Iterable[str]) -> dict[str, list[frozenset[str]]]:
    """Class sets of the registry's releases by version (one version may name releases of several models)."""
    found: dict[str, list[frozenset[str]]] = {}
    rows = session.execute(select(ModelRelease.version, ModelRelease.classes).where(ModelRelease.version.in_(set(versions))))
    for version, classes in rows:
        found.setdefault(version, []).append(frozenset(str(c) for c in classes or ()))
    return found


def _sent_commands(session: Session, pairs: set[tuple[str, str]]) -> set[tuple[str, str]]:
    """The (device, command id) pairs among pairs that a rollout sent (update or rollback)."""
    ids = {command_id for _, command_id in pairs}
    rows = session.execute(
        select(RolloutTarget.device_id, RolloutTarget.command_id, RolloutTarget.rollback_command_id).where(
            or_(RolloutTarget.command_id.in_(ids), RolloutTarget.rollback_command_id.in_(ids))
        )
    )
    sent = set()
    for device_id, command_id, rollback_id in rows:
        sent |= {(device_id, command_id), (device_id, rollback_id)}
    return sent & pairs


def screen(
    session: Session, accepted: list[Accepted], now: datetime, bounds: ClockBounds | None
) -> tuple[list[Accepted], list[Rejection]]:
    """Split accepted messages into those to store and rejections: clock, classes of a known release, command ids."""
    kept: list[Accepted] = []
    rejected: list[Rejection] = []
    for item in accepted:
        if bounds is not None and (skewed := check_clock(item, now, bounds)) is not None:
            rejected.append(skewed)
        else:
            kept.append(item)
    versions = {i.message.model_version for i in kept if isinstance(i.message, SensorsMessage)}
    pairs = {(i.topic.device, i.message.command_id) for i in kept if isinstance(i.message, UpdateMessage)}
    classes = _release_classes(session, versions) if versions else {}
    sent = _sent_commands(session, pairs) if pairs else set()
    stored: list[Accepted] = []
    for item in kept:
        m = item.message
        if isinstance(m, SensorsMessage) and m.model_version in classes:
            if not any(set(m.probabilities) == known and m.label in known for known in classes[m.model_version]):
                rejected.append(Rejection("unknown_class", str(item.topic),
                                          f"label {m.label!r} or classes {sorted(m.probabilities)} are not model "
                                          f"{m.model_version}'s {sorted(min(classes[m.model_version], key=len))}"[:1000]))
                continue
        if isinstance(m, UpdateMessage) and (item.topic.device, m.command_id) not in sent:
            # Never sent by this dashboard: a node's mistake or a forgery, not an OTA failure to alert about.
            rejected.append(Rejection("unknown_command", str(item.topic), f"no command {m.command_id!r} was sent to this node"))
            continue
        stored.append(item)
    return stored, rejected
