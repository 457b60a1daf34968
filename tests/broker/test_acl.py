"""Each device writes only its own node channels and reads only its own Commands.

A denied publish is dropped silently under MQTT 3.1.1, so every check is made by what an
authorised subscriber receives. After the denied message the same client publishes an
allowed one: the broker keeps one client's QoS 1 messages in order, so once the allowed
message arrives, the denied one would already have arrived if it had been let through.
"""

from __future__ import annotations

import uuid

import paho.mqtt.client as mqtt
import pytest
from broker_harness import BrokerHandle, MessageCollector, publish_and_wait

NODE_CHANNELS = ("Status", "Life", "Sensors", "Warnings", "Updates")


def _marker() -> bytes:
    """A payload unique to one test run."""
    return f'{{"marker": "{uuid.uuid4()}"}}'.encode()


def _dashboard_watch(broker: BrokerHandle) -> MessageCollector:
    """The dashboard reading every device topic of the location."""
    return broker.collector("dashboard", f"{broker.location}/Devices/+/+/#")


def _assert_only_sentinel(
    watch: MessageCollector, denied_topic: str, denied: bytes, sentinel_topic: str, sentinel: bytes
) -> None:
    """The sentinel arrived and the denied payload did not."""
    watch.wait_for(sentinel_topic, payload=sentinel)
    leaked = [m for m in watch.messages if m.payload == denied]
    assert not leaked, f"denied publish on {denied_topic} was delivered: {leaked}"


@pytest.mark.parametrize("protocol", [mqtt.MQTTv5, mqtt.MQTTv311], ids=["v5", "v311"])
def test_device_publishes_its_own_sensors_and_dashboard_receives_them(
    session_broker_clients: BrokerHandle, protocol: int
) -> None:
    broker = session_broker_clients
    watch = _dashboard_watch(broker)
    payload = _marker()
    rc = publish_and_wait(broker.client("devA", protocol=protocol), broker.topic("devA", "Sensors"), payload)
    assert not rc.is_failure
    assert watch.wait_for(broker.topic("devA", "Sensors"), payload=payload).qos == 1


@pytest.mark.parametrize("protocol", [mqtt.MQTTv5, mqtt.MQTTv311], ids=["v5", "v311"])
@pytest.mark.parametrize("channel", NODE_CHANNELS + ("Commands",))
def test_device_cannot_publish_on_another_devices_topics(
    session_broker_clients: BrokerHandle, channel: str, protocol: int
) -> None:
    broker = session_broker_clients
    watch = _dashboard_watch(broker)
    dev_a = broker.client("devA", protocol=protocol)
    denied, sentinel = _marker(), _marker()
    rc = publish_and_wait(dev_a, broker.topic("devB", channel), denied)
    publish_and_wait(dev_a, broker.topic("devA", "Sensors"), sentinel)
    _assert_only_sentinel(watch, broker.topic("devB", channel), denied, broker.topic("devA", "Sensors"), sentinel)
    if protocol == mqtt.MQTTv5:
        assert rc.is_failure and "authori" in str(rc)


def test_device_cannot_publish_on_its_own_commands(session_broker_clients: BrokerHandle) -> None:
    broker = session_broker_clients
    watch = _dashboard_watch(broker)
    dev_a = broker.client("devA")
    denied, sentinel = _marker(), _marker()
    assert publish_and_wait(dev_a, broker.topic("devA", "Commands"), denied).is_failure
    publish_and_wait(dev_a, broker.topic("devA", "Life"), sentinel)
    _assert_only_sentinel(watch, broker.topic("devA", "Commands"), denied, broker.topic("devA", "Life"), sentinel)


def test_device_cannot_publish_outside_the_device_tree(session_broker_clients: BrokerHandle) -> None:
    broker = session_broker_clients
    watch = broker.collector("dashboard", [broker.app_topic(), f"{broker.location}/Devices/+/+/#"])
    dev_a = broker.client("devA")
    denied, sentinel = _marker(), _marker()
    assert publish_and_wait(dev_a, broker.app_topic(), denied).is_failure
    publish_and_wait(dev_a, broker.topic("devA", "Sensors"), sentinel)
    _assert_only_sentinel(watch, broker.app_topic(), denied, broker.topic("devA", "Sensors"), sentinel)


@pytest.mark.parametrize("pattern", ["exact", "wildcard"])
def test_device_cannot_read_another_devices_commands(session_broker_clients: BrokerHandle, pattern: str) -> None:
    broker = session_broker_clients
    topic = broker.topic("devB", "Commands") if pattern == "exact" else f"{broker.location}/Devices/+/+/Commands"
    spy = broker.collector("devA", [topic, broker.topic("devA", "Commands")])
    dashboard = broker.client("dashboard")
    secret, sentinel = _marker(), _marker()
    publish_and_wait(dashboard, broker.topic("devB", "Commands"), secret)
    publish_and_wait(dashboard, broker.topic("devA", "Commands"), sentinel)
    spy.wait_for(broker.topic("devA", "Commands"), payload=sentinel)
    assert all(m.payload != secret for m in spy.messages)


def test_device_cannot_read_its_own_telemetry_or_sys(session_broker_clients: BrokerHandle) -> None:
    broker = session_broker_clients
    spy = broker.collector("devA", ["$SYS/#", broker.topic("devB", "Sensors"), broker.topic("devA", "Commands")])
    dev_b, dashboard = broker.client("devB"), broker.client("dashboard")
    publish_and_wait(dev_b, broker.topic("devB", "Sensors"), _marker())
    sentinel = _marker()
    publish_and_wait(dashboard, broker.topic("devA", "Commands"), sentinel)
    spy.wait_for(broker.topic("devA", "Commands"), payload=sentinel)
    # $SYS/broker/version is retained from start-up, so it would be here if $SYS were readable.
    assert spy.topics() == [broker.topic("devA", "Commands")]


@pytest.mark.parametrize("protocol", [mqtt.MQTTv5, mqtt.MQTTv311], ids=["v5", "v311"])
def test_dashboard_commands_reach_the_device(session_broker_clients: BrokerHandle, protocol: int) -> None:
    broker = session_broker_clients
    device = broker.collector("devA", broker.topic("devA", "Commands"), protocol=protocol)
    command = _marker()
    rc = publish_and_wait(broker.client("dashboard", protocol=protocol), broker.topic("devA", "Commands"), command)
    assert not rc.is_failure
    assert device.wait_for(broker.topic("devA", "Commands"), payload=command).qos == 1


@pytest.mark.parametrize("channel", NODE_CHANNELS)
def test_dashboard_cannot_publish_on_device_channels(session_broker_clients: BrokerHandle, channel: str) -> None:
    broker = session_broker_clients
    watch = _dashboard_watch(broker)
    publisher = broker.client("dashboard")
    forged, sentinel = _marker(), _marker()
    assert publish_and_wait(publisher, broker.topic("devA", channel), forged).is_failure
    publish_and_wait(publisher, broker.topic("devB", "Commands"), sentinel)
    _assert_only_sentinel(watch, broker.topic("devA", channel), forged, broker.topic("devB", "Commands"), sentinel)


def test_dashboard_reads_and_writes_its_own_application_status(session_broker_clients: BrokerHandle) -> None:
    broker = session_broker_clients
    watch = broker.collector("dashboard", broker.app_topic())
    status = _marker()
    assert not publish_and_wait(broker.client("dashboard"), broker.app_topic(), status).is_failure
    watch.wait_for(broker.app_topic(), payload=status)


@pytest.mark.parametrize("topic", ["Hospital/Devices/Lab2/devA/Sensors", "Clinic/Devices/Lab1/devA/Sensors"])
def test_device_cannot_publish_under_another_zone_or_location(session_broker_clients: BrokerHandle, topic: str) -> None:
    broker = session_broker_clients
    watch = broker.collector("dashboard", ["+/Devices/+/+/#"])
    dev_a = broker.client("devA")
    denied, sentinel = _marker(), _marker()
    assert publish_and_wait(dev_a, topic, denied).is_failure
    publish_and_wait(dev_a, broker.topic("devA", "Sensors"), sentinel)
    _assert_only_sentinel(watch, topic, denied, broker.topic("devA", "Sensors"), sentinel)


def test_device_added_in_a_new_location_is_readable_by_the_dashboard(broker: BrokerHandle) -> None:
    other = broker.add_device("devX", location="Clinic", zone="Lab9")
    watch = broker.collector("dashboard", ["Clinic/Devices/+/+/#"])
    publish_and_wait(broker.client("devX"), other.topic("Sensors"), b"elsewhere")
    watch.wait_for(other.topic("Sensors"), payload=b"elsewhere")
