"""Light traffic generator: real sessions on a real broker; every publish acknowledged and received, even across a cut."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from broker_harness import BrokerHandle
from contracts.messages import LifeMessage, NodeState, SensorsMessage, StatusMessage, from_bytes, to_bytes
from contracts.topics import Channel
from edge_node.simulate import FleetError, fleet_device_ids
from edge_node.simulate.light_node import MARKS, Template, life_template, result_templates, stamp
from edge_node.simulate.traffic import TrafficGenerator, TrafficSettings
from faults.tcp_proxy import TcpProxy
from tests.edge_node.node_harness import ROOT, wait_until

DEVICES = tuple(fleet_device_ids("traffic", 3))
CLASSES = ("Benign", "Early", "Pre", "Pro")


def settings(broker: BrokerHandle, port: int | None = None, **overrides: object) -> TrafficSettings:
    values: dict[str, object] = dict(nodes=len(DEVICES), host=broker.host, port=port or broker.port,
                                     location=broker.location, zone=broker.zone, model_version="1.0.0",
                                     classes=CLASSES, rate=5.0, life_interval_s=0.2)
    return TrafficSettings(**(values | overrides))  # type: ignore[arg-type]


def received(watch, kind: type) -> list:
    """Every Life or Sensors payload the collector got (each validated by the contract)."""
    channel = {LifeMessage: "/Life", SensorsMessage: "/Sensors", StatusMessage: "/Status"}[kind]
    return [from_bytes(m.payload) for m in list(watch.messages) if m.topic.endswith(channel)]


@pytest.fixture
def traffic_broker(broker_factory) -> BrokerHandle:
    return broker_factory(devices=DEVICES)


@pytest.mark.timeout(60)
def test_every_publish_is_acknowledged_and_arrives_once(traffic_broker):
    broker = traffic_broker
    watch = broker.collector("dashboard", [f"{broker.location}/Devices/+/+/#"])
    generator = TrafficGenerator(settings(broker), broker.credentials)
    assert generator.start(20) == len(DEVICES)
    time.sleep(2.0)
    assert generator.drain(20)
    assert generator.stop()
    summary = generator.summary(len(DEVICES), 2.0, True)
    sent_life, sent_results = summary["life_sent"], summary["results_stored"]
    assert sent_life >= 2 * len(DEVICES) and sent_results >= 2 * len(DEVICES)
    assert (summary["life_acked"], summary["results_acked"], summary["unacked"]) == (sent_life, sent_results, 0)
    assert summary["status_acked"] == summary["status_sent"] == 2 * len(DEVICES)  # ONLINE birth, OFFLINE at stop
    wait_until(lambda: len(received(watch, LifeMessage)) >= sent_life
               and len(received(watch, SensorsMessage)) >= sent_results, 10, "every publish at the collector")
    for kind, sent in ((LifeMessage, sent_life), (SensorsMessage, sent_results)):
        messages = received(watch, kind)
        assert len(messages) == len({m.message_id for m in messages}) == sent
        assert {m.device for m in messages} == set(DEVICES)
        assert all(m.sent_at.year >= 2025 for m in messages)
    results = received(watch, SensorsMessage)
    assert {m.label for m in results} <= set(CLASSES) and {m.model_version for m in results} == {"1.0.0"}
    assert len({m.sample_id for m in results}) == len(results)
    last_status = {m.device: m.state for m in received(watch, StatusMessage)}
    assert last_status == dict.fromkeys(DEVICES, NodeState.OFFLINE)


@pytest.mark.timeout(90)
def test_publishes_during_a_cut_are_sent_again_after_the_reconnect(traffic_broker):
    broker = traffic_broker
    watch = broker.collector("dashboard", [f"{broker.location}/Devices/+/+/#"])
    proxy = TcpProxy(broker.host, broker.port).start()
    generator = TrafficGenerator(settings(broker, proxy.port), broker.credentials)
    try:
        assert generator.start(20) == len(DEVICES)
        time.sleep(1.0)
        proxy.cut()
        time.sleep(1.5)
        proxy.restore()
        wait_until(lambda: generator.connected() == len(DEVICES), 30, "every node reconnected")
        time.sleep(1.0)
        assert generator.drain(30)
        generator.stop()
    finally:
        proxy.stop()
    summary = generator.summary(len(DEVICES), 3.5, True)
    assert summary["status_sent"] > 2 * len(DEVICES)  # a second birth after the reconnect
    for kind, key in ((LifeMessage, "life_sent"), (SensorsMessage, "results_stored")):
        wait_until(lambda: len({m.message_id for m in received(watch, kind)}) >= summary[key], 10, f"every {key}")
        assert len({m.message_id for m in received(watch, kind)}) == summary[key]  # none lost; duplicates allowed


@pytest.mark.parametrize("overrides, words", [
    ({"nodes": 0}, "nodes must be at least 1"),
    ({"rate": -0.5}, "rate must be a number >= 0"),
    ({"rate": float("nan")}, "rate must be a number >= 0"),
    ({"life_interval_s": 0.0}, "Life interval must be > 0"),
    ({"classes": ("Benign",)}, "at least two classes"),
])
def test_bad_settings_are_refused(session_broker, overrides, words):
    with pytest.raises(FleetError, match=words):
        settings(session_broker, **overrides)


def test_missing_credentials_are_named(session_broker):
    with pytest.raises(FleetError, match="no broker password for 3 device"):
        TrafficGenerator(settings(session_broker), {})


@pytest.mark.parametrize("argv, words", [
    (["--nodes", "0"], "--nodes: must be at least 1, not 0"),
    (["--nodes", "2", "--rate", "-1"], "--rate: must be >= 0, not -1"),
    (["--nodes", "2", "--life-interval", "0"], "--life-interval: must be > 0, not 0"),
])
def test_bad_arguments_exit_with_a_clear_error(argv, words, tmp_path):
    done = subprocess.run([sys.executable, "-m", "edge_node.simulate.traffic", *argv, "--credentials",
                           str(tmp_path / "none.json")], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and words in done.stderr, done.stderr


def test_a_filled_template_is_byte_for_byte_what_the_contract_writes():
    serving = {"runtime": "openvino", "inference_device": "CPU", "precision": "f32"}
    ids = {"message_id": "7d0c6f8e-52a4-4b1e-9a51-2f0e5c1d9b3a", "sent_at": "2026-11-27T10:45:10.603909Z"}
    life = life_template("traffic-0001", "1.0.0", serving).fill(
        ids | {"cpu_percent": "1.5", "memory_percent": "20.25", "disk_percent": "3.0", "uptime_s": "4.125",
               "inference_count": "7"})
    parsed = from_bytes(life, Channel.LIFE)
    assert to_bytes(parsed) == life and parsed.uptime_s == 4.125 and parsed.inference_count == 7
    for template in result_templates("traffic-0001", "1.0.0", CLASSES):
        payload = template.fill(ids | {"sample_id": "ab" * 16, "image_sha256": "cd" * 32})
        assert to_bytes(from_bytes(payload, Channel.SENSORS)) == payload
    assert stamp().endswith("Z") and from_bytes(life.replace(ids["sent_at"].encode(), stamp().encode()))
    with pytest.raises(ValueError, match="exactly once"):
        Template(SensorsMessage.model_validate_json(payload).model_copy(update={"specimen_id": MARKS["sample_id"]}))


@pytest.mark.timeout(60)
def test_nodes_connect_with_tls_when_told(traffic_broker):
    broker = traffic_broker
    tls = settings(broker, broker.tls_port, host=broker.tls_host, tls=True, ca_file=str(broker.ca_path))
    generator = TrafficGenerator(tls, broker.credentials)
    assert generator.start(20) == len(DEVICES)
    time.sleep(1.0)
    assert generator.drain(20) and generator.stop()
    assert generator.sent["life"] >= len(DEVICES) and generator.acked == generator.sent
