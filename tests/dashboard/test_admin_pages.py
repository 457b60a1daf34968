"""Admin pages: alert thresholds per site (saved, audited, used by the rules), API tokens made and revoked, API docs."""

from __future__ import annotations

import re

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from dashboard.db import Database
from dashboard.models import AuditLog, User
from dashboard.services import alert_settings
from support.web_seed import add_device, csrf_from, sign_in


@pytest.fixture
def admin(app: Flask, admin_user: tuple[User, str]) -> FlaskClient:
    return sign_in(app.test_client(), admin_user[0].username, admin_user[1])


def test_viewers_cannot_open_admin_pages(app: Flask, viewer_user: tuple[User, str]) -> None:
    viewer = sign_in(app.test_client(), viewer_user[0].username, viewer_user[1])
    assert viewer.get("/admin/").status_code == 403
    assert 'href="/admin/"' not in viewer.get("/").get_data(as_text=True)


def test_a_sites_thresholds_are_saved_audited_and_used_by_the_rules(app: Flask, admin: FlaskClient, db: Database) -> None:
    with db.session() as session:
        add_device(session, "n1")
    page = admin.get("/admin/").get_data(as_text=True)
    assert 'data-site="Hospital"' in page and 'value="300.0"' in page
    token = csrf_from(admin, "/admin/")
    form = {"Hospital-csrf_token": token, "Hospital-offline_after_s": "20", "Hospital-max_temperature_c": "70",
            "Hospital-max_disk_percent": "85", "Hospital-uncertain_share": "25", "Hospital-ood_share": "15",
            "Hospital-self_test_failure": "y"}
    saved = admin.post("/admin/alerts/Hospital", data=form, follow_redirects=True).get_data(as_text=True)
    assert "Alert thresholds of site Hospital saved." in saved and "set on this page" in saved
    confs = app.config["CONFS"].dashboard
    with db.session(readonly=True) as session:
        rules = alert_settings.rules_lookup(session, confs)("Hospital")
        [entry] = session.scalars(select(AuditLog).where(AuditLog.action == "alert_rules.update")).all()
    assert rules.offline_minutes == pytest.approx(20 / 60) and rules.max_temperature_c == 70
    assert rules.ood_share == pytest.approx(0.15) and rules.self_test_failure and not rules.ota_failure
    assert entry.details["after"]["max_disk_percent"] == 85
    bad = admin.post("/admin/alerts/Hospital", data={**form, "Hospital-max_disk_percent": "250"}, follow_redirects=True)
    assert "Thresholds not saved" in bad.get_data(as_text=True)


def test_an_api_token_is_shown_once_works_and_stops_working_when_revoked(admin: FlaskClient, db: Database) -> None:
    created = admin.post("/admin/tokens", data={"csrf_token": csrf_from(admin, "/admin/"), "name": "LIS export"})
    html = created.get_data(as_text=True)
    token = re.search(r"<code class=\"token\" data-token>(api_[^<]+)</code>", html).group(1)  # type: ignore[union-attr]
    assert token not in admin.get("/admin/").get_data(as_text=True), "shown once"
    api = admin.application.test_client()
    assert api.get("/api/v1/devices", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    page = admin.get("/admin/").get_data(as_text=True)
    revoke = re.search(r'action="(/admin/tokens/\d+/revoke)"', page).group(1)  # type: ignore[union-attr]
    assert admin.post(revoke, data={"csrf_token": csrf_from(admin, "/admin/")}).status_code == 302
    assert api.get("/api/v1/devices", headers={"Authorization": f"Bearer {token}"}).status_code == 401
    with db.session(readonly=True) as session:
        actions = [a.action for a in session.scalars(select(AuditLog).order_by(AuditLog.id))]
    assert "api_token.create" in actions and "api_token.revoke" in actions


def test_api_docs_are_served_locally_under_the_strict_csp(admin: FlaskClient) -> None:
    page = admin.get("/api/docs/")
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and "script-src 'self'" in page.headers["Content-Security-Policy"]
    assert "'unsafe-inline'" not in page.headers["Content-Security-Policy"]
    assert 'src="/api/docs/assets/swagger-ui-bundle.js"' in html and "<script>" not in html and "http" not in re.sub(
        r'href="http://[^"]*"', "", "".join(re.findall(r'(?:src|href)="[^"]*"', html)))
    assert admin.get("/api/docs/assets/swagger-ui-bundle.js").status_code == 200
    assert admin.get("/api/docs/assets/index.html").status_code == 404
    assert admin.get("/api/docs/openapi.json").get_json()["paths"]["/devices"]
