"""The durable outbox: write-ahead storage in SQLite, ordered draining, a hard bound."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from edge_node.outbox import Outbox


def test_messages_survive_a_reopen_in_order(tmp_path: Path):
    outbox = Outbox(tmp_path / "o.db", limit=100)
    seqs = [outbox.put("t/Sensors", f"m{i}".encode()) for i in range(5)]
    outbox.close()
    reopened = Outbox(tmp_path / "o.db", limit=100)
    items = reopened.pending()
    assert [i.seq for i in items] == seqs
    assert [i.payload for i in items] == [f"m{i}".encode() for i in range(5)]
    assert reopened.depth() == 5


def test_database_is_wal_with_full_sync(tmp_path: Path):
    outbox = Outbox(tmp_path / "o.db", limit=10)
    outbox.put("t", b"x")
    with sqlite3.connect(tmp_path / "o.db") as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert outbox._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


def test_pending_pages_after_a_cursor_and_delete_removes_only_acknowledged(tmp_path: Path):
    outbox = Outbox(tmp_path / "o.db", limit=100)
    seqs = [outbox.put("t", bytes([i])) for i in range(6)]
    assert [i.seq for i in outbox.pending(after_seq=seqs[1], limit=2)] == seqs[2:4]
    assert outbox.delete([seqs[0], seqs[2], 99999]) == 2
    assert [i.seq for i in outbox.pending()] == [seqs[1], *seqs[3:]]
    assert outbox.depth() == 4
    assert [i.seq for i in outbox.fetch([seqs[3], seqs[0]])] == [seqs[3]]


def test_past_its_limit_the_oldest_are_dropped_and_reported(tmp_path: Path):
    reported: list[int] = []
    outbox = Outbox(tmp_path / "o.db", limit=10, on_overflow=reported.append)
    seqs = [outbox.put("t", str(i).encode()) for i in range(13)]
    assert outbox.depth() == 10
    assert [i.seq for i in outbox.pending()] == seqs[3:]
    assert reported == [1, 1, 1] and outbox.dropped_total == 3


def test_a_lowered_limit_trims_on_the_next_put(tmp_path: Path):
    big = Outbox(tmp_path / "o.db", limit=50)
    for i in range(20):
        big.put("t", b"x")
    big.close()
    reported: list[int] = []
    small = Outbox(tmp_path / "o.db", limit=5, on_overflow=reported.append)
    small.put("t", b"new")
    assert small.depth() == 5 and reported == [16]
    assert small.pending()[-1].payload == b"new"


def test_concurrent_writers_lose_nothing(tmp_path: Path):
    outbox = Outbox(tmp_path / "o.db", limit=10_000)

    def write(n: int) -> None:
        for i in range(50):
            outbox.put("t", f"{n}-{i}".encode())

    threads = [threading.Thread(target=write, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    payloads = {i.payload for i in outbox.pending(limit=1000)}
    assert len(payloads) == 200 and outbox.depth() == 200


def test_refuses_a_zero_limit(tmp_path: Path):
    with pytest.raises(ValueError, match="at least 1"):
        Outbox(tmp_path / "o.db", limit=0)
