"""Read queries the pages need beyond the core services: fleet rows, keyset-paged results, node history."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Select, and_, func, select, tuple_
from sqlalchemy.orm import Session

from dashboard.models import (
    Alert,
    AuditLog,
    Classification,
    Device,
    ModelRelease,
    Rollout,
    RolloutTarget,
    Telemetry,
    UpdateEvent,
    WarningEvent,
)

MAX_CHART_POINTS = 240


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
    stale = last_seen is None or (now - last_seen).total_seconds() > offline_after_s
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


def fleet_changed_since(session: Session, since: datetime) -> list[Device]:
    """Devices whose status or telemetry changed after since (the fleet stream's poll)."""
    return list(session.scalars(select(Device).where(Device.last_seen > since).order_by(Device.id)).all())


def open_alert_count(session: Session) -> int:
    """How many alerts are neither resolved nor acknowledged."""
    return int(session.scalar(
        select(func.count(Alert.id)).where(Alert.resolved_at.is_(None), Alert.acknowledged_at.is_(None))
    ) or 0)


@dataclass(frozen=True)
class ResultFilter:
    """Filters of the results page and CSV export."""

    node: str | None = None
    label: str | None = None
    min_confidence: float | None = None
    max_confidence: float | None = None
    uncertain: bool | None = None
    since: datetime | None = None
    until: datetime | None = None
    out_of_distribution: bool | None = None

    def apply(self, query: Select[Any]) -> Select[Any]:
        """Add these filters' WHERE clauses to a query over Classification."""
        conditions = []
        if self.node:
            conditions.append(Classification.device_id == self.node)
        if self.label:
            conditions.append(Classification.label == self.label)
        if self.min_confidence is not None:
            conditions.append(Classification.confidence >= self.min_confidence)
        if self.max_confidence is not None:
            conditions.append(Classification.confidence <= self.max_confidence)
        if self.uncertain is not None:
            conditions.append(Classification.uncertain.is_(self.uncertain))
        if self.out_of_distribution is not None:
            conditions.append(Classification.out_of_distribution.is_(self.out_of_distribution))
        if self.since is not None:
            conditions.append(Classification.sent_at >= self.since)
        if self.until is not None:
            conditions.append(Classification.sent_at <= self.until)
        return query.where(and_(*conditions)) if conditions else query


@dataclass(frozen=True)
class Cursor:
    """Keyset position: the (sent_at, id) of the last row shown."""

    sent_at: datetime
    id: int

    def encode(self) -> str:
        """Opaque text for a query string."""
        return f"{int(self.sent_at.timestamp() * 1_000_000)}_{self.id}"

    @classmethod
    def decode(cls, text: str | None) -> "Cursor | None":
        """Parse encode()'s text; None for anything malformed."""
        if not text or len(text) > 64:
            return None
        micros, _, ident = text.partition("_")
        try:
            return cls(datetime.fromtimestamp(int(micros) / 1_000_000, UTC), int(ident))
        except (ValueError, OverflowError, OSError):
            return None


@dataclass(frozen=True)
class ResultPage:
    """One page of results, newest first, with the cursor of the next (older) page."""

    rows: Sequence[Classification]
    next_cursor: Cursor | None


def results_page(session: Session, filters: ResultFilter, after: Cursor | None, per_page: int) -> ResultPage:
    """A keyset page ordered by (sent_at, id) descending: constant cost however deep the page."""
    query = filters.apply(select(Classification))
    if after is not None:
        query = query.where(tuple_(Classification.sent_at, Classification.id) < tuple_(after.sent_at, after.id))
    query = query.order_by(Classification.sent_at.desc(), Classification.id.desc()).limit(per_page + 1)
    rows = list(session.scalars(query).all())
    more = len(rows) > per_page
    rows = rows[:per_page]
    return ResultPage(rows, Cursor(rows[-1].sent_at, rows[-1].id) if more and rows else None)


def results_newer_than(session: Session, filters: ResultFilter, last_id: int, limit: int = 100) -> list[Classification]:
    """Results stored after last_id that match filters, oldest first (the results stream's poll)."""
    query = filters.apply(select(Classification).where(Classification.id > last_id))
    return list(session.scalars(query.order_by(Classification.id).limit(limit)).all())


def latest_result_id(session: Session) -> int:
    """Id of the newest stored result, 0 when there is none."""
    return int(session.scalar(select(func.max(Classification.id))) or 0)


def iter_results(session: Session, filters: ResultFilter, batch: int = 2000) -> Any:
    """Every matching result, newest first, fetched in keyset batches so memory stays flat."""
    after: Cursor | None = None
    while True:
        page = results_page(session, filters, after, batch)
        yield from page.rows
        if page.next_cursor is None:
            return
        after = page.next_cursor
        session.expunge_all()


def telemetry_points(session: Session, device_id: str, start: datetime, end: datetime) -> list[Telemetry]:
    """A node's telemetry in a range, thinned to about MAX_CHART_POINTS rows by even striding."""
    where = and_(Telemetry.device_id == device_id, Telemetry.sent_at >= start, Telemetry.sent_at <= end)
    total = int(session.scalar(select(func.count(Telemetry.id)).where(where)) or 0)
    query = select(Telemetry).where(where).order_by(Telemetry.sent_at)
    if total <= MAX_CHART_POINTS:
        return list(session.scalars(query).all())
    stride = -(-total // MAX_CHART_POINTS)
    numbered = (
        select(Telemetry.id, func.row_number().over(order_by=Telemetry.sent_at).label("n")).where(where).subquery()
    )
    picked = select(numbered.c.id).where((numbered.c.n - 1) % stride == 0)
    return list(session.scalars(select(Telemetry).where(Telemetry.id.in_(picked)).order_by(Telemetry.sent_at)).all())


def node_results(session: Session, device_id: str, limit: int = 20) -> list[Classification]:
    """A node's most recent results."""
    query = select(Classification).where(Classification.device_id == device_id)
    return list(session.scalars(query.order_by(Classification.sent_at.desc(), Classification.id.desc()).limit(limit)).all())


def node_warnings(session: Session, device_id: str, limit: int = 20) -> list[WarningEvent]:
    """A node's most recent warnings."""
    query = select(WarningEvent).where(WarningEvent.device_id == device_id).order_by(WarningEvent.sent_at.desc())
    return list(session.scalars(query.limit(limit)).all())


def node_rollout_targets(session: Session, device_id: str, limit: int = 20) -> list[tuple[RolloutTarget, Rollout, ModelRelease]]:
    """The rollouts a node took part in, newest first, with their release."""
    query = (
        select(RolloutTarget, Rollout, ModelRelease)
        .join(Rollout, RolloutTarget.rollout_id == Rollout.id)
        .join(ModelRelease, Rollout.release_id == ModelRelease.id)
        .where(RolloutTarget.device_id == device_id)
        .order_by(Rollout.id.desc())
        .limit(limit)
    )
    return [tuple(row) for row in session.execute(query).all()]  # type: ignore[misc]


def node_updates(session: Session, device_id: str, limit: int = 30) -> list[UpdateEvent]:
    """A node's most recent OTA progress reports."""
    query = select(UpdateEvent).where(UpdateEvent.device_id == device_id).order_by(UpdateEvent.sent_at.desc(), UpdateEvent.id.desc())
    return list(session.scalars(query.limit(limit)).all())


def alerts(session: Session, state: str, limit: int = 200) -> list[Alert]:
    """Alerts, newest first: 'open' (unacknowledged), 'acknowledged' or 'all'."""
    query = select(Alert)
    if state == "open":
        query = query.where(Alert.acknowledged_at.is_(None))
    elif state == "acknowledged":
        query = query.where(Alert.acknowledged_at.is_not(None))
    return list(session.scalars(query.order_by(Alert.created_at.desc(), Alert.id.desc()).limit(limit)).all())


def audit_entries(session: Session, actor: str | None, action: str | None, before_id: int | None, limit: int) -> list[AuditLog]:
    """Audit entries newest first, optionally by actor and action, keyset-paged on id."""
    query = select(AuditLog)
    if actor:
        query = query.where(AuditLog.actor == actor)
    if action:
        query = query.where(AuditLog.action == action)
    if before_id:
        query = query.where(AuditLog.id < before_id)
    return list(session.scalars(query.order_by(AuditLog.id.desc()).limit(limit)).all())


def zones(session: Session) -> list[str]:
    """Distinct zones of registered devices."""
    return [z for z in session.scalars(select(Device.zone).distinct().order_by(Device.zone)).all()]


def device_ids(session: Session) -> list[str]:
    """Every device id, sorted."""
    return list(session.scalars(select(Device.id).order_by(Device.id)).all())


def range_bounds(choice: str, since: datetime | None, until: datetime | None, now: datetime) -> tuple[datetime, datetime]:
    """Chart range from a preset (1h, 24h, 7d) or explicit from/to."""
    if since is not None and until is not None and since < until:
        return since, until
    span = {"1h": timedelta(hours=1), "24h": timedelta(hours=24), "7d": timedelta(days=7)}.get(choice, timedelta(hours=24))
    return now - span, now

