"""The running system the hostile-input suite attacks: broker, ingest, gunicorn web app and a node process."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from broker_harness import BrokerHandle, MessageCollector, free_port
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from faults.stack import FaultStack
from support.tiny_package import make_tiny_package
from support.web_server import WebServer, sign_in

from contracts.confs import Confs
from contracts.model_package import public_key_text
from tests.edge_node.node_harness import TOKEN, NodeProcess

NODE = "devA"
OTHER = "devB"
WATCHER = "watcher"


class WatchedSystem(FaultStack):
    """FaultStack whose one observing connection is a dashboard account of its own, subscribed to every device.

    The broker binds client id to username, so one account holds one connection: the ingest keeps the
    dashboard account, and every attack watches and commands through this single `watch` connection.
    """

    def _watch(self) -> MessageCollector:
        from broker_config import add_dashboard

        if WATCHER not in self.broker.credentials:
            self.broker.credentials[WATCHER] = add_dashboard(
                self.broker.root, WATCHER, app=self.broker.dashboard_app, locations=(self.broker.location,))
            self.broker.reload()
            self.broker._wait_login(WATCHER, 5.0)  # noqa: SLF001  (the harness's own wait for a reloaded account)
        return self.broker.collector(WATCHER, [self.broker.app_topic(), f"{self.broker.location}/Devices/+/+/#"])


@dataclass(frozen=True)
class Scale:
    """Sizes of the attacks: `ci` keeps `make test` short, `full` is what `make security` runs."""

    name: str
    slow_clients: int
    streams: int
    multipart_parts: int
    nesting: int

    @classmethod
    def named(cls, name: str) -> "Scale":
        """The scale called name (ci or full)."""
        if name == "full":
            return cls("full", slow_clients=200, streams=40, multipart_parts=200_000, nesting=2000)
        return cls("ci", slow_clients=50, streams=20, multipart_parts=20_000, nesting=2000)


@dataclass
class SecurityStack:
    """Handles on the running processes, the accounts seeded for the attacks and where state lives."""

    root: Path
    broker: BrokerHandle
    system: FaultStack
    web: WebServer
    node: NodeProcess
    key: Ed25519PrivateKey
    package: Path
    passwords: dict[str, str]
    admin_token: str
    viewer_token: str
    release_id: int
    viewers: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        """Base URL of the web app."""
        return self.web.base_url

    def cookie(self, username: str) -> dict[str, str]:
        """A fresh signed-in session of username, as a Cookie header."""
        return sign_in(self.url, username, self.passwords[username])

    def bearer(self, admin: bool = False) -> dict[str, str]:
        """An Authorization header with the admin's or the viewer's API token."""
        return {"Authorization": f"Bearer {self.admin_token if admin else self.viewer_token}"}

    def node_token(self) -> dict[str, str]:
        """The node's bearer token for POST /Inference."""
        return {"Authorization": f"Bearer {TOKEN}"}

    def query(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        """Rows from the dashboard database, read-only."""
        with sqlite3.connect(f"file:{self.system.db_path}?mode=ro", uri=True, timeout=10) as db:
            return db.execute(sql, args).fetchall()

    def logs(self) -> str:
        """Tails of the web app's, the ingest's and the node's logs."""
        return f"--- web\n{self.web.log_text()}\n{self.system.logs()}"


def _seed(confs: Confs, package: Path, viewers: int) -> tuple[dict[str, str], str, str, int]:
    """Schema, an admin, viewers, API tokens, the two devices and the release; returns what the attacks need."""
    from dashboard import create_app
    from dashboard.migrations import upgrade_database
    from dashboard.services import devices, releases, tokens, users

    app = create_app(confs)  # also creates the secret key, before gunicorn's workers race to
    db = app.extensions["db"]
    upgrade_database(db.engine)
    passwords = {}
    with db.session() as session:
        admin, passwords["admin"] = users.create_user(session, "admin", "admin")
        viewer, passwords["viewer"] = users.create_user(session, "viewer", "viewer")
        for name in ["bait", *(f"viewer{i}" for i in range(viewers))]:
            passwords[name] = users.create_user(session, name, "viewer")[1]
        admin_token = tokens.create_api_token(session, admin, "attacks")
        viewer_token = tokens.create_api_token(session, viewer, "attacks")
        for device in (NODE, OTHER):
            devices.register_device(session, device, "Hospital", "Lab1")
        release = releases.register_package(session, package, confs.dashboard.package_dir,
                                            confs.ota.trusted_public_keys, confs.ota.max_package_bytes, "seed")
        release_id = release.id
    db.dispose()
    return passwords, admin_token, viewer_token, release_id


def start_stack(root: Path, broker: BrokerHandle, scale: Scale) -> SecurityStack:
    """Start ingest, gunicorn (two workers, as compose runs it) and one node; the caller closes it."""
    key = Ed25519PrivateKey.generate()
    package = make_tiny_package(root / "src", key, "1.0.0")
    system = WatchedSystem(root, broker)
    web_port = free_port()
    raw = json.loads(system.ingest_confs.read_text())
    raw["dashboard"]["public_url"] = f"http://127.0.0.1:{web_port}"
    raw["ota"]["trusted_public_keys"] = [public_key_text(key)]
    system.ingest_confs.write_text(json.dumps(raw, indent=2))
    viewers = scale.streams // 5 + 1
    passwords, admin_token, viewer_token, release_id = _seed(Confs.model_validate(raw), package, viewers)
    system.start_ingest()
    web = WebServer(system.ingest_confs, web_port, root / "web.log", workers=2)
    try:
        node = system.add_node(NODE, package, public_key_text(key), public_url=web.base_url)
        system.start_node(node)
    except BaseException:
        web.stop()
        system.close()
        raise
    return SecurityStack(root, broker, system, web, node, key, package, passwords, admin_token, viewer_token,
                         release_id, [f"viewer{i}" for i in range(viewers)])


def close_stack(stack: SecurityStack) -> None:
    """Stop the node, the ingest and gunicorn (each by PID)."""
    stack.web.stop()
    stack.system.close()
