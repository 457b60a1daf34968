"""Many sites: nodes on two building brokers bridged over TLS to the central broker the ingest reads.

Real node processes feed distinct images; each scenario counts by image sha256 what the dashboard
stored centrally: nothing may be missing and nothing stored twice.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import select
from bridge_harness import Sites, bridged_sites
from broker_harness import BrokerHandle
from faults.stack import FaultStack, ImageFeed, Tally, wait_until

from dashboard.db import Database
from dashboard.models import Device, Rollout
from dashboard.services import releases, rollouts
from support.tiny_package import make_tiny_package
from tests.edge_node.node_harness import TOKEN, NodeProcess, write_confs
from tests.edge_node.ota_support import PackageServer

pytestmark = [pytest.mark.faults, pytest.mark.slow, pytest.mark.timeout(300)]
BRIDGE_CUT_S = 30.0
DELIVERY_TIMEOUT_S = 120.0


@dataclass
class Bridged:
    """The bridged sites and the central dashboard's stack."""

    sites: Sites
    stack: FaultStack

    def node(self, device: str, package: Path, public_key: str, **edge: object) -> NodeProcess:
        """A node process logging in to its building's broker (not started)."""
        building = self.sites.building_of(device)
        directory = self.stack.root / device
        directory.mkdir(exist_ok=True)
        node = NodeProcess(write_confs(directory, building, package, public_key, device=device, **edge),
                           building.credentials[device])
        self.stack.nodes.append(node)
        return node

    def started_nodes(self, packages, **edge: object) -> dict[str, NodeProcess]:
        """devA (BuildingA) and devB (BuildingB) started; their ONLINE status seen at the centre."""
        nodes = {d: self.node(d, packages.v1, packages.public_key, **edge) for d in ("devA", "devB")}
        for node in nodes.values():
            self.stack.start_node(node)
        return nodes


@pytest.fixture
def bridged(broker_factory: Callable[..., BrokerHandle], tmp_path: Path) -> Iterator[Bridged]:
    """Central broker with the ingest; BuildingA (devA) and BuildingB (devB) bridged to it through cuttable proxies."""
    sites = bridged_sites(broker_factory, {"BuildingA": ("devA",), "BuildingB": ("devB",)}, via_proxy=True)
    stack = FaultStack(tmp_path, sites.central)
    try:
        stack.start_ingest()
        yield Bridged(sites, stack)
    finally:
        stack.close()
        sites.close()


def settle(stack: FaultStack, feed: ImageFeed, name: str, record) -> Tally:
    """Wait for every image to be stored centrally, then check none is missing or stored twice."""
    try:
        stack.wait_stored(feed.produced, DELIVERY_TIMEOUT_S)
    finally:
        tally = stack.tally(feed.produced, settle_s=2.0)
        record(name, tally)
    assert tally.lost == 0, f"{name}: lost {tally.missing}\n{stack.logs()}"
    assert tally.duplicates == 0 and tally.stored == tally.produced > 0
    return tally


def stored_devices(stack: FaultStack) -> dict[str, int]:
    """Stored classifications per device."""
    with sqlite3.connect(f"file:{stack.db_path}?mode=ro", uri=True, timeout=10) as db:
        return dict(db.execute("SELECT device_id, COUNT(*) FROM classifications GROUP BY device_id").fetchall())


def known_devices(database: Database) -> set[str]:
    """Device ids the central dashboard has registered."""
    with database.session(readonly=True) as session:
        return set(session.scalars(select(Device.id)))


def done(node: NodeProcess) -> int:
    """Images the node has classified so far."""
    folder = node.inbox / "done"
    return len(list(folder.iterdir())) if folder.exists() else 0


def test_two_buildings_store_centrally_across_a_central_broker_sigkill(bridged: Bridged, packages, record) -> None:
    stack = bridged.stack
    nodes = bridged.started_nodes(packages)
    feed = ImageFeed()
    for node in nodes.values():
        feed.feed(node.inbox, 6, pause_s=0.05)
    wait_until(lambda: stack.stored(feed.produced) >= 6, 60, "results from both buildings", stack.logs)
    for node in nodes.values():
        feed.feed(node.inbox, 4)
    stack.kill_broker_and_restart()
    for node in nodes.values():
        feed.feed(node.inbox, 6, pause_s=0.05)
    settle(stack, feed, "bridged_central_sigkill", record)
    assert stored_devices(stack) == {"devA": 16, "devB": 16}
    assert all(node.alive() for node in nodes.values())


def test_a_30s_bridge_cut_loses_nothing_and_the_other_building_keeps_flowing(bridged: Bridged, packages, record) -> None:
    stack, proxy = bridged.stack, bridged.sites.proxies["BuildingA"]
    nodes = bridged.started_nodes(packages)
    feed = ImageFeed()
    stack.wait_stored(feed.feed(nodes["devA"].inbox, 5), 60)
    proxy.cut()
    cut_at = time.monotonic()
    during = feed.feed(nodes["devA"].inbox, 10, pause_s=0.5)
    elsewhere = feed.feed(nodes["devB"].inbox, 5)
    stack.wait_stored(elsewhere, 30)  # the other building's link is untouched
    wait_until(lambda: done(nodes["devA"]) >= 15, 30, "classified behind the cut", stack.logs)
    assert stack.stored(during) == 0, "results crossed a cut bridge"
    time.sleep(max(0.0, BRIDGE_CUT_S - (time.monotonic() - cut_at)))
    assert stack.stored(during) == 0
    proxy.restore()
    restored_at = time.monotonic()
    stack.wait_stored(during, DELIVERY_TIMEOUT_S)
    record_s = time.monotonic() - restored_at
    feed.feed(nodes["devA"].inbox, 5)
    settle(stack, feed, "bridge_cut_30s", record)
    assert proxy.connections_made >= 2, "the bridge never reconnected"
    print(f"bridge cut {BRIDGE_CUT_S:.0f} s: {len(during)} results queued, all stored {record_s:.1f} s after restore")


def test_a_rollout_reaches_nodes_behind_bridges(bridged: Bridged, packages, tmp_path: Path) -> None:
    stack = bridged.stack
    v2 = make_tiny_package(tmp_path, packages.key, "1.1.0", seed=1)
    server = PackageServer(token=TOKEN).start()
    database = Database(f"sqlite:///{stack.db_path}")
    try:
        stack.stop_ingest()
        stack.use_public_url(server.origin)
        stack.start_ingest(engine=True)
        nodes = bridged.started_nodes(packages, public_url=server.origin)
        wait_until(lambda: known_devices(database) >= {"devA", "devB"}, 30, "both nodes known centrally", stack.logs)
        with database.session() as session:
            release = releases.register_package(session, v2, stack.root / "packages", [packages.public_key],
                                                1 << 30, "admin")
            server.add(release.filename, v2.read_bytes())
            rollout_id = rollouts.create_rollout(session, release.id, "devices", ["devA", "devB"], 1, 0, "admin").id

        def state() -> tuple[str, list[str]]:
            with database.session(readonly=True) as session:
                rollout = session.get(Rollout, rollout_id)
                assert rollout is not None
                return rollout.state, sorted(t.state for t in rollout.targets)

        wait_until(lambda: state() == ("COMPLETED", ["ACTIVE", "ACTIVE"]), 120, "the rollout to complete",
                   lambda: f"{state()}\n{stack.logs()}")
        feed = ImageFeed(first_seed=1000)
        fresh = set().union(*(feed.feed(node.inbox, 2) for node in nodes.values()))
        stack.wait_stored(fresh, 60)
        assert stack.versions_of(fresh) == {"1.1.0"}
    finally:
        database.dispose()
        server.stop()

