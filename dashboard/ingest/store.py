"""Write a batch of validated messages in one transaction, idempotently on message_id.

The parts live beside it: bulk inserts (rows), presence, rollout transitions (rollout_updates) and alert hooks.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from contracts.messages import LifeMessage, StatusMessage, UpdateMessage, WarningMessage
from dashboard.db import Database, insert_ignore
from dashboard.ingest import alert_hooks, presence, rollout_updates
from dashboard.ingest.presence import newer_presence
from dashboard.ingest.rows import CLASSIFICATIONS, Rows, SqliteInsertIgnore, count_rejections, inserted_ids, row_of
from dashboard.ingest.screen import ClockBounds, screen
from dashboard.ingest.validate import Accepted, Rejection
from dashboard.models import Device, utcnow

logger = logging.getLogger(__name__)
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
        self._sqlite_inserts: dict[Any, SqliteInsertIgnore] = {}

    def _insert_counting(self, session: Session, table: Any, rows: list[dict[str, Any]]) -> int:
        """Insert rows skipping duplicates; return how many were inserted."""
        connection = session.connection()
        if connection.dialect.name != "sqlite":
            return len(inserted_ids(session, table, rows))
        if table not in self._sqlite_inserts:
            self._sqlite_inserts[table] = SqliteInsertIgnore(table, connection.dialect)
        return self._sqlite_inserts[table].execute(connection, rows)

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
        with self.db.session() as session:
            devices = self._ensure_devices(session, accepted, now)
            new: list[Accepted] = []
            for table, table_rows in rows.by_table.items():
                if table is CLASSIFICATIONS:
                    # Results have no side effects: counting what was inserted is enough.
                    result.stored += self._insert_counting(session, table, table_rows)
                    continue
                inserted = inserted_ids(session, table, table_rows)
                new += [rows.messages[mid] for mid in inserted]
                result.stored += len(inserted)
            result.duplicates = len(accepted) - result.stored
            new.sort(key=lambda item: item.message.sent_at)
            for item in new:
                result.fleet_changed |= self._apply(session, devices[item.topic.device], item, now)
            if rejected:
                count_rejections(session, rejected, now)
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
