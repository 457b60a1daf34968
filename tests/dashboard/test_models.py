"""Schema: migrations match the models, SQLite pragmas, uniqueness and UTC round trips."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from dashboard.db import Database, insert_ignore
from dashboard.models import Base, Classification, Device


def classification_row(message_id: str, device: str = "devA") -> dict[str, object]:
    """A minimal classification row."""
    return dict(
        message_id=message_id, device_id=device, sample_id="s1", image_sha256="0" * 64, label="Benign",
        confidence=0.9, probabilities={"Benign": 0.9, "Early": 0.1}, model_version="1.0.0", inference_ms=3.0,
        uncertain=False, sent_at=datetime.now(UTC), received_at=datetime.now(UTC),
    )


def test_migrations_create_exactly_the_models(database: Database) -> None:
    with database.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == []


def test_sqlite_runs_in_wal_with_foreign_keys(tmp_path) -> None:
    database = Database(f"sqlite:///{tmp_path / 'x' / 'wal.db'}")
    with database.engine.connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1
        assert conn.execute(text("PRAGMA busy_timeout")).scalar() >= 1000


def test_datetimes_come_back_aware_utc(database: Database) -> None:
    seen = datetime(2025, 3, 1, 12, 0, tzinfo=timezone(timedelta(hours=2)))
    with database.session() as session:
        session.add(Device(id="devA", location="Hospital", zone="Lab1", last_seen=seen))
    with database.session() as session:
        device = session.get(Device, "devA")
        assert device.last_seen == seen and device.last_seen.tzinfo is not None
        assert device.last_seen.utcoffset() == timedelta(0)


def test_naive_datetimes_are_refused(database: Database) -> None:
    with pytest.raises(Exception, match="naive"):
        with database.session() as session:
            session.add(Device(id="devA", location="Hospital", zone="Lab1", last_seen=datetime(2025, 1, 1)))


def test_message_id_is_unique_and_insert_ignore_skips_duplicates(database: Database) -> None:
    with database.session() as session:
        session.add(Device(id="devA", location="Hospital", zone="Lab1"))
    with database.session() as session:
        inserted = insert_ignore(session, Classification.__table__, [classification_row("m1"), classification_row("m2")])
        assert inserted == 2
    with database.session() as session:
        again = insert_ignore(session, Classification.__table__, [classification_row("m1"), classification_row("m3")])
        assert again == 1
    with pytest.raises(IntegrityError):
        with database.session() as session:
            session.add(Classification(**classification_row("m1")))
    with database.session() as session:
        assert session.query(Classification).count() == 3


def test_foreign_keys_are_enforced(database: Database) -> None:
    with pytest.raises(IntegrityError):
        with database.session() as session:
            session.add(Classification(**classification_row("m9", device="nobody")))
