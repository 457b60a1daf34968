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


def log_in(app: Flask, client: FlaskClient, user: User) -> FlaskClient:
    """Put user in client's session the way Flask-Login does, without going through the login page."""
    with app.test_request_context():
        identifier = app.login_manager._session_identifier_generator()  # type: ignore[attr-defined]
    with client.session_transaction() as session:
        session["_user_id"] = user.get_id()
        session["_fresh"] = True
        session["_id"] = identifier
    return client


@pytest.fixture
def logged_in_admin(app: Flask, admin_user: tuple[User, str]) -> FlaskClient:
    """A client with the admin logged in."""
    return log_in(app, app.test_client(), admin_user[0])


@pytest.fixture
def logged_in_viewer(app: Flask, viewer_user: tuple[User, str]) -> FlaskClient:
    """A client with the viewer logged in."""
    return log_in(app, app.test_client(), viewer_user[0])


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
