"""Every message round-trips through bytes; malformed payloads are refused with a clear error."""

import json
import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest

from contracts.messages import (
    MAX_PAYLOAD_BYTES,
    CommandMessage,
    Envelope,
    LifeMessage,
    MessageError,
    ModelUpdate,
    NodeState,
    Ping,
    Replay,
    Rollback,
    SensorsMessage,
    StatusMessage,
    UpdateMessage,
    UpdateState,
    WarningCode,
    WarningMessage,
    from_bytes,
    to_bytes,
)
from contracts.topics import Channel


def sensors(**overrides: object) -> SensorsMessage:
    fields: dict[str, object] = dict(
        device="devA",
        sample_id="0f3a9c",
        image_sha256="ab" * 32,
        label="Pre",
        confidence=0.91,
        probabilities={"Benign": 0.01, "Early": 0.05, "Pre": 0.91, "Pro": 0.03},
        model_version="1.2.0",
        inference_ms=2.7,
        uncertain=False,
    )
    fields.update(overrides)
    return SensorsMessage(**fields)


EXAMPLES: list[Envelope] = [
    StatusMessage(device="devA", state=NodeState.ONLINE, model_version="1.0.0", software_version="0.1.0"),
    StatusMessage(device="devA", state=NodeState.OFFLINE, software_version="0.1.0"),
    LifeMessage(
        device="devA", cpu_percent=12.5, memory_percent=40, disk_percent=55, temperature_c=48.0,
        uptime_s=3600, inference_count=12, inference_ms_mean=3.1, outbox_depth=0, model_version="1.0.0",
    ),
    sensors(),
    WarningMessage(device="devA", code=WarningCode.DISK_LOW, message="disk 95% full", details={"disk_percent": 95.0}),
    CommandMessage(
        device="dashboard",
        command_id="c-1",
        command=ModelUpdate(version="1.1.0", url="https://dash.local/packages/1/m.tar.gz", sha256="cd" * 32, size=123),
    ),
    CommandMessage(device="dashboard", command_id="c-2", command=Rollback()),
    CommandMessage(device="dashboard", command_id="c-3", command=Ping()),
    CommandMessage(device="dashboard", command_id="c-4", command=Replay(seconds=90)),
    UpdateMessage(device="devA", command_id="c-1", state=UpdateState.FAILED, version="1.1.0", reason="bad signature"),
]


@pytest.mark.parametrize("message", EXAMPLES, ids=lambda m: type(m).__name__)
def test_every_message_round_trips_through_bytes(message: Envelope) -> None:
    data = to_bytes(message)
    assert json.loads(data)["schema"] == 1
    assert from_bytes(data) == message


def test_channel_check_refuses_a_payload_of_another_type() -> None:
    data = to_bytes(EXAMPLES[0])
    assert isinstance(from_bytes(data, Channel.STATUS), StatusMessage)
    with pytest.raises(MessageError, match="Sensors payload must have type 'classification'"):
        from_bytes(data, Channel.SENSORS)


def test_envelope_gives_each_message_a_fresh_id_and_utc_time() -> None:
    first, second = sensors(), sensors()
    assert first.message_id != second.message_id
    assert first.sent_at.tzinfo is not None and first.sent_at.utcoffset() == timedelta(0)
    local = sensors(sent_at=datetime(2026, 1, 1, 12, tzinfo=timezone(timedelta(hours=3))))
    assert local.sent_at == datetime(2026, 1, 1, 9, tzinfo=UTC)


def mutate(message: Envelope, **changes: object) -> bytes:
    raw = json.loads(to_bytes(message))
    for key, value in changes.items():
        if value is ...:
            raw.pop(key)
        else:
            raw[key] = value
    return json.dumps(raw).encode()


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"{not json", "not valid UTF-8 JSON"),
        (b"\xff\xfe", "not valid UTF-8 JSON"),
        (b"[1, 2]", "must be a JSON object"),
        (b"null", "must be a JSON object"),
        (mutate(sensors(), schema=2), "unsupported schema version 2"),
        (mutate(sensors(), schema="1"), "unsupported schema version"),
        (mutate(sensors(), schema=True), "unsupported schema version"),
        (mutate(sensors(), schema=...), "unsupported schema version None"),
        (mutate(sensors(), confidence="0.9"), "confidence"),
        (mutate(sensors(), confidence=1.5), "confidence"),
        (mutate(sensors(), label=...), "label"),
        (mutate(sensors(), label="Leukemia"), "not among the probabilities"),
        (mutate(sensors(), message_id="not-a-uuid"), "message_id"),
        (mutate(sensors(), sent_at="2026-01-01T00:00:00"), "sent_at"),
        (mutate(sensors(), device="../../etc"), "device"),
        (mutate(sensors(), sample_id="John Smith 1970-01-01"), "sample_id"),
        (mutate(sensors(), image_sha256="xyz"), "image_sha256"),
        (mutate(sensors(), patient_name="Jane Doe"), "patient_name"),
        (mutate(sensors(), type="unknown"), "type"),
        (mutate(sensors(), uncertain="no"), "uncertain"),
        (mutate(EXAMPLES[5], command={"kind": "format_disk"}), "command"),
        (mutate(EXAMPLES[5], command={"kind": "model_update", "version": "2", "url": "x", "sha256": "0", "size": 1}), "command"),
    ],
)
def test_malformed_payloads_are_refused_with_a_clear_error(payload: bytes, reason: str) -> None:
    with pytest.raises(MessageError, match=reason):
        from_bytes(payload)


def test_oversized_payload_is_refused_before_parsing() -> None:
    payload = b'{"schema": 1, "pad": "' + b"x" * MAX_PAYLOAD_BYTES + b'"}'
    with pytest.raises(MessageError, match="exceeds the limit"):
        from_bytes(payload)


def test_model_update_url_must_be_http() -> None:
    with pytest.raises(ValueError):
        ModelUpdate(version="1.0.0", url="file:///etc/passwd", sha256="ab" * 32, size=1)


def test_message_ids_are_uuids() -> None:
    assert isinstance(sensors().message_id, uuid.UUID)


def test_a_last_will_outranks_the_birth_of_its_own_connection_but_not_a_later_one() -> None:
    connected = datetime(2026, 1, 1, 8, tzinfo=UTC)
    will = StatusMessage(device="devA", state=NodeState.OFFLINE, software_version="0.1.0",
                         session_started=connected, sent_at=connected)
    birth = StatusMessage(device="devA", state=NodeState.ONLINE, software_version="0.1.0",
                          session_started=connected, sent_at=connected + timedelta(seconds=1))
    reconnected = StatusMessage(device="devA", state=NodeState.ONLINE, software_version="0.1.0",
                                session_started=connected + timedelta(minutes=5))
    assert will.order_key() > birth.order_key()
    assert reconnected.order_key() > will.order_key()
    assert from_bytes(to_bytes(will)) == will


@pytest.mark.parametrize("seconds", [0, -5, 86_401, "60", 1.5, None])
def test_a_replay_command_refuses_a_window_outside_one_second_to_one_day(seconds: object) -> None:
    body = json.loads(to_bytes(CommandMessage(device="dashboard", command_id="r-1", command=Replay(seconds=60))))
    body["command"]["seconds"] = seconds
    with pytest.raises(MessageError):
        from_bytes(json.dumps(body).encode(), Channel.COMMANDS)
