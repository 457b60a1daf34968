"""Faults on the node's own state: SIGKILL during an OTA install, and a full disk under the outbox."""

from __future__ import annotations

import errno
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from broker_harness import publish_and_wait
from contracts.messages import StatusMessage, UpdateMessage, from_bytes, to_bytes
from edge_node.outbox import Outbox
from faults.stack import FaultStack, ImageFeed, Scale, wait_until
from tests.edge_node.node_harness import TOKEN
from tests.edge_node.ota_support import PackageServer, make_slow_package, update_command

pytestmark = [pytest.mark.faults, pytest.mark.slow, pytest.mark.timeout(300)]
DELIVERY_TIMEOUT_S = 120.0
TERMINAL = ("ACTIVE", "FAILED", "ROLLED_BACK")


def finish(stack: FaultStack, feed: ImageFeed, name: str, record) -> None:
    """Wait for every image, then record and check the figures."""
    try:
        stack.wait_stored(feed.produced, DELIVERY_TIMEOUT_S)
    finally:
        tally = stack.tally(feed.produced)
        record(name, tally)
    assert tally.lost == 0, f"{name}: lost {tally.missing}\n{stack.logs()}"
    assert tally.stored == tally.produced > 0


def update_states(collector, command_id: str) -> list[str]:
    """States reported for a command, in order."""
    parsed = [from_bytes(m.payload) for m in list(collector.messages)]
    return [u.state.value for u in parsed if isinstance(u, UpdateMessage) and u.command_id == command_id]


def latest_status(stack: FaultStack, device: str) -> StatusMessage:
    """The newest Status a device published."""
    topic = stack.broker.topic(device, "Status")
    messages = [from_bytes(m.payload) for m in list(stack.watch.messages) if m.topic == topic]
    status = messages[-1]
    assert isinstance(status, StatusMessage)
    return status


def test_sigkill_during_ota_install(fault_stack: FaultStack, packages, scale: Scale, record, tmp_path: Path) -> None:
    slow = make_slow_package(tmp_path / "slow", packages.key, "2.0.0", pad_bytes=scale.ota_pad_bytes,
                             selftest_samples=200)
    server = PackageServer(token=TOKEN).start()
    broker = fault_stack.broker
    try:
        node = fault_stack.add_node("devA", packages.v1, packages.public_key, public_url=server.origin)
        fault_stack.start_node(node)
        updates = broker.collector(broker.dashboard_user, broker.topic("devA", "Updates"))
        feed = ImageFeed()
        third = max(1, scale.images // 3)
        fault_stack.wait_stored(feed.feed(node.inbox, third), 60)
        command = update_command("fault-ota", "2.0.0", server.add(slow.name, slow), slow.read_bytes())
        publish_and_wait(broker.client(broker.dashboard_user), broker.topic("devA", "Commands"), to_bytes(command))
        feed.feed(node.inbox, third, pause_s=0.02)
        wait_until(lambda: "INSTALLING" in update_states(updates, "fault-ota"), 120, "INSTALLING", fault_stack.logs)
        node.kill()
        assert "ACTIVE" not in update_states(updates, "fault-ota"), "the kill came after the install"
        fault_stack.start_node(node)
        wait_until(lambda: set(update_states(updates, "fault-ota")) & set(TERMINAL), 120, "the update's outcome",
                   fault_stack.logs)
        outcome = [s for s in update_states(updates, "fault-ota") if s in TERMINAL][-1]
        serving = latest_status(fault_stack, "devA").model_version
        assert (outcome, serving) in (("ACTIVE", "2.0.0"), ("FAILED", "1.0.0")), (outcome, serving)
        after = feed.feed(node.inbox, scale.images - 2 * third)
        finish(fault_stack, feed, "ota_install_sigkill", record)
        versions = fault_stack.versions_of(after)
        assert versions == {serving}, f"results after the restart came from {versions}, not the serving {serving}"
    finally:
        server.stop()


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 2 MB tmpfs for the node's outbox; skipped where mounting is not permitted."""
    mount_point = tmp_path / "state"
    mount_point.mkdir()
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m,mode=0700", "tmpfs", str(mount_point)],
                            capture_output=True, text=True)
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root or CAP_SYS_ADMIN): {result.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def fill(directory: Path) -> Path:
    """Write a file until the filesystem is full; returns it (delete it to free the space)."""
    filler = directory / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        while True:
            os.write(fd, b"\0" * 4096)
    except OSError as exc:
        assert exc.errno == errno.ENOSPC, exc
    finally:
        os.close(fd)
    return filler


def test_full_disk_under_the_outbox(fault_stack: FaultStack, packages, scale: Scale, record, small_disk: Path) -> None:
    node = fault_stack.add_node("devA", packages.v1, packages.public_key, outbox_path=str(small_disk / "outbox.db"))
    fault_stack.start_node(node)
    feed = ImageFeed()
    third = max(1, scale.images // 3)
    fault_stack.wait_stored(feed.feed(node.inbox, third), 60)
    mark = len(node.log())
    filler = fill(small_disk)
    during = feed.feed(node.inbox, third, pause_s=0.05)
    wait_until(lambda: "full" in node.log()[mark:], 30, "the node to meet the full disk", fault_stack.logs)
    waiting = [p for p in node.inbox.iterdir() if p.is_file()]
    assert waiting, "every image went through although the outbox could not be written"
    os.unlink(filler)
    feed.feed(node.inbox, scale.images - 2 * third)
    finish(fault_stack, feed, "outbox_disk_full", record)
    assert fault_stack.stored(during) == len(during) and node.alive()


def test_the_outbox_keeps_writing_on_a_small_disk(small_disk: Path) -> None:
    """Regression: with SQLite's default 4 MB auto-checkpoint the WAL alone filled a 2 MB disk for good."""
    outbox = Outbox(small_disk / "outbox.db", limit=1000)
    try:
        for n in range(1500):
            seq = outbox.put("t", b"x" * 600)
            assert outbox.mark_delivered([seq], now=float(n)) == 1
        assert (small_disk / "outbox.db-wal").stat().st_size <= 1024 * 1024
    finally:
        outbox.close()
