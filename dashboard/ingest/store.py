"""Write a batch of validated messages in one transaction, idempotently on message_id."""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Dialect, or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from contracts.messages import (
    TERMINAL_UPDATE_STATES,
    LifeMessage,
    NodeState,
    SensorsMessage,
    StatusMessage,
    UpdateMessage,
    UpdateState,
    WarningCode,
    WarningMessage,
)
from dashboard.db import Database, insert_ignore
from dashboard.ingest.screen import ClockBounds, screen
from dashboard.ingest.validate import Accepted, Rejection
from dashboard.models import (
    Classification,
    Device,
    RejectedMessage,
    RolloutTarget,
    StatusChange,
    Telemetry,
    UpdateEvent,
    WarningEvent,
    utcnow,
)
from dashboard.services import alerts

logger = logging.getLogger(__name__)
CLASSIFICATIONS = Classification.__table__
EVENT_ALERT_CODES = {WarningCode.SELF_TEST_FAILED: "self_test_failed", WarningCode.MODEL_ERROR: "model_error"}


def newer_presence(message: StatusMessage, state: str | None, session: datetime | None) -> bool:
    """Whether a Status supersedes the stored one, whose connection time is `session`."""
    if session is None:
        return True
    return message.order_key() >= (session, 1 if state == NodeState.OFFLINE.value else 0)


@dataclass
class WriteResult:
    """What a batch changed."""

    stored: int = 0
    duplicates: int = 0
    rejected: int = 0
    fleet_changed: bool = False


@dataclass
class _Rows:
    """Rows per table, and the messages behind them, for one batch."""

    by_table: dict[Any, list[dict[str, Any]]] = field(default_factory=lambda: defaultdict(list))
    messages: dict[str, Accepted] = field(default_factory=dict)


def _row(accepted: Accepted, now: datetime) -> tuple[Any, dict[str, Any]]:
    """The table and row of one message."""
    m, device = accepted.message, accepted.topic.device
    base = {"message_id": str(m.message_id), "device_id": device, "sent_at": m.sent_at, "received_at": now}
    if isinstance(m, SensorsMessage):
        return Classification.__table__, base | {
            "sample_id": m.sample_id, "image_sha256": m.image_sha256, "label": m.label, "confidence": m.confidence,
            "probabilities": dict(m.probabilities), "model_version": m.model_version, "inference_ms": m.inference_ms,
            "uncertain": m.uncertain, "out_of_distribution": m.out_of_distribution, "ood_score": m.ood_score,
            "received_at": now,
        }
    if isinstance(m, LifeMessage):
        return Telemetry.__table__, base | {
            "cpu_percent": m.cpu_percent, "memory_percent": m.memory_percent, "disk_percent": m.disk_percent,
            "temperature_c": m.temperature_c, "uptime_s": m.uptime_s, "inference_count": m.inference_count,
            "inference_ms_mean": m.inference_ms_mean, "outbox_depth": m.outbox_depth, "model_version": m.model_version,
        }
    if isinstance(m, StatusMessage):
        return StatusChange.__table__, base | {
            "state": m.state.value, "model_version": m.model_version, "software_version": m.software_version,
            "reason": m.reason, "received_at": now,
        }
    if isinstance(m, WarningMessage):
        return WarningEvent.__table__, base | {
            "code": m.code.value, "severity": m.severity.value, "message": m.message, "details": dict(m.details),
        }
    if isinstance(m, UpdateMessage):
        return UpdateEvent.__table__, base | {
            "command_id": m.command_id, "state": m.state.value, "version": m.version, "reason": m.reason,
            "progress": m.progress,
        }
    raise TypeError(f"ingest does not store {type(m).__name__}")


class BatchWriter:
    """Stores batches: devices appear on first message, duplicates are skipped, side effects run once."""

    def __init__(self, db: Database, clock: ClockBounds | None = None) -> None:
        """clock: how far devices' clocks may stray (`python -m dashboard.ingest` passes confs'); None checks nothing."""
        self.db = db
        self.clock = clock
        self._sqlite_inserts: dict[Any, _SqliteInsertIgnore] = {}

    def _insert_counting(self, session: Session, table: Any, rows: list[dict[str, Any]]) -> int:
        """Insert rows skipping duplicates; return how many were inserted."""
        connection = session.connection()
        if connection.dialect.name != "sqlite":
            return len(_inserted_ids(session, table, rows))
        if table not in self._sqlite_inserts:
            self._sqlite_inserts[table] = _SqliteInsertIgnore(table, connection.dialect)
        return self._sqlite_inserts[table].execute(connection, rows)

    def write(self, accepted: list[Accepted], rejected: list[Rejection]) -> WriteResult:
        """One transaction for the whole batch; raises (and keeps nothing) if the database fails."""
        now = utcnow()
        with self.db.session(readonly=True) as session:
            accepted, screened = screen(session, accepted, now, self.clock)
        rejected = [*rejected, *screened]
        result = WriteResult(rejected=len(rejected))
        rows = _Rows()
        for item in accepted:
            table, row = _row(item, now)
            if row["message_id"] in rows.messages:
                continue
            rows.by_table[table].append(row)
            rows.messages[row["message_id"]] = item
        with self.db.session() as session:
            devices = self._ensure_devices(session, accepted, now)
            new: list[Accepted] = []
            for table, table_rows in rows.by_table.items():
                if table is CLASSIFICATIONS:
                    # Results have no side effects: counting what was inserted is enough.
                    result.stored += self._insert_counting(session, table, table_rows)
                    continue
                inserted = _inserted_ids(session, table, table_rows)
                new += [rows.messages[mid] for mid in inserted]
                result.stored += len(inserted)
            result.duplicates = len(accepted) - result.stored
            new.sort(key=lambda item: item.message.sent_at)
            for item in new:
                result.fleet_changed |= self._apply(session, devices[item.topic.device], item, now)
            if rejected:
                _count_rejections(session, rejected, now)
        return result

    def _ensure_devices(self, session: Session, accepted: list[Accepted], now: datetime) -> dict[str, Device]:
        """Create devices seen for the first time; return all devices of the batch."""
        seen = {item.topic.device: item.topic for item in accepted}
        if not seen:
            return {}
        insert_ignore(
            session,
            Device.__table__,
            [{"id": d, "location": t.location, "zone": t.zone, "first_seen": now, "registered_at": now} for d, t in seen.items()],
            key="id",
        )
        locked = select(Device).where(Device.id.in_(seen)).order_by(Device.id).with_for_update()
        devices = {d.id: d for d in session.scalars(locked)}
        latest: dict[str, datetime] = {}
        for item in accepted:
            # A device's clock may run ahead by the allowed skew: it never moves last_seen past ingest's now.
            device_id, sent_at = item.topic.device, min(item.message.sent_at, now)
            if device_id not in latest or sent_at > latest[device_id]:
                latest[device_id] = sent_at
        for device_id, sent_at in latest.items():
            device = devices[device_id]
            if device.last_seen is None or sent_at > device.last_seen:
                device.last_seen = sent_at
        return devices

    def _apply(self, session: Session, device: Device, item: Accepted, now: datetime) -> bool:
        """Side effects of one newly stored message; True if rollouts may need to react."""
        m = item.message
        if isinstance(m, StatusMessage):
            if newer_presence(m, device.state, device.status_session or device.status_at):
                # A last will is written when its connection opens: it went offline no earlier than now.
                changed_at = now if m.state is NodeState.OFFLINE and m.session_started else m.sent_at
                device.state, device.status_at = m.state.value, min(max(changed_at, m.sent_at), now)
                device.status_session = min(m.session_started or m.sent_at, now)
                device.software_version = m.software_version
                device.state_reason = m.reason if m.state is NodeState.NO_MODEL else None
                if m.model_version:
                    device.model_version = m.model_version
                if m.state is not NodeState.OFFLINE:
                    _apply_serving(device, m)
            return True
        if isinstance(m, LifeMessage):
            if device.telemetry_at is None or m.sent_at >= device.telemetry_at:
                device.telemetry_at = min(m.sent_at, now)
                for name in ("cpu_percent", "memory_percent", "disk_percent", "temperature_c", "outbox_depth",
                             "uptime_s", "inference_count"):
                    setattr(device, name, getattr(m, name))
                if m.model_version:
                    device.model_version = m.model_version
            _apply_serving(device, m)
            return False
        if isinstance(m, WarningMessage) and m.code in EVENT_ALERT_CODES:
            alerts.raise_event_alert(session, device.id, EVENT_ALERT_CODES[m.code], "critical", m.message)
        if isinstance(m, UpdateMessage):
            _apply_update(session, device, m)
            return True
        return False


class _SqliteInsertIgnore:
    """INSERT ... VALUES (...), (...) ON CONFLICT (message_id) DO NOTHING of plain values, in chunks.

    At thousands of rows per second SQLAlchemy's per-row parameter handling costs more than
    SQLite's own insert, so the columns' bind processors are looked up once and applied here.
    Multi-row statements rather than executemany: sqlite3 releases the GIL around every step,
    and with paho's thread busy each of a thousand re-acquisitions waits for a switch interval.
    """

    CHUNK_ROWS = 500  # 500 rows x 14 columns stays far below SQLite's 32,766 variables

    def __init__(self, table: Any, dialect: Dialect) -> None:
        self.columns = [column.key for column in table.columns if column.key != "id"]
        statement = sqlite.insert(table).on_conflict_do_nothing(index_elements=["message_id"])
        compiled = statement.compile(dialect=dialect, column_keys=self.columns)
        group = "(" + ", ".join("?" * len(self.columns)) + ")"
        sql = str(compiled)
        if compiled.positiontup != self.columns or sql.count(group) != 1:
            raise RuntimeError(f"unexpected INSERT form for {table.name}: {sql}")
        self.head, self.tail = sql.split(group)
        self.group = group
        self.processed = [
            (index, process)
            for index, key in enumerate(self.columns)
            if (process := table.c[key].type.dialect_impl(dialect).bind_processor(dialect)) is not None
        ]

    def _sql(self, rows: int) -> str:
        """The statement for this many rows (sqlite3 caches the prepared forms)."""
        return self.head + ", ".join([self.group] * rows) + self.tail

    def execute(self, connection: Connection, rows: list[dict[str, Any]]) -> int:
        """Insert rows (dicts keyed by column) and return how many were new."""
        columns = self.columns
        params = [[row[key] for key in columns] for row in rows]
        for index, process in self.processed:
            # Batch-wide values (received_at) are the same object in every row: convert them once.
            last_in: Any = object()
            last_out: Any = None
            for values in params:
                value = values[index]
                if value is not last_in:
                    last_in, last_out = value, process(value)
                values[index] = last_out
        inserted = 0
        for start in range(0, len(params), self.CHUNK_ROWS):
            chunk = params[start:start + self.CHUNK_ROWS]
            flat = tuple(value for values in chunk for value in values)
            # rowcount is sqlite3_changes(): rows skipped as duplicates count zero.
            inserted += connection.exec_driver_sql(self._sql(len(chunk)), flat).rowcount
        return inserted


def _inserted_ids(session: Session, table: Any, rows: list[dict[str, Any]]) -> list[str]:
    """Insert rows skipping duplicates; return the message ids really inserted."""
    if not rows:
        return []
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = insert(table).on_conflict_do_nothing(index_elements=["message_id"]).returning(table.c.message_id)
    return list(session.scalars(statement, rows))


def _apply_serving(device: Device, m: StatusMessage | LifeMessage) -> None:
    """Record where and how the node runs its model; the latest report (Status or Life) wins."""
    if m.runtime is None and m.inference_device is None and m.precision is None:
        return  # older nodes say nothing about it: keep what is known
    if device.serving_at is not None and m.sent_at < device.serving_at:
        return
    device.serving_at = m.sent_at
    device.runtime, device.inference_device, device.precision = m.runtime, m.inference_device, m.precision


def _apply_update(session: Session, device: Device, m: UpdateMessage) -> None:
    """Move the rollout target addressed by the command id; raise an alert on failure."""
    target = session.scalar(
        select(RolloutTarget).where(
            RolloutTarget.device_id == device.id,
            or_(RolloutTarget.command_id == m.command_id, RolloutTarget.rollback_command_id == m.command_id),
        )
    )
    failed = m.state in (UpdateState.FAILED, UpdateState.ROLLED_BACK) and (
        target is not None and m.command_id == target.command_id
    )
    if target is None:
        logger.info("update %s for unknown command %s from %s", m.state, m.command_id, device.id)
    elif target.reported_at is None or m.sent_at >= target.reported_at:
        state = _target_state(target, m)
        if state is not None:
            target.state, target.reported_at, target.reason = state, m.sent_at, m.reason
    if m.state == UpdateState.ACTIVE and m.version:
        device.model_version = m.version
    if failed:
        alerts.raise_event_alert(
            session, device.id, "ota_failed", "critical", f"OTA {m.state.value} for {m.command_id}: {m.reason or ''}"
        )


ROLLBACK_STATES = frozenset({"ROLLBACK_SENT", "ROLLED_BACK", "ROLLBACK_FAILED"})


def _target_state(target: RolloutTarget, m: UpdateMessage) -> str | None:
    """The target's new state for this update, or None when the update is stale for it."""
    if m.command_id == target.rollback_command_id:
        if m.state == UpdateState.FAILED:
            return "ROLLBACK_FAILED"
        return "ROLLED_BACK" if m.state in TERMINAL_UPDATE_STATES else "ROLLBACK_SENT"
    if target.state in ROLLBACK_STATES or target.state == "SKIPPED":
        return None
    # A node that fell back to its old model after trying the new one has failed this update.
    state = "FAILED" if m.state in (UpdateState.FAILED, UpdateState.ROLLED_BACK) else m.state.value
    if target.state in ("ACTIVE", "FAILED") and state not in ("ACTIVE", "FAILED"):
        return None
    return state


def _count_rejections(session: Session, rejected: list[Rejection], now: datetime) -> None:
    """Add this batch's rejections to the per-reason counters."""
    by_reason: dict[str, list[Rejection]] = defaultdict(list)
    for item in rejected:
        by_reason[item.reason].append(item)
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    table = RejectedMessage.__table__
    for reason, items in by_reason.items():
        statement = insert(table).values(
            reason=reason, count=len(items), last_at=now, last_topic=items[-1].topic[:1000], last_error=items[-1].error[:1000]
        )
        session.execute(
            statement.on_conflict_do_update(
                index_elements=["reason"],
                set_={
                    "count": table.c.count + statement.excluded.count,
                    "last_at": statement.excluded.last_at,
                    "last_topic": statement.excluded.last_topic,
                    "last_error": statement.excluded.last_error,
                },
            )
        )
    for reason, items in by_reason.items():
        logger.warning("rejected %d message(s) for %s, e.g. on %s: %s", len(items), reason, items[-1].topic, items[-1].error)
