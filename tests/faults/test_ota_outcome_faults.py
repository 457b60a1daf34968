"""A node SIGKILLed after ACTIVE but before the broker's PUBACK: the outcome survives in its outbox, the rollout completes."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from dashboard.db import Database
from dashboard.models import Device, Rollout
from dashboard.services import releases, rollouts
from faults.stack import FaultStack
from faults.tcp_proxy import TcpProxy
from support.tiny_package import make_tiny_package
from support.waiting import wait_until
from tests.edge_node.node_harness import TOKEN
from tests.edge_node.ota_support import Fault, PackageServer

pytestmark = [pytest.mark.faults, pytest.mark.slow, pytest.mark.timeout(300)]


def outbox_updates(outbox: Path) -> list[bytes]:
    """Updates payloads waiting in a node's outbox for their PUBACK."""
    if not outbox.exists():
        return []
    with sqlite3.connect(f"file:{outbox}?mode=ro", uri=True, timeout=10) as db:
        return [bytes(p) for (p,) in db.execute("SELECT payload FROM outbox WHERE topic LIKE '%/Updates'")]


def rollout_state(database: Database, rollout_id: int) -> tuple[str, list[str]]:
    with database.session(readonly=True) as session:
        rollout = session.get(Rollout, rollout_id)
        assert rollout is not None
        return rollout.state, [t.state for t in rollout.targets]


def device_stored(database: Database, device_id: str) -> bool:
    """Whether ingest has stored the node (a rollout can only target nodes the database knows)."""
    with database.session(readonly=True) as session:
        return session.get(Device, device_id) is not None


def test_sigkill_between_active_and_puback_then_the_rollout_completes(fault_stack: FaultStack, packages, tmp_path: Path) -> None:
    v2 = make_tiny_package(tmp_path, packages.key, "1.1.0", seed=1)
    server = PackageServer(token=TOKEN).start()
    proxy = TcpProxy(fault_stack.broker.host, fault_stack.broker.port).start()
    database = Database(f"sqlite:///{fault_stack.db_path}")
    try:
        fault_stack.stop_ingest()
        fault_stack.use_public_url(server.origin)
        fault_stack.start_ingest(engine=True)
        node = fault_stack.add_node("devA", packages.v1, packages.public_key, port=proxy.port, public_url=server.origin)
        fault_stack.start_node(node)
        # ONLINE on the broker comes before ingest has stored the node: wait for the row the rollout will target.
        wait_until(lambda: device_stored(database, "devA"), 30, "ingest to store devA", fault_stack.logs)
        with database.session() as session:
            release = releases.register_package(session, v2, fault_stack.root / "packages",
                                                [packages.public_key], 1 << 30, "admin")
            data = v2.read_bytes()
            stall = Fault(stall_at=len(data) // 2)
            server.add(release.filename, data, stall)
            rollout_id = rollouts.create_rollout(session, release.id, "devices", ["devA"], 1, 0, "admin").id
        wait_until(lambda: server.requests_for(release.filename), 60, "the node to start downloading", fault_stack.logs)
        proxy.cut()  # from here on nothing the node publishes reaches the broker, so no PUBACK either
        stall.release.set()
        outbox = Path(node.confs["edge_node"]["outbox_path"])
        wait_until(lambda: any(b'"ACTIVE"' in p for p in outbox_updates(outbox)), 90, "ACTIVE stored in the outbox",
                   fault_stack.logs)
        node.kill()
        assert rollout_state(database, rollout_id)[1] != ["ACTIVE"], "the outcome crossed a cut link"
        proxy.restore()
        fault_stack.start_node(node)
        wait_until(lambda: rollout_state(database, rollout_id) == ("COMPLETED", ["ACTIVE"]), 90,
                   "the rollout to complete", fault_stack.logs)
        assert server.body_bytes(release.filename) == len(data), "the update was applied once, not downloaded again"
    finally:
        database.dispose()
        proxy.stop()
        server.stop()
