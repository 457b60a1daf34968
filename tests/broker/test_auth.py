"""Only known accounts with the right password may connect."""

from __future__ import annotations

import paho.mqtt.client as mqtt
import pytest
from broker_harness import BrokerHandle


@pytest.mark.parametrize("protocol", [mqtt.MQTTv5, mqtt.MQTTv311], ids=["v5", "v311"])
def test_anonymous_client_is_refused(session_broker_clients: BrokerHandle, protocol: int) -> None:
    with pytest.raises(ConnectionRefusedError, match="[Nn]ot authori"):
        session_broker_clients.client(None, protocol=protocol)


@pytest.mark.parametrize("protocol", [mqtt.MQTTv5, mqtt.MQTTv311], ids=["v5", "v311"])
def test_wrong_password_is_refused(session_broker_clients: BrokerHandle, protocol: int) -> None:
    with pytest.raises(ConnectionRefusedError, match="[Nn]ot authori"):
        session_broker_clients.client("devA", password="not-the-password", protocol=protocol)


def test_unknown_user_is_refused(session_broker_clients: BrokerHandle) -> None:
    password = session_broker_clients.credentials["devA"]
    with pytest.raises(ConnectionRefusedError):
        session_broker_clients.client("devZ", password=password)


def test_another_accounts_password_is_refused(session_broker_clients: BrokerHandle) -> None:
    with pytest.raises(ConnectionRefusedError):
        session_broker_clients.client("devA", password=session_broker_clients.credentials["devB"])


@pytest.mark.parametrize("user", ["devA", "devB", "dashboard"])
def test_registered_accounts_connect_with_their_generated_password(
    session_broker_clients: BrokerHandle, user: str
) -> None:
    client = session_broker_clients.client(user)
    assert client.is_connected()
