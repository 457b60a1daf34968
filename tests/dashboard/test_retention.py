"""Retention: raw telemetry for a period, per-minute and per-hour roll-ups longer, results and audit for good."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from sqlalchemy import func, select
from support.waiting import wait_until
from support.web_seed import add_device, add_telemetry

from contracts.retention_confs import RetentionConfs
from dashboard.db import Database
from dashboard.models import AuditLog, Classification, Telemetry, TelemetryHour, TelemetryMinute, utcnow
from dashboard.reads.charts import chart_data
from dashboard.reads.telemetry_rollups import HOUR, MINUTE, Point, chart_series, floor_to
from dashboard.services import audit, retention

SHORT = RetentionConfs(raw_telemetry_days=1, minute_rollup_days=2, hour_rollup_days=3, run_every_s=10)


def count(db: Database, model: type, *where: object) -> int:
    with db.session(readonly=True) as session:
        return int(session.scalar(select(func.count()).select_from(model).where(*where)) or 0)


def seed(db: Database, days: int = 4, step: timedelta = timedelta(minutes=5)) -> None:
    """A node with a sample every step over the last days, one old result and one old audit entry."""
    now = utcnow()
    with db.session() as session:
        add_device(session, "n1")
        add_telemetry(session, "n1", now - timedelta(days=days), int(timedelta(days=days) / step), step)
        session.add(Classification(
            message_id="00000000-0000-4000-8000-000000000001", device_id="n1", sample_id="s", image_sha256="0" * 64,
            label="Benign", confidence=0.9, probabilities={"Benign": 0.9}, model_version="1.0.0", inference_ms=3.0,
            uncertain=False, sent_at=now - timedelta(days=days),
        ))
        audit.record(session, "cli", "user.create", "old", {})
        session.flush()
        session.execute(AuditLog.__table__.update().values(at=now - timedelta(days=days)))


def test_raw_telemetry_is_rolled_up_then_deleted_after_its_period(database: Database) -> None:
    seed(database)
    with database.session(readonly=True) as session:
        cut = floor_to(utcnow() - timedelta(hours=30), HOUR)
        hour = [row[2] for row in session.execute(select(Telemetry.device_id, Telemetry.sent_at, Telemetry.cpu_percent)
                                                  .where(Telemetry.sent_at >= cut, Telemetry.sent_at < cut + HOUR))]
    report = retention.run_once(database, SHORT)
    now = utcnow()
    assert count(database, Telemetry, Telemetry.sent_at < now - timedelta(days=1, minutes=1)) == 0
    assert count(database, Telemetry) > 0, "the last day of raw telemetry stays"
    assert count(database, TelemetryMinute, TelemetryMinute.bucket < now - timedelta(days=2, minutes=1)) == 0
    assert count(database, TelemetryHour, TelemetryHour.bucket < now - timedelta(days=3, minutes=1)) == 0
    assert count(database, TelemetryHour, TelemetryHour.bucket < now - timedelta(days=2, hours=12)) > 0
    assert count(database, Classification) == 1 and count(database, AuditLog) == 1, "results and audit are kept"
    assert report.deleted["telemetry"] > 0 and report.buckets["minute"] > 0
    with database.session(readonly=True) as session:
        rolled = session.scalars(select(TelemetryHour).where(TelemetryHour.bucket == cut)).one()
    assert rolled.samples == len(hour) == 12
    assert rolled.cpu_percent == pytest.approx(sum(hour) / len(hour))
    minutes, hours = count(database, TelemetryMinute), count(database, TelemetryHour)
    retention.run_once(database, SHORT)
    assert (count(database, TelemetryMinute), count(database, TelemetryHour)) == (minutes, hours), "runs repeat safely"


def test_late_telemetry_is_added_to_its_buckets_on_the_next_run(database: Database) -> None:
    seed(database, days=1, step=timedelta(minutes=10))
    retention.run_once(database, SHORT)
    bucket = floor_to(utcnow() - timedelta(hours=10), MINUTE)
    with database.session(readonly=True) as session:
        before = session.scalars(select(TelemetryHour).where(TelemetryHour.bucket == floor_to(bucket, HOUR))).one()
    with database.session() as session:
        add_telemetry(session, "n1", bucket + timedelta(seconds=1), 3, timedelta(seconds=10))  # an outbox backlog
    retention.run_once(database, SHORT)
    with database.session(readonly=True) as session:
        after = session.scalars(select(TelemetryHour).where(TelemetryHour.bucket == before.bucket)).one()
        minute = session.scalars(select(TelemetryMinute).where(TelemetryMinute.bucket == bucket)).one()
    assert after.samples == before.samples + 3 and minute.samples >= 3


def test_charts_read_raw_rows_minutes_or_hours_as_the_range_needs(database: Database) -> None:
    seed(database)
    retention.run_once(database, SHORT)
    now = utcnow()
    with database.session(readonly=True) as session:
        short = chart_series(session, "n1", now - timedelta(hours=1), now, 240)
        days = chart_series(session, "n1", now - timedelta(days=2), now, 10_000)
        weeks = chart_series(session, "n1", now - timedelta(days=30), now, 10_000)
        pruned = chart_series(session, "n1", now - timedelta(days=1, hours=12), now - timedelta(days=1, hours=11), 240)
        chart = chart_data(session, "n1", now - timedelta(days=3), now)
    assert short and all(isinstance(row, Telemetry) for row in short)
    assert {type(row) for row in days} <= {TelemetryMinute, Point} and TelemetryMinute in {type(r) for r in days}
    assert all(b.sent_at - a.sent_at >= MINUTE for a, b in zip(days, days[1:]))
    assert {type(row) for row in weeks} <= {TelemetryHour, Point} and 60 <= len(weeks) <= 74
    assert pruned and all(isinstance(row, TelemetryMinute) for row in pruned), "raw rows are gone: minutes stand in"
    assert chart.samples > 60 and chart.times[0] < (now - timedelta(days=2)).timestamp()


def test_charts_before_the_first_run_bucket_the_raw_rows(database: Database) -> None:
    seed(database, days=2)
    now = utcnow()
    with database.session(readonly=True) as session:
        series = chart_series(session, "n1", now - timedelta(days=2), now, 10_000)
    assert all(isinstance(row, Point) for row in series) and 2 * 24 * 12 - 1 <= len(series) <= 2 * 24 * 12


def test_the_ingest_schedule_runs_the_job_until_stopped(database: Database) -> None:
    seed(database, days=1)
    stopping = threading.Event()
    thread = threading.Thread(target=retention.run_forever, args=(database, SHORT, stopping, 0.1), daemon=True)
    thread.start()
    wait_until(lambda: count(database, TelemetryHour) > 0, 30, "the first scheduled run")
    stopping.set()
    thread.join(10)
    assert not thread.is_alive()


def test_retention_periods_must_grow_with_coarser_roll_ups() -> None:
    with pytest.raises(ValueError, match="minute_rollup_days"):
        RetentionConfs(raw_telemetry_days=30, minute_rollup_days=7)
    with pytest.raises(ValueError, match="hour_rollup_days"):
        RetentionConfs(minute_rollup_days=90, hour_rollup_days=30)
