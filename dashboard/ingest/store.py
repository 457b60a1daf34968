"""Write a batch of validated messages in one transaction, idempotently on message_id.

The parts live beside it: bulk inserts (rows), presence, rollout transitions (rollout_updates) and alert hooks.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, bindparam, or_, select, update
from sqlalchemy.orm import Session

from contracts.messages import LifeMessage, SensorsMessage, StatusMessage, UpdateMessage, WarningMessage
from dashboard.db import Database, insert_ignore
from dashboard.ingest import alert_hooks, presence, rollout_updates
from dashboard.ingest.presence import newer_presence
from dashboard.ingest.rows import (
    CLASSIFICATIONS,
    PostgresInsertIgnore,
    Rows,
    SqliteInsertIgnore,
    count_rejections,
    inserted_ids,
    row_of,
)
from dashboard.ingest.screen import ClockBounds, screen
from dashboard.ingest.validate import Accepted, Rejection
from dashboard.models import Device, Telemetry, utcnow

logger = logging.getLogger(__name__)
DEVICES = Device.__table__
BULK_TABLES = (CLASSIFICATIONS, Telemetry.__table__)
__all__ = ["BatchWriter", "WriteResult", "newer_presence"]


@dataclass
class WriteResult:
    """What a batch changed."""

    stored: int = 0
    duplicates: int = 0
    rejected: int = 0
    fleet_changed: bool = False


class BatchWriter:
    """Stores batches: devices appear on first message, duplicates are skipped, side effects run once."""

    def __init__(self, db: Database, clock: ClockBounds | None = None) -> None:
        """clock: how far devices' clocks may stray (`python -m dashboard.ingest` passes confs'); None checks nothing."""
        self.db = db
        self.clock = clock
        self._bulk_inserts: dict[Any, SqliteInsertIgnore | PostgresInsertIgnore] = {}

    def _insert_counting(self, session: Session, table: Any, rows: list[dict[str, Any]]) -> int:
        """Insert rows skipping duplicates; return how many were inserted."""
        connection = session.connection()
        if table not in self._bulk_inserts:
            kind = {"sqlite": SqliteInsertIgnore, "postgresql": PostgresInsertIgnore}[connection.dialect.name]
            self._bulk_inserts[table] = kind(table, connection.dialect)
        return self._bulk_inserts[table].execute(connection, rows)

    def write(self, accepted: list[Accepted], rejected: list[Rejection]) -> WriteResult:
        """One transaction for the whole batch; raises (and keeps nothing) if the database fails."""
        now = utcnow()
        with self.db.session(readonly=True) as session:
            accepted, screened = screen(session, accepted, now, self.clock)
        rejected = [*rejected, *screened]
        result = WriteResult(rejected=len(rejected))
        rows = Rows()
        for item in accepted:
            table, row = row_of(item, now)
            if row["message_id"] in rows.messages:
                continue
            rows.by_table[table].append(row)
            rows.messages[row["message_id"]] = item
        # Devices with Status, Warnings or Updates in the batch take every message in order through their ORM
        # objects; the others' Life (most of the traffic) updates presence in bulk.
        eventful = {item.topic.device for item in accepted if not isinstance(item.message, (LifeMessage, SensorsMessage))}
        latest_life: dict[str, LifeMessage] = {}
        latest_serving: dict[str, LifeMessage] = {}
        with self.db.session() as session:
            self._ensure_devices(session, accepted, now)
            new: list[Accepted] = []
            for table, table_rows in rows.by_table.items():
                if table in BULK_TABLES:
                    # No side effects beyond presence, which is safe to repeat: counting what was inserted is enough.
                    result.stored += self._insert_counting(session, table, table_rows)
                    continue
                inserted = inserted_ids(session, table, table_rows)
                new += [rows.messages[mid] for mid in inserted]
                result.stored += len(inserted)
            result.duplicates = len(accepted) - result.stored
            for item in rows.messages.values():
                m, device_id = item.message, item.topic.device
                if not isinstance(m, LifeMessage):
                    continue
                if device_id in eventful:
                    new.append(item)
                    continue
                if device_id not in latest_life or m.sent_at >= latest_life[device_id].message.sent_at:
                    latest_life[device_id] = item
                if not (m.runtime is None and m.inference_device is None and m.precision is None) and (
                        device_id not in latest_serving or m.sent_at >= latest_serving[device_id].message.sent_at):
                    latest_serving[device_id] = item
            presence.apply_life_latest(session, {d: item.message for d, item in latest_life.items()}, now)
            presence.apply_serving_latest(session, {d: item.message for d, item in latest_serving.items()})
            if new:
                locked = select(Device).where(Device.id.in_({item.topic.device for item in new}))
                devices = {d.id: d for d in session.scalars(locked)}
                new.sort(key=lambda item: item.message.sent_at)
                for item in new:
                    result.fleet_changed |= self._apply(session, devices[item.topic.device], item, now)
            if rejected:
                count_rejections(session, rejected, now)
        return result

    def _ensure_devices(self, session: Session, accepted: list[Accepted], now: datetime) -> None:
        """Create devices seen for the first time, lock every device of the batch, move last_seen forward."""
        seen = {item.topic.device: item.topic for item in accepted}
        if not seen:
            return
        insert_ignore(
            session,
            DEVICES,
            [{"id": d, "location": t.location, "zone": t.zone, "first_seen": now, "registered_at": now} for d, t in seen.items()],
            key="id",
        )
        # One statement takes every row lock of the batch in id order, so workers sharing devices never deadlock.
        session.execute(select(DEVICES.c.id).where(DEVICES.c.id.in_(seen)).order_by(DEVICES.c.id).with_for_update())
        latest: dict[str, datetime] = {}
        for item in accepted:
            # A device's clock may run ahead by the allowed skew: it never moves last_seen past ingest's now.
            device_id, sent_at = item.topic.device, min(item.message.sent_at, now)
            if device_id not in latest or sent_at > latest[device_id]:
                latest[device_id] = sent_at
        column = DEVICES.c.last_seen
        statement = update(DEVICES).where(and_(DEVICES.c.id == bindparam("b_id"), or_(
            column.is_(None), column < bindparam("b_seen", type_=column.type)))).values(
            last_seen=bindparam("b_seen", type_=column.type))
        session.execute(statement, [{"b_id": d, "b_seen": at} for d, at in sorted(latest.items())])

    def _apply(self, session: Session, device: Device, item: Accepted, now: datetime) -> bool:
        """Side effects of one newly stored message; True if rollouts may need to react."""
        m = item.message
        if isinstance(m, StatusMessage):
            presence.apply_status(device, m, now)
            return True
        if isinstance(m, LifeMessage):
            presence.apply_life(device, m, now)
            return False
        if isinstance(m, WarningMessage):
            alert_hooks.on_warning(session, device, m)
            return False
        if isinstance(m, UpdateMessage):
            rollout_updates.apply_update(session, device, m)
            return True
        return False
