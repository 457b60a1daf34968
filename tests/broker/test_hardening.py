"""Broker hardening: client ids are bound to accounts, and TLS 1.2 offers AEAD suites only."""

from __future__ import annotations

import socket
import ssl
import time
from collections.abc import Callable

import pytest
from broker_harness import BrokerHandle, Will, publish_and_wait

from broker_config.manage import BrokerSettings, GeneratedPaths, render_conf

pytestmark = pytest.mark.timeout(60)


def test_production_conf_binds_client_ids_on_every_listener(tmp_path) -> None:
    conf = render_conf(GeneratedPaths(tmp_path), BrokerSettings())
    assert conf.count("use_username_as_clientid true") == 2
    listeners = [line for line in conf.splitlines() if line.startswith("listener ")]
    assert len(listeners) == 2


def test_another_devices_client_id_does_not_take_over_its_session(
    broker_factory: Callable[..., BrokerHandle],
) -> None:
    broker = broker_factory(settings={"bind_client_id": True})
    status = broker.topic("devB", "Status")
    watch = broker.collector("dashboard", status)
    victim = broker.client(
        "devB", client_id="devB", clean_start=False, session_expiry=3600, will=Will(status, b"OFFLINE-will")
    )
    drops: list[object] = []
    victim.on_disconnect = lambda *args: drops.append(args)

    intruder = broker.client("devA", client_id="devB")
    assert not publish_and_wait(intruder, broker.topic("devA", "Life"), b"{}").is_failure
    time.sleep(1.5)

    assert victim.is_connected() and not drops, "devB was disconnected by devA's login"
    assert not any(m.payload == b"OFFLINE-will" for m in watch.messages), "devB's last will fired"
    assert not publish_and_wait(victim, status, b"still-here").is_failure
    watch.wait_for(status, payload=b"still-here")


def _tls12_handshake(broker: BrokerHandle, ciphers: str) -> str:
    """Complete a TLS 1.2 handshake offering only ciphers; returns the suite agreed."""
    context = ssl.create_default_context(cafile=str(broker.ca_path))
    context.minimum_version = context.maximum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers(ciphers)
    with socket.create_connection((broker.host, broker.tls_port), timeout=5) as raw:
        with context.wrap_socket(raw, server_hostname="localhost") as tls:
            cipher = tls.cipher()
            assert cipher is not None
            return cipher[0]


@pytest.mark.parametrize(
    "suite", ["ECDHE-ECDSA-AES128-SHA", "ECDHE-ECDSA-AES256-SHA", "ECDHE-ECDSA-AES128-SHA256", "ECDHE-ECDSA-AES256-SHA384"]
)
def test_tls12_cbc_suites_are_refused(session_broker: BrokerHandle, suite: str) -> None:
    with pytest.raises(ssl.SSLError):
        _tls12_handshake(session_broker, suite)


@pytest.mark.parametrize(
    "suite", ["ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-ECDSA-AES256-GCM-SHA384", "ECDHE-ECDSA-CHACHA20-POLY1305"]
)
def test_tls12_aead_suites_work(session_broker: BrokerHandle, suite: str) -> None:
    assert _tls12_handshake(session_broker, suite) == suite


def test_tls13_still_works(session_broker: BrokerHandle) -> None:
    context = ssl.create_default_context(cafile=str(session_broker.ca_path))
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    with socket.create_connection((session_broker.host, session_broker.tls_port), timeout=5) as raw:
        with context.wrap_socket(raw, server_hostname="localhost") as tls:
            assert tls.version() == "TLSv1.3"
