"""The Models pages read the typed metrics of packages the trainer made (the committed models/*.tar.gz)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from contracts.model_package import parse_public_key, read_manifest
from contracts.release_metrics import ReleaseMetrics
from dashboard.db import Database
from dashboard.models import User
from dashboard.services.releases import register_package
from support.web_seed import sign_in

REPO = Path(__file__).resolve().parents[2]
PACKAGES = sorted((REPO / "models").glob("*.tar.gz"))
TRUSTED = json.loads((REPO / "confs.json").read_text())["ota"]["trusted_public_keys"]


@pytest.fixture
def app(confs_maker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """The app trusting the keys the committed packages are signed with."""
    from dashboard import create_app
    from dashboard.migrations import upgrade_database

    monkeypatch.delenv("DATABASE_URL", raising=False)
    app = create_app(confs_maker(tmp_path, TRUSTED), TESTING=True)
    upgrade_database(app.extensions["db"].engine)
    yield app
    app.extensions["db"].dispose()


@pytest.mark.skipif(not PACKAGES, reason="no committed package in models/")
@pytest.mark.parametrize("package", PACKAGES, ids=lambda p: p.name)
def test_models_pages_show_accuracy_recall_and_matrix_of_a_trainer_made_package(
    app: Flask, db: Database, admin_user: tuple[User, str], tmp_path: Path, package: Path
) -> None:
    manifest = read_manifest(package, [parse_public_key(k) for k in TRUSTED])
    metrics = ReleaseMetrics.from_manifest(manifest.metrics)
    assert metrics.test_accuracy is not None, "the trainer writes test_accuracy"
    with db.session() as session:
        release_id = register_package(session, package, tmp_path / "store", TRUSTED, 1 << 30, "alice").id
    client: FlaskClient = sign_in(app.test_client(), admin_user[0].username, admin_user[1])
    listing = client.get("/models").get_data(as_text=True)
    assert f"{metrics.test_accuracy * 100:.1f}%" in listing
    page = client.get(f"/models/{release_id}").get_data(as_text=True)
    assert f'data-metric="Held-out accuracy">{metrics.test_accuracy * 100:.1f}%' in page
    for label, recall in metrics.per_class_recall.items():
        assert f"<td>{label}</td><td class=\"num\">{recall * 100:.1f}%</td>" in page
    if metrics.matrix_for(manifest.classes):
        assert 'class="matrix"' in page and "No confusion matrix" not in page
    else:
        assert "No confusion matrix" in page
    if metrics.ood is not None:
        assert "In-distribution held-out images flagged" in page
