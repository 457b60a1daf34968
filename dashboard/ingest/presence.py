"""Presence and snapshot of a node from its Status and Life: state, versions, telemetry, where it runs its model."""

from __future__ import annotations

from datetime import datetime

from contracts.messages import LifeMessage, NodeState, StatusMessage
from dashboard.models import Device

LIFE_FIELDS = ("cpu_percent", "memory_percent", "disk_percent", "temperature_c", "outbox_depth", "uptime_s",
               "inference_count")


def newer_presence(message: StatusMessage, state: str | None, session: datetime | None) -> bool:
    """Whether a Status supersedes the stored one, whose connection time is `session`."""
    if session is None:
        return True
    return message.order_key() >= (session, 1 if state == NodeState.OFFLINE.value else 0)


def apply_status(device: Device, m: StatusMessage, now: datetime) -> None:
    """Take a Status's state, versions and serving info when it is newer than what is stored."""
    if not newer_presence(m, device.state, device.status_session or device.status_at):
        return
    # A last will is written when its connection opens: it went offline no earlier than now.
    changed_at = now if m.state is NodeState.OFFLINE and m.session_started else m.sent_at
    device.state, device.status_at = m.state.value, min(max(changed_at, m.sent_at), now)
    device.status_session = min(m.session_started or m.sent_at, now)
    device.software_version = m.software_version
    device.state_reason = m.reason if m.state is NodeState.NO_MODEL else None
    if m.model_version:
        device.model_version = m.model_version
    if m.state is not NodeState.OFFLINE:
        apply_serving(device, m)


def apply_life(device: Device, m: LifeMessage, now: datetime) -> None:
    """Take a Life's telemetry snapshot when it is the latest."""
    if device.telemetry_at is None or m.sent_at >= device.telemetry_at:
        device.telemetry_at = min(m.sent_at, now)
        for name in LIFE_FIELDS:
            setattr(device, name, getattr(m, name))
        if m.model_version:
            device.model_version = m.model_version
    apply_serving(device, m)


def apply_serving(device: Device, m: StatusMessage | LifeMessage) -> None:
    """Record where and how the node runs its model; the latest report (Status or Life) wins."""
    if m.runtime is None and m.inference_device is None and m.precision is None:
        return  # older nodes say nothing about it: keep what is known
    if device.serving_at is not None and m.sent_at < device.serving_at:
        return
    device.serving_at = m.sent_at
    device.runtime, device.inference_device, device.precision = m.runtime, m.inference_device, m.precision
