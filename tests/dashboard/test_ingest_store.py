"""BatchWriter and validate() without a broker: counts, idempotency, round-trip of stored values, hostile input."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select

from contracts.messages import to_bytes
from contracts.topics import Channel, device_topic
from dashboard.db import Database
from dashboard.ingest import worker as ingest_worker
from dashboard.ingest.store import BatchWriter
from dashboard.ingest.validate import Accepted, Rejection, validate
from dashboard.ingest.worker import IngestSettings, IngestWorker, _Inbound
from dashboard.models import Classification, Device, RejectedMessage


def accepted(payloads, device: str, n: int, **kw) -> Accepted:
    """A validated Sensors message as ingest would see it."""
    outcome = validate(device_topic("Hospital", "Lab1", device, Channel.SENSORS), to_bytes(payloads.sensors(device, n, **kw)))
    assert isinstance(outcome, Accepted), outcome
    return outcome


def test_batches_count_new_and_duplicate_results(database: Database, payloads) -> None:
    writer = BatchWriter(database)
    first = [accepted(payloads, "devA", n) for n in range(50)] + [accepted(payloads, "devB", n) for n in range(10)]
    result = writer.write(first + first[:5], [])
    assert (result.stored, result.duplicates) == (60, 5)
    again = writer.write(first[40:] + [accepted(payloads, "devA", 99)], [])
    assert (again.stored, again.duplicates) == (1, 20)
    with database.session(readonly=True) as session:
        assert session.scalar(select(func.count()).select_from(Classification)) == 61
        assert session.get(Device, "devB").last_seen == max(a.message.sent_at for a in first if a.topic.device == "devB")


def test_stored_result_reads_back_as_sent(database: Database, payloads) -> None:
    item = accepted(payloads, "devA", 7, label="Pre", uncertain=True,
                    sent_at=datetime(2025, 3, 4, 5, 6, 7, 0, tzinfo=UTC))
    BatchWriter(database).write([item], [])
    m = item.message
    with database.session(readonly=True) as session:
        row = session.scalars(select(Classification)).one()
    assert (row.message_id, row.device_id, row.sample_id, row.label) == (str(m.message_id), "devA", m.sample_id, "Pre")
    assert row.sent_at == m.sent_at and row.sent_at.tzinfo is not None and row.received_at >= m.sent_at
    assert row.probabilities == dict(m.probabilities) and row.uncertain is True
    assert (row.confidence, row.inference_ms, row.model_version) == (m.confidence, m.inference_ms, m.model_version)


def test_rejections_are_counted_per_reason(database: Database) -> None:
    writer = BatchWriter(database)
    rejected = [Rejection("malformed", "t", "x"), Rejection("malformed", "t", "y"), Rejection("oversized", "t", "z")]
    writer.write([], rejected)
    writer.write([], rejected[:1])
    with database.session(readonly=True) as session:
        assert {r.reason: r.count for r in session.scalars(select(RejectedMessage))} == {"malformed": 3, "oversized": 1}


@pytest.mark.parametrize("schema", ["[1]", "{}", "\"1\"", "1.5", "true", "null"])
def test_hostile_schema_values_are_unknown_schema(payloads, schema: str) -> None:
    body = to_bytes(payloads.sensors("devA", 1)).replace(b'"schema":1', b'"schema":' + schema.encode())
    assert b'"schema":' + schema.encode() in body
    outcome = validate(device_topic("Hospital", "Lab1", "devA", Channel.SENSORS), body)
    assert isinstance(outcome, Rejection) and outcome.reason == "unknown_schema", outcome


@pytest.mark.parametrize("topic", ["Hospital/Applications/dashboard/Status", "a/b", "", "Hospital/Devices/Lab1/devA/Nope"])
def test_non_device_topics_are_bad_topic(payloads, topic: str) -> None:
    outcome = validate(topic, to_bytes(payloads.sensors("devA", 1)))
    assert isinstance(outcome, Rejection) and outcome.reason == "bad_topic"


def test_a_validator_bug_rejects_the_message_instead_of_stopping_ingest(database, payloads, monkeypatch) -> None:
    settings = IngestSettings(host="127.0.0.1", port=1, username="u", password="p", location="Hospital",
                              app_id="dashboard", client_id="t")
    worker = IngestWorker(settings, BatchWriter(database))
    good = to_bytes(payloads.sensors("devA", 1))
    topic = device_topic("Hospital", "Lab1", "devA", Channel.SENSORS)
    real = ingest_worker.validate
    monkeypatch.setattr(ingest_worker, "validate", lambda t, p: 1 / 0 if p == b"boom" else real(t, p))
    result = worker.process([_Inbound(0, 1, 0, topic, b"boom"), _Inbound(0, 2, 0, topic, good)])
    assert (result.stored, result.rejected) == (1, 1)
