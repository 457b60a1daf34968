"""Accounts added to a running broker take effect on SIGHUP; password hashes match Mosquitto's; ingest worker accounts."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from broker_harness import BrokerHandle, publish_and_wait

from broker_config import GeneratedPaths, InvalidName, add_dashboard, add_device
from broker_config.dashboards import DEFAULT_INGEST_WORKERS
from broker_config.passwords import hash_password, read_passwd, verify_password
from broker_config.registry import worker_account
from contracts.topics import ingest_account


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


def test_dashboard_ingest_worker_accounts_share_its_password_and_acl_but_not_its_client_id(
    broker_factory: Callable[..., BrokerHandle],
) -> None:
    broker = broker_factory(settings={"bind_client_id": True})
    password = broker.credentials["dashboard"]
    watch = broker.collector("dashboard", f"{broker.location}/Devices/+/+/#", client_id="dashboard")
    worker = broker.collector("dashboard.ingest-2", f"{broker.location}/Devices/+/+/#", password=password)
    publish_and_wait(broker.client("devA", client_id="devA"), broker.topic("devA", "Sensors"), b"both")
    watch.wait_for(broker.topic("devA", "Sensors"), payload=b"both")
    worker.wait_for(broker.topic("devA", "Sensors"), payload=b"both")
    assert broker.client("dashboard", client_id="x").is_connected()  # a third connection, its own account
    assert publish_and_wait(broker.client("dashboard.ingest-2", password=password),
                            broker.topic("devA", "Sensors"), b"forged").is_failure
    with pytest.raises(ConnectionRefusedError):
        broker.client(f"dashboard.ingest-{DEFAULT_INGEST_WORKERS + 1}", password=password, track=False)


def test_fewer_worker_accounts_remove_the_stale_ones_and_names_never_clash(tmp_path: Path) -> None:
    password = add_dashboard(tmp_path, "dash", ingest_workers=3)
    hashes = read_passwd(GeneratedPaths(tmp_path).passwd)
    assert sorted(hashes) == ["dash", "dash.ingest-2", "dash.ingest-3"]
    assert all(verify_password(password, hashed) for hashed in hashes.values())
    assert (GeneratedPaths(tmp_path).acl.read_text()).count("user dash") == 3
    add_dashboard(tmp_path, "dash", ingest_workers=2)
    assert sorted(read_passwd(GeneratedPaths(tmp_path).passwd)) == ["dash", "dash.ingest-2"]
    with pytest.raises(InvalidName):
        add_device(tmp_path, "dash.ingest-2", "L", "Z")
    add_device(tmp_path, "dev.ingest-2", "L", "Z")
    with pytest.raises(InvalidName):
        add_dashboard(tmp_path, "dev", ingest_workers=2)
    with pytest.raises(InvalidName):
        add_dashboard(tmp_path, "dash", ingest_workers=0)
    assert [worker_account("dash", n) for n in (2, 3)] == [ingest_account("dash", n) for n in (2, 3)]
