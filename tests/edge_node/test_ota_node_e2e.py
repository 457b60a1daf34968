"""OTA on the real node process (`python -m edge_node run`) with the real broker: updates, faults, kills."""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import requests
from PIL import Image

from broker_harness import BrokerHandle, MessageCollector, publish_and_wait
from contracts.messages import CommandMessage, StatusMessage, UpdateMessage, from_bytes, to_bytes
from contracts.model_package import public_key_text
from support.tiny_package import class_image
from tests.edge_node.node_harness import TOKEN, NodeProcess, wait_online, wait_until, write_confs
from tests.edge_node.ota_support import (
    Fault,
    OtaPackages,
    PackageServer,
    build_ota_packages,
    make_slow_package,
    rollback_command,
    update_command,
)

pytestmark = pytest.mark.timeout(180)
HAPPY = ["DOWNLOADING", "DOWNLOADED", "VERIFIED", "INSTALLING", "SELF_TEST", "ACTIVE"]


@pytest.fixture(scope="module")
def packages(tmp_path_factory: pytest.TempPathFactory) -> OtaPackages:
    return build_ota_packages(tmp_path_factory.mktemp("e2e-packages"))


@pytest.fixture
def server() -> Iterator[PackageServer]:
    server = PackageServer(token=TOKEN).start()
    yield server
    server.stop()


@pytest.fixture
def node(broker: BrokerHandle, packages: OtaPackages, tmp_path: Path, server: PackageServer) -> Iterator[NodeProcess]:
    confs = write_confs(
        tmp_path, broker, packages.v1, public_key_text(packages.key), inputs={"watch_dir": None}, public_url=server.origin
    )
    process = NodeProcess(confs, broker.credentials["devA"])
    yield process
    process.kill()


@pytest.fixture
def watch(broker: BrokerHandle) -> MessageCollector:
    return broker.collector("dashboard", [broker.topic("devA", ch) for ch in ("Status", "Updates", "Warnings")])


def jpeg(rgb: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, "JPEG", quality=95)
    return buffer.getvalue()


def classify(node: NodeProcess, label: str = "Pre") -> dict:
    answer = requests.post(
        node.http_url, data=jpeg(class_image(label, seed=5)), headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["label"] == label
    return answer.json()


def updates(watch: MessageCollector, command_id: str) -> list[UpdateMessage]:
    """A command's Updates in arrival order, each message once (the outbox may send one again after a restart)."""
    parsed = [from_bytes(m.payload) for m in list(watch.messages) if m.topic.endswith("/Updates")]
    unique: dict[object, UpdateMessage] = {}
    for u in parsed:
        if isinstance(u, UpdateMessage) and u.command_id == command_id:
            unique.setdefault(u.message_id, u)
    return list(unique.values())


def states(watch: MessageCollector, command_id: str) -> list[str]:
    return [u.state.value for u in updates(watch, command_id) if u.progress in (None, 0.0, 1.0)]


def final(watch: MessageCollector, command_id: str, node: NodeProcess, timeout: float = 60) -> UpdateMessage:
    terminal = ("ACTIVE", "FAILED", "ROLLED_BACK")
    wait_until(lambda: any(s in terminal for s in states(watch, command_id)), timeout, f"end of {command_id}", node)
    return [u for u in updates(watch, command_id) if u.state.value in terminal][-1]


def send(broker: BrokerHandle, command: CommandMessage) -> None:
    dashboard = broker.client("dashboard")
    publish_and_wait(dashboard, broker.topic("devA", "Commands"), to_bytes(command))


def retained_status(broker: BrokerHandle) -> StatusMessage:
    topic = broker.topic("devA", "Status")
    message = from_bytes(broker.collector("dashboard", topic).wait_for(topic).payload)
    assert isinstance(message, StatusMessage)
    return message


def test_update_with_live_inference_switches_without_a_restart(broker, node, watch, server, packages):
    node.start()
    wait_online(watch, broker.topic("devA", "Status"), node)
    pid = node.process.pid
    answers: list[tuple[float, str]] = []
    errors: list[str] = []
    stop = threading.Event()

    def keep_classifying() -> None:
        while not stop.is_set():
            try:
                answers.append((time.monotonic(), classify(node)["model_version"]))
            except (AssertionError, requests.RequestException) as exc:
                errors.append(str(exc))

    worker = threading.Thread(target=keep_classifying)
    worker.start()
    try:
        wait_until(lambda: len(answers) >= 3, 20, "first answers", node)
        url = server.add(packages.v2.name, packages.v2)
        send(broker, update_command("e2e-up", "1.1.0", url, packages.v2.read_bytes()))
        result = final(watch, "e2e-up", node)
        active_seen = time.monotonic()
        wait_until(lambda: sum(t > active_seen for t, _ in answers) >= 5, 20, "answers after ACTIVE", node)
    finally:
        stop.set()
        worker.join()
    assert result.state.value == "ACTIVE" and result.version == "1.1.0"
    assert states(watch, "e2e-up") == HAPPY
    assert errors == [], errors[:3]
    assert {v for t, v in answers if t > active_seen} == {"1.1.0"}
    assert answers[0][1] == "1.0.0"
    versions = [v for _, v in answers]
    assert versions == sorted(versions), "one switch, never back"
    assert node.process.pid == pid and node.alive(), "no restart"
    assert retained_status(broker).model_version == "1.1.0"


def test_each_fault_reports_failed_and_the_node_keeps_serving(broker, node, watch, server, packages):
    node.start()
    wait_online(watch, broker.topic("devA", "Status"), node)
    v2 = packages.v2.read_bytes()
    half = len(v2) // 2
    cases = [
        ("bad-signature", "1.6.0", server.add("foreign.tgz", packages.foreign_signature), packages.foreign_signature.read_bytes(), {}, "signature"),
        ("wrong-sha", "1.1.0", server.add("v2.tgz", v2), v2, {"sha256": "f" * 64}, "sha256"),
        ("truncated", "1.1.0", server.add("cut.tgz", v2[:half]), v2, {}, "announces"),
        ("broken-selftest", "1.5.0", server.add("broken.tgz", packages.broken_selftest), packages.broken_selftest.read_bytes(), {}, "self-test failed"),
        ("downgrade", "0.9.0", server.add("old.tgz", v2), v2, {}, "not newer"),
        ("same-version", "1.0.0", server.add("same.tgz", packages.v1), packages.v1.read_bytes(), {}, "not newer"),
    ]
    for command_id, version, url, data, overrides, reason in cases:
        send(broker, update_command(command_id, version, url, data, **overrides))
        result = final(watch, command_id, node)
        assert result.state.value == "FAILED", (command_id, states(watch, command_id))
        assert reason in result.reason, (command_id, result.reason)
        assert "ACTIVE" not in states(watch, command_id)
        assert classify(node)["model_version"] == "1.0.0", command_id
    # An interrupted download resumes with Range and fetches every byte once.
    url = server.add("flaky.tgz", v2, Fault(drop_at=half))
    send(broker, update_command("resumed", "1.1.0", url, v2))
    assert final(watch, "resumed", node).state.value == "ACTIVE"
    assert [r.range for r in server.requests_for("flaky.tgz")] == [None, f"bytes={half}-"]
    assert server.body_bytes("flaky.tgz") == len(v2)
    assert classify(node)["model_version"] == "1.1.0"
    downloads = Path(node.confs["edge_node"]["model_store"]).parent / "ota" / "downloads"
    assert list(downloads.iterdir()) == []
    slots = Path(node.confs["edge_node"]["model_store"]) / "slots"
    assert len(list(slots.iterdir())) == 2
    assert node.alive()


def test_rollback_then_a_repeated_command_id_is_answered_not_applied_across_a_restart(broker, node, watch, server, packages):
    node.start()
    status_topic = broker.topic("devA", "Status")
    wait_online(watch, status_topic, node)
    url = server.add(packages.v2.name, packages.v2)
    update = update_command("e2e-once", "1.1.0", url, packages.v2.read_bytes())
    send(broker, update)
    assert final(watch, "e2e-once", node).state.value == "ACTIVE"
    send(broker, rollback_command("e2e-back", "1.0.0"))
    back = final(watch, "e2e-back", node)
    assert (back.state.value, back.version) == ("ROLLED_BACK", "1.0.0")
    assert classify(node)["model_version"] == "1.0.0"
    assert node.terminate() == 0
    seen = len(watch.messages)
    node.start()
    wait_online(watch, status_topic, node, after=seen)
    send(broker, update)  # the same command id again: answered with its recorded outcome, never applied
    wait_until(lambda: states(watch, "e2e-once") == [*HAPPY, "ACTIVE"], 30, "the repeat's answer", node)
    assert classify(node)["model_version"] == "1.0.0"
    assert server.body_bytes(packages.v2.name) == packages.v2.stat().st_size


def test_a_command_sent_while_the_node_was_offline_is_applied_when_it_returns(broker, node, watch, server, packages):
    node.start()
    status_topic = broker.topic("devA", "Status")
    wait_online(watch, status_topic, node)
    assert node.terminate() == 0
    url = server.add(packages.v2.name, packages.v2)
    send(broker, update_command("e2e-offline", "1.1.0", url, packages.v2.read_bytes()))
    time.sleep(0.5)  # the command now waits in the node's persistent session on the broker
    assert updates(watch, "e2e-offline") == []
    node.start()
    result = final(watch, "e2e-offline", node)
    assert result.state.value == "ACTIVE" and states(watch, "e2e-offline") == HAPPY
    assert classify(node)["model_version"] == "1.1.0"


@pytest.mark.parametrize("kill_at", ["INSTALLING", "SELF_TEST"])
def test_sigkill_during_install_restarts_on_a_self_tested_model_and_reports_the_truth(
    broker, node, watch, server, packages, tmp_path, kill_at
):
    slow = make_slow_package(tmp_path / "slow", packages.key, "2.0.0", pad_bytes=40_000_000, selftest_samples=200)
    node.start()
    status_topic = broker.topic("devA", "Status")
    wait_online(watch, status_topic, node)
    url = server.add(slow.name, slow)
    send(broker, update_command("e2e-kill", "2.0.0", url, slow.read_bytes()))
    wait_until(lambda: kill_at in states(watch, "e2e-kill"), 90, kill_at, node)
    node.kill()
    before_restart = states(watch, "e2e-kill")
    assert "ACTIVE" not in before_restart, "the kill came too late to test anything"
    seen = len(watch.messages)
    node.start()
    wait_online(watch, status_topic, node, after=seen)
    result = final(watch, "e2e-kill", node, timeout=90)
    serving = classify(node)["model_version"]
    print(f"killed during {kill_at}: {result.state.value} ({result.reason}); serving {serving}")
    if result.state.value == "ACTIVE":
        assert serving == "2.0.0" and "restart" in (result.reason or "")
    else:
        assert result.state.value == "FAILED" and f"interrupted by a restart during {kill_at}" in result.reason
        assert serving == "1.0.0"
    assert retained_status(broker).model_version == serving
    store = Path(node.confs["edge_node"]["model_store"])
    assert list((store / "incoming").iterdir()) == []
    assert len(list((store / "slots").iterdir())) <= 2
