"""Huge integers, deeply nested JSON and control characters are refused with 400 or 404, never a 500."""

from __future__ import annotations

from flask import Flask
from flask.testing import FlaskClient

from dashboard.models import User
from dashboard.services import tokens
from support.web_seed import add_device, csrf_from, sign_in

HUGE = str(10**20)


def _admin_token(app: Flask, admin: User) -> dict[str, str]:
    with app.extensions["db"].session() as session:
        return {"Authorization": f"Bearer {tokens.create_api_token(session, session.get(User, admin.id), 'test')}"}


def test_huge_ids_in_web_routes_and_query_strings_are_404_or_400(app: Flask, admin_user: tuple[User, str]) -> None:
    client = sign_in(app.test_client(), admin_user[0].username, admin_user[1])
    for url in (f"/models/{HUGE}", f"/rollouts/{HUGE}", f"/stream/rollouts/{HUGE}", f"/packages/{HUGE}/x.tar.gz",
                f"/audit?before={HUGE}", f"/rollouts/new?release_id={HUGE}", f"/results?per_page={HUGE}",
                f"/results?after={HUGE}_{HUGE}"):
        status = client.get(url).status_code
        assert status in (200, 400, 404), (url, status)
    token = csrf_from(client, "/rollouts")
    for url in (f"/rollouts/{HUGE}/halt", f"/alerts/{HUGE}/acknowledge"):
        assert client.post(url, data={"csrf_token": token}).status_code in (400, 404), url
    stream = client.get("/stream/results", headers={"Last-Event-ID": HUGE}, buffered=False)
    assert stream.status_code == 200
    stream.close()


def test_huge_numbers_in_the_api_are_400_or_404(app: Flask, client: FlaskClient, admin_user: tuple[User, str]) -> None:
    headers = _admin_token(app, admin_user[0])
    for url in (f"/api/v1/rollouts/{HUGE}", f"/api/v1/results?page={HUGE}", f"/api/v1/results?per_page={HUGE}",
                f"/api/v1/devices/x/telemetry?max_points={HUGE}", f"/api/v1/results?page={2**62}"):
        status = client.get(url, headers=headers).status_code
        assert status in (200, 400, 404), (url, status)
    for url in (f"/api/v1/alerts/{HUGE}/ack", f"/api/v1/rollouts/{HUGE}/halt"):
        assert client.post(url, headers=headers).status_code in (400, 404), url
    response = client.post("/api/v1/rollouts", headers=headers, json={"release_id": 10**30, "targets": "all"})
    assert response.status_code == 400 and response.json["error"] == "bad_request"


def test_a_deeply_nested_json_body_is_a_400(app: Flask, client: FlaskClient, admin_user: tuple[User, str]) -> None:
    headers = {**_admin_token(app, admin_user[0]), "Content-Type": "application/json"}
    body = "[" * 100_000 + "]" * 100_000
    response = client.post("/api/v1/rollouts", headers=headers, data=body)
    assert response.status_code == 400


def test_next_with_cr_lf_is_a_400(app: Flask, admin_user: tuple[User, str]) -> None:
    client = app.test_client()
    target = "/results\r\nSet-Cookie: pwned=1"
    assert client.get("/login", query_string={"next": target}).status_code == 400
    token = csrf_from(client, "/login")
    response = client.post("/login", query_string={"next": target},
                           data={"username": admin_user[0].username, "password": admin_user[1], "csrf_token": token})
    assert response.status_code == 400 and "pwned" not in response.headers.get("Set-Cookie", "")
    signed_in = sign_in(app.test_client(), admin_user[0].username, admin_user[1])
    assert signed_in.get("/login", query_string={"next": target}).status_code == 400


def test_huge_node_id_is_a_404(app: Flask, admin_user: tuple[User, str]) -> None:
    with app.extensions["db"].session() as session:
        add_device(session, "devA")
    client = sign_in(app.test_client(), admin_user[0].username, admin_user[1])
    assert client.get(f"/nodes/{HUGE}").status_code == 404
