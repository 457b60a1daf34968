"""Bulk device registration: one write of each file, accounts usable on the live broker, all-or-nothing."""

from __future__ import annotations

import time

import pytest

from broker_config import InvalidName, add_devices, read_credentials
from broker_config.passwords import read_passwd, verify_password
from broker_harness import BrokerHandle, publish_and_wait


def test_bulk_devices_log_in_and_publish_only_under_their_own_topic(broker: BrokerHandle) -> None:
    fleet = [(f"bulk-{i:03d}", broker.location, broker.zone) for i in range(300)]
    passwords = add_devices(broker.root, fleet)
    assert len(passwords) == 300 and len(set(passwords.values())) == 300
    hashed = read_passwd(broker.paths.passwd)
    assert verify_password(passwords["bulk-299"], hashed["bulk-299"]) and "devA" in hashed
    assert read_credentials(broker.root)["bulk-000"] == passwords["bulk-000"]
    broker.reload()
    topic = f"{broker.location}/Devices/{broker.zone}/bulk-299/Sensors"
    watch = broker.collector("dashboard", f"{broker.location}/Devices/+/+/Sensors")
    deadline = time.monotonic() + 5
    while True:
        try:
            node = broker.client("bulk-299", password=passwords["bulk-299"])
            break
        except ConnectionRefusedError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
    publish_and_wait(node, topic, b"{}")
    publish_and_wait(node, f"{broker.location}/Devices/{broker.zone}/bulk-000/Sensors", b"{}")
    watch.wait_for(topic)
    time.sleep(0.3)
    assert watch.topics() == [topic], "a device published under another device's topic"


@pytest.mark.parametrize(
    "devices",
    [
        [("ok-1", "Hospital", "Lab1"), ("ok-1", "Hospital", "Lab1")],
        [("ok-2", "Hospital", "Lab1"), ("devA", "Hospital", "Lab1")],
        [("ok-3", "Hospital", "Lab1"), ("bad/name", "Hospital", "Lab1")],
        [("ok-4", "Hospital", "Lab#")],
        [("dashboard", "Hospital", "Lab1")],
    ],
)
def test_bulk_registration_refuses_bad_or_taken_names_and_writes_nothing(broker: BrokerHandle, devices) -> None:
    before = (broker.paths.passwd.read_bytes(), broker.paths.acl.read_bytes(), broker.paths.registry.read_bytes())
    with pytest.raises(InvalidName):
        add_devices(broker.root, devices)
    after = (broker.paths.passwd.read_bytes(), broker.paths.acl.read_bytes(), broker.paths.registry.read_bytes())
    assert after == before
