"""Fleet reads: the one shown state of each node, open alerts per node, zones and ids, the API's device entries."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from dashboard.models import Alert, Device, utcnow


def is_stale(device: Device, offline_after_s: float, now: datetime | None = None) -> bool:
    """True when the node has been silent longer than offline_after_s (or never spoke)."""
    now = now or utcnow()
    return device.last_seen is None or device.last_seen < now - timedelta(seconds=offline_after_s)


@dataclass(frozen=True)
class NodeRow:
    """One fleet table row."""

    device_id: str
    state: str
    stale: bool
    last_seen: datetime | None
    zone: str
    model_version: str | None
    cpu: float | None
    memory: float | None
    temperature: float | None
    outbox: int | None
    reason: str | None = None
    runtime: str | None = None
    inference_device: str | None = None
    precision: str | None = None
    disk: float | None = None
    uptime_s: float | None = None
    software_version: str | None = None
    open_alerts: int = 0
    alert_severity: str | None = None

    @property
    def shown(self) -> str:
        """The one state every view shows: a silent node is OFFLINE, whatever it last said."""
        if self.state == "NO_MODEL":
            return "NO_MODEL"
        if self.last_seen is None and self.state in ("UNKNOWN", "ONLINE"):
            return "UNKNOWN"
        return "OFFLINE" if self.stale or self.state != "ONLINE" else "ONLINE"

    @property
    def serving(self) -> str | None:
        """Runtime, device and precision as one short text (openvino · CPU · f32), None when unknown."""
        parts = [part for part in (self.runtime, self.inference_device, self.precision) if part]
        return " · ".join(parts) if parts else None

    def as_event(self) -> dict[str, Any]:
        """JSON-ready form for the fleet stream."""
        return {
            "device_id": self.device_id,
            "state": self.state,
            "stale": self.stale,
            "last_seen": self.last_seen.strftime("%Y-%m-%d %H:%M:%S") if self.last_seen else None,
            "zone": self.zone,
            "model_version": self.model_version,
            "cpu": None if self.cpu is None else round(self.cpu),
            "memory": None if self.memory is None else round(self.memory),
            "temperature": None if self.temperature is None else round(self.temperature, 1),
            "outbox": self.outbox,
            "reason": self.reason,
            "runtime": self.runtime,
            "inference_device": self.inference_device,
            "precision": self.precision,
            "serving": self.serving,
            "shown": self.shown,
            "disk": None if self.disk is None else round(self.disk),
            "uptime_s": None if self.uptime_s is None else int(self.uptime_s),
            "software_version": self.software_version,
            "alerts": self.open_alerts,
            "alert_severity": self.alert_severity,
        }


def node_row(device: Device, now: datetime, offline_after_s: float, alerts: tuple[int, str | None] = (0, None)) -> NodeRow:
    """The fleet row of a device (with its open alerts: count, worst severity); stale when silent past offline_after_s."""
    last_seen = device.last_seen
    stale = is_stale(device, offline_after_s, now)
    return NodeRow(
        device_id=device.id,
        state=device.state or "UNKNOWN",
        stale=stale,
        last_seen=last_seen,
        zone=device.zone,
        model_version=device.model_version,
        cpu=device.cpu_percent,
        memory=device.memory_percent,
        temperature=device.temperature_c,
        outbox=device.outbox_depth,
        reason=device.state_reason if device.state == "NO_MODEL" else None,
        runtime=device.runtime,
        inference_device=device.inference_device,
        precision=device.precision,
        disk=device.disk_percent,
        uptime_s=device.uptime_s,
        software_version=device.software_version,
        open_alerts=alerts[0],
        alert_severity=alerts[1],
    )


SEVERITY_RANK = {"info": 0, "warning": 1, "critical": 2}


def open_alerts_by_device(session: Session, device_id: str | None = None) -> dict[str, tuple[int, str | None]]:
    """Open (unresolved, unacknowledged) alerts per device: how many and the worst severity."""
    query = select(Alert.device_id, Alert.severity, func.count(Alert.id)).where(
        Alert.resolved_at.is_(None), Alert.acknowledged_at.is_(None), Alert.device_id.is_not(None)
    )
    if device_id is not None:
        query = query.where(Alert.device_id == device_id)
    found: dict[str, tuple[int, str | None]] = {}
    for device, severity, count in session.execute(query.group_by(Alert.device_id, Alert.severity)):
        total, worst = found.get(device, (0, None))
        if worst is None or SEVERITY_RANK.get(severity, 0) > SEVERITY_RANK.get(worst, 0):
            worst = severity
        found[device] = (total + int(count), worst)
    return found


def fleet_rows(session: Session, now: datetime, offline_after_s: float) -> list[NodeRow]:
    """Every device as a fleet row, by zone then id."""
    devices = session.scalars(select(Device).order_by(Device.zone, Device.id)).all()
    alerts = open_alerts_by_device(session)
    return [node_row(device, now, offline_after_s, alerts.get(device.id, (0, None))) for device in devices]


def open_alert_count(session: Session) -> int:
    """How many alerts are neither resolved nor acknowledged."""
    return int(session.scalar(
        select(func.count(Alert.id)).where(Alert.resolved_at.is_(None), Alert.acknowledged_at.is_(None))
    ) or 0)


def zones(session: Session) -> list[str]:
    """Distinct zones of registered devices."""
    return list(session.scalars(select(Device.zone).distinct().order_by(Device.zone)).all())


def device_ids(session: Session) -> list[str]:
    """Every device id, sorted."""
    return list(session.scalars(select(Device.id).order_by(Device.id)).all())


@dataclass(frozen=True)
class FleetEntry:
    """A device with whether it counts as online now (the API's view)."""

    device: Device
    online: bool
    stale: bool


def fleet_entry(device: Device, offline_after_s: float, now: datetime | None = None) -> FleetEntry:
    """The API's entry of a device: online when it says ONLINE and is not silent."""
    stale = is_stale(device, offline_after_s, now)
    return FleetEntry(device, device.state == "ONLINE" and not stale, stale)


def fleet(session: Session, offline_after_s: float, zone: str | None = None) -> list[FleetEntry]:
    """Every node (optionally of one zone), ordered by zone and id."""
    query = select(Device).order_by(Device.zone, Device.id)
    if zone:
        query = query.where(Device.zone == zone)
    now = utcnow()
    return [fleet_entry(device, offline_after_s, now) for device in session.scalars(query)]


def get_device(session: Session, device_id: str) -> Device | None:
    """A device by id, or None."""
    return session.get(Device, device_id)
