"""Durable outbox: results are written to SQLite before they are published and leave it only on PUBACK.

A PUBACK only says the broker holds the message in memory: Mosquitto writes its queues to disk every
`autosave_interval` (60 s by default), so a broker that is SIGKILLed loses what it acknowledged since
its last save. Acknowledged messages therefore move to a `delivered` table for `replay_window_s` and
are sent again after a reconnect (the dashboard drops repeats by message_id).
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from edge_node.state_files import private_file

logger = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    qos INTEGER NOT NULL,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS delivered (
    seq INTEGER PRIMARY KEY,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    qos INTEGER NOT NULL,
    created REAL NOT NULL,
    delivered_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS delivered_at ON delivered (delivered_at);
"""
DEFAULT_REPLAY_WINDOW_S = 75.0  # longer than Mosquitto's default autosave_interval of 60 s
WAL_CHECKPOINT_PAGES = 64
WAL_SIZE_LIMIT_BYTES = 512 * 1024


@dataclass(frozen=True)
class OutboxItem:
    """One message waiting for the broker's acknowledgement."""

    seq: int
    topic: str
    payload: bytes
    qos: int


class Outbox:
    """A bounded SQLite queue (WAL, synchronous=FULL) shared safely between threads."""

    def __init__(
        self,
        path: Path,
        limit: int,
        on_overflow: Callable[[int], None] | None = None,
        replay_window_s: float = DEFAULT_REPLAY_WINDOW_S,
    ) -> None:
        if limit < 1:
            raise ValueError(f"outbox limit must be at least 1, not {limit}")
        self.path = Path(path)
        self.limit = limit
        self.replay_window_s = replay_window_s
        self.on_overflow = on_overflow
        # Made 0600 before SQLite opens it: SQLite gives the -wal and -shm files the database file's mode.
        private_file(self.path)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        # Checkpoint small and give the WAL's space back: with SQLite's default of 1000 pages (4 MB) the WAL
        # alone can fill a small disk, after which no checkpoint can run and the outbox never writes again.
        self._db.execute(f"PRAGMA wal_autocheckpoint={WAL_CHECKPOINT_PAGES}")
        self._db.execute(f"PRAGMA journal_size_limit={WAL_SIZE_LIMIT_BYTES}")
        self._db.executescript(_SCHEMA)
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
                self._rollback()
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
                self._rollback()
                raise
            self._depth -= removed
        return removed

    def mark_delivered(self, seqs: Iterable[int], now: float | None = None) -> int:
        """Move acknowledged messages to `delivered` and forget deliveries older than the replay window."""
        now = time.time() if now is None else now
        keys = [(int(seq),) for seq in seqs]
        if not keys:
            return 0
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany(
                    "INSERT OR IGNORE INTO delivered (seq, topic, payload, qos, created, delivered_at) "
                    "SELECT seq, topic, payload, qos, created, ? FROM outbox WHERE seq = ?",
                    [(now, key[0]) for key in keys],
                )
                moved = sum(self._db.execute("DELETE FROM outbox WHERE seq = ?", key).rowcount for key in keys)
                self._db.execute("DELETE FROM delivered WHERE delivered_at < ?", (now - self.replay_window_s,))
                self._db.execute("COMMIT")
            except BaseException:
                self._rollback()
                raise
            self._depth -= moved
        return moved

    def requeue_delivered(self, since: float) -> list[int]:
        """Put messages delivered at or after since back in the outbox (to replay them); returns their seqs."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                seqs = [
                    int(row[0])
                    for row in self._db.execute(
                        "SELECT seq FROM delivered WHERE delivered_at >= ? ORDER BY seq", (since,)
                    )
                ]
                self._db.execute(
                    "INSERT OR IGNORE INTO outbox (seq, topic, payload, qos, created) "
                    "SELECT seq, topic, payload, qos, created FROM delivered WHERE delivered_at >= ?",
                    (since,),
                )
                self._db.execute("DELETE FROM delivered WHERE delivered_at >= ?", (since,))
                self._db.execute("COMMIT")
            except BaseException:
                self._rollback()
                raise
            self._depth += len(seqs)
        if seqs:
            self._wakeup.set()
        return seqs

    def _rollback(self) -> None:
        """Roll back, tolerating SQLite having done so itself (a full disk can end the transaction)."""
        if self._db.in_transaction:
            self._db.execute("ROLLBACK")

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
