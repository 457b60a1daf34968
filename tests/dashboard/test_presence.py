"""A node killed without warning shows OFFLINE in the dashboard: its last will outranks its own birth."""

from __future__ import annotations

from pathlib import Path

import pytest

from contracts.model_package import generate_private_key, public_key_text
from dashboard.models import Device
from support.tiny_package import make_tiny_package
from tests.edge_node.node_harness import NodeProcess, write_confs


def device_state(database, device_id: str) -> str | None:  # type: ignore[no-untyped-def]
    with database.session(readonly=True) as session:
        device = session.get(Device, device_id)
        return device.state if device else None


@pytest.mark.timeout(120)
def test_sigkilled_node_turns_offline_and_a_restarted_one_online_again(
    broker, database, run_ingest, wait, tmp_path: Path  # type: ignore[no-untyped-def]
) -> None:
    key = generate_private_key()
    package = make_tiny_package(tmp_path / "pkg", key)
    (tmp_path / "node").mkdir()
    confs = write_confs(tmp_path / "node", broker, package, public_key_text(key), inputs={"http": False})
    node = NodeProcess(confs, broker.credentials["devA"])
    run_ingest(broker, database)

    node.start()
    wait(lambda: device_state(database, "devA") == "ONLINE", timeout=60, what="devA ONLINE")
    node.kill()
    wait(lambda: device_state(database, "devA") == "OFFLINE", timeout=60, what="devA OFFLINE after SIGKILL")

    node.start()
    wait(lambda: device_state(database, "devA") == "ONLINE", timeout=60, what="devA ONLINE after restart")
    node.terminate()
    wait(lambda: device_state(database, "devA") == "OFFLINE", timeout=30, what="devA OFFLINE after SIGTERM")
