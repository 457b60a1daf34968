"""Web security: login by default, roles, CSRF, headers, inert injection strings, throttled sign-in."""

from __future__ import annotations

import io
import re

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.routing import IntegerConverter

from dashboard.db import Database
from dashboard.models import Alert, Classification, ModelRelease, Rollout, User
from support.web_seed import add_alert, add_classifications, add_device, add_warning, classification_row, csrf_from, now, sign_in

OPEN_ENDPOINTS = {"static", "auth.login"}
NOT_WEB = ("api.", "packages.", "metrics.")  # bearer-token routes, tested in test_security_api and test_api
INJECTIONS = (
    "<script>alert('x')</script>",
    "'; DROP TABLE classifications; --",
    '" onmouseover="alert(1)',
    "<img src=x onerror=alert(1)>",
    "1 OR 1=1",
)


@pytest.fixture
def admin(app: Flask, admin_user: tuple[User, str]) -> FlaskClient:
    """A client signed in as the admin."""
    return sign_in(app.test_client(), admin_user[0].username, admin_user[1])


@pytest.fixture
def viewer(app: Flask, viewer_user: tuple[User, str]) -> FlaskClient:
    """A client signed in as the viewer."""
    return sign_in(app.test_client(), viewer_user[0].username, viewer_user[1])


def web_routes(app: Flask) -> list[tuple[str, str, str]]:
    """(endpoint, method, url) of every web route, with placeholder arguments filled in."""
    routes = []
    for rule in app.url_map.iter_rules():
        if rule.endpoint in OPEN_ENDPOINTS or rule.endpoint.startswith(NOT_WEB):
            continue
        converters = rule._converters  # noqa: SLF001  (werkzeug exposes no public accessor)
        args = {name: 1 if isinstance(converters[name], IntegerConverter) else "x" for name in rule.arguments}
        with app.test_request_context():
            from flask import url_for

            url = url_for(rule.endpoint, **args)
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            routes.append((rule.endpoint, method, url))
    return routes


def test_route_enumeration_sees_every_web_area(app: Flask) -> None:
    endpoints = {endpoint for endpoint, _, _ in web_routes(app)}
    for expected in ("fleet.index", "node.detail", "results.index", "results.export_csv", "alerts.acknowledge",
                     "releases.upload", "rollouts.new", "rollouts.rollback", "audit.index", "streams.fleet",
                     "streams.results", "streams.rollout", "auth.logout"):
        assert expected in endpoints


def test_every_web_route_without_a_session_goes_to_login(app: Flask, db: Database) -> None:
    client = app.test_client()
    token = csrf_from(client, "/login")  # a valid token, so only the missing session can refuse
    for endpoint, method, url in web_routes(app):
        if endpoint == "auth.logout":
            continue
        response = client.open(url, method=method, data={"csrf_token": token} if method == "POST" else None)
        assert response.status_code == 302, (endpoint, method, response.status_code)
        assert response.headers["Location"].startswith("/login"), (endpoint, method)
    assert client.get("/login").status_code == 200
    assert client.get("/static/css/app.css").status_code == 200


def test_viewer_sees_pages_but_cannot_change_anything(viewer: FlaskClient, db: Database) -> None:
    with db.session() as session:
        add_device(session, "n1")
        alert_id = add_alert(session, "n1").id
        release = ModelRelease(name="m", version="1.0.0", filename="m.tar.gz", sha256="e" * 64, size=1,
                               classes=["a", "b"], manifest={}, metrics={}, uploaded_by="alice")
        session.add(release)
        session.flush()
        rollout = Rollout(release_id=release.id, target_kind="all", canary_size=1, failure_threshold=0,
                          state="HALTED", created_by="alice")
        session.add(rollout)
        session.flush()
        rollout_id = rollout.id
    for page in ("/", "/nodes/n1", "/results", "/alerts", "/models", "/rollouts", f"/rollouts/{rollout_id}", "/audit"):
        assert viewer.get(page).status_code == 200, page
    token = csrf_from(viewer, "/alerts")
    attempts = [
        ("/models/upload", {"package": (io.BytesIO(b"x"), "p.tar.gz")}),
        ("/rollouts/new", {"release_id": "1", "target_mode": "all", "canary_size": "1", "failure_threshold": "0"}),
        (f"/rollouts/{rollout_id}/halt", {}),
        (f"/rollouts/{rollout_id}/resume", {}),
        (f"/rollouts/{rollout_id}/rollback", {}),
        (f"/alerts/{alert_id}/acknowledge", {}),
    ]
    for url, data in attempts:
        response = viewer.post(url, data={"csrf_token": token, **data}, content_type="multipart/form-data")
        assert response.status_code == 403, url
        assert "needs the admin role" in response.get_data(as_text=True)
    assert viewer.get("/rollouts/new").status_code == 403
    with db.session() as session:
        assert session.get(Rollout, rollout_id).intent is None  # type: ignore[union-attr]
        assert session.get(Alert, alert_id).acknowledged_at is None  # type: ignore[union-attr]
        assert session.query(ModelRelease).count() == 1 and session.query(Rollout).count() == 1
    html = viewer.get("/alerts").get_data(as_text=True)
    assert "/acknowledge" not in html and "Upload a package" not in viewer.get("/models").get_data(as_text=True)


def test_forms_without_their_csrf_token_are_refused(admin: FlaskClient, db: Database, app: Flask) -> None:
    assert app.config.get("WTF_CSRF_ENABLED", True)
    with db.session() as session:
        add_device(session, "n1")
        alert_id = add_alert(session, "n1").id
    for url, data in ((f"/alerts/{alert_id}/acknowledge", {}), ("/rollouts/new", {"release_id": "1"}),
                      ("/models/upload", {}), ("/logout", {})):
        response = admin.post(url, data=data)
        assert response.status_code == 400, url
        assert "security token" in response.get_data(as_text=True)
    forged = admin.post(f"/alerts/{alert_id}/acknowledge", data={"csrf_token": "forged-token"})
    assert forged.status_code == 400
    with db.session() as session:
        assert session.get(Alert, alert_id).acknowledged_at is None  # type: ignore[union-attr]
    assert admin.get("/").status_code == 200  # still signed in: logout was refused too


def test_security_headers_on_pages_and_login(admin: FlaskClient, app: Flask) -> None:
    for response in (admin.get("/"), app.test_client().get("/login"), admin.get("/static/css/app.css")):
        assert "default-src 'self'" in response.headers["Content-Security-Policy"]
        assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]
        assert response.headers["X-Frame-Options"] == "DENY"
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["Referrer-Policy"] == "same-origin"
    assert admin.get("/").headers["Cache-Control"] == "no-store"


def test_pages_have_no_inline_script_or_style(admin: FlaskClient, app: Flask) -> None:
    for url in ("/", "/results", "/alerts", "/models", "/rollouts", "/audit"):
        html = admin.get(url).get_data(as_text=True)
        assert not re.search(r"<script(?![^>]*\bsrc=)", html), url
        assert " style=" not in html and "<style" not in html, url
    assert " style=" not in app.test_client().get("/login").get_data(as_text=True)


def test_injection_strings_in_filters_are_inert(admin: FlaskClient, db: Database) -> None:
    with db.session() as session:
        add_device(session, "n1")
        add_classifications(session, [classification_row("n1", now())])
    for text in INJECTIONS:
        for url in (f"/results?node={text}", f"/results?label={text}", f"/audit?actor={text}&action={text}",
                    f"/alerts?state={text}", f"/nodes/n1?range={text}", f"/results.csv?node={text}"):
            response = admin.get(url, query_string=None)
            assert response.status_code == 200, url
            body = response.get_data(as_text=True)
            assert "<script>alert" not in body and "<img src=x" not in body and 'onmouseover="alert' not in body
        assert admin.get("/results?node=" + text).get_data(as_text=True).count("data-result=") == 0
    with db.session() as session:
        assert session.query(Classification).count() == 1


def test_injection_strings_stored_by_nodes_and_admins_are_shown_inert(admin: FlaskClient, db: Database) -> None:
    with db.session() as session:
        add_device(session, "n1")
        for text in INJECTIONS:
            add_warning(session, "n1", message=text)
            add_alert(session, "n1", kind="custom", message=text)
        session.add(ModelRelease(name="m", version="1.0.0", filename="m.tar.gz", sha256="f" * 64, size=1,
                                 classes=["<b>a</b>", "b"], manifest={}, metrics={"note": INJECTIONS[0]},
                                 uploaded_by=INJECTIONS[3]))
    pages = [admin.get(u).get_data(as_text=True) for u in ("/nodes/n1", "/alerts", "/models", "/models/1")]
    for html in pages:
        assert "<script>alert" not in html and "<img src=x" not in html and "<b>a</b>" not in html
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in pages[1]
    assert "&lt;img src=x onerror=alert(1)&gt;" in pages[2]
    assert "&#39;; DROP TABLE classifications; --" in pages[0]


def test_sign_in_with_script_in_the_username_is_escaped(app: Flask) -> None:
    client = app.test_client()
    token = csrf_from(client, "/login")
    html = client.post("/login", data={"username": INJECTIONS[0], "password": "x", "csrf_token": token}).get_data(as_text=True)
    assert "<script>alert" not in html and "Invalid username or password." in html


def _attempt(client: FlaskClient, username: str, password: str) -> tuple[int, str]:
    token = csrf_from(client, "/login")
    response = client.post("/login", data={"username": username, "password": password, "csrf_token": token})
    return response.status_code, response.get_data(as_text=True)


def test_failed_sign_ins_are_throttled_alike_for_known_and_unknown_users(app: Flask, admin_user: tuple[User, str]) -> None:
    user, password = admin_user
    outcomes = {}
    for name in (user.username, "nobody-by-that-name"):
        client = app.test_client()
        statuses = [_attempt(client, name, "wrong password!")[0] for _ in range(5)]
        locked_status, locked_page = _attempt(client, name, "wrong password!")
        outcomes[name] = (statuses, locked_status)
        assert statuses == [401, 401, 401, 401, 429]
        assert locked_status == 429 and "Too many failed sign-in attempts" in locked_page
    assert outcomes[user.username] == outcomes["nobody-by-that-name"]
    status, page = _attempt(app.test_client(), user.username, password)
    assert status == 429 and "Too many failed" in page  # the right password does not get through a lock
    other_ip = app.test_client()
    other_ip.environ_base["REMOTE_ADDR"] = "10.1.2.3"
    # the lock is per username, whichever address tries next: unknown names stay as locked as known ones
    assert _attempt(other_ip, "nobody-by-that-name", "x")[0] == _attempt(other_ip, user.username, "x")[0] == 429


def test_bad_password_message_does_not_reveal_which_part_was_wrong(app: Flask, admin_user: tuple[User, str]) -> None:
    known = _attempt(app.test_client(), admin_user[0].username, "not the password")
    unknown = _attempt(app.test_client(), "ghost", "not the password")
    assert known[0] == unknown[0] == 401
    assert "Invalid username or password." in known[1] and "Invalid username or password." in unknown[1]


def test_sign_in_follows_only_local_next_urls(app: Flask, admin_user: tuple[User, str]) -> None:
    for target, expected in (("/results?label=Pre", "/results?label=Pre"), ("//evil.example/x", "/"),
                             ("https://evil.example/", "/"), ("/\\evil.example", "/")):
        client = app.test_client()
        token = csrf_from(client, "/login")
        response = client.post("/login", query_string={"next": target},
                               data={"username": admin_user[0].username, "password": admin_user[1], "csrf_token": token})
        assert response.status_code == 302 and response.headers["Location"] == expected, target


def test_logout_needs_a_post_with_token_and_ends_the_session(admin: FlaskClient) -> None:
    assert admin.get("/logout").status_code == 405
    token = csrf_from(admin, "/")
    assert admin.post("/logout", data={"csrf_token": token}).headers["Location"] == "/login"
    assert admin.get("/").status_code == 302


def test_session_cookie_is_http_only_and_same_site(app: Flask, admin_user: tuple[User, str]) -> None:
    client = app.test_client()
    token = csrf_from(client, "/login")
    response = client.post("/login", data={"username": admin_user[0].username, "password": admin_user[1], "csrf_token": token})
    cookie = next(c for c in response.headers.getlist("Set-Cookie") if c.startswith("session="))
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie


def test_oversized_upload_is_refused(admin: FlaskClient, app: Flask, db: Database) -> None:
    limit = app.config["CONFS"].ota.max_package_bytes
    app.config["MAX_CONTENT_LENGTH"] = 64 * 1024
    app.config["CONFS"] = app.config["CONFS"].model_copy(
        update={"ota": app.config["CONFS"].ota.model_copy(update={"max_package_bytes": 32 * 1024})})
    token = csrf_from(admin, "/models")
    middling = admin.post("/models/upload", data={"csrf_token": token, "package": (io.BytesIO(b"\0" * 40_000), "big.tar.gz")},
                          content_type="multipart/form-data", follow_redirects=True)
    assert "larger than" in middling.get_data(as_text=True)
    huge = admin.post("/models/upload", data={"csrf_token": token, "package": (io.BytesIO(b"\0" * 200_000), "huge.tar.gz")},
                      content_type="multipart/form-data")
    assert huge.status_code == 413
    with db.session() as session:
        assert session.query(ModelRelease).count() == 0
    assert limit > 0
