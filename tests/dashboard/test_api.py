"""REST API: listings, filters, pagination, releases upload, rollouts and intents, OpenAPI; package downloads."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from dashboard.ingest.store import BatchWriter
from dashboard.ingest.validate import validate
from dashboard.models import AuditLog, Device, Rollout
from dashboard.services import tokens
from support.tiny_package import make_tiny_package


@pytest.fixture
def admin_token(db, admin_user) -> str:
    with db.session() as session:
        return tokens.create_api_token(session, admin_user[0], "test")


@pytest.fixture
def viewer_token(db, viewer_user) -> str:
    with db.session() as session:
        return tokens.create_api_token(session, viewer_user[0], "test")


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def ingest(db, *messages) -> None:
    """Store messages through the same path ingest uses."""
    from contracts.messages import to_bytes

    checked = [validate(f"Hospital/Devices/Lab1/{m.device}/{ {'classification': 'Sensors', 'life': 'Life', 'status': 'Status', 'update': 'Updates'}[m.type]}", to_bytes(m)) for m in messages]
    BatchWriter(db).write(checked, [])


def test_results_filters_and_pagination(client, db, admin_token, payloads) -> None:
    ingest(db, *[payloads.sensors("devA", n, label="Pre" if n % 3 == 0 else "Benign", uncertain=n % 2 == 0) for n in range(30)],
           payloads.sensors("devB", 99))
    r = client.get("/api/v1/results?device=devA&label=Pre&per_page=4", headers=auth(admin_token))
    assert r.status_code == 200 and r.json["has_next"] and len(r.json["results"]) == 4
    assert all(x["label"] == "Pre" and x["device"] == "devA" for x in r.json["results"])
    seen = []
    for page in (1, 2, 3):
        seen += [x["sample_id"] for x in client.get(f"/api/v1/results?label=Pre&per_page=4&page={page}", headers=auth(admin_token)).json["results"]]
    assert sorted(seen) == sorted(f"s{n}" for n in range(0, 30, 3))
    r = client.get("/api/v1/results?uncertain=true&per_page=100", headers=auth(admin_token))
    assert len(r.json["results"]) == 15
    future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    assert client.get("/api/v1/results", query_string={"since": future}, headers=auth(admin_token)).json["results"] == []
    for bad in ("since=yesterday", "min_confidence=lots", "uncertain=maybe", "since=2025-01-01T00:00:00"):
        assert client.get(f"/api/v1/results?{bad}", headers=auth(admin_token)).status_code == 400


def test_devices_and_telemetry(client, db, viewer_token, payloads) -> None:
    ingest(db, payloads.status("devA"), payloads.life("devA", cpu_percent=33.0))
    r = client.get("/api/v1/devices", headers=auth(viewer_token))
    assert [d["id"] for d in r.json["devices"]] == ["devA"] and r.json["devices"][0]["online"]
    r = client.get("/api/v1/devices/devA/telemetry", headers=auth(viewer_token))
    assert [p["cpu_percent"] for p in r.json["points"]] == [33.0]
    assert client.get("/api/v1/devices/nope", headers=auth(viewer_token)).status_code == 404


def test_release_upload_rollout_and_intents(client, db, admin_token, signing_key, tmp_path, payloads) -> None:
    ingest(db, payloads.status("devA"), payloads.status("devB"))
    package = make_tiny_package(tmp_path / "p", signing_key, "2.0.0")
    with package.open("rb") as handle:
        r = client.post("/api/v1/releases", data={"package": (handle, "anything.tar.gz")}, headers=auth(admin_token))
    assert r.status_code == 201, r.json
    release_id = r.json["id"]
    assert r.json["url"].endswith(f"/packages/{release_id}/tiny-classifier-2.0.0.tar.gz")
    r = client.post("/api/v1/rollouts", json={"release_id": release_id, "targets": "zone", "zone": "Lab1", "canary_size": 1},
                    headers=auth(admin_token))
    assert r.status_code == 201, r.json
    assert r.json["state"] == "PENDING" and sum(t["canary"] for t in r.json["targets"]) == 1
    rollout_id = r.json["id"]
    again = client.post("/api/v1/rollouts", json={"release_id": release_id, "targets": "all"}, headers=auth(admin_token))
    assert again.status_code == 400 and "unfinished rollout" in again.json["message"]
    assert client.post(f"/api/v1/rollouts/{rollout_id}/halt", headers=auth(admin_token)).json["intent"] == "halt"
    assert client.post(f"/api/v1/rollouts/{rollout_id}/resume", headers=auth(admin_token)).status_code == 400
    with db.session() as session:
        assert session.get(Rollout, rollout_id).intent == "halt"
        actions = session.scalars(select(AuditLog.action)).all()
    assert {"release.register", "rollout.create", "rollout.halt"} <= set(actions)
    for body in ({"release_id": "1"}, {"release_id": 999}, {"release_id": release_id, "targets": "devices", "devices": ["ghost"]},
                 {"release_id": release_id, "canary_size": -1}, [1, 2]):
        assert client.post("/api/v1/rollouts", json=body, headers=auth(admin_token)).status_code == 400


def test_package_download_needs_a_device_token_and_honours_range(client, db, admin_token, signing_key, tmp_path, payloads) -> None:
    package = make_tiny_package(tmp_path / "p", signing_key, "2.1.0")
    with package.open("rb") as handle:
        release = client.post("/api/v1/releases", data={"package": (handle, "x.tar.gz")}, headers=auth(admin_token)).json
    url = f"/packages/{release['id']}/{release['filename']}"
    with db.session() as session:
        device = Device(id="devA", location="Hospital", zone="Lab1", registered_at=datetime.now(UTC))
        session.add(device)
        session.flush()
        token = tokens.create_device_token(session, device)
    assert client.get(url).status_code == 401
    assert client.get(url, headers=auth(admin_token)).status_code == 401
    full = client.get(url, headers=auth(token))
    assert full.status_code == 200 and full.data == package.read_bytes()
    part = client.get(url, headers={**auth(token), "Range": "bytes=100-"})
    assert part.status_code == 206 and part.data == package.read_bytes()[100:]
    assert part.headers["Content-Range"].startswith("bytes 100-")
    assert client.get(f"/packages/{release['id']}/..%2f..%2fconfs.json", headers=auth(token)).status_code == 404
    assert client.get(f"/packages/{release['id']}/other.tar.gz", headers=auth(token)).status_code == 404


def test_openapi_document_lists_every_api_route(app, client, viewer_token) -> None:
    doc = client.get("/api/v1/openapi.json", headers=auth(viewer_token)).json
    assert doc["openapi"].startswith("3.")
    documented = {("/api/v1" + path).replace("{", "<").replace("}", ">") for path in doc["paths"]}
    routes = {str(rule) for rule in app.url_map.iter_rules() if rule.endpoint.startswith("api.")}
    normalise = lambda r: r.replace("<int:", "<")  # noqa: E731
    assert {normalise(r) for r in routes} == documented
