"""Bulk inserts of one batch: a row per message, insert-ignore on message_id, rejection counters."""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Dialect
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from contracts.messages import LifeMessage, SensorsMessage, StatusMessage, UpdateMessage, WarningMessage
from dashboard.ingest.validate import Accepted, Rejection
from dashboard.models import Classification, RejectedMessage, StatusChange, Telemetry, UpdateEvent, WarningEvent

logger = logging.getLogger(__name__)
CLASSIFICATIONS = Classification.__table__


@dataclass
class Rows:
    """Rows per table, and the messages behind them, for one batch."""

    by_table: dict[Any, list[dict[str, Any]]] = field(default_factory=lambda: defaultdict(list))
    messages: dict[str, Accepted] = field(default_factory=dict)


def row_of(accepted: Accepted, now: datetime) -> tuple[Any, dict[str, Any]]:
    """The table and row of one message."""
    m, device = accepted.message, accepted.topic.device
    base = {"message_id": str(m.message_id), "device_id": device, "sent_at": m.sent_at, "received_at": now}
    if isinstance(m, SensorsMessage):
        return Classification.__table__, base | {
            "sample_id": m.sample_id, "image_sha256": m.image_sha256, "label": m.label, "confidence": m.confidence,
            "probabilities": dict(m.probabilities), "model_version": m.model_version, "inference_ms": m.inference_ms,
            "uncertain": m.uncertain, "out_of_distribution": m.out_of_distribution, "ood_score": m.ood_score,
            "specimen_id": m.specimen_id, "received_at": now,
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


class SqliteInsertIgnore:
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


class PostgresInsertIgnore:
    """INSERT ... ON CONFLICT (message_id) DO NOTHING of one row, sent with executemany in psycopg's pipeline.

    SQLAlchemy's multi-row form is one statement with a placeholder per value (14,000 for a batch of results),
    too long for psycopg's statement cache: it parsed each one again, about half the ingest's CPU per message.
    """

    def __init__(self, table: Any, dialect: Dialect) -> None:
        self.columns = [column.key for column in table.columns if column.key != "id"]
        statement = postgresql.insert(table).on_conflict_do_nothing(index_elements=["message_id"])
        self.sql = str(statement.compile(dialect=dialect, column_keys=self.columns))
        self.processed = [
            (key, process)
            for key in self.columns
            if (process := table.c[key].type.dialect_impl(dialect).bind_processor(dialect)) is not None
        ]

    def execute(self, connection: Connection, rows: list[dict[str, Any]]) -> int:
        """Insert rows (dicts keyed by column) and return how many were new."""
        params = [{key: row[key] for key in self.columns} for row in rows]
        for key, process in self.processed:
            for values in params:
                values[key] = process(values[key])
        # psycopg sums rowcount over executemany: rows skipped as duplicates count zero.
        return int(connection.exec_driver_sql(self.sql, params).rowcount)


def inserted_ids(session: Session, table: Any, rows: list[dict[str, Any]]) -> list[str]:
    """Insert rows skipping duplicates; return the message ids really inserted."""
    if not rows:
        return []
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = insert(table).on_conflict_do_nothing(index_elements=["message_id"]).returning(table.c.message_id)
    return list(session.scalars(statement, rows))


def count_rejections(session: Session, rejected: list[Rejection], now: datetime) -> None:
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
