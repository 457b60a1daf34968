"""QoS 1 messages queued for an offline node survive a graceful broker restart.

Mosquitto 2.0.11 writes a session to its database only if the client connected with
clean start off: an MQTT 5 session made with clean_start=True and an expiry interval
outlives a disconnect but not a restart. Nodes must always connect with clean start off.
"""

from __future__ import annotations

from typing import Any

import paho.mqtt.client as mqtt
import pytest
from broker_harness import BrokerHandle, MessageCollector, publish_and_wait, session_present, subscribe_and_wait


def _persistent_client(broker: BrokerHandle, protocol: int, clean: bool, **kwargs: Any) -> mqtt.Client:
    """devA with a fixed client id and a session that outlives the connection."""
    return broker.client(
        "devA",
        protocol=protocol,
        client_id="devA-node",
        clean_start=clean,
        session_expiry=3600 if protocol == mqtt.MQTTv5 else None,
        **kwargs,
    )


@pytest.mark.parametrize("protocol", [mqtt.MQTTv5, mqtt.MQTTv311], ids=["v5", "v311"])
def test_queued_command_survives_broker_restart(broker: BrokerHandle, protocol: int) -> None:
    commands = broker.topic("devA", "Commands")
    node = _persistent_client(broker, protocol, clean=False, track=False)
    subscribe_and_wait(node, [commands], qos=1)
    node.disconnect()
    node.loop_stop()

    dashboard = broker.client("dashboard")
    assert not publish_and_wait(dashboard, commands, b'{"kind": "ping"}', qos=1).is_failure
    broker.close_clients()
    broker.restart()

    inbox = MessageCollector()
    node = _persistent_client(broker, protocol, clean=False, on_message=inbox.on_message)
    assert session_present(node)
    command = inbox.wait_for(commands)
    assert command.payload == b'{"kind": "ping"}' and command.qos == 1


def test_broker_restarts_cleanly_after_sigkill(broker: BrokerHandle) -> None:
    broker.kill()
    broker.start()
    assert broker.client("devA").is_connected()
