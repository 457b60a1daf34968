"""The device registry: pre-registration of nodes; the fleet's reads are in dashboard.reads.fleet."""

from __future__ import annotations

from sqlalchemy.orm import Session

from contracts.topics import TopicError, check_segment
from dashboard.models import Device, utcnow


class DeviceError(ValueError):
    """A device that cannot be registered as asked."""


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
