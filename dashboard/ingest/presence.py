"""Presence and snapshot of a node from its Status and Life: state, versions, telemetry, where it runs its model."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import and_, bindparam, func, or_, update
from sqlalchemy.orm import Session

from contracts.messages import LifeMessage, NodeState, StatusMessage
from dashboard.models import Device

DEVICES = Device.__table__

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


def _update_where_newer(session: Session, stamp: str, values: dict[str, Any], rows: list[dict[str, Any]]) -> None:
    """One executemany UPDATE of devices whose `stamp` column is unset or not newer than the row's b_sent."""
    if not rows:
        return
    column = DEVICES.c[stamp]
    statement = update(DEVICES).where(and_(DEVICES.c.id == bindparam("b_id"),
                                           or_(column.is_(None), column <= bindparam("b_sent", type_=column.type))))
    session.execute(statement.values(values), sorted(rows, key=lambda row: row["b_id"]))


def apply_life_latest(session: Session, latest: dict[str, LifeMessage], now: datetime) -> None:
    """apply_life for each device's latest Life of a batch, as two executemany UPDATEs (no ORM objects).

    Equivalent to applying every Life of the batch in order: telemetry takes the newest, serving the newest
    that says anything about it; applying a redelivered Life again changes nothing.
    """
    telemetry = [
        {"b_id": device_id, "b_sent": m.sent_at, "b_at": min(m.sent_at, now), "b_model": m.model_version,
         **{f"b_{name}": getattr(m, name) for name in LIFE_FIELDS}}
        for device_id, m in latest.items()
    ]
    values: dict[str, Any] = {name: bindparam(f"b_{name}") for name in LIFE_FIELDS}
    values |= {"telemetry_at": bindparam("b_at", type_=DEVICES.c.telemetry_at.type),
               "model_version": func.coalesce(bindparam("b_model", type_=DEVICES.c.model_version.type), DEVICES.c.model_version)}
    _update_where_newer(session, "telemetry_at", values, telemetry)


def apply_serving_latest(session: Session, latest: dict[str, LifeMessage]) -> None:
    """apply_serving for each device's latest Life of a batch that reports its serving, as one executemany UPDATE."""
    rows = [{"b_id": device_id, "b_sent": m.sent_at, "b_serving_at": m.sent_at, "b_runtime": m.runtime,
             "b_inference_device": m.inference_device, "b_precision": m.precision} for device_id, m in latest.items()]
    values = {"serving_at": bindparam("b_serving_at", type_=DEVICES.c.serving_at.type), "runtime": bindparam("b_runtime"),
              "inference_device": bindparam("b_inference_device"), "precision": bindparam("b_precision")}
    _update_where_newer(session, "serving_at", values, rows)
