"""Ingest against the real broker: dedupe, rejects counted and skipped, device registry, status, telemetry."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import func, select

from contracts.messages import MAX_PAYLOAD_BYTES
from dashboard.db import Database
from dashboard.models import Classification, Device, RejectedMessage, StatusChange, Telemetry

pytestmark = pytest.mark.timeout(90)


def count(database: Database, model: type) -> int:
    with database.session(readonly=True) as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


def rejects(database: Database) -> dict[str, int]:
    with database.session(readonly=True) as session:
        return {r.reason: r.count for r in session.scalars(select(RejectedMessage))}


def test_burst_with_duplicates_is_stored_once(broker, database, run_ingest, payloads, wait) -> None:
    run_ingest(broker, database)
    node = broker.client("devA")
    topic = broker.topic("devA", "Sensors")
    messages = [payloads.to_bytes(payloads.sensors("devA", n)) for n in range(300)]
    infos = [node.publish(topic, body, qos=1) for body in messages + messages[:100] + messages[250:]]
    for info in infos:
        info.wait_for_publish(10)
    wait(lambda: count(database, Classification) == 300, what="300 distinct results")
    with database.session(readonly=True) as session:
        device = session.get(Device, "devA")
        assert (device.location, device.zone) == (broker.location, broker.zone) and device.last_seen is not None
        ids = session.scalars(select(Classification.sample_id)).all()
    assert sorted(ids) == sorted(f"s{n}" for n in range(300))


def test_bad_payloads_are_counted_and_skipped(broker, database, run_ingest, payloads, wait) -> None:
    run_ingest(broker, database)
    node = broker.client("devA")
    sensors = broker.topic("devA", "Sensors")
    good = payloads.sensors("devA", 1)
    raw = json.loads(payloads.to_bytes(good))
    bad = {
        "malformed": [b"{not json", b"\xff\xfe", b"[1, 2]"],
        "unknown_schema": [json.dumps(raw | {"schema": 99}).encode(), json.dumps({k: v for k, v in raw.items() if k != "schema"}).encode(),
                           json.dumps(raw | {"schema": [1]}).encode(), json.dumps(raw | {"schema": {"v": 1}}).encode()],
        "invalid": [json.dumps(raw | {"confidence": 7}).encode(), json.dumps(raw | {"type": "life"}).encode(),
                    json.dumps(raw | {"sample_id": "../../etc/passwd"}).encode()],
        "wrong_device": [payloads.to_bytes(payloads.sensors("devB", 2))],
        "oversized": [b"{" + b" " * (MAX_PAYLOAD_BYTES + 10) + b"}"],
    }
    for bodies in bad.values():
        for body in bodies:
            node.publish(sensors, body, qos=1).wait_for_publish(5)
    node.publish(sensors, payloads.to_bytes(good), qos=1).wait_for_publish(5)
    expected = {reason: len(bodies) for reason, bodies in bad.items()}
    wait(lambda: rejects(database) == expected and count(database, Classification) == 1, what=f"rejects {expected}")
    with database.session(readonly=True) as session:
        assert session.scalar(select(Classification.message_id)) == str(good.message_id)


def test_status_and_life_update_the_fleet_snapshot(broker, database, run_ingest, payloads, wait) -> None:
    run_ingest(broker, database)
    node = broker.client("devB")
    node.publish(broker.topic("devB", "Status"), payloads.to_bytes(payloads.status("devB", "ONLINE", "1.2.3")), qos=1, retain=True)
    node.publish(broker.topic("devB", "Life"), payloads.to_bytes(payloads.life("devB", temperature_c=71.5, outbox_depth=4)), qos=1)

    def snapshot():
        with database.session(readonly=True) as session:
            device = session.get(Device, "devB")
            return device if device and device.state == "ONLINE" and device.outbox_depth == 4 else None

    device = wait(snapshot, what="devB online with telemetry")
    assert device.model_version == "1.2.3" and device.temperature_c == 71.5
    assert count(database, StatusChange) == 1 and count(database, Telemetry) == 1


def test_ingest_publishes_its_own_retained_status(broker, database, run_ingest) -> None:
    worker = run_ingest(broker, database)
    seen = broker.collector(broker.dashboard_user, broker.app_topic())
    message = seen.wait_for(broker.app_topic(), timeout=10)
    assert message.retain and json.loads(message.payload)["state"] == "ONLINE"
    assert worker.connected.is_set()


def test_shared_subscription_workers_store_everything_once(broker, database, run_ingest, payloads, wait) -> None:
    first = run_ingest(broker, database, client_id="dashboard-ingest-g-1", shared_group="g")
    second = run_ingest(broker, database, client_id="dashboard-ingest-g-2", shared_group="g")
    node = broker.client("devA")
    topic = broker.topic("devA", "Sensors")
    for info in [node.publish(topic, payloads.to_bytes(payloads.sensors("devA", n)), qos=1) for n in range(600)]:
        info.wait_for_publish(10)
    wait(lambda: count(database, Classification) == 600, what="600 results from two workers")
    wait(lambda: first.totals.stored + second.totals.stored == 600, what="totals")
    assert first.totals.stored > 0 and second.totals.stored > 0, "both workers took a share"
    assert first.totals.duplicates + second.totals.duplicates == 0
