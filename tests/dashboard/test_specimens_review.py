"""Specimens page and CSV; the review queue with roles; images fetched from a real node; agreement; export to the trainer."""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from PIL import Image
from sqlalchemy import select

from dashboard.db import Database
from dashboard.models import Alert, AuditLog, Review
from dashboard.services import tokens, users
from dashboard.services.node_images import NodeImages
from dashboard.services.review_export import export_reviewed
from edge_node.images import ImageStore
from edge_node.sources.get_routes import GetRoutes
from edge_node.sources.http_api import InferenceServer
from support.lab_seed import add_device, add_fields, field_row, now
from support.web_seed import csrf_from, sign_in
from trainer.data import scan_dataset

IMAGE_TOKEN = "dashboard-only-image-token"


def _user(db: Database, name: str, role: str) -> tuple[str, str]:
    with db.session() as session:
        user, password = users.create_user(session, name, role)
        token = tokens.create_api_token(session, user, "t")
    return password, token


def _client(app: Flask, db: Database, name: str, role: str) -> tuple[FlaskClient, str]:
    password, token = _user(db, name, role)
    return sign_in(app.test_client(), name, password), token


@pytest.fixture
def specimens_seeded(db: Database) -> dict[str, list[int]]:
    """SP-SUSP: 4 benign + 2 confident Pre; SP-INS: 3 fields, one uncertain, one OOD; SP-NOT: 6 benign, one old."""
    old = now() - timedelta(hours=2)
    with db.session() as session:
        add_device(session, "node-a")
        add_device(session, "node-b")
        return {
            "SP-SUSP": add_fields(session, [field_row("node-a", "SP-SUSP", "Benign", sampled=False) for _ in range(4)]
                                  + [field_row("node-a", "SP-SUSP", "Pre", sampled=False), field_row("node-b", "SP-SUSP", "Pre", sampled=True)]),
            "SP-INS": add_fields(session, [field_row("node-a", "SP-INS", "Pre", sampled=False),
                                           field_row("node-a", "SP-INS", "Pro", confidence=0.5, uncertain=True, sampled=False),
                                           field_row("node-a", "SP-INS", "Early", ood=True, sampled=False)]),
            "SP-NOT": add_fields(session, [field_row("node-b", "SP-NOT", "Benign", sent_at=old, sampled=False) for _ in range(6)]),
        }


def test_specimens_page_shows_verdicts_filters_and_exports_csv(logged_in_viewer, specimens_seeded):
    page = logged_in_viewer.get("/specimens").get_data(as_text=True)
    for specimen, verdict in (("SP-SUSP", "suspicious"), ("SP-INS", "insufficient"), ("SP-NOT", "not suspicious")):
        row = page.split(f'data-specimen="{specimen}"', 1)[1].split("</tr>", 1)[0]
        assert f">{verdict}<" in row
    only = logged_in_viewer.get("/specimens?verdict=suspicious").get_data(as_text=True)
    assert 'data-specimen="SP-SUSP"' in only and 'data-specimen="SP-NOT"' not in only
    by_node = logged_in_viewer.get("/specimens?node=node-b").get_data(as_text=True)
    assert 'data-specimen="SP-INS"' not in by_node and 'data-specimen="SP-NOT"' in by_node
    detail = logged_in_viewer.get("/specimens/SP-INS").get_data(as_text=True)
    assert "insufficient" in detail and "uncertain: review" in detail and "out of distribution: review" in detail
    rows = list(csv.DictReader(io.StringIO(logged_in_viewer.get("/specimens.csv").get_data(as_text=True))))
    by_id = {r["specimen_id"]: r for r in rows}
    assert by_id["SP-SUSP"]["verdict"] == "suspicious" and by_id["SP-SUSP"]["malignant"] == "2"
    assert by_id["SP-INS"]["uncertain"] == "1" and by_id["SP-INS"]["out_of_distribution"] == "1"
    assert by_id["SP-NOT"]["final"] == "True" and by_id["SP-SUSP"]["final"] == "False"
    assert logged_in_viewer.get("/specimens/nope").status_code == 404


def test_queue_holds_uncertain_ood_and_the_random_share_only(app, db, specimens_seeded):
    viewer, _ = _client(app, db, "vera", "viewer")
    page = viewer.get("/review").get_data(as_text=True)
    queued = {int(x.split('"')[0]) for x in page.split('data-result="')[1:]}
    susp, ins = specimens_seeded["SP-SUSP"], specimens_seeded["SP-INS"]
    assert queued == {susp[5], ins[1], ins[2]}  # the sampled one, the uncertain one, the OOD one
    assert "random sample" in page and 'class="btn small"' not in page  # a viewer sees the queue but cannot review


def test_viewer_cannot_review_and_reviewer_cannot_deploy(app, db, specimens_seeded):
    uncertain = specimens_seeded["SP-INS"][1]
    viewer, viewer_token = _client(app, db, "vera", "viewer")
    assert viewer.get(f"/review/{uncertain}").status_code == 403
    assert viewer.post(f"/review/{uncertain}", data={"label": "Pro", "csrf_token": csrf_from(viewer, "/review")}).status_code == 403
    api = app.test_client()
    assert api.post(f"/api/v1/review/{uncertain}", json={"label": "Pro"}, headers={"Authorization": f"Bearer {viewer_token}"}).status_code == 403
    reviewer, reviewer_token = _client(app, db, "rhea", "reviewer")
    assert reviewer.get("/rollouts/new").status_code == 403
    deploy = api.post("/api/v1/rollouts", json={"release_id": 1}, headers={"Authorization": f"Bearer {reviewer_token}"})
    assert deploy.status_code == 403
    assert api.post("/api/v1/releases", headers={"Authorization": f"Bearer {reviewer_token}"}).status_code == 403
    with db.session() as session:
        assert session.scalars(select(Review)).all() == []


def test_reviewer_corrects_with_a_comment_and_it_is_audited_and_counts_in_the_specimen(app, db, specimens_seeded):
    uncertain = specimens_seeded["SP-INS"][1]
    reviewer, token = _client(app, db, "rhea", "reviewer")
    assert reviewer.get(f"/review/{uncertain}").status_code == 200
    answer = reviewer.post(f"/review/{uncertain}", data={
        "label": "Pre", "comment": "clearly a Pre-B blast", "csrf_token": csrf_from(reviewer, f"/review/{uncertain}")})
    assert answer.status_code == 302
    again = app.test_client().post(f"/api/v1/review/{uncertain}", json={"label": "Pre"}, headers={"Authorization": f"Bearer {token}"})
    assert again.status_code == 400 and "already" in again.get_json()["message"]
    with db.session() as session:
        review = session.scalars(select(Review)).one()
        assert (review.label, review.agrees, review.comment, review.reviewer) == ("Pre", False, "clearly a Pre-B blast", "rhea")
        entry = session.scalars(select(AuditLog).where(AuditLog.action == "review.corrected")).one()
        assert entry.actor == "rhea" and entry.details["model_label"] == "Pro" and entry.details["specimen_id"] == "SP-INS"
    detail = reviewer.get("/specimens/SP-INS").get_data(as_text=True)
    assert "corrected to Pre" in detail
    api = app.test_client().get("/api/v1/specimens", headers={"Authorization": f"Bearer {token}"}).get_json()
    ins = next(s for s in api["specimens"] if s["specimen_id"] == "SP-INS")
    assert ins["reviewed"] == 1 and ins["usable"] == 2 and ins["review_status"] == "pending"


def test_agreement_drop_raises_an_alert_per_node_and_model_and_is_charted(app, db, confs):
    confs.dashboard.review.agreement_min_reviews = 4
    with db.session() as session:
        add_device(session, "node-c")
        ids = add_fields(session, [field_row("node-c", None, "Pre", sampled=True, model_version="2.0.0") for _ in range(6)])
    _, token = _client(app, db, "rhea", "reviewer")
    api = app.test_client()
    for i, result_id in enumerate(ids):
        label = "Pre" if i < 2 else "Benign"  # two confirmations, then four corrections
        answer = api.post(f"/api/v1/review/{result_id}", json={"label": label}, headers={"Authorization": f"Bearer {token}"})
        assert answer.status_code == 201
    with db.session() as session:
        kinds = {(a.device_id, a.kind) for a in session.scalars(select(Alert).where(Alert.resolved_at.is_(None)))}
    assert ("node-c", "review_agreement") in kinds and (None, "review_agreement:2.0.0") in kinds
    viewer, _ = _client(app, db, "vera", "viewer")
    data = viewer.get("/review/agreement.json?by=device&key=node-c").get_json()
    point = data["points"][-1]
    assert (point["reviews"], point["agree"]) == (6, 2) and point["low"] < 2 / 6 < point["high"]
    page = viewer.get("/review/agreement?by=model&key=2.0.0").get_data(as_text=True)
    assert "agreement-chart" in page and "33%" in page


@pytest.fixture
def node_server(tmp_path: Path) -> Iterator[tuple[InferenceServer, ImageStore, bytes]]:
    """A real node HTTP endpoint keeping one image."""
    buffer = io.BytesIO()
    Image.new("RGB", (32, 32), (200, 80, 120)).save(buffer, "PNG")
    data = buffer.getvalue()
    store = ImageStore(tmp_path / "node-images", retention_s=3600)
    store.put(hashlib.sha256(data).hexdigest(), data)
    server = InferenceServer(object(), "127.0.0.1", 0, "infer", get_routes=GetRoutes(store, IMAGE_TOKEN, None, None))  # type: ignore[arg-type]
    server.start()
    yield server, store, data
    server.stop()


def test_reviewer_sees_the_image_fetched_from_the_node_and_export_feeds_the_trainer(
    app, db, confs, node_server, monkeypatch, tmp_path
):
    server, store, data = node_server
    sha = hashlib.sha256(data).hexdigest()
    confs.dashboard.review.node_urls = {"node-d": f"http://127.0.0.1:{server.port}"}
    monkeypatch.setenv("REVIEW_IMAGE_TOKEN", IMAGE_TOKEN)
    with db.session() as session:
        add_device(session, "node-d")
        ids = add_fields(session, [field_row("node-d", "SP-IMG", "Pro", uncertain=True, confidence=0.6, image_sha256=sha),
                                   field_row("node-d", "SP-IMG", "Benign", ood=True, image_sha256=sha),
                                   field_row("node-d", "SP-IMG", "Early", ood=True, image_sha256="cd" * 32)])
    reviewer, token = _client(app, db, "rhea", "reviewer")
    image = reviewer.get(f"/review/{ids[0]}/image")
    assert image.status_code == 200 and image.data == data and image.mimetype == "image/png"
    assert "no-store" in image.headers["Cache-Control"]
    viewer, _ = _client(app, db, "vera", "viewer")
    assert viewer.get(f"/review/{ids[0]}/image").status_code == 403
    gone = reviewer.get(f"/review/{ids[2]}/image")
    assert gone.status_code == 404 and b"no longer keeps" in gone.data
    api = app.test_client()
    for result_id, label in ((ids[0], "Pre"), (ids[1], "Benign"), (ids[2], "Early")):
        assert api.post(f"/api/v1/review/{result_id}", json={"label": label}, headers={"Authorization": f"Bearer {token}"}).status_code == 201
    out = tmp_path / "reviewed"
    with db.session() as session:
        report = export_reviewed(session, NodeImages(confs.dashboard.review, IMAGE_TOKEN), out)
    assert len(report.written) == 2 and len(report.missing) == 1
    manifest = json.loads((out / "manifest.json").read_text())
    assert {(e["label"], e["sha256"]) for e in manifest["images"]} == {("Pre", sha), ("Benign", sha)}
    scanned = scan_dataset(out, image_size=32)
    assert scanned.classes == ["Benign", "Pre"]
    assert {(r.label, r.sha256) for r in scanned.records} == {(e["label"], e["sha256"]) for e in manifest["images"]}


def test_dashboard_caches_images_no_longer_than_the_node_keeps_them(confs, node_server):
    server, store, data = node_server
    sha = hashlib.sha256(data).hexdigest()
    confs.dashboard.review.node_urls = {"n": f"http://127.0.0.1:{server.port}"}
    images = NodeImages(confs.dashboard.review, IMAGE_TOKEN)
    fetched = images.fetch("n", sha)
    expires = store.expires_at(sha)
    assert expires is not None and fetched.expires_at <= expires
    wrong = NodeImages(confs.dashboard.review, "infer")
    with pytest.raises(Exception, match="answered 401"):
        wrong.fetch("n", sha)
