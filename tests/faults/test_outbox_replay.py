"""Regression: results the broker acknowledged just before it died are kept and replayed, not forgotten."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from edge_node.outbox import Outbox


def test_acknowledged_results_are_kept_for_the_replay_window_and_requeued(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "outbox.db", limit=100, replay_window_s=60.0)
    seqs = [outbox.put("t", f"m{i}".encode()) for i in range(4)]
    assert outbox.mark_delivered(seqs[:2], now=1000.0) == 2
    assert outbox.mark_delivered(seqs[2:3], now=1050.0) == 1
    assert outbox.depth() == 1 and [i.seq for i in outbox.pending()] == seqs[3:]
    outbox.close()
    reopened = Outbox(tmp_path / "outbox.db", limit=100, replay_window_s=60.0)  # survives a restart
    assert reopened.requeue_delivered(since=1040.0) == [seqs[2]]
    assert [i.seq for i in reopened.pending()] == [seqs[2], seqs[3]] and reopened.depth() == 2
    assert reopened.requeue_delivered(since=0.0) == seqs[:2]
    assert [i.payload for i in reopened.pending()] == [b"m0", b"m1", b"m2", b"m3"]


def test_deliveries_older_than_the_window_are_forgotten(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "outbox.db", limit=100, replay_window_s=60.0)
    old, new = outbox.put("t", b"old"), outbox.put("t", b"new")
    outbox.mark_delivered([old], now=1000.0)
    outbox.mark_delivered([new], now=1100.0)
    with sqlite3.connect(tmp_path / "outbox.db") as db:
        assert db.execute("SELECT seq FROM delivered").fetchall() == [(new,)]
        assert db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0] == 0
    assert outbox.requeue_delivered(since=0.0) == [new]


def test_an_outbox_written_before_the_delivered_table_existed_opens(tmp_path: Path) -> None:
    with sqlite3.connect(tmp_path / "outbox.db") as db:
        db.execute("CREATE TABLE outbox (seq INTEGER PRIMARY KEY AUTOINCREMENT, topic TEXT NOT NULL, "
                   "payload BLOB NOT NULL, qos INTEGER NOT NULL, created REAL NOT NULL)")
        db.execute("INSERT INTO outbox (topic, payload, qos, created) VALUES ('t', x'00', 1, 0)")
    outbox = Outbox(tmp_path / "outbox.db", limit=10)
    assert outbox.depth() == 1 and outbox.mark_delivered([1]) == 1 and outbox.depth() == 0


class _Link:
    """Just enough of MqttLink for OutboxSender's connection bookkeeping."""

    session_present = True

    def add_ack_listener(self, listener: object) -> None:
        pass

    def add_connection_listener(self, listener: object) -> None:
        pass


def test_a_reconnect_with_the_nodes_session_present_still_replays_once_subscribers_are_back(tmp_path: Path) -> None:
    """Mosquitto 2.0 restores sessions from its autosave but does not queue for offline shared subscribers."""
    from edge_node.delivery import OutboxSender

    sender = OutboxSender(Outbox(tmp_path / "outbox.db", limit=10), _Link(), resettle_s=10.0)  # type: ignore[arg-type]
    sender._on_connection(True)  # the first connect: nothing was lost
    assert sender._second_replay is None
    sender._on_connection(False)
    sender._on_connection(True)
    assert sender._second_replay is not None
