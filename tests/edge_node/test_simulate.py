"""Fleet simulator: virtual nodes with their own sessions publish results and each goes through a real OTA."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from broker_harness import BrokerHandle, publish_and_wait
from contracts.messages import SensorsMessage, StatusMessage, UpdateMessage, from_bytes, to_bytes
from contracts.model_package import public_key_text
from edge_node.simulate import Fleet, FleetSettings, fleet_device_ids
from tests.edge_node.node_harness import ROOT, wait_until
from tests.edge_node.ota_support import OtaPackages, PackageServer, build_ota_packages, update_command

HAPPY = ["DOWNLOADING", "DOWNLOADED", "VERIFIED", "INSTALLING", "SELF_TEST", "ACTIVE"]
TOKEN = "fleet-download-token"
DEVICES = tuple(fleet_device_ids("sim", 3))


@pytest.fixture(scope="module")
def packages(tmp_path_factory: pytest.TempPathFactory) -> OtaPackages:
    return build_ota_packages(tmp_path_factory.mktemp("fleet-packages"))


@pytest.fixture
def fleet_broker(broker_factory) -> BrokerHandle:
    return broker_factory(devices=DEVICES)


@pytest.fixture
def server() -> Iterator[PackageServer]:
    server = PackageServer(token=TOKEN).start()
    yield server
    server.stop()


def parsed(watch, channel: str) -> list:
    return [from_bytes(m.payload) for m in list(watch.messages) if m.topic.endswith("/" + channel)]


@pytest.mark.timeout(120)
def test_virtual_nodes_publish_results_and_each_reaches_active(fleet_broker, packages, server, tmp_path):
    broker = fleet_broker
    watch = broker.collector("dashboard", [f"{broker.location}/Devices/+/+/#"])
    settings = FleetSettings(
        nodes=3, host=broker.host, port=broker.port, location=broker.location, zone=broker.zone,
        work_dir=tmp_path / "fleet", trusted_keys=packages.trusted, initial_package=packages.v1,
        rate=5.0, life_interval_s=0.5,
    )
    fleet = Fleet(settings, broker.credentials, {device: TOKEN for device in DEVICES})
    fleet.start()
    try:
        def results_from_all(version: str) -> bool:
            seen = {m.device for m in parsed(watch, "Sensors") if m.model_version == version}
            return seen == set(DEVICES)

        wait_until(lambda: results_from_all("1.0.0"), 30, "results from every virtual node")
        wait_until(lambda: {m.device for m in parsed(watch, "Life")} == set(DEVICES), 10, "Life from every node")
        data = packages.v2.read_bytes()
        url = server.add(packages.v2.name, data)
        dashboard = broker.client("dashboard")
        for device in DEVICES:
            command = update_command(f"roll-{device}", "1.1.0", url, data)
            publish_and_wait(dashboard, broker.topic(device, "Commands"), to_bytes(command))

        def all_active() -> bool:
            return {u.device for u in parsed(watch, "Updates") if u.state.value == "ACTIVE"} == set(DEVICES)

        wait_until(all_active, 60, "ACTIVE from every virtual node")
        wait_until(lambda: results_from_all("1.1.0"), 30, "results on the new model from every node")
    finally:
        fleet.stop()
    for device in DEVICES:
        updates = [u for u in parsed(watch, "Updates") if isinstance(u, UpdateMessage) and u.device == device]
        assert [u.state.value for u in updates] == HAPPY
        assert {u.command_id for u in updates} == {f"roll-{device}"}
    stats = {s.device_id: s for s in fleet.stats()}
    for device in DEVICES:
        assert stats[device].model_version == "1.1.0"
        assert stats[device].results_acked > 0 and stats[device].outbox_depth == 0
        assert stats[device].bytes_downloaded == len(data)
    assert server.body_bytes(packages.v2.name) == len(data) * len(DEVICES)
    assert len(fleet.classifiers) == 2, "each model version is compiled once for the whole fleet"
    sensors = [m for m in parsed(watch, "Sensors") if isinstance(m, SensorsMessage)]
    assert len({m.message_id for m in sensors}) == len(sensors)
    offline = [m for m in parsed(watch, "Status") if isinstance(m, StatusMessage) and m.state.value == "OFFLINE"]
    assert {m.device for m in offline} == set(DEVICES)


def write_cli_files(tmp_path: Path, broker: BrokerHandle, packages: OtaPackages) -> tuple[Path, Path]:
    confs = json.loads((ROOT / "confs.json").read_text())
    confs["mqtt"].update(host=broker.host, port=broker.port)
    confs["identity"].update(location=broker.location, zone=broker.zone)
    confs["ota"]["trusted_public_keys"] = [public_key_text(packages.key)]
    confs_path = tmp_path / "confs.json"
    confs_path.write_text(json.dumps(confs))
    credentials = tmp_path / "credentials.json"
    credentials.write_text(json.dumps({d: broker.credentials[d] for d in DEVICES}))
    return confs_path, credentials


def run_cli(*args: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edge_node.simulate", *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout
    )


@pytest.mark.timeout(120)
def test_the_cli_runs_a_cheap_fleet_and_prints_its_figures(fleet_broker, packages, tmp_path):
    confs, credentials = write_cli_files(tmp_path, fleet_broker, packages)
    started = time.monotonic()
    result = run_cli(
        "--nodes", "3", "--rate", "4", "--life-interval", "0.5", "--duration", "3", "--confs", str(confs),
        "--credentials", str(credentials), "--initial-package", str(packages.v1), "--cheap",
        "--work-dir", str(tmp_path / "work"),
    )
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["nodes"] == 3 and summary["connected"] == 3
    assert summary["results_stored"] >= 3 * 4
    assert summary["results_acked"] == summary["results_stored"] and summary["outbox_depth"] == 0
    assert summary["life_sent"] >= 3 * 3
    assert time.monotonic() - started < 60


@pytest.mark.parametrize(
    "content, message",
    [("{not json", "not valid JSON"), ('["a"]', "JSON object"), ('{"sim-0001": "x"}', "no broker password")],
)
def test_the_cli_refuses_bad_credentials_with_a_clear_message(fleet_broker, packages, tmp_path, content, message):
    confs, credentials = write_cli_files(tmp_path, fleet_broker, packages)
    credentials.write_text(content)
    result = run_cli(
        "--nodes", "3", "--confs", str(confs), "--credentials", str(credentials),
        "--initial-package", str(packages.v1), "--duration", "1",
    )
    assert result.returncode == 1
    assert message in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize(
    "args, message",
    [
        (["--nodes", "-3"], "at least 1"),
        (["--nodes", "2", "--rate", "-1"], "must be >= 0"),
        (["--nodes", "2", "--initial-package", "/nonexistent.tar.gz"], "not found"),
    ],
)
def test_the_cli_refuses_bad_arguments(fleet_broker, packages, tmp_path, args, message):
    confs, credentials = write_cli_files(tmp_path, fleet_broker, packages)
    result = run_cli(*args, "--confs", str(confs), "--credentials", str(credentials))
    assert result.returncode in (1, 2)
    assert message in result.stderr and "Traceback" not in result.stderr


@pytest.mark.timeout(120)
def test_virtual_nodes_reconnect_after_a_broker_restart_and_lose_nothing(fleet_broker, packages, tmp_path):
    broker = fleet_broker
    settings = FleetSettings(
        nodes=2, host=broker.host, port=broker.port, location=broker.location, zone=broker.zone,
        work_dir=tmp_path / "fleet", trusted_keys=packages.trusted, initial_package=packages.v1,
        rate=10.0, life_interval_s=0.5, cheap_classifier=True,
    )
    fleet = Fleet(settings, broker.credentials)
    fleet.start()
    try:
        wait_until(lambda: all(s.results_acked >= 5 for s in fleet.stats()), 20, "first acknowledgements")
        broker.stop()
        wait_until(lambda: not any(s.connected for s in fleet.stats()), 20, "nodes see the broker gone")
        time.sleep(1.0)  # results pile up in the outboxes meanwhile
        assert all(s.outbox_depth > 0 for s in fleet.stats())
        watch_started = time.monotonic()
        broker.start()
        wait_until(lambda: all(s.connected for s in fleet.stats()), 40, "reconnection")
        wait_until(lambda: all(s.outbox_depth < 5 for s in fleet.stats()), 30, "outboxes drained")
        assert time.monotonic() - watch_started < 60
    finally:
        fleet.stop()
    for stat in fleet.stats():
        assert stat.outbox_depth == 0 and stat.results_acked >= stat.results_stored
