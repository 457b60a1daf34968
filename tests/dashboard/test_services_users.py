"""Users, login throttling, tokens and the app factory's security settings."""

from __future__ import annotations

import stat
from datetime import timedelta

import pytest
from flask import Flask

from dashboard import create_app
from dashboard.db import Database
from dashboard.models import utcnow
from dashboard.services import tokens, users


def test_create_user_generates_a_password_and_stores_only_a_hash(database: Database) -> None:
    with database.session() as session:
        user, password = users.create_user(session, "alice", "admin")
    assert len(password) >= users.MIN_PASSWORD_LENGTH
    assert password not in user.password_hash
    with database.session() as session:
        assert users.authenticate(session, "alice", password).ok


@pytest.mark.parametrize("name", ["", "a b", "x" * 65, "'; DROP TABLE users; --", "<script>"])
def test_bad_usernames_are_refused(database: Database, name: str) -> None:
    with database.session() as session, pytest.raises(users.UserError):
        users.create_user(session, name, "viewer")


def test_unknown_role_and_duplicate_user_are_refused(database: Database) -> None:
    with database.session() as session:
        users.create_user(session, "bob", "viewer")
        with pytest.raises(users.UserError):
            users.create_user(session, "bob", "viewer")
        with pytest.raises(users.UserError):
            users.create_user(session, "carol", "root")


def test_failed_logins_lock_the_account_even_for_the_right_password(database: Database) -> None:
    with database.session() as session:
        _, password = users.create_user(session, "alice", "admin")
    now = utcnow()
    for _ in range(users.FREE_ATTEMPTS):
        with database.session() as session:
            assert not users.authenticate(session, "alice", "wrong-password", now).ok
    with database.session() as session:
        result = users.authenticate(session, "alice", password, now + timedelta(seconds=1))
        assert not result.ok and result.locked_until is not None
    with database.session() as session:
        later = now + users.lock_duration(users.FREE_ATTEMPTS) + timedelta(seconds=1)
        assert users.authenticate(session, "alice", password, later).ok


def test_unknown_user_fails_like_a_wrong_password(database: Database) -> None:
    with database.session() as session:
        assert users.authenticate(session, "nobody", "whatever").user is None


def test_api_and_device_tokens_verify_only_their_own_kind(database: Database) -> None:
    from dashboard.models import Device

    with database.session() as session:
        user, _ = users.create_user(session, "alice", "admin")
        device = Device(id="devA", location="Hospital", zone="Lab1")
        session.add(device)
        session.flush()
        api_token = tokens.create_api_token(session, user, "ci")
        device_token = tokens.create_device_token(session, device)
    with database.session() as session:
        assert tokens.user_for_api_token(session, api_token).username == "alice"
        assert tokens.user_for_api_token(session, device_token) is None
        assert tokens.device_for_token(session, device_token) == "devA"
        assert tokens.device_for_token(session, api_token) is None
        assert tokens.device_for_token(session, device_token + "x") is None


@pytest.mark.parametrize(
    "header, expected",
    [("Bearer abc", "abc"), ("bearer abc", "abc"), ("Basic abc", None), ("Bearer ", None), (None, None), ("", None)],
)
def test_bearer_header_parsing(header: str | None, expected: str | None) -> None:
    assert tokens.bearer_token(header) == expected


def test_secret_key_is_generated_once_with_mode_600(confs, monkeypatch) -> None:
    monkeypatch.delenv("SECRET_KEY", raising=False)
    first = create_app(confs, TESTING=True)
    second = create_app(confs, TESTING=True)
    path = __import__("pathlib").Path(confs.dashboard.secret_key_file)
    assert first.secret_key == second.secret_key and len(first.secret_key) >= 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_cookies_are_secure_outside_tests(confs, monkeypatch) -> None:
    monkeypatch.setenv("SECRET_KEY", "k" * 40)
    app = create_app(confs)
    assert app.config["SESSION_COOKIE_SECURE"] and app.config["SESSION_COOKIE_HTTPONLY"]
    assert app.config["SESSION_COOKIE_SAMESITE"] == "Lax"
    assert app.secret_key == "k" * 40


def test_database_url_env_overrides_confs(confs, monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'other.db'}")
    app = create_app(confs, TESTING=True)
    assert app.extensions["db"].url.endswith("other.db")


def test_app_fixture_has_csrf_and_login(app: Flask) -> None:
    assert "csrf" in app.extensions and app.login_manager is not None
