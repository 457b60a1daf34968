"""The node as a real process says how it serves: runtime, device and precision in Status; NO_MODEL with the
reason (Status, Warning, HTTP 503) when it cannot serve, until a good model is pushed; OOD fields in every result."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import requests
from PIL import Image

from broker_harness import BrokerHandle, MessageCollector, publish_and_wait
from contracts.messages import (
    NodeState,
    SensorsMessage,
    Severity,
    StatusMessage,
    WarningCode,
    WarningMessage,
    from_bytes,
    to_bytes,
)
from edge_node.inference import OOD_VERDICT
from support.tiny_package import OOD_SELFTEST_COLOUR, class_image, make_tiny_package
from tests.edge_node.node_harness import TOKEN, NodeProcess, sensors, wait_until, write_confs
from tests.edge_node.ota_support import PackageServer, update_command

pytestmark = pytest.mark.timeout(120)
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def png(rgb: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, "PNG")
    return buffer.getvalue()


def statuses(watch: MessageCollector, broker: BrokerHandle) -> list[StatusMessage]:
    topic = broker.topic("devA", "Status")
    return [m for m in (from_bytes(x.payload) for x in list(watch.messages) if x.topic == topic)
            if isinstance(m, StatusMessage)]


def warnings(watch: MessageCollector, broker: BrokerHandle) -> list[WarningMessage]:
    topic = broker.topic("devA", "Warnings")
    return [m for m in (from_bytes(x.payload) for x in list(watch.messages) if x.topic == topic)
            if isinstance(m, WarningMessage)]


def wait_state(watch: MessageCollector, broker: BrokerHandle, node: NodeProcess, state: NodeState) -> StatusMessage:
    wait_until(lambda: any(s.state is state for s in statuses(watch, broker)), 40, f"a {state} Status", node)
    return [s for s in statuses(watch, broker) if s.state is state][-1]


@pytest.fixture
def watch(broker: BrokerHandle) -> MessageCollector:
    return broker.collector("dashboard", [broker.topic("devA", ch) for ch in ("Status", "Sensors", "Warnings")])


@pytest.fixture
def nodes() -> Iterator[list[NodeProcess]]:
    started: list[NodeProcess] = []
    yield started
    for node in started:
        node.kill()


def test_a_failed_selftest_means_no_model_until_a_good_one_is_pushed(broker, watch, nodes, tiny_package_v2, tmp_path):
    key = tiny_package_v2.private_key
    broken = make_tiny_package(tmp_path / "broken", key, "1.9.0", fmt=2, break_selftest=True)
    server = PackageServer(token=TOKEN).start()
    try:
        confs = write_confs(tmp_path, broker, broken, tiny_package_v2.public_key_text, public_url=server.origin,
                            inputs={"watch_dir": None})
        node = NodeProcess(confs, broker.credentials["devA"])
        nodes.append(node)
        node.start()
        status = wait_state(watch, broker, node, NodeState.NO_MODEL)
        assert status.reason and "differ" in status.reason and status.runtime is None
        wait_until(lambda: any(w.code is WarningCode.NO_MODEL for w in warnings(watch, broker)), 10, "a NO_MODEL Warning")
        [warning] = [w for w in warnings(watch, broker) if w.code is WarningCode.NO_MODEL]
        assert warning.severity is Severity.CRITICAL and "differ" in warning.message
        refused = requests.post(node.http_url, data=png(class_image("Pre")), headers=AUTH, timeout=10)
        assert refused.status_code == 503 and "differ" in refused.json()["Message"]

        data = tiny_package_v2.archive.read_bytes()
        url = server.add(tiny_package_v2.archive.name, data)
        publish_and_wait(broker.client("dashboard"), broker.topic("devA", "Commands"),
                         to_bytes(update_command("fix-1", "2.0.0", url, data)))
        online = wait_state(watch, broker, node, NodeState.ONLINE)
        assert (online.runtime, online.inference_device, online.precision) == ("openvino", "CPU", "f32")
        assert online.reason is None and online.model_version == "2.0.0"
        answer = requests.post(node.http_url, data=png(class_image("Pre")), headers=AUTH, timeout=10)
        assert answer.status_code == 200 and answer.json()["label"] == "Pre"
    finally:
        server.stop()


def test_results_carry_the_ood_fields_on_onnxruntime(broker, watch, nodes, tiny_package_v2, tmp_path):
    confs = write_confs(tmp_path, broker, tiny_package_v2.archive, tiny_package_v2.public_key_text,
                        runtime="onnxruntime")
    node = NodeProcess(confs, broker.credentials["devA"])
    nodes.append(node)
    node.start()
    status = wait_state(watch, broker, node, NodeState.ONLINE)
    assert (status.runtime, status.inference_device, status.precision) == ("onnxruntime", "CPUExecutionProvider", "f32")

    far = np.full((120, 120, 3), OOD_SELFTEST_COLOUR, dtype=np.uint8)
    answer = requests.post(node.http_url, data=png(far), headers=AUTH, timeout=10).json()
    assert answer["out_of_distribution"] is True and answer["ood_score"] > 0.1
    assert answer["verdict"] == OOD_VERDICT and answer["Message"] == OOD_VERDICT and answer["Diagnosis"] == "needs review"
    known = requests.post(node.http_url, data=png(class_image("Early")), headers=AUTH, timeout=10).json()
    assert known["out_of_distribution"] is False and known["verdict"] == "Early" and known["Diagnosis"] == "Early"

    (node.inbox / "far.png").write_bytes(png(far))
    topic = broker.topic("devA", "Sensors")
    wait_until(lambda: len(sensors(watch, topic)) >= 3, 20, "three Sensors messages", node)
    by_flag = {m.out_of_distribution: m for m in sensors(watch, topic)}
    assert isinstance(by_flag[True], SensorsMessage) and by_flag[True].ood_score > 0.1
    assert by_flag[False].label == "Early" and by_flag[False].ood_score < 0.01


def test_a_runtime_that_is_not_installed_means_no_model_with_the_fix(broker, watch, nodes, tiny_package_v2, tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    # What an install without the edge-onnx extra looks like to the node process.
    (site / "sitecustomize.py").write_text("import sys\nsys.modules['onnxruntime'] = None\n")
    confs = write_confs(tmp_path, broker, tiny_package_v2.archive, tiny_package_v2.public_key_text,
                        runtime="onnxruntime", inputs={"watch_dir": None})
    root = Path(__file__).resolve().parents[2]
    node = NodeProcess(confs, broker.credentials["devA"], env_extra={"PYTHONPATH": f"{site}:{root}"})
    nodes.append(node)
    node.start()
    status = wait_state(watch, broker, node, NodeState.NO_MODEL)
    assert status.reason and "pip install '.[edge-onnx]'" in status.reason
    refused = requests.post(node.http_url, data=png(class_image("Pre")), headers=AUTH, timeout=10)
    assert refused.status_code == 503 and "edge-onnx" in refused.json()["Message"]
