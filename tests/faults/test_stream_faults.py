"""Faults on the path from node to database: broker SIGKILL, a cut link, ingest SIGKILL, node SIGKILL.

Each scenario feeds distinct images to a real node process, injects its fault while results flow,
and counts by image sha256 what the dashboard stored; any image without a stored result fails it.
"""

from __future__ import annotations

import threading
import time

import pytest
from faults.stack import FaultStack, ImageFeed, Scale, wait_until
from faults.tcp_proxy import TcpProxy

pytestmark = [pytest.mark.faults, pytest.mark.slow, pytest.mark.timeout(300)]
DELIVERY_TIMEOUT_S = 120.0


def feed_in_background(feed: ImageFeed, stack: FaultStack, node, count: int, pause_s: float) -> threading.Thread:
    """Feed images from a thread so the fault can land while they flow."""
    thread = threading.Thread(target=feed.feed, args=(node.inbox, count, pause_s), daemon=True)
    thread.start()
    return thread


def finish(stack: FaultStack, feed: ImageFeed, name: str, record) -> None:
    """Wait for every image, then record and check the figures."""
    try:
        stack.wait_stored(feed.produced, DELIVERY_TIMEOUT_S)
    finally:
        tally = stack.tally(feed.produced)
        record(name, tally)
    assert tally.lost == 0, f"{name}: lost {tally.missing}\n{stack.logs()}"
    assert tally.stored == tally.produced > 0


def test_broker_sigkill_and_restart_mid_stream(fault_stack: FaultStack, packages, scale: Scale, record) -> None:
    node = fault_stack.add_node("devA", packages.v1, packages.public_key)
    fault_stack.start_node(node)
    feed = ImageFeed()
    half = scale.images // 2
    first = feed_in_background(feed, fault_stack, node, half, pause_s=0.05)
    wait_until(lambda: fault_stack.stored(feed.produced) >= half // 2, 60, "results before the kill", fault_stack.logs)
    first.join(60)
    second = feed_in_background(feed, fault_stack, node, scale.images - half, pause_s=0.05)
    time.sleep(0.2)  # some of the second half are on their way when the broker dies
    fault_stack.kill_broker_and_restart()
    second.join(60)
    finish(fault_stack, feed, "broker_sigkill", record)
    assert node.alive() and fault_stack.ingest is not None and fault_stack.ingest.poll() is None


def test_broker_sigkill_while_the_dashboard_is_slow_to_return(late_autosave_stack, packages, scale, record) -> None:
    """The restarted broker lost the dashboard's session: what it accepts before ingest resubscribes is replayed."""
    stack = late_autosave_stack
    node = stack.add_node("devA", packages.v1, packages.public_key)
    stack.start_node(node)
    feed = ImageFeed()
    stack.wait_stored(feed.feed(node.inbox, 5), 60)
    stack.kill_ingest()
    stack.kill_broker_and_restart()
    later = max(5, scale.images // 3)
    feed.feed(node.inbox, later, pause_s=0.05)
    wait_until(lambda: len(list((node.inbox / "done").iterdir())) >= 5 + later, 30, "classified, no subscriber",
               stack.logs)
    time.sleep(2.0)  # acknowledged by the broker while nobody is subscribed
    stack.start_ingest()
    finish(stack, feed, "broker_sigkill_dashboard_late", record)


def test_node_cut_off_from_the_broker(fault_stack: FaultStack, packages, scale: Scale, record) -> None:
    proxy = TcpProxy(fault_stack.broker.host, fault_stack.broker.port).start()
    try:
        node = fault_stack.add_node("devA", packages.v1, packages.public_key, port=proxy.port)
        fault_stack.start_node(node)
        feed = ImageFeed()
        third = max(1, scale.images // 3)
        fault_stack.wait_stored(feed.feed(node.inbox, third), 60)
        proxy.cut()
        cut_at = time.monotonic()
        during = feed.feed(node.inbox, third, pause_s=min(0.5, scale.cut_s / (2 * third)))
        wait_until(lambda: len(list((node.inbox / "done").iterdir())) >= 2 * third, 30, "classified while cut off",
                   fault_stack.logs)
        assert fault_stack.stored(during) == 0, "results crossed a cut link"
        time.sleep(max(0.0, scale.cut_s - (time.monotonic() - cut_at)))
        proxy.restore()
        feed.feed(node.inbox, scale.images - 2 * third)
        finish(fault_stack, feed, "node_cut_off", record)
        assert proxy.connections_made >= 2, "the node never reconnected through the proxy"
    finally:
        proxy.stop()


def test_ingest_sigkill_mid_batch(fault_stack: FaultStack, packages, scale: Scale, record) -> None:
    node = fault_stack.add_node("devA", packages.v1, packages.public_key)
    fault_stack.start_node(node)
    feed = ImageFeed()
    half = scale.images // 2
    # One image first, the rest just before the kill: a fast node would otherwise store them all before it.
    feed.feed(node.inbox, 1)
    wait_until(lambda: fault_stack.stored(feed.produced) >= 1, 60, "the first stored batch", fault_stack.logs)
    feed.feed(node.inbox, half - 1)
    fault_stack.kill_ingest()
    killed_at = fault_stack.stored(feed.produced)
    feed.feed(node.inbox, scale.images - half)
    wait_until(lambda: len(list((node.inbox / "done").iterdir())) >= scale.images, 60, "every image classified",
               fault_stack.logs)
    assert killed_at < half, f"the kill came after all {half} images fed before it were stored"
    fault_stack.start_ingest()
    finish(fault_stack, feed, "ingest_sigkill", record)


def test_node_sigkill_mid_publish(fault_stack: FaultStack, packages, scale: Scale, record) -> None:
    node = fault_stack.add_node("devA", packages.v1, packages.public_key)
    fault_stack.start_node(node)
    feed = ImageFeed()
    first = scale.images * 2 // 3
    # One image first, the rest just before the kill: a fast node would otherwise store them all before it.
    feed.feed(node.inbox, 1)
    wait_until(lambda: fault_stack.stored(feed.produced) >= 1, 60, "the first results", fault_stack.logs)
    feed.feed(node.inbox, first - 1)
    node.kill()
    killed_at = fault_stack.stored(feed.produced)
    fault_stack.start_node(node)
    feed.feed(node.inbox, scale.images - first)
    assert killed_at < first, f"the kill came after all {first} images fed before it were stored"
    finish(fault_stack, feed, "node_sigkill", record)


def test_broker_sigkill_while_results_wait_for_the_ingest(late_autosave_stack, packages, scale, record) -> None:
    stack = late_autosave_stack
    node = stack.add_node("devA", packages.v1, packages.public_key)
    stack.start_node(node)
    feed = ImageFeed()
    stack.wait_stored(feed.feed(node.inbox, 5), 60)
    assert stack.stop_ingest() == 0
    queued = feed.feed(node.inbox, scale.images // 2)
    wait_until(lambda: len(list((node.inbox / "done").iterdir())) >= 5 + len(queued), 30, "classified", stack.logs)
    time.sleep(1.0)
    stack.kill_broker_and_restart()
    stack.start_ingest()
    feed.feed(node.inbox, 5)
    finish(stack, feed, "broker_sigkill_backlog", record)
