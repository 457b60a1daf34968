"""Models page (upload, verify, refuse hostile packages, confusion matrix) and rollout pages."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from flask import Flask
from flask.testing import FlaskClient

from dashboard.db import Database
from dashboard.models import AuditLog, ModelRelease, Rollout, User
from support.tiny_package import make_tiny_package
from support.web_seed import add_device, csrf_from, sign_in


@pytest.fixture
def admin(app: Flask, admin_user: tuple[User, str]) -> FlaskClient:
    """A client signed in as the admin through the login form."""
    return sign_in(app.test_client(), admin_user[0].username, admin_user[1])


@pytest.fixture(scope="module")
def trusted_package(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Ed25519PrivateKey]:
    """One real signed tiny package (built once: it compiles an OpenVINO model)."""
    key = Ed25519PrivateKey.generate()
    return make_tiny_package(tmp_path_factory.mktemp("pkg"), key, "1.2.3"), key


@pytest.fixture
def app(confs, monkeypatch: pytest.MonkeyPatch, trusted_package: tuple[Path, Ed25519PrivateKey]):  # type: ignore[no-untyped-def]
    """The app trusting the module's package key (overrides the conftest app's key)."""
    from contracts.model_package import public_key_text
    from dashboard import create_app
    from dashboard.migrations import upgrade_database

    monkeypatch.delenv("DATABASE_URL", raising=False)
    trusted = confs.model_copy(update={"ota": confs.ota.model_copy(update={"trusted_public_keys": [public_key_text(trusted_package[1])]})})
    app = create_app(trusted, TESTING=True)
    upgrade_database(app.extensions["db"].engine)
    yield app
    app.extensions["db"].dispose()


def upload(client: FlaskClient, data: bytes, filename: str = "pkg.tar.gz") -> tuple[int, str]:
    """Post a file to the upload form the way a browser does; returns the final status and page."""
    token = csrf_from(client, "/models")
    response = client.post(
        "/models/upload", data={"csrf_token": token, "package": (io.BytesIO(data), filename)},
        content_type="multipart/form-data", follow_redirects=True,
    )
    return response.status_code, response.get_data(as_text=True)


def test_upload_of_a_signed_package_registers_it(admin: FlaskClient, db: Database, trusted_package: tuple[Path, Ed25519PrivateKey]) -> None:
    status, html = upload(admin, trusted_package[0].read_bytes(), "tiny.tar.gz")
    assert status == 200
    assert "Registered tiny-classifier 1.2.3" in html
    with db.session() as session:
        release = session.query(ModelRelease).one()
        assert release.version == "1.2.3" and release.uploaded_by == "alice"
        assert session.query(AuditLog).filter_by(action="release.register", actor="alice").count() == 1
    listing = admin.get("/models").get_data(as_text=True)
    assert "tiny-classifier" in listing and "1.2.3" in listing


def test_package_signed_by_an_untrusted_key_is_refused(admin: FlaskClient, db: Database, tmp_path: Path) -> None:
    stranger = make_tiny_package(tmp_path, Ed25519PrivateKey.generate(), "9.9.9")
    status, html = upload(admin, stranger.read_bytes())
    assert "Upload refused" in html and "signature" in html
    with db.session() as session:
        assert session.query(ModelRelease).count() == 0
        refused = session.query(AuditLog).filter_by(action="release.refused", actor="alice").one()
        assert "signature" in refused.details["reason"]


def _tar(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (_tar({"../../etc/evil": b"x", "manifest.json": b"{}"}), "parent-relative"),
        (_tar({"/abs/evil": b"x"}), "absolute"),
        (b"this is not an archive at all", "not a readable package"),
        (_tar({"manifest.json": b"{}", "model.xml": b"<x/>"}), "no manifest.sig"),
        (b"", "Upload refused"),
    ],
    ids=["traversal", "absolute", "not-an-archive", "unsigned", "empty"],
)
def test_hostile_and_non_package_uploads_are_refused_with_a_message(
    admin: FlaskClient, db: Database, payload: bytes, expected: str
) -> None:
    status, html = upload(admin, payload, "evil.tar.gz")
    assert status == 200 and "Upload refused" in html and expected in html
    with db.session() as session:
        assert session.query(ModelRelease).count() == 0


def test_release_page_shows_legacy_metrics_and_confusion_matrix(admin: FlaskClient, db: Database) -> None:
    # Hand-made rows with the old dashboard keys still read (legacy 'accuracy'); trainer-made packages are
    # tested in test_release_metrics_page.py and tests/trainer/test_pipeline.py.
    with db.session() as session:
        release = ModelRelease(
            name="m", version="2.0.0", filename="m-2.0.0.tar.gz", sha256="c" * 64, size=1000,
            classes=["Benign", "Early"], manifest={}, metrics={"accuracy": 0.9375, "note": "held-out blocks"},
            confusion_matrix=[[30, 2], [0, 16]], uploaded_by="alice",
        )
        session.add(release)
        session.flush()
        release_id = release.id
    html = admin.get(f"/models/{release_id}").get_data(as_text=True)
    assert "93.8%" in html and "held-out blocks" in html
    assert '<td class="heat5">30</td>' in html and '<td class="heat0">0</td>' in html and '<td class="heat3">16</td>' in html
    assert "93.8%" in admin.get("/models").get_data(as_text=True)


def _release(db: Database) -> int:
    with db.session() as session:
        release = ModelRelease(
            name="m", version="1.0.1", filename="m-1.0.1.tar.gz", sha256="d" * 64, size=10, classes=["a", "b"],
            manifest={}, metrics={}, uploaded_by="alice",
        )
        session.add(release)
        session.flush()
        return release.id


def test_rollout_to_a_zone_then_halt_resume_and_roll_back(admin: FlaskClient, db: Database) -> None:
    release_id = _release(db)
    with db.session() as session:
        for name, zone in (("a1", "Lab1"), ("a2", "Lab1"), ("b1", "Lab2")):
            add_device(session, name, zone=zone)
    form = admin.get("/rollouts/new").get_data(as_text=True)
    assert "Lab2" in form and "b1" in form
    token = csrf_from(admin, "/rollouts/new")
    response = admin.post("/rollouts/new", data={
        "csrf_token": token, "release_id": release_id, "target_mode": "zone", "zone": "Lab1", "canary_size": 1,
        "failure_threshold": 0,
    })
    assert response.status_code == 302, response.get_data(as_text=True)
    with db.session() as session:
        rollout = session.query(Rollout).one()
        assert sorted(t.device_id for t in rollout.targets) == ["a1", "a2"]
        assert sum(t.is_canary for t in rollout.targets) == 1
        rollout_id = rollout.id
    detail = admin.get(f"/rollouts/{rollout_id}").get_data(as_text=True)
    assert 'data-target="a1"' in detail and 'data-target="b1"' not in detail
    assert f'data-stream="/stream/rollouts/{rollout_id}"' in detail
    for verb, intent in (("halt", "halt"),):
        token = csrf_from(admin, f"/rollouts/{rollout_id}")
        assert admin.post(f"/rollouts/{rollout_id}/{verb}", data={"csrf_token": token}).status_code == 302
        with db.session() as session:
            assert session.get(Rollout, rollout_id).intent == intent  # type: ignore[union-attr]
    with db.session() as session:
        session.get(Rollout, rollout_id).state = "HALTED"  # type: ignore[union-attr]
    token = csrf_from(admin, f"/rollouts/{rollout_id}")
    assert admin.post(f"/rollouts/{rollout_id}/resume", data={"csrf_token": token}).status_code == 302
    assert admin.post(f"/rollouts/{rollout_id}/rollback", data={"csrf_token": token}).status_code == 302
    with db.session() as session:
        assert session.get(Rollout, rollout_id).intent == "rollback"  # type: ignore[union-attr]
        actions = [e.action for e in session.query(AuditLog).filter(AuditLog.action.like("rollout.%"))]
        assert actions == ["rollout.create", "rollout.halt", "rollout.resume", "rollout.rollback"]
    listing = admin.get("/rollouts").get_data(as_text=True)
    assert f"#{rollout_id}" in listing and "0 / 2 active" in listing


def test_rollout_form_refuses_bad_input_with_messages(admin: FlaskClient, db: Database) -> None:
    release_id = _release(db)
    with db.session() as session:
        add_device(session, "a1")
    token = csrf_from(admin, "/rollouts/new")
    bad_numbers = admin.post("/rollouts/new", data={
        "csrf_token": token, "release_id": release_id, "target_mode": "all", "canary_size": 0, "failure_threshold": -1,
    })
    assert bad_numbers.status_code == 400
    unknown = admin.post("/rollouts/new", data={
        "csrf_token": token, "release_id": release_id, "target_mode": "devices", "nodes": ["ghost"], "canary_size": 1,
        "failure_threshold": 0,
    })
    assert unknown.status_code == 400 and "unknown devices: ghost" in unknown.get_data(as_text=True)
    with db.session() as session:
        assert session.query(Rollout).count() == 0
