"""Ingest hardening against a real broker and SQLite: bound client ids, clock skew, nonsense results, stray Updates."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from broker_config import add_dashboard
from dashboard.db import Database
from dashboard.ingest.screen import ClockBounds
from dashboard.models import (
    Alert,
    Classification,
    Device,
    ModelRelease,
    RejectedMessage,
    Rollout,
    RolloutTarget,
    Telemetry,
    UpdateEvent,
)

pytestmark = pytest.mark.timeout(90)


def count(database: Database, model: type) -> int:
    with database.session(readonly=True) as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


def rejects(database: Database) -> dict[str, int]:
    with database.session(readonly=True) as session:
        return {r.reason: r.count for r in session.scalars(select(RejectedMessage))}


def test_shared_workers_with_their_own_accounts_work_when_client_ids_are_bound(
    broker_factory: Callable[..., Any], database: Database, run_ingest: Any, payloads: Any, wait: Any
) -> None:
    broker = broker_factory(settings={"bind_client_id": True})
    broker.credentials["dashboard-2"] = add_dashboard(broker.root, "dashboard-2", broker.dashboard_app, (broker.location,))
    broker.reload()
    broker._wait_login("dashboard-2", 5.0)
    first = run_ingest(broker, database, client_id="dashboard-ingest-g-1", shared_group="g")
    second = run_ingest(broker, database, client_id="dashboard-ingest-g-2", shared_group="g", username="dashboard-2")
    node = broker.client("devA", client_id="devA")
    topic = broker.topic("devA", "Sensors")
    for info in [node.publish(topic, payloads.to_bytes(payloads.sensors("devA", n)), qos=1) for n in range(300)]:
        info.wait_for_publish(10)
    wait(lambda: count(database, Classification) == 300, what="300 results from two workers")
    wait(lambda: first.totals.stored + second.totals.stored == 300, what="totals")
    assert first.totals.stored > 0 and second.totals.stored > 0, "both workers took a share"
    time.sleep(0.5)
    assert first.connected.is_set() and second.connected.is_set()


def publish(broker: Any, device: str, channel: str, bodies: list[bytes]) -> None:
    node = broker.client(device)
    for body in bodies:
        node.publish(broker.topic(device, channel), body, qos=1).wait_for_publish(5)


def with_fields(payload: bytes, **fields: Any) -> bytes:
    return json.dumps(json.loads(payload) | fields).encode()


def test_device_clocks_are_bounded_and_never_move_state_ahead(broker, database, run_ingest, payloads, wait) -> None:
    run_ingest(broker, database, clock=ClockBounds(max_skew_s=300, max_age_s=30 * 24 * 3600))
    now = datetime.now(UTC)
    life = payloads.to_bytes(payloads.life("devA", cpu_percent=11.0))
    publish(broker, "devA", "Life", [
        with_fields(life, sent_at="2099-01-01T00:00:00Z", message_id=str(uuid.uuid4()), cpu_percent=99.0),
        with_fields(life, sent_at="1970-01-01T00:00:00Z", message_id=str(uuid.uuid4()), cpu_percent=98.0),
        with_fields(life, sent_at=(now + timedelta(seconds=200)).isoformat(), message_id=str(uuid.uuid4()), cpu_percent=22.0),
    ])
    status = payloads.status("devA")
    publish(broker, "devA", "Status", [with_fields(payloads.to_bytes(status), session_started="2099-01-01T00:00:00Z")])
    backlog = payloads.sensors("devA", 1)
    publish(broker, "devA", "Sensors", [with_fields(payloads.to_bytes(backlog), sent_at=(now - timedelta(days=3)).isoformat())])
    wait(lambda: rejects(database).get("clock_skew") == 3 and count(database, Classification) == 1, what="skew rejects")
    wait(lambda: count(database, Telemetry) == 1, what="the Life within the skew")
    with database.session(readonly=True) as session:
        device = session.get(Device, "devA")
        assert device.cpu_percent == 22.0 and device.state is None
        assert device.telemetry_at <= datetime.now(UTC) and device.last_seen <= datetime.now(UTC)
        result = session.scalar(select(Classification))
        assert result.sent_at < now - timedelta(days=2) and result.received_at >= now - timedelta(seconds=5)
        life_row = session.scalar(select(Telemetry))
        assert life_row.sent_at > life_row.received_at, "device time and receive time are both kept"
    # The node's clock is put right: its next Life applies, since the stored snapshot time never ran ahead of now.
    time.sleep(1)
    publish(broker, "devA", "Life", [payloads.to_bytes(payloads.life("devA", cpu_percent=33.0))])
    wait(lambda: count(database, Telemetry) == 2, what="the corrected Life")
    with database.session(readonly=True) as session:
        assert session.get(Device, "devA").cpu_percent == 33.0


def add_release(database: Database, version: str, classes: list[str]) -> None:
    with database.session() as session:
        session.add(ModelRelease(name="all-small-cnn", version=version, filename=f"{version}.tgz", sha256=uuid.uuid4().hex * 2,
                                 size=1, classes=classes, manifest={}, metrics={}, uploaded_by="alice"))


def test_results_that_make_no_sense_are_refused_and_counted(broker, database, run_ingest, payloads, wait) -> None:
    add_release(database, "1.0.0", ["Benign", "Early", "Pre", "Pro"])
    run_ingest(broker, database)
    good = payloads.to_bytes(payloads.sensors("devA", 1, label="Pre"))

    def variant(**fields: Any) -> bytes:
        return with_fields(good, **(fields | {"message_id": str(uuid.uuid4())}))

    bad = {
        "invalid": [
            variant(probabilities={"Benign": 0.9, "Early": 0.9, "Pre": 0.9, "Pro": 0.9}, confidence=0.9),  # sums to 3.6
            variant(confidence=0.95),  # not the label's probability
            variant(inference_ms=float("inf")),
            variant(label="Benign", confidence=0.1),  # not the most probable class
        ],
        "unknown_class": [variant(label="Leukemia", probabilities={"Benign": 0.1, "Early": 0.1, "Leukemia": 0.7, "Pro": 0.1})],
    }
    other_model = variant(model_version="2.0.0", label="X", probabilities={"X": 0.6, "Y": 0.4}, confidence=0.6)
    publish(broker, "devA", "Sensors", [body for bodies in bad.values() for body in bodies] + [good, other_model])
    expected = {reason: len(bodies) for reason, bodies in bad.items()}
    wait(lambda: rejects(database) == expected and count(database, Classification) == 2, what=f"rejects {expected}")
    with database.session(readonly=True) as session:
        assert sorted(session.scalars(select(Classification.model_version))) == ["1.0.0", "2.0.0"]


def test_updates_for_commands_never_sent_are_ignored_and_counted(broker, database, run_ingest, payloads, wait) -> None:
    run_ingest(broker, database)
    publish(broker, "devA", "Updates", [payloads.to_bytes(payloads.update("devA", "cmd-forged", "FAILED", reason="boom"))])
    wait(lambda: rejects(database) == {"unknown_command": 1}, what="the stray Update counted")
    with database.session(readonly=True) as session:
        assert session.scalars(select(Alert)).all() == [] and session.scalars(select(UpdateEvent)).all() == []
    add_release(database, "1.1.0", ["A"])
    with database.session() as session:
        session.merge(Device(id="devA", location=broker.location, zone=broker.zone))
        release = session.scalar(select(ModelRelease))
        rollout = Rollout(release_id=release.id, target_kind="all", canary_size=1, failure_threshold=1, state="RUNNING",
                          created_by="alice")
        session.add(rollout)
        session.flush()
        session.add(RolloutTarget(rollout_id=rollout.id, device_id="devA", state="SENT", command_id="cmd-real",
                                  rollback_command_id="cmd-real-rb"))
    publish(broker, "devA", "Updates", [payloads.to_bytes(payloads.update("devA", "cmd-real", "FAILED", reason="boom"))])

    def ota_alert() -> bool:
        with database.session(readonly=True) as session:
            return any(a.kind == "ota_failed" for a in session.scalars(select(Alert)))

    wait(ota_alert, what="the alert for a command the dashboard sent")
