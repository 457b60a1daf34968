"""The retention job: roll raw telemetry up per minute and per hour, then delete what is past its period."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import delete, func, select

from contracts.retention_confs import RetentionConfs
from dashboard.db import Database
from dashboard.models import RetentionState, Telemetry, TelemetryHour, TelemetryMinute, utcnow
from dashboard.reads.telemetry_rollups import HOUR, MINUTE, ROLLUP_MODELS, aggregate, floor_to, raw_rows

logger = logging.getLogger(__name__)

# Rows are stamped received_at before their batch commits: rows stamped this recently are looked at again next run.
RECEIVE_MARGIN = timedelta(minutes=5)
# Roll up a node's raw rows a day at a time and delete in chunks, so no transaction holds SQLite's lock for long.
CHUNK = timedelta(days=1)
DELETE_CHUNK = 5000
# The job sleeps as long as each node's work took: it runs beside the ingest (same process, same SQLite lock) and
# must leave it at least half of both; at 2,000 nodes an unpaced first run held the ingest's lag p99 above 2 s.
PACE = 1.0
# The first run waits this long (at most one period) so that it does not compete with the ingest's start.
FIRST_RUN_DELAY_S = 60.0


@dataclass
class RetentionReport:
    """What one run did."""

    buckets: dict[str, int] = field(default_factory=lambda: {"minute": 0, "hour": 0})
    deleted: dict[str, int] = field(default_factory=lambda: {"telemetry": 0, "telemetry_minute": 0, "telemetry_hour": 0})
    seconds: float = 0.0


def _state(db: Database) -> RetentionState:
    """The single state row, created on first use."""
    with db.session() as session:
        state = session.get(RetentionState, 1)
        if state is None:
            state = RetentionState(id=1)
            session.add(state)
        return state


def _changed_spans(db: Database, after_id: int | None) -> tuple[dict[str, tuple[datetime, datetime]], int | None]:
    """Per node, the first and last sent_at of the telemetry stored after row after_id; and the next run's after_id.

    Ids are read by primary key range (no scan of old rows). The next run starts below rows stamped within
    RECEIVE_MARGIN, since with several ingest workers a lower id can commit after a higher one.
    """
    newer = Telemetry.id > after_id if after_id is not None else Telemetry.id.is_not(None)
    with db.session(readonly=True) as session:
        rows = session.execute(
            select(Telemetry.device_id, func.min(Telemetry.sent_at), func.max(Telemetry.sent_at))
            .where(newer).group_by(Telemetry.device_id)
        ).all()
        settled = session.scalar(
            select(func.max(Telemetry.id)).where(newer, Telemetry.received_at < utcnow() - RECEIVE_MARGIN)
        )
    return {device: (first, last) for device, first, last in rows}, settled if settled is not None else after_id


def _roll_up(db: Database, device_id: str, start: datetime, end: datetime, report: RetentionReport) -> None:
    """Recompute the node's minute and hour buckets in [start, end) (hour-aligned) from its raw rows."""
    with db.session() as session:
        rows = raw_rows(session, device_id, start, end)
        for width, name in ((MINUTE, "minute"), (HOUR, "hour")):
            model = ROLLUP_MODELS[width]
            session.execute(delete(model).where(model.device_id == device_id, model.bucket >= start, model.bucket < end))
            points = aggregate(rows, width)
            if points:
                session.execute(model.__table__.insert(), [p.row() for p in points])
            report.buckets[name] += len(points)


def roll_up(db: Database, state: RetentionState, now: datetime, report: RetentionReport) -> None:
    """Bring the roll-ups up to date with every row stored so far."""
    spans, next_id = _changed_spans(db, state.rolled_up_id)
    # Buckets from before the last pruning lost raw rows: recomputing them would shrink them, so they stay as they are.
    complete_from = floor_to(state.raw_pruned_before + HOUR - timedelta.resolution, HOUR) if state.raw_pruned_before else None
    for device_id, (first, last) in spans.items():
        start = floor_to(first, HOUR)
        if complete_from is not None:
            start = max(start, complete_from)
        end = floor_to(last, HOUR) + HOUR
        began = time.monotonic()
        while start < end:
            _roll_up(db, device_id, start, min(end, start + CHUNK), report)
            start += CHUNK
        _pause(began)
    with db.session() as session:
        saved = session.get(RetentionState, 1)
        assert saved is not None
        saved.rolled_up_to, saved.rolled_up_id = now, next_id


def _delete_before(db: Database, model: type, column: str, cutoff: datetime) -> int:
    """Delete the model's rows whose column is before cutoff, node by node in chunks; returns how many."""
    deleted = 0
    with db.session(readonly=True) as session:
        devices = list(session.scalars(select(model.device_id).distinct()))
    for device_id in devices:
        while True:
            began = time.monotonic()
            with db.session() as session:
                ids = select(model.id).where(model.device_id == device_id, getattr(model, column) < cutoff)
                result = session.execute(delete(model).where(model.id.in_(ids.limit(DELETE_CHUNK).scalar_subquery())))
            deleted += result.rowcount or 0
            _pause(began)
            if (result.rowcount or 0) < DELETE_CHUNK:
                break
    return deleted


def _pause(began: float) -> None:
    """Sleep PACE times as long as the work since began took."""
    time.sleep(PACE * (time.monotonic() - began))


def prune(db: Database, confs: RetentionConfs, now: datetime, report: RetentionReport) -> None:
    """Delete raw telemetry and roll-ups past their periods (results, warnings and audit are never touched)."""
    cutoffs = {
        "telemetry": (Telemetry, "sent_at", "raw_pruned_before", now - timedelta(days=confs.raw_telemetry_days)),
        "telemetry_minute": (TelemetryMinute, "bucket", "minute_pruned_before", now - timedelta(days=confs.minute_rollup_days)),
    }
    if confs.hour_rollup_days is not None:
        cutoffs["telemetry_hour"] = (TelemetryHour, "bucket", "hour_pruned_before", now - timedelta(days=confs.hour_rollup_days))
    # The state says what is gone before anything goes, so a crash mid-way never leaves partial buckets recomputable.
    with db.session() as session:
        state = session.get(RetentionState, 1)
        for _model, _column, mark, cutoff in cutoffs.values():
            setattr(state, mark, cutoff)
    for name, (model, column, _mark, cutoff) in cutoffs.items():
        report.deleted[name] = _delete_before(db, model, column, cutoff)


def run_once(db: Database, confs: RetentionConfs, now: datetime | None = None) -> RetentionReport:
    """Roll up what arrived since the last run, then prune; safe to repeat and to interrupt."""
    began = time.monotonic()
    now = now or utcnow()
    report = RetentionReport()
    roll_up(db, _state(db), now, report)
    prune(db, confs, now, report)
    report.seconds = time.monotonic() - began
    logger.info("retention: %s buckets written, %s rows deleted in %.1f s", report.buckets, report.deleted, report.seconds)
    return report


def run_forever(
    db: Database, confs: RetentionConfs, stopping: threading.Event, first_delay_s: float = FIRST_RUN_DELAY_S
) -> None:
    """Run the job every confs.run_every_s, the first after first_delay_s, until stopping is set (the ingest's thread)."""
    if stopping.wait(min(first_delay_s, confs.run_every_s)):
        return
    while not stopping.is_set():
        try:
            run_once(db, confs)
        except Exception:
            logger.exception("retention run failed; trying again in %.0f s", confs.run_every_s)
        if stopping.wait(confs.run_every_s):
            return
