"""Staged rollouts to the fleet simulator: real ingest and engine, packages over a real HTTP server, real OTA agents."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import func, select
from werkzeug.serving import BaseWSGIServer, make_server

from broker_harness import free_port
from contracts.confs import EdgeNodeConfs
from contracts.messages import UpdateState
from contracts.model_package import public_key_text
from dashboard import create_app
from dashboard.db import Database
from dashboard.migrations import upgrade_database
from dashboard.models import Classification, Device, Rollout
from dashboard.publish import MqttCommandPublisher
from dashboard.services import devices, releases, rollouts, tokens
from dashboard.services.rollout_engine import RolloutEngine
from edge_node.simulate import Fleet, FleetSettings
from support.tiny_package import make_tiny_package

pytestmark = pytest.mark.timeout(120)
FLEET = ("sim-0001", "sim-0002")
LATE = "late-0001"


@pytest.fixture(scope="module")
def packages(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Tiny packages: 1.0.0 installed at start, 1.1.0 good, 1.2.0 failing its self-test, 1.3.0 answering uncertain."""
    key = Ed25519PrivateKey.generate()
    out = tmp_path_factory.mktemp("packages")
    return {
        "key": key,
        "1.0.0": make_tiny_package(out, key, "1.0.0"),
        "1.1.0": make_tiny_package(out, key, "1.1.0", seed=1),
        "1.2.0": make_tiny_package(out, key, "1.2.0", seed=2, break_selftest=True),
        "1.3.0": make_tiny_package(out, key, "1.3.0", seed=3),
    }


@dataclass
class Site:
    """A running dashboard (web server for packages, ingest with its rollout engine) and its broker."""

    broker: Any
    database: Database
    public_url: str
    package_dir: Path
    tokens: dict[str, str]
    packages: dict[str, Any]
    work_dir: Path
    wait: Callable[..., Any]
    fleets: list[Fleet]

    def fleet(self, prefix: str, nodes: int, **options: Any) -> Fleet:
        """Start a simulated fleet of this prefix whose nodes boot on 1.0.0 (stopped after the test)."""
        settings = FleetSettings(**{
            "nodes": nodes, "host": self.broker.host, "port": self.broker.port, "location": self.broker.location,
            "zone": self.broker.zone, "work_dir": self.work_dir, "trusted_keys": [self.packages["key"].public_key()],
            "initial_package": self.packages["1.0.0"], "rate": 0.2, "life_interval_s": 1.0, "device_prefix": prefix,
            "cheap_classifier": True, "workers": 2, **options,
        })
        fleet = Fleet(settings, self.broker.credentials, self.tokens)
        self.fleets.append(fleet)
        fleet.start(connect_timeout=20)
        return fleet

    def release(self, version: str) -> int:
        """Register a package as a release, as an admin's upload does."""
        with self.database.session() as session:
            release = releases.register_package(session, self.packages[version], self.package_dir,
                                                [public_key_text(self.packages["key"])], 10_000_000, "alice")
            return release.id

    def rollout(self, release_id: int, canary: int = 1, threshold: int = 0) -> int:
        """A rollout of the release to every node."""
        with self.database.session() as session:
            return rollouts.create_rollout(session, release_id, "all", None, canary, threshold, "alice").id

    def state(self, rollout_id: int) -> tuple[str, dict[str, str]]:
        """The rollout's state and each target's."""
        with self.database.session(readonly=True) as session:
            rollout = session.get(Rollout, rollout_id)
            return rollout.state, {t.device_id: t.state for t in rollout.targets}

    def wait_online(self, names: tuple[str, ...]) -> None:
        """Until the dashboard sees every named node ONLINE."""
        def online() -> bool:
            with self.database.session(readonly=True) as session:
                return set(session.scalars(select(Device.id).where(Device.state == "ONLINE"))) >= set(names)
        self.wait(online, 30, f"{names} online")

    def device_state(self, device_id: str) -> str | None:
        """The node's state as the dashboard knows it."""
        with self.database.session(readonly=True) as session:
            device = session.get(Device, device_id)
            return None if device is None else device.state


@pytest.fixture
def site(broker_factory: Callable[..., Any], packages: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
         run_ingest: Callable[..., Any], confs_maker: Callable[..., Any], wait: Callable[..., Any]) -> Iterator[Site]:
    """Broker, web app on a real HTTP server, ingest with the rollout engine; devices registered with tokens."""
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.delenv("SECRET_KEY", raising=False)
    broker = broker_factory(devices=(*FLEET, LATE))
    port = free_port()
    public_url = f"http://127.0.0.1:{port}"
    confs = confs_maker(tmp_path, [public_key_text(packages["key"])], public_url=public_url)
    app = create_app(confs)
    upgrade_database(app.extensions["db"].engine)
    device_tokens = {}
    with app.extensions["db"].session() as session:
        for device_id in (*FLEET, LATE):
            device = devices.register_device(session, device_id, broker.location, broker.zone)
            device_tokens[device_id] = tokens.create_device_token(session, device)
    server: BaseWSGIServer = make_server("127.0.0.1", port, app, threaded=True)
    serving = threading.Thread(target=server.serve_forever, name="packages", daemon=True)
    serving.start()
    database = Database(confs.dashboard.database_url)  # ingest has its own engine, as its own process would
    worker = run_ingest(broker, database, client_id="dashboard-ingest-rollout", flush_interval_s=0.05)
    worker.tick = RolloutEngine(database, MqttCommandPublisher(worker.client, broker.dashboard_app), public_url).tick
    site = Site(broker, database, public_url, Path(confs.dashboard.package_dir), device_tokens, packages,
                tmp_path / "fleet", wait, [])
    try:
        yield site
    finally:
        for fleet in site.fleets:
            fleet.stop()
        server.shutdown()
        serving.join(10)
        database.dispose()
        app.extensions["db"].dispose()


def first_update_at(site: Site, fleet: Fleet, rollout_id: int, device_id: str, state: UpdateState | None = None) -> Any:
    """When the node first reported on its command of this rollout (or reached state), by the node's own record."""
    with site.database.session(readonly=True) as session:
        [command_id] = [t.command_id for t in session.get(Rollout, rollout_id).targets if t.device_id == device_id]
    updates = [u for u in list(fleet.node(device_id).counters.updates)
               if u.command_id == command_id and (state is None or u.state == state)]
    return min((u.sent_at for u in updates), default=None)


def test_canary_first_then_the_rest(site: Site) -> None:
    fleet = site.fleet("sim", len(FLEET))
    site.wait_online(FLEET)
    with site.database.session() as session:
        session.delete(session.get(Device, LATE))  # this test's fleet is the two sim nodes
    rollout_id = site.rollout(site.release("1.1.0"), canary=1)
    site.wait(lambda: site.state(rollout_id)[0] == "COMPLETED", 60, "rollout completed")
    _, targets = site.state(rollout_id)
    assert targets == {d: "ACTIVE" for d in FLEET}
    assert {n.model_version for n in fleet.stats()} == {"1.1.0"}
    with site.database.session(readonly=True) as session:
        rollout = session.get(Rollout, rollout_id)
        [canary] = [t.device_id for t in rollout.targets if t.is_canary]
        assert {session.get(Device, d).model_version for d in FLEET} == {"1.1.0"}
    [other] = [d for d in FLEET if d != canary]
    canary_active = first_update_at(site, fleet, rollout_id, canary, UpdateState.ACTIVE)
    other_started = first_update_at(site, fleet, rollout_id, other)
    assert canary_active is not None and other_started is not None
    assert other_started >= canary_active, "the rest got the update only after the canary was ACTIVE"


def test_failing_canary_halts_the_rollout(site: Site) -> None:
    fleet = site.fleet("sim", len(FLEET))
    site.wait_online(FLEET)
    with site.database.session() as session:
        session.delete(session.get(Device, LATE))
    rollout_id = site.rollout(site.release("1.2.0"), canary=1, threshold=0)
    site.wait(lambda: site.state(rollout_id)[0] == "HALTED", 60, "rollout halted")
    state, targets = site.state(rollout_id)
    assert sorted(targets.values()) == ["FAILED", "PENDING"]
    [canary] = [d for d, s in targets.items() if s == "FAILED"]
    [other] = [d for d in FLEET if d != canary]
    with site.database.session(readonly=True) as session:
        assert "exceed the threshold" in (session.get(Rollout, rollout_id).reason or "")
    # Give the engine a few more ticks: a halted rollout sends nothing to the rest.
    site.wait(lambda: first_update_at(site, fleet, rollout_id, canary) is not None, 10, "canary's updates")
    threading.Event().wait(2.5)
    assert first_update_at(site, fleet, rollout_id, other) is None
    assert {n.device_id: n.model_version for n in fleet.stats()} == {canary: "1.0.0", other: "1.0.0"}
    assert site.state(rollout_id)[0] == "HALTED"


def test_offline_node_converges_when_it_returns(site: Site) -> None:
    late = site.fleet("late", 1)
    site.wait_online((LATE,))
    late.stop()  # the node goes away cleanly (OFFLINE), keeping its disk
    site.fleets.remove(late)
    site.wait(lambda: site.device_state(LATE) == "OFFLINE", 20, f"{LATE} offline")
    fleet = site.fleet("sim", len(FLEET))
    site.wait_online(FLEET)
    rollout_id = site.rollout(site.release("1.1.0"), canary=1)
    site.wait(lambda: site.state(rollout_id)[1] == {**{d: "ACTIVE" for d in FLEET}, LATE: "PENDING"}, 60,
               "online nodes active, the offline one pending")
    assert site.state(rollout_id)[0] == "ROLLING"
    back = site.fleet("late", 1)  # the same node boots again from its work dir
    site.wait(lambda: site.state(rollout_id)[0] == "COMPLETED", 60, "completed after the node returned")
    assert back.stats()[0].model_version == "1.1.0"
    assert {n.model_version for n in fleet.stats()} == {"1.1.0"}


def test_a_release_whose_results_turn_uncertain_fails_the_health_gate_and_halts(site: Site) -> None:
    # The stand-in answers at least 35% confidence on its images, so at 0.3 nothing is uncertain before the update.
    fleet = site.fleet("sim", len(FLEET), rate=2.0, uncertain_versions=("1.3.0",),
                       edge=EdgeNodeConfs(confidence_threshold=0.3))
    site.wait_online(FLEET)
    with site.database.session() as session:
        session.delete(session.get(Device, LATE))

    def stored(device_id: str) -> int:
        with site.database.session(readonly=True) as session:
            return session.scalar(select(func.count()).where(Classification.device_id == device_id)) or 0
    site.wait(lambda: min(stored(d) for d in FLEET) >= 15, 30, "a baseline of results before the update")
    release_id = site.release("1.3.0")
    with site.database.session() as session:
        rollout_id = rollouts.create_rollout(session, release_id, "all", None, 1, 0, "alice", soak_s=1,
                                             health_gate=True).id
    site.wait(lambda: site.state(rollout_id)[0] == "HALTED", 90, "rollout halted by its health gate")
    _, targets = site.state(rollout_id)
    [canary] = [d for d, s in targets.items() if s == "ACTIVE"]
    [other] = [d for d in FLEET if d != canary]
    assert targets[other] == "PENDING"
    with site.database.session(readonly=True) as session:
        rollout = session.get(Rollout, rollout_id)
        reason, [entry] = rollout.reason or "", rollout.phase_log
    assert "health gate failed after the canary" in reason and "uncertain share rose from 0% to 100%" in reason
    gate = entry["gate"]
    assert gate["status"] == "fail" and gate["after"]["results"] >= 10 and gate["before"]["results"] >= 10
    assert first_update_at(site, fleet, rollout_id, other) is None
    assert {n.device_id: n.model_version for n in fleet.stats()} == {canary: "1.3.0", other: "1.0.0"}
