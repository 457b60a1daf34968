"""A building broker bridged over TLS to a central broker: fleet topics cross both ways, nothing else does."""

from __future__ import annotations

import stat
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from bridge_harness import Sites, bridged_sites
from broker_harness import BrokerHandle, publish_and_wait, subscribe_and_wait
from support.waiting import wait_until

from broker_config import BridgeLink, render_bridge_conf

pytestmark = pytest.mark.timeout(90)
ROOT = Path(__file__).resolve().parents[2]
CHANNELS = ("Status", "Life", "Sensors", "Warnings", "Updates")


@pytest.fixture
def sites(broker_factory: Callable[..., BrokerHandle]) -> Iterator[Sites]:
    """Central broker binding client ids to accounts (production), one building (BuildingA, devA) bridged to it."""
    sites = bridged_sites(broker_factory, {"BuildingA": ("devA",)}, central_settings={"bind_client_id": True})
    try:
        yield sites
    finally:
        sites.close()


def _marker() -> bytes:
    return f'{{"marker": "{uuid.uuid4()}"}}'.encode()


def test_node_channels_cross_up_and_commands_come_down(sites: Sites) -> None:
    central, building = sites.central, sites.buildings["BuildingA"]
    watch = central.collector("dashboard", f"{central.location}/Devices/+/+/#")
    node = building.client("devA", client_id="devA", clean_start=False, session_expiry=3600)
    commands = []
    node.on_message = lambda _c, _u, msg: commands.append(bytes(msg.payload))
    subscribe_and_wait(node, [building.topic("devA", "Commands")])
    sent = {channel: _marker() for channel in CHANNELS}
    for channel, payload in sent.items():
        publish_and_wait(node, building.topic("devA", channel), payload, retain=channel == "Status")
    for channel, payload in sent.items():
        received = watch.wait_for(building.topic("devA", channel), payload=payload)
        assert received.qos == 1
    command = _marker()
    publish_and_wait(watch.client, central.topic("devA", "Commands"), command)
    wait_until(lambda: command in commands, 10, "the command to reach the node behind the bridge")


def test_retained_status_reaches_a_dashboard_that_subscribes_later(sites: Sites) -> None:
    building, central = sites.buildings["BuildingA"], sites.central
    status = _marker()
    publish_and_wait(building.client("devA"), building.topic("devA", "Status"), status, retain=True)
    late = central.collector("dashboard", f"{central.location}/Devices/+/+/Status")
    assert late.wait_for(building.topic("devA", "Status"), payload=status).retain


def test_other_topics_on_the_building_broker_stay_local(sites: Sites) -> None:
    building, central = sites.buildings["BuildingA"], sites.central
    watch = central.collector("dashboard", f"{central.location}/#")
    sentinel = _marker()
    local = building.client("dashboard", client_id="local-dashboard")
    publish_and_wait(local, building.app_topic(), _marker())  # the building's own app Status is not bridged
    publish_and_wait(building.client("devA"), building.topic("devA", "Life"), sentinel)
    watch.wait_for(building.topic("devA", "Life"), payload=sentinel)
    assert watch.topics() == [building.topic("devA", "Life")]


def test_the_bridge_account_carries_only_its_zones_fleet_topics(broker_factory: Callable[..., BrokerHandle]) -> None:
    sites = bridged_sites(broker_factory, {"BuildingA": ("devA",)})
    central = sites.central
    sites.buildings["BuildingA"].stop()  # log in as the bridge account ourselves
    watch = central.collector("dashboard", [f"{central.location}/#", "Other/#"])
    bridge = central.client("bridge-BuildingA", client_id="bridge-BuildingA")
    denied = {
        f"{central.location}/Devices/BuildingB/devB/Sensors": _marker(),  # another building's zone
        f"{central.location}/Devices/BuildingA/devA/Commands": _marker(),  # commands only come down
        central.app_topic(): _marker(),  # the dashboard's own Status
        "Other/Devices/BuildingA/devA/Sensors": _marker(),  # another location
    }
    for topic, payload in denied.items():
        assert publish_and_wait(bridge, topic, payload).is_failure, topic
    sentinel = _marker()
    publish_and_wait(bridge, central.topic("devA", "Sensors"), sentinel)
    watch.wait_for(central.topic("devA", "Sensors"), payload=sentinel)
    assert not [m for m in watch.messages if m.payload in denied.values()]
    reader: list[str] = []
    bridge.on_message = lambda _c, _u, msg: reader.append(msg.topic)
    subscribe_and_wait(bridge, [f"{central.location}/Devices/BuildingA/+/{c}" for c in ("Sensors", "Commands")])
    up = _marker()
    publish_and_wait(bridge, central.topic("devA", "Sensors"), up)
    watch.wait_for(central.topic("devA", "Sensors"), payload=up)
    publish_and_wait(watch.client, central.topic("devA", "Commands"), _marker())
    wait_until(lambda: central.topic("devA", "Commands") in reader, 5, "the command on the bridge account")
    assert central.topic("devA", "Sensors") not in reader, "the bridge read a node channel it may only write"
    sites.close()


def test_bridge_conf_names_every_fleet_topic_and_keeps_a_persistent_tls_session(tmp_path: Path) -> None:
    link = BridgeLink("central", "central.example:8883", "Hospital", ("BuildingA", "BuildingB"), "bridge-a", "pw",
                      tmp_path / "ca.crt")
    conf = render_bridge_conf(link, tmp_path / "ca.crt").splitlines()
    topics = [line for line in conf if line.startswith("topic ")]
    assert len(topics) == 12 and "topic Hospital/Devices/BuildingB/+/Commands in 1" in topics
    assert all(line.endswith(" out 1") for line in topics if not line.endswith("/Commands in 1"))
    assert {"cleansession false", "bridge_insecure false", "bridge_protocol_version mqttv50",
            "remote_clientid bridge-a", "remote_username bridge-a"} <= set(conf)


def _cli(*args: str | Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "broker_config", *map(str, args)], cwd=ROOT, capture_output=True,
                          text=True, timeout=30, env=env)


def test_cli_adds_a_bridge_account_and_renders_the_building_side(tmp_path: Path) -> None:
    central, building = tmp_path / "central", tmp_path / "building"
    added = _cli("add-bridge", "bridge-a", "--location", "Hospital", "--zone", "BuildingA", "--out", central)
    assert added.returncode == 0, added.stderr
    assert "user bridge-a\ntopic write Hospital/Devices/BuildingA/+/Status" in (central / "acl").read_text()
    password = added.stdout.split("password: ", 1)[1].split()[0]
    (tmp_path / "pw").write_text(password + "\n")
    args = ["bridge", "--central", "central.example:8883", "--central-ca", tmp_path / "ca.crt",
            "--location", "Hospital", "--zone", "BuildingA", "--username", "bridge-a",
            "--password-file", tmp_path / "pw", "--out", building]
    (tmp_path / "ca.crt").write_text("CA")
    before = _cli(*args)
    assert before.returncode == 1 and "render" in before.stderr and "Traceback" not in before.stderr
    assert _cli("render", "--out", building, "--user", "root").returncode == 0
    written = _cli(*args)
    assert written.returncode == 0, written.stderr
    conf = building / "conf.d" / "bridge-central.conf"
    assert stat.S_IMODE(conf.stat().st_mode) & 0o007 == 0
    assert f"remote_password {password}\n" in conf.read_text()
    bad = _cli(*[a if a != "central.example:8883" else "central example:8883" for a in args])
    assert bad.returncode == 1 and "invalid central address" in bad.stderr and "Traceback" not in bad.stderr
