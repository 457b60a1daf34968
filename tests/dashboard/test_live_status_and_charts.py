"""Live status tells the truth (a silent node is OFFLINE everywhere, tiles and node page update), chart data has gaps."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from support.sse import events
import pytest
from flask import Flask
from flask.testing import FlaskClient

from dashboard.db import Database
from dashboard.models import Device, User
from dashboard.reads.charts import chart_data, chart_range, gap_threshold
from support.web_seed import add_alert, add_device, add_telemetry, now, sign_in


@pytest.fixture
def viewer(app: Flask, viewer_user: tuple[User, str]) -> FlaskClient:
    """A signed-in viewer; streams poll every 50 ms and live 1.5 s."""
    app.config.update(SSE_POLL_S=0.05, SSE_LIFETIME_S=1.5)
    return sign_in(app.test_client(), viewer_user[0].username, viewer_user[1])


def test_a_node_going_silent_reads_offline_live_and_the_tiles_follow(viewer: FlaskClient, db: Database) -> None:
    with db.session() as session:
        add_device(session, "n1")
        add_device(session, "n2")
    response = viewer.get("/stream/fleet", buffered=False)
    chunks = response.iter_encoded()
    first = events(chunks, lambda e: any(k == "summary" for k, _ in e))
    assert {d["shown"] for k, d in first if k == "node"} == {"ONLINE"}
    assert [d for k, d in first if k == "summary"] == [{"total": 2, "online": 2, "offline": 0, "open_alerts": 0}]
    with db.session() as session:
        session.get(Device, "n1").last_seen = now() - timedelta(minutes=5)  # type: ignore[union-attr]
        add_alert(session, "n1", "offline", "no contact")
    later = events(chunks, lambda e: any(k == "summary" for k, _ in e))
    [node] = [d for k, d in later if k == "node"]
    assert node["device_id"] == "n1" and node["shown"] == "OFFLINE" and node["alerts"] == 1
    assert [d for k, d in later if k == "summary"] == [{"total": 2, "online": 1, "offline": 1, "open_alerts": 1}]
    response.close()
    page = viewer.get("/").get_data(as_text=True)
    assert 'class="badge OFFLINE" data-badge="state">OFFLINE<' in page and "(stale)" not in page


def test_the_node_page_streams_its_status_and_new_samples(viewer: FlaskClient, db: Database) -> None:
    with db.session() as session:
        add_device(session, "n1")
    page = viewer.get("/nodes/n1").get_data(as_text=True)
    assert 'data-stream="/stream/nodes/n1"' in page and 'data-badge="state">ONLINE<' in page
    response = viewer.get("/stream/nodes/n1", buffered=False)
    chunks = response.iter_encoded()
    assert [k for k, _ in events(chunks, lambda e: len(e) >= 1)] == ["node"]
    with db.session() as session:
        add_telemetry(session, "n1", now(), 2, timedelta(seconds=1))
        session.get(Device, "n1").state = "OFFLINE"  # type: ignore[union-attr]
    later = events(chunks, lambda e: len([k for k, _ in e if k == "telemetry"]) >= 2 and any(k == "node" for k, _ in e))
    assert [d["shown"] for k, d in later if k == "node"] == ["OFFLINE"]
    assert all("cpu_percent" in d and d["t"] > 0 for k, d in later if k == "telemetry")
    response.close()
    assert viewer.get("/stream/nodes/nobody").status_code == 404


def test_chart_data_marks_an_outage_as_a_gap(db: Database) -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    with db.session() as session:
        add_device(session, "n1")
        add_telemetry(session, "n1", start, 10, timedelta(seconds=1))
        add_telemetry(session, "n1", start + timedelta(minutes=7), 10, timedelta(seconds=1))
    with db.session(readonly=True) as session:
        data = chart_data(session, "n1", start, start + timedelta(minutes=10))
    assert data.samples == 20 and len(data.times) == 21 and data.gap_s == 3.0
    assert data.values["cpu_percent"][10] is None and all(v is not None for v in data.values["cpu_percent"][:10])
    assert gap_threshold([0, 30, 60, 90]) == 90.0, "a node reporting every 30 s has a gap after 90 s"


def test_the_default_range_fits_the_data(db: Database) -> None:
    moment = now()
    with db.session() as session:
        add_device(session, "fresh")
        add_telemetry(session, "fresh", moment - timedelta(minutes=10), 10, timedelta(minutes=1))
        add_device(session, "old")
        add_telemetry(session, "old", moment - timedelta(days=3), 5, timedelta(minutes=1))
    with db.session(readonly=True) as session:
        start, end, key = chart_range(session, "fresh", None, None, None, moment)
        assert key == "fit" and end == moment and timedelta(minutes=10) < end - start < timedelta(minutes=12)
        start, end, _ = chart_range(session, "old", None, None, None, moment)
        assert end < moment - timedelta(days=2) and chart_data(session, "old", start, end).samples == 5
        assert chart_range(session, "fresh", "7d", None, None, moment)[2] == "7d"


def test_series_json_serves_the_range_asked_for(viewer: FlaskClient, db: Database) -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    with db.session() as session:
        add_device(session, "n1")
        add_telemetry(session, "n1", start, 5, timedelta(seconds=10))
    body = viewer.get(f"/nodes/n1/series.json?start={start.timestamp()}&end={start.timestamp() + 3600}").get_json()
    assert body["start"] == start.timestamp() and len(body["t"]) == 5 and len(body["series"]["disk_percent"]) == 5
    assert {f["field"] for f in body["fields"]} >= {"cpu_percent", "disk_percent", "temperature_c"}
