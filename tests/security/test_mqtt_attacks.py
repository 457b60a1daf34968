"""Attacks over MQTT on the broker, the ingest and the node (issue 11 items 1-4, unknown Updates, foreign commands, TLS)."""

from __future__ import annotations

import json
import socket
import ssl
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from broker_harness import publish_and_wait
from security.stack import NODE, OTHER, SecurityStack
from support.tiny_package import CLASSES

from contracts.messages import (
    CommandMessage,
    LifeMessage,
    ModelUpdate,
    NodeState,
    Ping,
    StatusMessage,
    UpdateMessage,
    UpdateState,
    to_bytes,
)


def _since(stack: SecurityStack, channel: str, seen: int) -> list[Any]:
    """Messages on the node's channel that the watcher received after the first seen ones."""
    topic = stack.broker.topic(NODE, channel)
    return [m for m in stack.system.watch.messages[seen:] if m.topic == topic]


def _wait_since(stack: SecurityStack, channel: str, seen: int, timeout: float, where: Any = lambda m: True) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [m for m in _since(stack, channel, seen) if where(m)]
        if found:
            return found[0]
        time.sleep(0.05)
    raise TimeoutError(f"nothing on {channel} within {timeout}s")


def _command(stack: SecurityStack, command: Any, device: str | None = None) -> str:
    """Publish a command to the node through the watcher's dashboard account; returns its id."""
    command_id = f"attack-{uuid.uuid4().hex[:12]}"
    message = CommandMessage(device=device or stack.broker.dashboard_app, command_id=command_id, command=command)
    client = stack.system.watch.client
    assert publish_and_wait(client, stack.broker.topic(NODE, "Commands"), to_bytes(message)) is not None
    return command_id


def _wait_db(stack: SecurityStack, sql: str, *args: Any, timeout: float = 5.0) -> list[tuple[Any, ...]]:
    deadline = time.monotonic() + timeout
    while True:
        rows = stack.query(sql, *args)
        if rows or time.monotonic() > deadline:
            return rows
        time.sleep(0.1)


def test_anonymous_clients_are_refused(stack: SecurityStack) -> None:
    with pytest.raises(ConnectionRefusedError):
        stack.broker.client(None, track=False)


def test_client_id_takeover_leaves_the_device_connected(stack: SecurityStack) -> None:
    seen = len(stack.system.watch.messages)
    attacker = None
    try:
        attacker = stack.broker.client(OTHER, client_id=NODE, track=False)
    except ConnectionRefusedError:
        pass  # refusing the connection holds too
    try:
        time.sleep(3.0)
    finally:
        if attacker is not None:
            attacker.loop_stop()
            attacker.disconnect()
    assert all(b"OFFLINE" not in m.payload for m in _since(stack, "Status", seen)), "the node was thrown off"
    assert stack.node.alive()


def _publish_as_other(stack: SecurityStack, channel: str, payload: dict[str, Any] | bytes) -> None:
    data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    client = stack.broker.client(OTHER, track=False)  # one connection per account: close it after use
    try:
        publish_and_wait(client, stack.broker.topic(OTHER, channel), data)
    finally:
        client.loop_stop()
        client.disconnect()


def _life(**kw: Any) -> dict[str, Any]:
    message = LifeMessage(device=OTHER, cpu_percent=10.0, memory_percent=20.0, disk_percent=30.0, temperature_c=40.0,
                          uptime_s=5.0, inference_count=1, outbox_depth=0)
    data = json.loads(to_bytes(message))
    data.update(kw)
    return data


def test_timestamps_from_other_years_move_no_state(stack: SecurityStack) -> None:
    for year in ("2099-01-01T00:00:00Z", "1970-01-01T00:00:10Z"):
        _publish_as_other(stack, "Life", _life(sent_at=year))
    time.sleep(1.5)
    _publish_as_other(stack, "Life", _life(cpu_percent=77.0))
    rows = _wait_db(stack, "SELECT last_seen, cpu_percent FROM devices WHERE id = ? AND cpu_percent = 77.0", OTHER)
    assert rows, "telemetry after the skewed messages was ignored"
    last_seen = datetime.fromisoformat(str(rows[0][0])).replace(tzinfo=UTC)
    now = datetime.now(UTC)
    assert now - timedelta(minutes=5) < last_seen < now + timedelta(minutes=5), last_seen
    assert not stack.query("SELECT 1 FROM telemetry WHERE device_id = ? AND (sent_at > '2090-01-01' OR sent_at < '1980-01-01')", OTHER)


def _result(**kw: Any) -> dict[str, Any]:
    probabilities = {name: 0.1 for name in CLASSES}
    probabilities[CLASSES[0]] = 1.0 - 0.1 * (len(CLASSES) - 1)
    data = {"schema": 1, "message_id": str(uuid.uuid4()), "device": OTHER, "sent_at": datetime.now(UTC).isoformat(),
            "type": "classification", "sample_id": uuid.uuid4().hex[:16], "image_sha256": "ab" * 32,
            "label": CLASSES[0], "confidence": probabilities[CLASSES[0]], "probabilities": probabilities,
            "model_version": "1.0.0", "inference_ms": 3.0, "uncertain": False}
    data.update(kw)
    return data


def test_results_that_make_no_sense_are_not_stored(stack: SecurityStack) -> None:
    good = _result()
    bad = [
        _result(label="Cat", probabilities={**good["probabilities"], "Cat": 0.0}),
        _result(probabilities={name: 0.9 for name in CLASSES}),
        _result(confidence=0.11),
        _result(inference_ms=float("inf")),
    ]
    status = StatusMessage(device=OTHER, state=NodeState.ONLINE, model_version="1.0.0", software_version="0.1.0")
    _publish_as_other(stack, "Status", to_bytes(status))  # the release devB says it runs, whose classes count
    for message in [*bad, good]:
        _publish_as_other(stack, "Sensors", json.dumps(message).encode())  # json writes inf as Infinity
    assert _wait_db(stack, "SELECT 1 FROM classifications WHERE message_id = ?", good["message_id"]), "control not stored"
    for message in bad:
        assert not stack.query("SELECT 1 FROM classifications WHERE message_id = ?", message["message_id"]), message


def test_updates_for_commands_never_sent_raise_no_alert(stack: SecurityStack) -> None:
    ota = "SELECT COUNT(*) FROM alerts WHERE device_id = ? AND kind = 'ota_failed'"
    before = stack.query(ota, OTHER)[0][0]
    update = UpdateMessage(device=OTHER, command_id=f"never-{uuid.uuid4().hex[:8]}", state=UpdateState.FAILED,
                           reason="made up")
    _publish_as_other(stack, "Updates", to_bytes(update))
    _publish_as_other(stack, "Life", _life(cpu_percent=12.0))
    _wait_db(stack, "SELECT 1 FROM devices WHERE id = ? AND cpu_percent = 12.0", OTHER)
    time.sleep(1.0)
    assert stack.query(ota, OTHER)[0][0] == before


def test_commands_whose_envelope_names_another_device_are_refused(stack: SecurityStack) -> None:
    seen = len(stack.system.watch.messages)
    _command(stack, Ping())
    _wait_since(stack, "Life", seen, 10.0)  # control: the node answers a real ping
    seen = len(stack.system.watch.messages)
    _command(stack, Ping(), device=OTHER)
    time.sleep(3.0)
    assert not _since(stack, "Life", seen), "the node acted on a command another device's envelope named"


class _Listener:
    """A TCP listener standing for another host; counts connections it is offered."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self.sock.settimeout(0.2)
        self.stop = threading.Event()
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.connections += 1
            conn.close()

    def close(self) -> None:
        self.stop.set()
        self.sock.close()


def _update_reason(stack: SecurityStack, url: str) -> str:
    seen = len(stack.system.watch.messages)
    command_id = _command(stack, ModelUpdate(version="9.9.9", url=url, sha256="ab" * 32, size=1000))
    message = _wait_since(stack, "Updates", seen, 20.0,
                          lambda m: command_id.encode() in m.payload and b"FAILED" in m.payload)
    return str(json.loads(message.payload).get("reason"))


def test_model_update_urls_to_other_origins_get_no_token_and_no_port_scan(stack: SecurityStack) -> None:
    listener = _Listener()
    try:
        closed = socket.create_server(("127.0.0.1", 0))
        closed_port = closed.getsockname()[1]
        closed.close()
        open_reason = _update_reason(stack, f"http://127.0.0.1:{listener.port}/pkg.tar.gz")
        closed_reason = _update_reason(stack, f"http://127.0.0.1:{closed_port}/pkg.tar.gz")
        assert listener.connections == 0, "the node connected to a foreign origin"
        assert open_reason == closed_reason, (open_reason, closed_reason)
    finally:
        listener.close()


def _tls_handshake(stack: SecurityStack, ciphers: str) -> bool:
    context = ssl.create_default_context(cafile=str(stack.broker.ca_path))
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers(ciphers)
    try:
        with socket.create_connection((stack.broker.tls_host, stack.broker.tls_port), timeout=5) as raw:
            with context.wrap_socket(raw, server_hostname=stack.broker.tls_host):
                return True
    except (ssl.SSLError, ConnectionError):
        return False


def test_tls_1_2_accepts_only_aead_suites(stack: SecurityStack) -> None:
    assert _tls_handshake(stack, "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-CHACHA20-POLY1305")
    assert not _tls_handshake(stack, "ECDHE-ECDSA-AES128-SHA:ECDHE-ECDSA-AES256-SHA:ECDHE-ECDSA-AES128-SHA256")
