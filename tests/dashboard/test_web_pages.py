"""Fleet, node, results, alerts and audit pages over a real temporary SQLite database."""

from __future__ import annotations

import csv
import io
import re
from datetime import timedelta

import pytest
from flask import Flask
from flask.testing import FlaskClient

from dashboard.db import Database
from dashboard.models import Alert, AuditLog, User
from support.web_seed import (
    add_alert,
    add_classifications,
    add_device,
    add_telemetry,
    add_warning,
    classification_row,
    csrf_from,
    now,
    sign_in,
)


@pytest.fixture
def viewer(app: Flask, viewer_user: tuple[User, str]) -> FlaskClient:
    """A client signed in as the viewer through the login form."""
    return sign_in(app.test_client(), viewer_user[0].username, viewer_user[1])


@pytest.fixture
def admin(app: Flask, admin_user: tuple[User, str]) -> FlaskClient:
    """A client signed in as the admin through the login form."""
    return sign_in(app.test_client(), admin_user[0].username, admin_user[1])


def test_fleet_lists_every_node_and_greys_stale_ones(viewer: FlaskClient, db: Database) -> None:
    with db.session() as session:
        add_device(session, "fresh-node", cpu=33.0, temperature=48.5, outbox=7)
        add_device(session, "silent-node", zone="Lab2", last_seen=now() - timedelta(hours=2))
        add_device(session, "gone-node", state="OFFLINE")
    page = viewer.get("/")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    fresh = re.search(r'<tr data-node="fresh-node" class="([^"]*)">(.*?)</tr>', html, re.S)
    silent = re.search(r'<tr data-node="silent-node" class="([^"]*)">(.*?)</tr>', html, re.S)
    gone = re.search(r'<tr data-node="gone-node" class="([^"]*)">', html)
    assert fresh and silent and gone
    assert "stale" not in fresh.group(1) and "stale" in silent.group(1) and "stale" in gone.group(1)
    assert ">33<" in fresh.group(2) and "48.5" in fresh.group(2) and ">7<" in fresh.group(2)
    assert "Lab2" in silent.group(2) and 'class="badge OFFLINE"' in silent.group(2), "a silent node reads OFFLINE"
    assert 'data-stream="/stream/fleet"' in html


def test_node_page_draws_charts_for_the_chosen_range(viewer: FlaskClient, db: Database) -> None:
    with db.session() as session:
        add_device(session, "n1")
        add_telemetry(session, "n1", now() - timedelta(minutes=50), 30, timedelta(minutes=1))
        add_telemetry(session, "n1", now() - timedelta(days=3), 10, timedelta(minutes=1))
        add_classifications(session, [classification_row("n1", now(), label="Pre", sample_id="s-recent")])
        add_warning(session, "n1", message="disk nearly full")
    hour = viewer.get("/nodes/n1?range=1h").get_data(as_text=True)
    assert hour.count("<svg") == 6 and hour.count('class="series"') == 6
    assert "30 samples shown" in hour
    week = viewer.get("/nodes/n1?range=7d").get_data(as_text=True)
    # A week is drawn from hourly means: the 40 samples fall into two to four hours.
    assert 2 <= int(re.search(r"(\d+) samples shown", week).group(1)) <= 4  # type: ignore[union-attr]
    assert "s-recent" in week and "disk nearly full" in week
    empty = viewer.get("/nodes/n1?since=2001-01-01T00:00&until=2001-01-02T00:00").get_data(as_text=True)
    assert "0 samples shown" in empty and "No data in this range" in empty
    assert viewer.get("/nodes/nobody").status_code == 404


def test_node_page_thins_long_ranges(viewer: FlaskClient, db: Database) -> None:
    with db.session() as session:
        add_device(session, "busy")
        add_telemetry(session, "busy", now() - timedelta(hours=23), 2000, timedelta(seconds=30))
    html = viewer.get("/nodes/busy?range=24h").get_data(as_text=True)
    shown = int(re.search(r"(\d+) samples shown", html).group(1))  # type: ignore[union-attr]
    assert 200 <= shown <= 240


def _seed_results(db: Database) -> None:
    base = now() - timedelta(hours=1)
    rows = []
    for i in range(120):
        rows.append(classification_row(
            "node-a" if i % 2 else "node-b", base + timedelta(seconds=i), label=("Benign", "Early", "Pre", "Pro")[i % 4],
            confidence=0.5 + (i % 50) / 100, uncertain=i % 10 == 0, sample_id=f"s{i:04d}",
        ))
    with db.session() as session:
        add_device(session, "node-a")
        add_device(session, "node-b")
        add_classifications(session, rows)


def _sample_ids(html: str) -> list[str]:
    return re.findall(r'<td class="mono">(s\d{4})</td>', html)


def test_results_filters_combine(viewer: FlaskClient, db: Database) -> None:
    _seed_results(db)
    html = viewer.get("/results?node=node-a&label=Early&per_page=100").get_data(as_text=True)
    ids = _sample_ids(html)
    expected = [f"s{i:04d}" for i in reversed(range(120)) if i % 2 and i % 4 == 1]
    assert ids == expected
    ids = _sample_ids(viewer.get("/results?uncertain=yes&per_page=100").get_data(as_text=True))
    assert ids == [f"s{i:04d}" for i in reversed(range(0, 120, 10))]
    ids = _sample_ids(viewer.get("/results?min_confidence=0.95&max_confidence=0.97&per_page=100").get_data(as_text=True))
    assert ids == [f"s{i:04d}" for i in reversed(range(120)) if 0.95 <= 0.5 + (i % 50) / 100 <= 0.97]


def test_results_bad_filter_values_are_reported_not_fatal(viewer: FlaskClient, db: Database) -> None:
    _seed_results(db)
    page = viewer.get("/results?min_confidence=lots&since=yesterday&per_page=9999&after=garbage")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert 'class="errors"' in html
    assert len(_sample_ids(html)) == 50


def test_results_keyset_pagination_walks_every_row_once(viewer: FlaskClient, db: Database) -> None:
    _seed_results(db)
    seen: list[str] = []
    url = "/results?per_page=25&node=node-b"
    pages = 0
    while url:
        html = viewer.get(url).get_data(as_text=True)
        seen += _sample_ids(html)
        pages += 1
        nxt = re.search(r'href="(/results\?[^"]*after=[^"]*)">Older', html)
        url = nxt.group(1).replace("&amp;", "&") if nxt else ""
        assert pages < 10
    assert pages == 3
    assert seen == [f"s{i:04d}" for i in reversed(range(0, 120, 2))]


def test_csv_export_matches_filters_and_defuses_formulas(viewer: FlaskClient, db: Database) -> None:
    with db.session() as session:
        add_device(session, "node-x")
        add_classifications(session, [
            classification_row("node-x", now() - timedelta(seconds=5), sample_id="=HYPERLINK(1)", label="Pre"),
            classification_row("node-x", now() - timedelta(seconds=4), sample_id="-2+3", label="Pre"),
            classification_row("node-x", now() - timedelta(seconds=3), sample_id="@SUM", label="Pre"),
            classification_row("node-x", now() - timedelta(seconds=2), sample_id="plain", label="Pre"),
            classification_row("node-x", now() - timedelta(seconds=1), sample_id="other", label="Benign"),
        ])
    response = viewer.get("/results.csv?label=Pre")
    assert response.status_code == 200 and response.mimetype == "text/csv"
    assert "attachment" in response.headers["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(response.get_data(as_text=True))))
    assert [r["sample_id"] for r in rows] == ["plain", "'@SUM", "'-2+3", "'=HYPERLINK(1)"]
    assert all(r["label"] == "Pre" and r["device_id"] == "node-x" for r in rows)
    assert float(rows[0]["confidence"]) == 0.95 and rows[0]["uncertain"] == "false"
    assert "Pre=0.950000" in rows[0]["probabilities"]


def test_csv_export_streams_more_than_one_batch(viewer: FlaskClient, db: Database) -> None:
    base = now() - timedelta(hours=2)
    with db.session() as session:
        add_device(session, "node-y")
        add_classifications(session, [classification_row("node-y", base + timedelta(seconds=i), sample_id=f"r{i}") for i in range(4500)])
    response = viewer.get("/results.csv")
    rows = list(csv.reader(io.StringIO(response.get_data(as_text=True))))
    assert len(rows) == 4501
    assert len({r[4] for r in rows[1:]}) == 4500


def test_alerts_acknowledged_with_who_and_when(admin: FlaskClient, db: Database) -> None:
    with db.session() as session:
        add_device(session, "hot-node")
        alert_id = add_alert(session, "hot-node", kind="temperature", message="62 °C over the limit").id
    html = admin.get("/alerts").get_data(as_text=True)
    assert "62 °C over the limit" in html and f"/alerts/{alert_id}/acknowledge" in html
    token = csrf_from(admin, "/alerts")
    response = admin.post(f"/alerts/{alert_id}/acknowledge", data={"csrf_token": token})
    assert response.status_code == 302
    with db.session() as session:
        alert = session.get(Alert, alert_id)
        assert alert is not None and alert.acknowledged_by == "alice" and alert.acknowledged_at is not None
        entry = session.query(AuditLog).filter_by(action="alert.acknowledge").one()
        assert entry.actor == "alice" and entry.target == f"alert {alert_id}"
    assert "62 °C" not in admin.get("/alerts").get_data(as_text=True)
    acknowledged = admin.get("/alerts?state=acknowledged").get_data(as_text=True)
    assert "62 °C over the limit" in acknowledged and "alice" in acknowledged


def test_audit_page_lists_actions_and_filters_by_user(viewer: FlaskClient, db: Database) -> None:
    from dashboard.services import audit

    with db.session() as session:
        audit.record(session, "alice", "rollout.create", "rollout:1", {"canary_size": 1})
        audit.record(session, "bob", "release.upload", "release:3")
    html = viewer.get("/audit").get_data(as_text=True)
    assert "<code>rollout.create</code>" in html and "<code>release.upload</code>" in html
    assert "<code>auth.login</code>" in html
    only_bob = viewer.get("/audit?actor=bob").get_data(as_text=True)
    assert "<code>release.upload</code>" in only_bob and "<code>rollout.create</code>" not in only_bob
