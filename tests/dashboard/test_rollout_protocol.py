"""The rollout engine over the real broker against protocol-level nodes (paho clients that answer Commands)."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from contracts.messages import UpdateState, to_bytes
from dashboard.models import ModelRelease, Rollout
from dashboard.publish import MqttCommandPublisher
from dashboard.services import rollouts
from dashboard.services.rollout_engine import RolloutEngine

pytestmark = pytest.mark.timeout(90)
DEVICES = ("devA", "devB", "devC")


class ProtocolNode:
    """A node speaking only the protocol: Status on connect, Updates for each command it receives."""

    def __init__(self, broker, device_id: str, payloads, fail: bool = False, hold: threading.Event | None = None) -> None:
        self.broker, self.device_id, self.payloads = broker, device_id, payloads
        self.fail, self.hold = fail, hold
        self.commands: list[dict] = []
        self.client = None

    def connect(self) -> "ProtocolNode":
        self.client = self.broker.client(self.device_id, on_message=self._on_command)
        self.client.subscribe(self.broker.topic(self.device_id, "Commands"), qos=1)
        self.publish("Status", self.payloads.status(self.device_id, "ONLINE", "1.0.0"), retain=True)
        return self

    def publish(self, channel: str, message, retain: bool = False) -> None:
        self.client.publish(self.broker.topic(self.device_id, channel), to_bytes(message), qos=1, retain=retain)

    def _on_command(self, _client, _userdata, msg) -> None:
        command = json.loads(msg.payload)
        self.commands.append(command)
        threading.Thread(target=self._answer, args=(command,), daemon=True).start()

    def _answer(self, command: dict) -> None:
        cid, kind = command["command_id"], command["command"]["kind"]
        if kind == "rollback":
            self.publish("Updates", self.payloads.update(self.device_id, cid, "ROLLED_BACK", "1.0.0"))
            return
        version = command["command"]["version"]
        self.publish("Updates", self.payloads.update(self.device_id, cid, "DOWNLOADING"))
        if self.hold is not None:
            self.hold.wait(30)
        state = UpdateState.FAILED if self.fail else UpdateState.ACTIVE
        self.publish("Updates", self.payloads.update(self.device_id, cid, state.value, version, "self-test failed" if self.fail else None))

    def kinds(self) -> list[str]:
        return [c["command"]["kind"] for c in self.commands]


@pytest.fixture
def fleet_broker(broker_factory):
    return broker_factory(devices=DEVICES)


@pytest.fixture
def engine_ingest(fleet_broker, database, run_ingest):
    worker = run_ingest(fleet_broker, database)
    worker.tick = RolloutEngine(database, MqttCommandPublisher(worker.client, fleet_broker.dashboard_app), "http://dash.test").tick
    return worker


def release(database) -> int:
    with database.session() as session:
        row = ModelRelease(name="m", version="2.0.0", filename="m-2.0.0.tar.gz", sha256="a" * 64, size=1234, classes=["a", "b"],
                           manifest={}, metrics={}, uploaded_by="t", uploaded_at=datetime.now(UTC))
        session.add(row)
        session.flush()
        return row.id


def start_rollout(database, targets: str = "all", canary: int = 1, threshold: int = 0) -> int:
    with database.session() as session:
        return rollouts.create_rollout(session, release(database), targets, None, canary, threshold, "alice").id


def rollout_state(database, rollout_id: int) -> tuple[str, dict[str, str]]:
    with database.session(readonly=True) as session:
        rollout = session.get(Rollout, rollout_id)
        return rollout.state, {t.device_id: t.state for t in rollout.targets}


def devices_online(database, wait, names) -> None:
    from dashboard.models import Device

    def ok():
        with database.session(readonly=True) as session:
            return set(session.scalars(select(Device.id).where(Device.state == "ONLINE"))) >= set(names)
    wait(ok, what=f"{names} online")


def test_canary_first_then_the_rest(fleet_broker, database, engine_ingest, payloads, wait) -> None:
    hold = threading.Event()
    nodes = {d: ProtocolNode(fleet_broker, d, payloads, hold=hold).connect() for d in DEVICES}
    devices_online(database, wait, DEVICES)
    rollout_id = start_rollout(database, canary=1)
    wait(lambda: sum(len(n.commands) for n in nodes.values()) == 1, what="the canary's command")
    canary = next(d for d, n in nodes.items() if n.commands)
    wait(lambda: rollout_state(database, rollout_id)[1][canary] == "DOWNLOADING", what="canary downloading")
    assert sum(len(n.commands) for n in nodes.values()) == 1, "the rest waits for the canary"
    assert rollout_state(database, rollout_id)[0] == "CANARY"
    hold.set()
    wait(lambda: rollout_state(database, rollout_id)[0] == "COMPLETED", what="rollout completed")
    states = rollout_state(database, rollout_id)[1]
    assert set(states.values()) == {"ACTIVE"}
    assert all(n.kinds() == ["model_update"] for n in nodes.values())
    command = nodes[canary].commands[0]["command"]
    assert command["url"] == "http://dash.test/packages/1/m-2.0.0.tar.gz" and command["sha256"] == "a" * 64


def test_failing_canary_halts_the_rollout(fleet_broker, database, engine_ingest, payloads, wait) -> None:
    nodes = {d: ProtocolNode(fleet_broker, d, payloads, fail=True).connect() for d in DEVICES}
    devices_online(database, wait, DEVICES)
    rollout_id = start_rollout(database, canary=1, threshold=0)
    wait(lambda: rollout_state(database, rollout_id)[0] == "HALTED", what="halted")
    state, targets = rollout_state(database, rollout_id)
    assert sorted(targets.values()) == ["FAILED", "PENDING", "PENDING"]
    assert sum(len(n.commands) for n in nodes.values()) == 1
    with database.session(readonly=True) as session:
        assert "exceed the threshold" in session.get(Rollout, rollout_id).reason


def test_offline_node_converges_when_it_returns(fleet_broker, database, engine_ingest, payloads, wait) -> None:
    nodes = {d: ProtocolNode(fleet_broker, d, payloads) for d in DEVICES}
    for d in ("devA", "devB"):
        nodes[d].connect()
    late = fleet_broker.client("devC")
    late.publish(fleet_broker.topic("devC", "Status"), to_bytes(payloads.status("devC", "OFFLINE")), qos=1, retain=True).wait_for_publish(5)
    late.disconnect()
    devices_online(database, wait, ("devA", "devB"))
    rollout_id = start_rollout(database, canary=1)
    wait(lambda: rollout_state(database, rollout_id)[1] == {"devA": "ACTIVE", "devB": "ACTIVE", "devC": "PENDING"},
         what="online nodes active, offline one pending")
    assert rollout_state(database, rollout_id)[0] == "ROLLING"
    nodes["devC"].connect()
    wait(lambda: rollout_state(database, rollout_id)[0] == "COMPLETED", what="completed after devC returned")
    assert nodes["devC"].kinds() == ["model_update"]


def test_halt_resume_and_rollback_by_hand(fleet_broker, database, engine_ingest, payloads, wait) -> None:
    nodes = {d: ProtocolNode(fleet_broker, d, payloads).connect() for d in DEVICES}
    devices_online(database, wait, DEVICES)
    with database.session() as session:
        rollout_id = rollouts.create_rollout(session, release(database), "all", None, 1, 0, "alice").id
        rollouts.request(session, rollout_id, "halt", "alice")
    wait(lambda: rollout_state(database, rollout_id)[0] == "HALTED", what="halted by hand")
    with database.session() as session:
        rollouts.request(session, rollout_id, "resume", "alice")
    wait(lambda: rollout_state(database, rollout_id)[0] == "COMPLETED", what="completed after resume")
    with database.session() as session:
        rollouts.request(session, rollout_id, "rollback", "alice")
    wait(lambda: rollout_state(database, rollout_id)[0] == "ROLLED_BACK", what="rolled back")
    assert set(rollout_state(database, rollout_id)[1].values()) == {"ROLLED_BACK"}
    assert all(n.kinds() == ["model_update", "rollback"] for n in nodes.values())
