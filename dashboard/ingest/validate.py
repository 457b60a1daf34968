"""Turn a raw MQTT message into a validated (topic, message) pair, or a rejection with a reason."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache

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


@lru_cache(maxsize=4096)
def _device_topic(topic: str) -> DeviceTopic | Rejection:
    """The parsed device topic, or why it is not one (cached: a fleet publishes on few topics; hostile ones only evict)."""
    try:
        parsed = parse_topic(topic)
    except TopicError as exc:
        return Rejection("bad_topic", topic, str(exc))
    if not isinstance(parsed, DeviceTopic):
        return Rejection("bad_topic", topic, "ingest only takes device topics")
    return parsed


def validate(topic: str, payload: bytes) -> Accepted | Rejection:
    """Check topic, size, JSON, schema version, channel type, fields and that the sender owns the topic."""
    parsed = _device_topic(topic)
    if isinstance(parsed, Rejection):
        return parsed
    if len(payload) > MAX_PAYLOAD_BYTES:
        return Rejection("oversized", topic, f"payload of {len(payload)} bytes exceeds {MAX_PAYLOAD_BYTES}")
    try:
        message = from_bytes(payload, parsed.channel)
    except MessageError as exc:
        return _classify(topic, payload, exc)
    if message.device != parsed.device:
        return Rejection("wrong_device", topic, f"envelope device {message.device!r} differs from the topic's")
    return Accepted(parsed, message)


def _classify(topic: str, payload: bytes, error: MessageError) -> Rejection:
    """Why a payload the contract refused was refused (the slow path: valid payloads are parsed once, by pydantic)."""
    try:
        raw = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        return Rejection("malformed", topic, f"not UTF-8 JSON: {exc}")
    if not isinstance(raw, dict):
        return Rejection("malformed", topic, f"payload is a JSON {type(raw).__name__}, not an object")
    schema = raw.get("schema")
    # An unhashable schema (a list, an object) must not reach the set lookup.
    if not isinstance(schema, int) or isinstance(schema, bool) or schema not in SUPPORTED_SCHEMAS:
        return Rejection("unknown_schema", topic, f"unsupported schema version {schema!r}"[:200])
    return Rejection("invalid", topic, str(error)[:1000])
