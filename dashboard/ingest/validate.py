"""Turn a raw MQTT message into a validated (topic, message) pair, or a rejection with a reason."""

from __future__ import annotations

import json
from dataclasses import dataclass

from contracts.messages import MAX_PAYLOAD_BYTES, SUPPORTED_SCHEMAS, Envelope, MessageError, from_bytes
from contracts.topics import DeviceTopic, TopicError, parse_topic

REASONS = ("bad_topic", "oversized", "malformed", "unknown_schema", "invalid", "wrong_device")


@dataclass(frozen=True)
class Accepted:
    """A payload that fits the contract, with the topic it came on."""

    topic: DeviceTopic
    message: Envelope


@dataclass(frozen=True)
class Rejection:
    """A payload refused, why (one of REASONS) and the detail for the log."""

    reason: str
    topic: str
    error: str


def validate(topic: str, payload: bytes) -> Accepted | Rejection:
    """Check topic, size, JSON, schema version, channel type, fields and that the sender owns the topic."""
    try:
        parsed = parse_topic(topic)
    except TopicError as exc:
        return Rejection("bad_topic", topic, str(exc))
    if not isinstance(parsed, DeviceTopic):
        return Rejection("bad_topic", topic, "ingest only takes device topics")
    if len(payload) > MAX_PAYLOAD_BYTES:
        return Rejection("oversized", topic, f"payload of {len(payload)} bytes exceeds {MAX_PAYLOAD_BYTES}")
    try:
        raw = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        return Rejection("malformed", topic, f"not UTF-8 JSON: {exc}")
    if not isinstance(raw, dict):
        return Rejection("malformed", topic, f"payload is a JSON {type(raw).__name__}, not an object")
    schema = raw.get("schema")
    if isinstance(schema, bool) or schema not in SUPPORTED_SCHEMAS:
        return Rejection("unknown_schema", topic, f"unsupported schema version {schema!r}"[:200])
    try:
        message = from_bytes(payload, parsed.channel)
    except MessageError as exc:
        return Rejection("invalid", topic, str(exc)[:1000])
    if message.device != parsed.device:
        return Rejection("wrong_device", topic, f"envelope device {message.device!r} differs from the topic's")
    return Accepted(parsed, message)
