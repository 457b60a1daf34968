"""API security: no token no answer, viewers cannot change anything, hostile strings stay inert."""

from __future__ import annotations

import pytest
from flask import url_for
from werkzeug.routing import IntegerConverter

from dashboard.ingest.store import BatchWriter
from dashboard.ingest.validate import validate
from dashboard.services import tokens

HOSTILE = ["' OR 1=1 --", "\"; DROP TABLE classifications; --", "<script>alert(1)</script>", "%00", "../../etc/passwd", "{{7*7}}"]


TOKEN_ENDPOINTS = ("api.", "metrics.")  # bearer-token routes: the REST API and the Prometheus scrape


def api_routes(app) -> list[tuple[str, str]]:
    """(method, url) of every bearer-token route, each placeholder filled with a value its converter accepts."""
    routes = []
    for rule in app.url_map.iter_rules():
        if rule.endpoint.startswith(TOKEN_ENDPOINTS):
            converters = rule._converters  # noqa: SLF001  (werkzeug exposes no public accessor)
            args = {name: 1 if isinstance(converters[name], IntegerConverter) else "devA" for name in rule.arguments}
            with app.test_request_context():
                url = url_for(rule.endpoint, **args)
            routes += [(method, url) for method in rule.methods - {"HEAD", "OPTIONS"}]
    return routes


def test_route_enumeration_fills_every_placeholder(app) -> None:
    routes = api_routes(app)
    assert not [url for _, url in routes if "<" in url or "%3C" in url]
    urls = {url for _, url in routes}
    for expected in ("/api/v1/review/1", "/api/v1/fhir/DiagnosticReport/devA", "/api/v1/specimens", "/metrics"):
        assert expected in urls


@pytest.fixture
def viewer_token(db, viewer_user) -> str:
    with db.session() as session:
        return tokens.create_api_token(session, viewer_user[0], "t")


def test_every_api_route_refuses_requests_without_a_valid_token(app, client, logged_in_admin) -> None:
    routes = api_routes(app)
    assert len(routes) >= 13
    for method, url in routes:
        for headers in ({}, {"Authorization": "Bearer api_forged"}, {"Authorization": "Basic YTpi"}):
            assert client.open(url, method=method, headers=headers).status_code == 401, (method, url, headers)
        # A logged-in browser session is not an API credential.
        assert logged_in_admin.open(url, method=method).status_code == 401, (method, url)


def test_viewer_tokens_cannot_change_anything(app, client, viewer_token) -> None:
    for method, url in api_routes(app):
        if method == "POST":
            r = client.open(url, method=method, headers={"Authorization": f"Bearer {viewer_token}"}, json={})
            assert r.status_code == 403, (method, url)


def test_hostile_strings_in_filters_are_inert(client, db, viewer_token) -> None:
    for value in HOSTILE:
        for name in ("device", "label", "zone"):
            r = client.get("/api/v1/results" if name != "zone" else "/api/v1/devices", query_string={name: value},
                           headers={"Authorization": f"Bearer {viewer_token}"})
            assert r.status_code == 200 and r.json.get("results", r.json.get("devices")) == []


def test_hostile_strings_in_stored_fields_come_back_verbatim_as_json(client, db, viewer_token, payloads) -> None:
    from contracts.messages import WarningCode, WarningMessage, to_bytes

    text = HOSTILE[2] + HOSTILE[1]
    warning = WarningMessage(device="devA", code=WarningCode.MODEL_ERROR, message=text)
    BatchWriter(db).write([validate("Hospital/Devices/Lab1/devA/Warnings", to_bytes(warning))], [])
    r = client.get("/api/v1/alerts", headers={"Authorization": f"Bearer {viewer_token}"})
    assert r.mimetype == "application/json" and r.json["alerts"][0]["message"] == text
    # Served as JSON that browsers may not sniff into HTML, so the markup stays data.
    assert r.headers["X-Content-Type-Options"] == "nosniff"


def test_signed_in_fixtures_hold_a_working_session(logged_in_admin, logged_in_viewer) -> None:
    assert logged_in_admin.get("/").status_code == 200
    assert logged_in_viewer.get("/").status_code == 200
    # The roles differ: only the admin may open the new-rollout form.
    assert logged_in_admin.get("/rollouts/new").status_code == 200
    assert logged_in_viewer.get("/rollouts/new").status_code == 403
