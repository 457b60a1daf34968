"""The node as a real process: results reach Sensors exactly once, hostile input is refused, SIGTERM is clean."""

from __future__ import annotations

import hashlib
import io
import os
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import requests
from PIL import Image

from broker_harness import BrokerHandle
from contracts.messages import (
    CommandMessage,
    NodeState,
    Ping,
    SensorsMessage,
    WarningCode,
    WarningMessage,
    from_bytes,
    to_bytes,
)
from tests.edge_node.node_harness import TOKEN, NodeProcess, sensors, status_state, wait_online, wait_until, write_confs
from support.tiny_package import CLASSES, class_image

pytestmark = pytest.mark.timeout(120)


def jpeg(rgb: np.ndarray, quality: int = 95) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def drop(folder: Path, name: str, data: bytes) -> Path:
    """Write like a camera or scanner would: in place, then close."""
    path = folder / name
    path.write_bytes(data)
    return path


@pytest.fixture
def node(broker: BrokerHandle, tiny_package, tmp_path: Path) -> Iterator[NodeProcess]:
    confs = write_confs(tmp_path, broker, tiny_package.archive, tiny_package.public_key_text)
    process = NodeProcess(confs, broker.credentials["devA"])
    yield process
    process.kill()


@pytest.fixture
def watch(broker: BrokerHandle):
    return broker.collector("dashboard", [broker.topic("devA", ch) for ch in ("Status", "Sensors", "Warnings", "Life")])


def test_a_dropped_image_arrives_exactly_once_with_every_field(broker, node, watch):
    topic = broker.topic("devA", "Sensors")
    node.start()
    wait_online(watch, broker.topic("devA", "Status"), node)
    image = jpeg(class_image("Pre", seed=3))
    drop(node.inbox, "WBC-Malignant-Pre-741.jpg", image)
    wait_until(lambda: len(sensors(watch, topic)) >= 1, 20, "a Sensors message", node)
    wait_until(lambda: (node.inbox / "done" / "WBC-Malignant-Pre-741.jpg").exists(), 5, "file moved to done/", node)
    time.sleep(1.0)  # a duplicate would have arrived by now
    [message] = sensors(watch, topic)
    assert isinstance(message, SensorsMessage)
    assert message.device == "devA" and message.label == "Pre"
    assert set(message.probabilities) == set(CLASSES)
    assert message.model_version == "1.0.0" and message.inference_ms > 0 and message.uncertain is False
    assert message.image_sha256 == hashlib.sha256(image).hexdigest()
    assert "741" not in message.sample_id and "WBC" not in message.sample_id
    raw = next(m.payload for m in watch.messages if m.topic == topic)
    assert b"WBC" not in raw and b"741.jpg" not in raw
    [received] = [m for m in watch.messages if m.topic == topic]
    assert received.qos == 1


def test_http_inference_answers_like_the_original_servers(broker, node, watch):
    node.start()
    wait_online(watch, broker.topic("devA", "Status"), node)
    headers = {"Authorization": f"Bearer {TOKEN}"}
    raw = requests.post(node.http_url, data=jpeg(class_image("Benign")), headers=headers, timeout=10)
    assert raw.status_code == 200, raw.text
    answer = raw.json()
    assert answer["Response"] == "OK" and answer["Diagnosis"] == "Benign" and answer["label"] == "Benign"
    files = {"file": ("x.jpg", jpeg(class_image("Pro")), "image/jpeg")}
    multipart = requests.post(node.http_url, files=files, headers=headers, timeout=10)
    assert multipart.status_code == 200 and multipart.json()["Diagnosis"] == "Pro"
    topic = broker.topic("devA", "Sensors")
    wait_until(lambda: len(sensors(watch, topic)) == 2, 20, "two Sensors messages", node)
    assert {m.sample_id for m in sensors(watch, topic)} == {answer["sample_id"], multipart.json()["sample_id"]}


def hostile_inputs(tmp_path: Path) -> dict[str, bytes]:
    full = jpeg(np.random.default_rng(0).integers(0, 255, (300, 300, 3), dtype=np.uint8))
    huge = io.BytesIO()
    Image.new("RGB", (7100, 7100), (200, 60, 60)).save(huge, "JPEG", quality=10)
    return {
        "notes.jpg": b"this is not an image at all",
        "truncated.jpg": full[: len(full) * 6 // 10],
        "huge.jpg": huge.getvalue(),
        "empty.jpg": b"",
    }


REASONS = {
    "notes.jpg": "not an image",
    "truncated.jpg": "truncated",
    "huge.jpg": "megapixels",
    "empty.jpg": "empty",
}


def test_hostile_files_in_the_folder_fail_with_a_reason_and_the_node_keeps_going(broker, node, watch, tmp_path):
    node.start()
    wait_online(watch, broker.topic("devA", "Status"), node)
    for name, data in hostile_inputs(tmp_path).items():
        drop(node.inbox, name, data)
    drop(node.inbox, "after.jpg", jpeg(class_image("Early")))
    failed = node.inbox / "failed"
    wait_until(lambda: len(list(failed.glob("*.reason.txt"))) == 4, 30, "four reason files", node)
    for name, reason in REASONS.items():
        assert (failed / name).exists()
        assert reason in (failed / f"{name}.reason.txt").read_text()
    topic = broker.topic("devA", "Sensors")
    wait_until(lambda: len(sensors(watch, topic)) == 1, 20, "the good image's result", node)
    assert sensors(watch, topic)[0].label == "Early"
    warning = watch.wait_for(broker.topic("devA", "Warnings"), timeout=10)
    parsed = from_bytes(warning.payload)
    assert isinstance(parsed, WarningMessage) and parsed.code is WarningCode.INPUT_REJECTED
    assert node.alive()


def test_hostile_http_requests_get_clear_errors(broker, node, watch, tmp_path):
    node.start()
    wait_online(watch, broker.topic("devA", "Status"), node)
    good = jpeg(class_image("Pre"))
    assert requests.post(node.http_url, data=good, timeout=10).status_code == 401
    wrong = requests.post(node.http_url, data=good, headers={"Authorization": "Bearer nope"}, timeout=10)
    assert wrong.status_code == 401 and wrong.json()["Response"] == "FAILED"
    headers = {"Authorization": f"Bearer {TOKEN}"}
    for name, data in hostile_inputs(tmp_path).items():
        answer = requests.post(node.http_url, data=data, headers=headers, timeout=30)
        assert answer.status_code == 422, (name, answer.text)
        assert REASONS[name] in answer.json()["Message"]
    no_field = requests.post(node.http_url, files={"image": ("a.jpg", good)}, headers=headers, timeout=10)
    assert no_field.status_code == 400 and "'file'" in no_field.json()["Message"]
    assert requests.get(node.http_url, headers=headers, timeout=10).status_code == 405
    ok = requests.post(node.http_url, data=good, headers=headers, timeout=10)
    assert ok.status_code == 200 and ok.json()["Diagnosis"] == "Pre"
    assert node.alive()


def test_malformed_commands_are_refused_and_ping_still_answers(broker, node, watch):
    node.start()
    status_topic = broker.topic("devA", "Status")
    wait_online(watch, status_topic, node)
    commands = broker.topic("devA", "Commands")
    dashboard = broker.client("dashboard")
    for payload in (b"{not json", b"[]", b'{"schema": 1, "type": "command"}', os.urandom(200)):
        dashboard.publish(commands, payload, qos=1).wait_for_publish(5)
    warnings_topic = broker.topic("devA", "Warnings")
    warning = watch.wait_for(warnings_topic, timeout=10)
    parsed = from_bytes(warning.payload)
    assert isinstance(parsed, WarningMessage) and "command refused" in parsed.message
    seen = len(watch.messages)
    ping = CommandMessage(device="dashboard", command_id="ping-1", command=Ping())
    dashboard.publish(commands, to_bytes(ping), qos=1).wait_for_publish(5)
    wait_online(watch, status_topic, node, after=seen)
    watch.wait_for(broker.topic("devA", "Life"), timeout=10)
    assert node.alive()


def test_sigterm_flushes_the_outbox_and_leaves_offline(broker, node, watch):
    node.start()
    status_topic = broker.topic("devA", "Status")
    wait_online(watch, status_topic, node)
    for i in range(5):
        drop(node.inbox, f"img{i}.jpg", jpeg(class_image(CLASSES[i % 4], seed=i)))
    wait_until(lambda: len(list((node.inbox / "done").iterdir())) == 5, 20, "five files done", node)
    assert node.terminate() == 0
    topic = broker.topic("devA", "Sensors")
    assert len({m.sample_id for m in sensors(watch, topic)}) == 5
    last = [m for m in watch.messages if m.topic == status_topic][-1]
    assert status_state(last.payload) is NodeState.OFFLINE
    retained = broker.collector("dashboard", status_topic).wait_for(status_topic)
    assert retained.retain and status_state(retained.payload) is NodeState.OFFLINE
    with sqlite3.connect(node.confs["edge_node"]["outbox_path"]) as db:
        assert db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0] == 0
    assert "Traceback" not in node.log()
