"""Sign-out, a new password and a new role end every session saved before them, server-side."""

from __future__ import annotations

from flask import Flask
from flask.testing import FlaskClient

from dashboard.models import User
from dashboard.services import users
from support.web_seed import csrf_from, sign_in


def _saved_cookie(client: FlaskClient) -> str:
    cookie = client.get_cookie("session")
    assert cookie is not None
    return cookie.value


def _replay(app: Flask, cookie: str) -> int:
    """Status of the fleet page fetched by a fresh client carrying only the saved session cookie."""
    thief = app.test_client()
    thief.set_cookie("session", cookie)
    return thief.get("/").status_code


def test_a_cookie_saved_before_logout_does_not_work_after_it(app: Flask, admin_user: tuple[User, str]) -> None:
    client = sign_in(app.test_client(), admin_user[0].username, admin_user[1])
    saved = _saved_cookie(client)
    assert _replay(app, saved) == 200
    client.post("/logout", data={"csrf_token": csrf_from(client, "/")})
    assert _replay(app, saved) == 302
    again = sign_in(app.test_client(), admin_user[0].username, admin_user[1])
    assert again.get("/").status_code == 200 and _replay(app, saved) == 302


def test_password_and_role_changes_end_saved_sessions(app: Flask, admin_user: tuple[User, str]) -> None:
    name, password = admin_user[0].username, admin_user[1]
    db = app.extensions["db"]
    saved = _saved_cookie(sign_in(app.test_client(), name, password))
    with db.session() as session:
        users.set_password(session, users.get_user_by_name(session, name), password)
    assert _replay(app, saved) == 302
    saved = _saved_cookie(sign_in(app.test_client(), name, password))
    with db.session() as session:
        users.set_role(session, users.get_user_by_name(session, name), "viewer")
    assert _replay(app, saved) == 302
    assert sign_in(app.test_client(), name, password).get("/").status_code == 200


def test_malformed_session_ids_are_refused(app: Flask, admin_user: tuple[User, str]) -> None:
    with app.extensions["db"].session() as session:
        for bad in ("1", "x:0", "1:x", "1:0:0", f"{10**30}:0", ""):
            assert users.load_session_user(session, bad) is None, bad
        assert users.load_session_user(session, f"{admin_user[0].id}:0") is not None
