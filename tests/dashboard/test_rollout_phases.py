"""Phased rollouts in the engine: canary, soak, health gate, phases by count or percentage, schedule, model changes."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from dashboard.db import Database
from dashboard.models import Classification, Device, ModelRelease, Rollout
from dashboard.services import rollouts
from dashboard.services.rollout_engine import RolloutEngine
from dashboard.services.rollout_phases import assign, parse_phases, phase_sizes, progress
from dashboard.services.rollout_states import TargetState

T0 = datetime(2030, 1, 1, tzinfo=UTC)
DEVICES = tuple(f"n{i}" for i in range(1, 6))


class Sender:
    """Records commands instead of publishing them."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str]] = []

    def send(self, _location: str, _zone: str, device: str, command_id: str, _command: Any) -> bool:
        self.sent.append((device, command_id))
        return True


@pytest.fixture
def db(tmp_path) -> Database:  # noqa: ANN001
    from dashboard.migrations import upgrade_database

    database = Database(f"sqlite:///{tmp_path / 'phases.db'}")
    upgrade_database(database.engine)
    with database.session() as session:
        for version, classes in (("1.0.0", ["a", "b"]), ("2.0.0", ["a", "b"]), ("3.0.0", ["a", "b", "c"])):
            session.add(ModelRelease(name="m", version=version, filename=f"m-{version}.tar.gz", sha256=version[0] * 64,
                                     size=10, classes=classes, manifest={"input": {"shape": [1, 224, 224, 3]}},
                                     metrics={}, uploaded_by="t"))
        for device in DEVICES:
            session.add(Device(id=device, location="H", zone="Z", state="ONLINE", model_version="1.0.0",
                               status_at=T0 - timedelta(hours=1), last_seen=T0))
    return database


def release_id(db: Database, version: str) -> int:
    with db.session(readonly=True) as session:
        return next(r.id for r in session.query(ModelRelease).filter_by(version=version))


def results(db: Database, device: str, version: str, count: int, uncertain: bool = False, ms: float = 10.0) -> None:
    with db.session() as session:
        for n in range(count):
            session.add(Classification(
                message_id=str(uuid.uuid4()), device_id=device, sample_id=f"s{n}", image_sha256="0" * 64, label="a",
                confidence=0.5 if uncertain else 0.95, probabilities={"a": 0.95, "b": 0.05}, model_version=version,
                inference_ms=ms, uncertain=uncertain, sent_at=T0 + timedelta(seconds=n), received_at=T0,
            ))


def finish_sent(db: Database, state: TargetState = TargetState.ACTIVE) -> list[str]:
    """Every target that was sent its command reports state; returns those devices."""
    with db.session() as session:
        rollout = session.query(Rollout).one()
        moved = [t for t in rollout.targets if t.state == TargetState.SENT]
        for target in moved:
            target.state = state
        return sorted(t.device_id for t in moved)


def snapshot(db: Database) -> tuple[str, int, dict[str, Any]]:
    with db.session(readonly=True) as session:
        rollout = session.query(Rollout).one()
        return rollout.state, rollout.phase, progress(rollout, T0)


def test_phase_sizes_by_count_and_percentage() -> None:
    assert parse_phases(" 2, 25% ,50%") == ["2", "25%", "50%"]
    assert phase_sizes(["2", "25%"], 1, 10) == [1, 2, 3, 4]
    assert assign(5, ["1", "40%"], 1) == [0, 1, 2, 2, 3]
    assert assign(3, [], 0) == [1, 1, 1]
    for bad in ("x", "0", "150%", ",".join(["1"] * 11)):
        with pytest.raises(ValueError):
            parse_phases(bad)


def test_canary_soak_gate_then_phase_two_then_the_rest_completes(db: Database) -> None:
    with db.session() as session:
        rollouts.create_rollout(session, release_id(db, "2.0.0"), "all", None, 1, 0, "alice", phases="2",
                                soak_s=60, health_gate=True)
    for device in DEVICES:
        results(db, device, "1.0.0", 20)
    engine, sender = RolloutEngine(db, Sender(), "http://dash"), None
    sender = engine.sender
    engine.tick(T0)
    assert snapshot(db)[:2] == ("CANARY", 0) and [d for d, _ in sender.sent] == ["n1"]
    assert finish_sent(db) == ["n1"]
    engine.tick(T0 + timedelta(seconds=1))
    state, _, figures = snapshot(db)
    assert state == "SOAKING" and figures["active"] == 1 and figures["percent"] == 20.0
    engine.tick(T0 + timedelta(seconds=30))
    assert snapshot(db)[0] == "SOAKING", "the soak is not over"
    engine.tick(T0 + timedelta(seconds=62))
    assert snapshot(db)[0] == "SOAKING" and "waiting for results" in _reason(db)
    results(db, "n1", "2.0.0", 12)
    engine.tick(T0 + timedelta(seconds=70))
    assert snapshot(db)[:2] == ("ROLLING", 1)
    assert sorted(d for d, _ in sender.sent[1:]) == ["n2", "n3"]
    state, _, figures = snapshot(db)
    assert figures["in_flight"] == 2 and figures["phases"][0]["gate"]["status"] == "pass"
    finish_sent(db)
    engine.tick(T0 + timedelta(seconds=71))
    results(db, "n2", "2.0.0", 12)
    results(db, "n3", "2.0.0", 12)
    engine.tick(T0 + timedelta(seconds=140))
    assert snapshot(db)[:2] == ("ROLLING", 2)
    finish_sent(db)
    engine.tick(T0 + timedelta(seconds=141))
    state, _, figures = snapshot(db)
    assert state == "COMPLETED" and figures["percent"] == 100.0 and figures["elapsed_s"] == 141.0
    assert [p["name"] for p in figures["phases"]] == ["canary", "phase 2", "phase 3"]


def test_a_worse_uncertain_share_fails_the_gate_and_halts(db: Database) -> None:
    with db.session() as session:
        rollouts.create_rollout(session, release_id(db, "2.0.0"), "all", None, 1, 0, "alice", soak_s=0, health_gate=True)
    results(db, "n1", "1.0.0", 20)
    engine = RolloutEngine(db, Sender(), "http://dash")
    engine.tick(T0)
    finish_sent(db)
    results(db, "n1", "2.0.0", 15, uncertain=True)
    engine.tick(T0 + timedelta(seconds=1))
    engine.tick(T0 + timedelta(seconds=2))
    state, phase, figures = snapshot(db)
    assert (state, phase) == ("HALTED", 0)
    assert "health gate failed after the canary" in _reason(db) and "uncertain share rose from 0% to 100%" in _reason(db)
    assert figures["phases"][0]["gate"]["status"] == "fail" and len(engine.sender.sent) == 1
    with db.session() as session:
        rollouts.request(session, session.query(Rollout).one().id, "resume", "alice")
    engine.tick(T0 + timedelta(seconds=3))
    assert snapshot(db)[:2] == ("ROLLING", 1), "resuming after a failed gate is the admin overriding it"


def test_a_failed_node_in_a_phase_fails_the_gate(db: Database) -> None:
    with db.session() as session:
        rollouts.create_rollout(session, release_id(db, "2.0.0"), "all", None, 1, 5, "alice", phases="2",
                                health_gate=True)
    engine = RolloutEngine(db, Sender(), "http://dash")
    engine.tick(T0)
    finish_sent(db)
    engine.tick(T0 + timedelta(seconds=1))
    engine.tick(T0 + timedelta(seconds=2))
    finish_sent(db, TargetState.FAILED)
    engine.tick(T0 + timedelta(seconds=3))
    engine.tick(T0 + timedelta(seconds=4))
    assert snapshot(db)[0] == "HALTED" and "update failed on n2, n3" in _reason(db)


def test_a_scheduled_rollout_waits_for_its_start(db: Database) -> None:
    start = datetime.now(UTC) + timedelta(hours=2)
    with db.session() as session:
        rollouts.create_rollout(session, release_id(db, "2.0.0"), "all", None, 1, 0, "alice", scheduled_at=start)
    engine = RolloutEngine(db, Sender(), "http://dash")
    engine.tick(start - timedelta(minutes=1))
    assert snapshot(db)[0] == "SCHEDULED" and engine.sender.sent == []
    engine.tick(start + timedelta(seconds=1))
    assert snapshot(db)[0] == "CANARY" and len(engine.sender.sent) == 1


def test_a_release_with_other_classes_needs_the_admins_confirmation(db: Database) -> None:
    with db.session() as session, pytest.raises(rollouts.RolloutError, match="classes differ from 1.0.0"):
        rollouts.create_rollout(session, release_id(db, "3.0.0"), "all", None, 1, 0, "alice")
    with db.session() as session:
        rollout = rollouts.create_rollout(session, release_id(db, "3.0.0"), "all", None, 1, 0, "alice",
                                          confirm_model_change=True)
        assert rollout.model_change_confirmed


def _reason(db: Database) -> str:
    with db.session(readonly=True) as session:
        return session.query(Rollout).one().reason or ""
