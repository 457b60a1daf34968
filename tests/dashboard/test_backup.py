"""Backup while the ingest stores, restore into a fresh database: same counts and checksums, SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
import json
import threading
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from flask import Flask
from sqlalchemy import MetaData, func, select, text

from contracts.confs import Confs
from dashboard import create_app
from dashboard.backup import BackupError, _canonical, backup, restore, table_digests
from dashboard.db import Database
from dashboard.models import AuditLog, Classification, Telemetry, utcnow
from support.web_seed import add_device, add_telemetry
from tests.dashboard.conftest import PG_ADMIN_DSN

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def fresh_url(database: Database, tmp_path: Path) -> Iterator[Callable[[], str]]:
    """Empty databases of the same kind as `database` (PostgreSQL ones dropped afterwards)."""
    made: list[str] = []

    def make() -> str:
        name = f"restore_{uuid.uuid4().hex[:10]}"
        if database.dialect == "sqlite":
            return f"sqlite:///{tmp_path / (name + '.db')}"
        import psycopg

        with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        made.append(name)
        return f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"

    yield make
    if made:
        import psycopg

        with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
            for name in made:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def count(database: Database, model: type) -> int:
    with database.session(readonly=True) as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


def telemetry_prefix_digest(database: Database, last_id: int) -> tuple[int, str]:
    """Count and checksum of the telemetry rows up to last_id (the rows a snapshot taken then must hold)."""
    metadata = MetaData()
    metadata.reflect(database.engine, only=["telemetry"])
    table = metadata.tables["telemetry"]
    digest, rows = hashlib.sha256(), 0
    with database.engine.connect() as connection:
        for row in connection.execute(select(table).where(table.c.id <= last_id).order_by(table.c.id)):
            digest.update(json.dumps([_canonical(v) for v in row], sort_keys=True, default=str).encode())
            rows += 1
    return rows, digest.hexdigest()


def test_a_backup_taken_while_ingest_stores_restores_to_the_same_rows(
    broker, database: Database, run_ingest, payloads, wait, fresh_url, tmp_path: Path
) -> None:
    run_ingest(broker, database)
    node = broker.client("devA")
    for n in range(50):
        node.publish(broker.topic("devA", "Sensors"), payloads.to_bytes(payloads.sensors("devA", n)), qos=1)
    wait(lambda: count(database, Classification) == 50, what="50 results stored")
    stop, sent = threading.Event(), [0]

    def stream_life() -> None:
        while not stop.is_set():
            node.publish(broker.topic("devA", "Life"), payloads.to_bytes(payloads.life("devA")), qos=1)
            sent[0] += 1
            stop.wait(0.005)

    streamer = threading.Thread(target=stream_life, daemon=True)
    streamer.start()
    try:
        wait(lambda: count(database, Telemetry) >= 200, what="telemetry flowing")
        snapshot = backup(database.url, tmp_path / "during.bak")
        at_backup = count(database, Telemetry)
        wait(lambda: count(database, Telemetry) >= at_backup + 100, what="the ingest storing on after the backup")
    finally:
        stop.set()
        streamer.join(10)
    wait(lambda: count(database, Telemetry) == sent[0], what="every Life message stored")
    during = Database(fresh_url())
    try:
        restore(during.url, snapshot, during.engine)
        with during.session(readonly=True) as session:
            last_id = int(session.scalar(select(func.max(Telemetry.id))) or 0)
            if during.dialect == "sqlite":
                assert session.execute(text("PRAGMA integrity_check")).scalar() == "ok"
        assert 200 <= last_id < sent[0], "the snapshot holds what was stored when it was taken, not what came later"
        assert telemetry_prefix_digest(during, last_id) == telemetry_prefix_digest(database, last_id)
        assert count(during, Classification) == 50
    finally:
        during.dispose()
    quiet = backup(database.url, tmp_path / "quiet.bak")
    after = Database(fresh_url())
    try:
        restore(after.url, quiet, after.engine)
        assert table_digests(after.engine) == table_digests(database.engine)
        assert table_digests(after.engine)["telemetry"][0] == count(database, Telemetry) > 0
    finally:
        after.dispose()


def test_restore_refuses_a_database_in_use_and_the_wrong_kind_of_file(database: Database, tmp_path: Path) -> None:
    made = backup(database.url, tmp_path / "b.bak")
    assert made.stat().st_mode & 0o077 == 0, "a backup holds results: private to its owner"
    with pytest.raises(BackupError, match="not empty"):
        restore(database.url, made, database.engine)
    junk = tmp_path / "junk.bak"
    junk.write_bytes(b"not a backup at all")
    with pytest.raises(BackupError, match="is not a"):
        restore(database.url, junk, database.engine, force=True)


def test_flask_backup_and_restore_commands(app: Flask, confs_maker: Callable[..., Confs], tmp_path: Path) -> None:
    db = app.extensions["db"]
    with db.session() as session:
        add_device(session, "n1")
        add_telemetry(session, "n1", utcnow(), 30, timedelta(seconds=10))
    path = tmp_path / "cli.bak"
    made = app.test_cli_runner().invoke(args=["backup", str(path)])
    assert made.exit_code == 0, made.output
    assert "backed up" in made.output and path.exists()
    fresh = create_app(confs_maker(tmp_path / "fresh"), TESTING=True)
    try:
        restored = fresh.test_cli_runner().invoke(args=["restore", str(path)])
        assert restored.exit_code == 0, restored.output
        source, copy = table_digests(db.engine), table_digests(fresh.extensions["db"].engine)
        assert {k: v for k, v in copy.items() if k != "audit_log"} == {k: v for k, v in source.items() if k != "audit_log"}
        with fresh.extensions["db"].session(readonly=True) as session:
            assert session.scalars(select(AuditLog.action)).all()[-1] == "database.restore"
        again = fresh.test_cli_runner().invoke(args=["restore", str(path)])
        assert again.exit_code != 0 and "not empty" in again.output
    finally:
        fresh.extensions["db"].dispose()
