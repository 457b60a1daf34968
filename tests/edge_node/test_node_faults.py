"""Faults around the running node: broker outages, SIGKILL mid-stream, a full outbox."""

from __future__ import annotations

import hashlib
import io
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from broker_harness import BrokerHandle
from contracts.messages import WarningCode, WarningMessage, from_bytes
from tests.edge_node.node_harness import NodeProcess, sensors, wait_online, wait_until, write_confs
from support.tiny_package import CLASSES, class_image

pytestmark = [pytest.mark.timeout(180), pytest.mark.slow]


def jpeg(rgb: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, "JPEG", quality=95)
    return buffer.getvalue()


def images(count: int, offset: int = 0) -> dict[str, bytes]:
    """Distinct images (each a different seed, so a different sha256), named by index."""
    return {f"img{offset + i:04d}.jpg": jpeg(class_image(CLASSES[i % 4], seed=offset + i)) for i in range(count)}


def hashes(data: dict[str, bytes]) -> set[str]:
    return {hashlib.sha256(d).hexdigest() for d in data.values()}


def received_hashes(watch, topic: str) -> set[str]:
    """Distinct image hashes among received results, after dropping duplicate message_ids."""
    unique = {m.message_id: m for m in sensors(watch, topic)}
    return {m.image_sha256 for m in unique.values()}


def drop_all(folder: Path, data: dict[str, bytes], pause_s: float = 0.0) -> None:
    for name, payload in data.items():
        (folder / name).write_bytes(payload)
        if pause_s:
            time.sleep(pause_s)


def persistent_watch(broker: BrokerHandle, name: str):
    """A dashboard subscriber whose session survives broker restarts."""
    topics = [broker.topic("devA", ch) for ch in ("Status", "Sensors", "Warnings")]
    return broker.collector("dashboard", topics, client_id=name, clean_start=False, session_expiry=3600)


@pytest.fixture
def node(broker: BrokerHandle, tiny_package, tmp_path: Path):
    confs = write_confs(tmp_path, broker, tiny_package.archive, tiny_package.public_key_text)
    process = NodeProcess(confs, broker.credentials["devA"])
    yield process
    process.kill()


def test_broker_outage_loses_no_result(broker, node):
    watch = persistent_watch(broker, "dash-outage")
    topic = broker.topic("devA", "Sensors")
    node.start()
    wait_online(watch, broker.topic("devA", "Status"), node)
    before, during, after = images(10), images(15, offset=10), images(5, offset=25)
    drop_all(node.inbox, before)
    wait_until(lambda: received_hashes(watch, topic) >= hashes(before), 20, "results before the outage", node)
    broker.stop()
    drop_all(node.inbox, during, pause_s=0.05)
    wait_until(lambda: len(list((node.inbox / "done").iterdir())) == 25, 20, "images classified offline", node)
    broker.start()
    watch.client.reconnect()
    drop_all(node.inbox, after)
    everything = hashes(before) | hashes(during) | hashes(after)
    wait_until(lambda: received_hashes(watch, topic) >= everything, 60, "every result after the outage", node)
    assert received_hashes(watch, topic) == everything
    assert node.alive()


def test_sigkill_mid_stream_loses_nothing(broker, node):
    watch = persistent_watch(broker, "dash-kill")
    topic = broker.topic("devA", "Sensors")
    node.start()
    wait_online(watch, broker.topic("devA", "Status"), node)
    first, second = images(20), images(10, offset=20)
    drop_all(node.inbox, first, pause_s=0.01)
    wait_until(lambda: len(list((node.inbox / "done").iterdir())) >= 5, 20, "a few images done", node)
    node.kill()
    seen = len(watch.messages)
    node.start()
    wait_online(watch, broker.topic("devA", "Status"), node, after=seen)
    drop_all(node.inbox, second)
    everything = hashes(first) | hashes(second)
    wait_until(lambda: received_hashes(watch, topic) >= everything, 60, "every result after the kill", node)
    assert received_hashes(watch, topic) == everything


def test_full_outbox_drops_the_oldest_and_warns_without_blocking(broker, tiny_package, tmp_path):
    confs = write_confs(tmp_path, broker, tiny_package.archive, tiny_package.public_key_text, outbox_limit=10)
    node = NodeProcess(confs, broker.credentials["devA"])
    watch = persistent_watch(broker, "dash-full")
    topic = broker.topic("devA", "Sensors")
    try:
        node.start()
        wait_online(watch, broker.topic("devA", "Status"), node)
        broker.stop()
        batch = images(15)
        drop_all(node.inbox, batch, pause_s=0.02)
        wait_until(lambda: len(list((node.inbox / "done").iterdir())) == 15, 30, "all classified while offline", node)
        broker.start()
        watch.client.reconnect()
        newest = hashes(dict(list(batch.items())[5:]))
        wait_until(lambda: received_hashes(watch, topic) >= newest, 60, "the ten newest results", node)
        warning_topic = broker.topic("devA", "Warnings")
        wait_until(
            lambda: any(
                isinstance(w, WarningMessage) and w.code is WarningCode.OUTBOX_OVERFLOW
                for w in (from_bytes(m.payload) for m in watch.messages if m.topic == warning_topic)
            ),
            20,
            "an OUTBOX_OVERFLOW warning",
            node,
        )
        time.sleep(0.5)
        assert received_hashes(watch, topic) == newest
    finally:
        node.kill()
