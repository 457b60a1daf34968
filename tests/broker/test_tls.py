"""The TLS listener proves its identity with the generated CA and nothing else."""

from __future__ import annotations

import socket
import ssl

import pytest
from broker_harness import BrokerHandle, connect_client, publish_and_wait


def test_client_trusting_the_generated_ca_connects_and_publishes(session_broker_clients: BrokerHandle) -> None:
    broker = session_broker_clients
    watch = broker.collector("dashboard", broker.topic("devA", "Sensors"), tls=True)
    client = broker.client("devA", tls=True)
    assert not publish_and_wait(client, broker.topic("devA", "Sensors"), b'{"over": "tls"}').is_failure
    watch.wait_for(broker.topic("devA", "Sensors"), payload=b'{"over": "tls"}')


def test_client_with_system_cas_only_is_refused(session_broker_clients: BrokerHandle) -> None:
    broker = session_broker_clients
    with pytest.raises(ssl.SSLCertVerificationError):
        broker.client("devA", tls=True, ca_certs=None)


def test_wrong_password_over_tls_is_refused(session_broker_clients: BrokerHandle) -> None:
    with pytest.raises(ConnectionRefusedError):
        session_broker_clients.client("devA", password="wrong", tls=True)


def _handshake(broker: BrokerHandle, server_hostname: str, **context: object) -> ssl.SSLSocket:
    """A raw TLS handshake with the broker's TLS listener."""
    ctx = ssl.create_default_context(cafile=str(broker.ca_path))
    for key, value in context.items():
        setattr(ctx, key, value)
    raw = socket.create_connection((broker.host, broker.tls_port), timeout=5)
    try:
        return ctx.wrap_socket(raw, server_hostname=server_hostname)
    except BaseException:
        raw.close()
        raise


@pytest.mark.parametrize("name", ["localhost", "127.0.0.1"])
def test_certificate_names_localhost_and_loopback(session_broker_clients: BrokerHandle, name: str) -> None:
    with _handshake(session_broker_clients, name) as tls:
        assert tls.version() in ("TLSv1.2", "TLSv1.3")


def test_wrong_hostname_is_rejected(session_broker_clients: BrokerHandle) -> None:
    with pytest.raises(ssl.SSLCertVerificationError, match="[Hh]ostname"):
        _handshake(session_broker_clients, "broker.example.org")


def test_plain_mqtt_is_not_spoken_on_the_tls_port(session_broker_clients: BrokerHandle) -> None:
    broker = session_broker_clients
    with pytest.raises((ConnectionRefusedError, TimeoutError, OSError)):
        connect_client(broker.host, broker.tls_port, "devA", broker.credentials["devA"], timeout=1.0)
