"""Flaskr-style fixtures over a temporary database, plus a throwaway PostgreSQL database when one answers."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from flask import Flask
from flask.testing import FlaskClient, FlaskCliRunner

from contracts.confs import Confs
from contracts.model_package import public_key_text
from dashboard import create_app
from dashboard.db import Database
from dashboard.migrations import upgrade_database
from dashboard.models import User
from dashboard.services import users
from support.waiting import wait_until
from support.web_seed import sign_in

REPO = Path(__file__).resolve().parents[2]
PG_ADMIN_DSN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres connect_timeout=2"


def make_confs(tmp_path: Path, trusted_keys: list[str] | None = None, **dashboard: Any) -> Confs:
    """The repository's confs.json with every dashboard path moved under tmp_path."""
    raw = json.loads((REPO / "confs.json").read_text())
    raw["dashboard"].update(
        database_url=f"sqlite:///{tmp_path / 'dashboard.db'}",
        secret_key_file=str(tmp_path / "secret_key"),
        package_dir=str(tmp_path / "packages"),
        public_url="http://127.0.0.1:5999",
    )
    raw["dashboard"].update(dashboard)
    raw["ota"]["trusted_public_keys"] = trusted_keys or []
    return Confs.model_validate(raw)


@pytest.fixture
def signing_key() -> Ed25519PrivateKey:
    """A trusted package signing key (its public half is in the app's confs)."""
    return Ed25519PrivateKey.generate()


@pytest.fixture
def confs_maker() -> Callable[..., Confs]:
    """make_confs, for tests needing confs of their own (the public URL of a real server)."""
    return make_confs


@pytest.fixture
def confs(tmp_path: Path, signing_key: Ed25519PrivateKey) -> Confs:
    """Confs with a temporary SQLite database, package dir and secret key file."""
    return make_confs(tmp_path, [public_key_text(signing_key)])


@pytest.fixture
def app(confs: Confs, monkeypatch: pytest.MonkeyPatch) -> Iterator[Flask]:
    """The app over a migrated temporary SQLite database."""
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.delenv("SECRET_KEY", raising=False)
    app = create_app(confs, TESTING=True)
    upgrade_database(app.extensions["db"].engine)
    yield app
    app.extensions["db"].dispose()


@pytest.fixture
def db(app: Flask) -> Database:
    """The app's Database."""
    return app.extensions["db"]  # type: ignore[no-any-return]


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    """A test client without a session."""
    return app.test_client()


@pytest.fixture
def runner(app: Flask) -> FlaskCliRunner:
    """A CLI runner for the app's commands."""
    return app.test_cli_runner()


@pytest.fixture
def admin_user(db: Database) -> tuple[User, str]:
    """An admin and its password."""
    with db.session() as session:
        return users.create_user(session, "alice", "admin")


@pytest.fixture
def viewer_user(db: Database) -> tuple[User, str]:
    """A viewer and its password."""
    with db.session() as session:
        return users.create_user(session, "victor", "viewer")


def log_in(client: FlaskClient, username: str, password: str) -> FlaskClient:
    """Sign in through the real login form (with its CSRF token) and check that pages now answer."""
    sign_in(client, username, password)
    page = client.get("/")
    assert page.status_code == 200, f"{username} is not signed in: / answered {page.status_code}"
    return client


@pytest.fixture
def logged_in_admin(app: Flask, admin_user: tuple[User, str]) -> FlaskClient:
    """A client with the admin signed in."""
    return log_in(app.test_client(), admin_user[0].username, admin_user[1])


@pytest.fixture
def logged_in_viewer(app: Flask, viewer_user: tuple[User, str]) -> FlaskClient:
    """A client with the viewer signed in."""
    return log_in(app.test_client(), viewer_user[0].username, viewer_user[1])


@pytest.fixture(scope="session")
def postgres_server() -> str:
    """The admin DSN of a PostgreSQL on 127.0.0.1:5432, or skip saying none answers."""
    try:
        import psycopg
    except ImportError:
        pytest.skip("psycopg is not installed: PostgreSQL tests skipped")
    try:
        psycopg.connect(PG_ADMIN_DSN, autocommit=True).close()
    except psycopg.Error as exc:
        pytest.skip(f"no PostgreSQL answers on 127.0.0.1:5432 as user postgres ({str(exc).strip()[:120]}): skipped")
    return PG_ADMIN_DSN


@pytest.fixture
def postgres_url(postgres_server: str) -> Iterator[str]:
    """A throwaway PostgreSQL database, dropped after the test."""
    import psycopg

    name = f"dash_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_server, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    with psycopg.connect(postgres_server, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    """A migrated Database on SQLite and, when one answers, on PostgreSQL (core tests run on both)."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'core.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
    database = Database(url)
    upgrade_database(database.engine)
    yield database
    database.dispose()


@pytest.fixture
def make_db_url(tmp_path: Path) -> Callable[[str], str]:
    """Build a SQLite URL under tmp_path."""
    return lambda name: f"sqlite:///{tmp_path / name}"


# ---- MQTT-level helpers: payloads as nodes send them, and an ingest worker run in a thread ----

import hashlib  # noqa: E402
import threading  # noqa: E402

from contracts.messages import (  # noqa: E402
    LifeMessage,
    NodeState,
    SensorsMessage,
    StatusMessage,
    UpdateMessage,
    UpdateState,
    to_bytes,
)
from dashboard.ingest.store import BatchWriter  # noqa: E402
from dashboard.ingest.worker import IngestSettings, IngestWorker  # noqa: E402


class Payloads:
    """Valid node payloads for tests."""

    @staticmethod
    def sensors(device: str, n: int = 0, label: str = "Benign", uncertain: bool = False, **kw: Any) -> SensorsMessage:
        probs = {"Benign": 0.1, "Early": 0.1, "Pre": 0.1, "Pro": 0.1}
        probs[label] = 0.7
        return SensorsMessage(
            device=device, sample_id=f"s{n}", image_sha256=hashlib.sha256(str(n).encode()).hexdigest(), label=label,
            confidence=0.7, probabilities=probs, model_version="1.0.0", inference_ms=3.0, uncertain=uncertain, **kw,
        )

    @staticmethod
    def status(device: str, state: str = "ONLINE", model_version: str | None = "1.0.0") -> StatusMessage:
        return StatusMessage(device=device, state=NodeState(state), model_version=model_version, software_version="0.1.0")

    @staticmethod
    def life(device: str, **kw: Any) -> LifeMessage:
        values = dict(cpu_percent=10.0, memory_percent=20.0, disk_percent=30.0, temperature_c=45.0, uptime_s=5.0,
                      inference_count=1, outbox_depth=0)
        values.update(kw)
        return LifeMessage(device=device, **values)

    @staticmethod
    def update(device: str, command_id: str, state: str, version: str | None = None, reason: str | None = None) -> UpdateMessage:
        return UpdateMessage(device=device, command_id=command_id, state=UpdateState(state), version=version, reason=reason)

    to_bytes = staticmethod(to_bytes)


@pytest.fixture
def payloads() -> type[Payloads]:
    """Builders of valid node payloads."""
    return Payloads


def ingest_settings(broker: Any, client_id: str = "dashboard-ingest-test", **kw: Any) -> IngestSettings:
    """Settings of an ingest worker on the harness broker, as the dashboard account (or `username`)."""
    username = kw.pop("username", broker.dashboard_user)
    return IngestSettings(
        host=broker.host, port=broker.port, username=username,
        password=broker.credentials[username], location=broker.location, app_id=broker.dashboard_app,
        client_id=client_id, **kw,
    )


@pytest.fixture
def run_ingest() -> Iterator[Callable[..., IngestWorker]]:
    """Start IngestWorkers in threads (connected before returning); all are stopped after the test."""
    running: list[tuple[IngestWorker, threading.Thread]] = []

    def start(broker: Any, database: Database, tick: Any = None, clock: Any = None, **kw: Any) -> IngestWorker:
        worker = IngestWorker(ingest_settings(broker, **kw), BatchWriter(database, clock), tick)
        worker.start()
        assert worker.connected.wait(10), "ingest worker did not connect"
        thread = threading.Thread(target=worker.run, daemon=True)
        thread.start()
        running.append((worker, thread))
        return worker

    yield start
    for worker, thread in running:
        worker.stopping.set()
        thread.join(10)
        worker.stop()


@pytest.fixture
def wait() -> Callable[..., Any]:
    """The wait_until helper."""
    return wait_until
