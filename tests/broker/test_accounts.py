"""Accounts added to a running broker take effect on SIGHUP; password hashes match Mosquitto's."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from broker_harness import BrokerHandle, publish_and_wait

from broker_config.passwords import hash_password, read_passwd, verify_password


def test_device_added_to_a_running_broker_can_publish_only_its_own_topics(broker: BrokerHandle) -> None:
    new = broker.add_device("devC")
    watch = broker.collector("dashboard", f"{broker.location}/Devices/+/+/#")
    client = broker.client("devC")
    assert publish_and_wait(client, broker.topic("devA", "Sensors"), b"forged").is_failure
    assert not publish_and_wait(client, new.topic("Sensors"), b"mine").is_failure
    watch.wait_for(new.topic("Sensors"), payload=b"mine")
    assert b"forged" not in [m.payload for m in watch.messages]


def test_existing_sessions_survive_a_reload(broker: BrokerHandle) -> None:
    device = broker.collector("devA", broker.topic("devA", "Commands"))
    broker.add_device("devD")
    publish_and_wait(broker.client("dashboard"), broker.topic("devA", "Commands"), b"after-reload")
    device.wait_for(broker.topic("devA", "Commands"), payload=b"after-reload")


def test_password_hash_verifies_and_is_salted() -> None:
    first, second = hash_password("s3cret"), hash_password("s3cret")
    assert first != second and first.startswith("$7$101$")
    assert verify_password("s3cret", first) and not verify_password("other", first)


@pytest.mark.skipif(not shutil.which("mosquitto_passwd"), reason="mosquitto_passwd not installed")
def test_hash_from_mosquitto_passwd_verifies_with_our_code(tmp_path: Path) -> None:
    passwd = tmp_path / "passwd"
    subprocess.run(["mosquitto_passwd", "-c", "-b", str(passwd), "devA", "s3cret"], check=True, timeout=10)
    hashed = read_passwd(passwd)["devA"]
    assert verify_password("s3cret", hashed) and not verify_password("s3creT", hashed)
