"""Durable outbox: results are written to SQLite before they are published and deleted only on PUBACK."""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    qos INTEGER NOT NULL,
    created REAL NOT NULL
)
"""


@dataclass(frozen=True)
class OutboxItem:
    """One message waiting for the broker's acknowledgement."""

    seq: int
    topic: str
    payload: bytes
    qos: int


class Outbox:
    """A bounded SQLite queue (WAL, synchronous=FULL) shared safely between threads."""

    def __init__(self, path: Path, limit: int, on_overflow: Callable[[int], None] | None = None) -> None:
        if limit < 1:
            raise ValueError(f"outbox limit must be at least 1, not {limit}")
        self.path = Path(path)
        self.limit = limit
        self.on_overflow = on_overflow
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute(_SCHEMA)
        self._depth = int(self._db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])
        self.dropped_total = 0
        self._wakeup = threading.Event()

    def put(self, topic: str, payload: bytes, qos: int = 1) -> int:
        """Store a message durably (fsync) and return its sequence number; past the limit drop the oldest."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                cursor = self._db.execute(
                    "INSERT INTO outbox (topic, payload, qos, created) VALUES (?, ?, ?, ?)",
                    (topic, payload, qos, time.time()),
                )
                dropped = 0
                if self._depth + 1 > self.limit:
                    excess = self._depth + 1 - self.limit
                    dropped = self._db.execute(
                        "DELETE FROM outbox WHERE seq IN (SELECT seq FROM outbox ORDER BY seq LIMIT ?)", (excess,)
                    ).rowcount
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._depth += 1 - dropped
            self.dropped_total += dropped
            seq = int(cursor.lastrowid or 0)
        self._wakeup.set()
        if dropped:
            logger.warning("outbox full (%d): dropped the %d oldest results", self.limit, dropped)
            if self.on_overflow is not None:
                self.on_overflow(dropped)
        return seq

    def pending(self, after_seq: int = 0, limit: int = 100) -> list[OutboxItem]:
        """Up to limit stored messages with seq above after_seq, oldest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT seq, topic, payload, qos FROM outbox WHERE seq > ? ORDER BY seq LIMIT ?", (after_seq, limit)
            ).fetchall()
        return [OutboxItem(int(seq), topic, bytes(payload), int(qos)) for seq, topic, payload, qos in rows]

    def fetch(self, seqs: Iterable[int]) -> list[OutboxItem]:
        """The stored messages among seqs, oldest first (dropped or deleted ones are skipped)."""
        wanted = sorted({int(seq) for seq in seqs})
        with self._lock:
            rows = [
                self._db.execute("SELECT seq, topic, payload, qos FROM outbox WHERE seq = ?", (seq,)).fetchone()
                for seq in wanted
            ]
        return [OutboxItem(int(r[0]), r[1], bytes(r[2]), int(r[3])) for r in rows if r is not None]

    def delete(self, seqs: Iterable[int]) -> int:
        """Remove acknowledged messages in one transaction; returns how many were still there."""
        keys = [(int(seq),) for seq in seqs]
        if not keys:
            return 0
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                removed = sum(self._db.execute("DELETE FROM outbox WHERE seq = ?", key).rowcount for key in keys)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._depth -= removed
        return removed

    def depth(self) -> int:
        """How many messages wait for an acknowledgement."""
        with self._lock:
            return self._depth

    def wait_for_work(self, timeout: float) -> bool:
        """Block until something is put (or timeout); returns whether it was woken."""
        woken = self._wakeup.wait(timeout)
        self._wakeup.clear()
        return woken

    def wake(self) -> None:
        """Wake a thread in wait_for_work."""
        self._wakeup.set()

    def close(self) -> None:
        """Close the database."""
        with self._lock:
            self._db.close()
