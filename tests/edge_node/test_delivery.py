"""The MQTT link and outbox sender against a real Mosquitto: status, will, PUBACK-driven deletion, outages."""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path

import pytest
from broker_harness import BrokerHandle

from contracts.messages import NodeState, StatusMessage, from_bytes, to_bytes
from edge_node.delivery import OutboxSender
from edge_node.mqtt_link import LinkSettings, MqttLink
from edge_node.outbox import Outbox
from support.waiting import wait_until


def _status(device: str):
    def payload(online: bool, session_started: datetime) -> bytes:
        state = NodeState.ONLINE if online else NodeState.OFFLINE
        return to_bytes(StatusMessage(device=device, state=state, model_version="1.0.0", software_version="0.1.0",
                                      session_started=session_started))

    return payload


def _link(broker: BrokerHandle, device: str = "devA", **overrides) -> MqttLink:
    settings = LinkSettings(
        host=broker.host,
        port=broker.port,
        client_id=device,
        username=device,
        password=broker.credentials[device],
        status_topic=broker.topic(device, "Status"),
        subscriptions=(broker.topic(device, "Commands"),),
        min_reconnect_delay_s=1,
        max_reconnect_delay_s=2,
        **overrides,
    )
    return MqttLink(settings, _status(device))


def _state(payload: bytes) -> NodeState:
    message = from_bytes(payload)
    assert isinstance(message, StatusMessage)
    return message.state


@pytest.mark.timeout(30)
def test_online_status_is_retained_and_stop_leaves_offline(broker: BrokerHandle):
    link = _link(broker)
    link.start()
    assert link.wait_connected(5)
    topic = broker.topic("devA", "Status")
    late = broker.collector("dashboard", topic)
    retained = late.wait_for(topic)
    assert retained.retain and _state(retained.payload) is NodeState.ONLINE
    assert link.stop() is True
    late.wait_for(topic, where=lambda m: _state(m.payload) is NodeState.OFFLINE)
    after = broker.collector("dashboard", topic).wait_for(topic)
    assert after.retain and _state(after.payload) is NodeState.OFFLINE


@pytest.mark.timeout(30)
def test_commands_are_routed_to_the_handler(broker: BrokerHandle):
    link = _link(broker)
    received: list[bytes] = []

    def handle(message) -> None:
        if message.payload == b"boom":
            raise RuntimeError("a failing handler must not stop the network loop")
        received.append(message.payload)

    link.add_route(broker.topic("devA", "Commands"), handle)
    link.start()
    assert link.wait_connected(5)
    assert link.wait_subscribed(5), "no SUBACK for the Commands subscription"
    dashboard = broker.client("dashboard")
    dashboard.publish(broker.topic("devA", "Commands"), b"boom", qos=1).wait_for_publish(5)
    dashboard.publish(broker.topic("devA", "Commands"), b"hello", qos=1).wait_for_publish(5)
    wait_until(lambda: received == [b"hello"])
    link.stop()


@pytest.mark.timeout(30)
def test_wrong_password_never_connects(broker: BrokerHandle):
    link = _link(broker)
    link.settings = LinkSettings(**{**link.settings.__dict__, "password": "wrong"})
    link._client = link._build_client()
    link.start()
    assert not link.wait_connected(1.5)
    link.stop()


@pytest.mark.timeout(60)
def test_outbox_drains_in_order_and_deletes_only_on_puback(broker: BrokerHandle, tmp_path: Path):
    topic = broker.topic("devA", "Sensors")
    watch = broker.collector("dashboard", topic)
    outbox = Outbox(tmp_path / "o.db", limit=1000)
    for i in range(30):
        outbox.put(topic, f"{i}".encode())
    link = _link(broker)
    sender = OutboxSender(outbox, link, window=7)
    sender.start()
    link.start()
    assert sender.flush(15)
    assert [int(m.payload) for m in watch.messages] == list(range(30))
    assert sender.delivered == 30 and outbox.depth() == 0
    sender.stop()
    link.stop()


@pytest.mark.timeout(90)
def test_broker_outage_loses_nothing(broker: BrokerHandle, tmp_path: Path):
    topic = broker.topic("devA", "Sensors")
    watch = broker.collector("dashboard", topic, client_id="dash-watch", clean_start=False, session_expiry=3600)
    outbox = Outbox(tmp_path / "o.db", limit=1000)
    link = _link(broker)
    sender = OutboxSender(outbox, link, window=10)
    sender.start()
    link.start()
    assert link.wait_connected(5)
    for i in range(10):
        outbox.put(topic, f"{i}".encode())
    assert sender.flush(10)
    broker.stop()
    wait_until(lambda: not link.is_connected())
    for i in range(10, 40):
        outbox.put(topic, f"{i}".encode())
    assert outbox.depth() == 30
    broker.start()
    watch.client.reconnect()
    assert sender.flush(30)
    wait_until(lambda: {int(m.payload) for m in watch.messages} == set(range(40)), 15)
    sender.stop()
    link.stop()


def test_a_replay_request_publishes_again_what_the_broker_acknowledged_within_the_asked_seconds(
    broker: BrokerHandle, tmp_path: Path
):
    topic = broker.topic("devA", "Sensors")
    watch = broker.collector("dashboard", topic)
    outbox = Outbox(tmp_path / "o.db", limit=1000)
    link = _link(broker)
    sender = OutboxSender(outbox, link)
    sender.start()
    link.start()
    for i in range(5):
        outbox.put(topic, f"{i}".encode())
    assert sender.flush(10)
    wait_until(lambda: len(watch.messages) == 5)
    sender.request_replay(60)
    wait_until(lambda: len(watch.messages) == 10, 10)
    assert [int(m.payload) for m in watch.messages] == [0, 1, 2, 3, 4] * 2, "replayed in order"
    assert sender.replayed == 5 and outbox.depth() == 0
    time.sleep(0.2)  # what was delivered before the asked window stays delivered
    sender.request_replay(0.1)
    time.sleep(1.0)
    assert len(watch.messages) == 10 and sender.replayed == 5
    sender.stop()
    link.stop()
