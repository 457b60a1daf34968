"""The device registry: fleet listing, pre-registration, a node's OTA history."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from contracts.topics import TopicError, check_segment
from dashboard.models import Device, RolloutTarget, UpdateEvent, utcnow


class DeviceError(ValueError):
    """A device that cannot be registered as asked."""


@dataclass(frozen=True)
class FleetEntry:
    """A device with whether it counts as online now."""

    device: Device
    online: bool
    stale: bool


def is_stale(device: Device, offline_after_s: float, now: datetime | None = None) -> bool:
    """True when the node has been silent longer than offline_after_s (or never spoke)."""
    now = now or utcnow()
    return device.last_seen is None or device.last_seen < now - timedelta(seconds=offline_after_s)


def fleet(session: Session, offline_after_s: float, zone: str | None = None) -> list[FleetEntry]:
    """Every node (optionally of one zone), ordered by zone and id."""
    query = select(Device).order_by(Device.zone, Device.id)
    if zone:
        query = query.where(Device.zone == zone)
    now = utcnow()
    entries = []
    for device in session.scalars(query):
        stale = is_stale(device, offline_after_s, now)
        entries.append(FleetEntry(device, device.state == "ONLINE" and not stale, stale))
    return entries


def get_device(session: Session, device_id: str) -> Device | None:
    """A device by id, or None."""
    return session.get(Device, device_id)


def register_device(session: Session, device_id: str, location: str, zone: str) -> Device:
    """Pre-register a device before its first message; refuses ids that are not topic segments."""
    try:
        check_segment(device_id, "device id")
        check_segment(location, "location")
        check_segment(zone, "zone")
    except TopicError as exc:
        raise DeviceError(str(exc)) from None
    device = session.get(Device, device_id)
    if device is not None:
        if (device.location, device.zone) != (location, zone):
            raise DeviceError(f"device {device_id!r} already exists in {device.location}/{device.zone}")
        return device
    device = Device(id=device_id, location=location, zone=zone, registered_at=utcnow())
    session.add(device)
    session.flush()
    return device


def zones(session: Session) -> list[str]:
    """Every zone that has a device."""
    return list(session.scalars(select(Device.zone).distinct().order_by(Device.zone)))


def ota_history(session: Session, device_id: str, limit: int = 100) -> list[UpdateEvent]:
    """The node's OTA progress messages, newest first."""
    return list(
        session.scalars(
            select(UpdateEvent).where(UpdateEvent.device_id == device_id).order_by(UpdateEvent.sent_at.desc()).limit(limit)
        )
    )


def rollout_targets(session: Session, device_id: str) -> list[RolloutTarget]:
    """The node's places in rollouts, newest first."""
    return list(
        session.scalars(select(RolloutTarget).where(RolloutTarget.device_id == device_id).order_by(RolloutTarget.id.desc()))
    )
