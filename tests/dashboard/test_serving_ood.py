"""Serving info and NO_MODEL from Status/Life, out-of-distribution results: ingest, alerts, pages, API, CSV, streams."""

from __future__ import annotations

import csv
import io
import re
from datetime import UTC, datetime, timedelta
from typing import Any

from support.sse import events
import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from contracts.messages import Envelope, LifeMessage, NodeState, StatusMessage, to_bytes
from dashboard.db import Database
from dashboard.ingest.store import BatchWriter
from dashboard.ingest.validate import Accepted, validate
from dashboard.models import Alert, Classification, Device, StatusChange, User
from dashboard.services import alerts, tokens
from dashboard.services.alerts import AlertRules
from dashboard.services.results import NEEDS_REVIEW
from support.web_seed import sign_in

T0 = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
CHANNELS = {"classification": "Sensors", "life": "Life", "status": "Status"}


def store(db: Database, *messages: Envelope) -> None:
    """Store messages through the ingest's validation and batch writer, as one batch."""
    checked = [validate(f"Hospital/Devices/Lab1/{m.device}/{CHANNELS[m.type]}", to_bytes(m)) for m in messages]  # type: ignore[attr-defined]
    assert all(isinstance(c, Accepted) for c in checked), checked
    BatchWriter(db).write(checked, [])  # type: ignore[arg-type]


def status(device: str, state: str, at: datetime, reason: str | None = None, **serving: Any) -> StatusMessage:
    """A Status of one connection opened at `at`."""
    return StatusMessage(device=device, state=NodeState(state), model_version="1.0.0", software_version="0.1.0",
                         reason=reason, sent_at=at, session_started=at, **serving)


def life(device: str, at: datetime, **serving: Any) -> LifeMessage:
    """A Life message sent at `at`."""
    return LifeMessage(device=device, cpu_percent=10.0, memory_percent=20.0, disk_percent=30.0, uptime_s=5.0,
                       inference_count=1, outbox_depth=0, sent_at=at, **serving)


def ood_results(payloads: Any, device: str, flags: list[bool], start: datetime) -> list[Envelope]:
    """Sensors messages, one per flag, a second apart; flagged ones are out of distribution with a high score."""
    return [payloads.sensors(device, n, label="Pro", out_of_distribution=flag, ood_score=9.5 if flag else 0.5,
                             sent_at=start + timedelta(seconds=n)) for n, flag in enumerate(flags)]


def test_serving_info_latest_report_wins_and_no_model_keeps_its_reason(db: Database) -> None:
    store(db, status("devA", "ONLINE", T0, runtime="openvino", inference_device="CPU", precision="f32"))
    store(db, life("devA", T0 + timedelta(seconds=10), runtime="onnxruntime", inference_device="CPUExecutionProvider",
                   precision="f32"))
    store(db, life("devA", T0 + timedelta(seconds=5), runtime="litert", inference_device="CPU", precision="f16"))
    store(db, life("devA", T0 + timedelta(seconds=20)))  # a node that says nothing about serving changes nothing
    with db.session(readonly=True) as session:
        device = session.get(Device, "devA")
        assert (device.runtime, device.inference_device, device.precision) == ("onnxruntime", "CPUExecutionProvider", "f32")
    store(db, status("devA", "NO_MODEL", T0 + timedelta(minutes=1), reason="outputs differ by up to 0.06 (allowed 0.01)",
                     runtime="openvino", inference_device="CPU", precision="bf16"))
    with db.session(readonly=True) as session:
        device = session.get(Device, "devA")
        assert (device.state, device.state_reason) == ("NO_MODEL", "outputs differ by up to 0.06 (allowed 0.01)")
        assert (device.runtime, device.precision) == ("openvino", "bf16")
        reasons = [c.reason for c in session.scalars(select(StatusChange).order_by(StatusChange.sent_at))]
        assert reasons == [None, "outputs differ by up to 0.06 (allowed 0.01)"]
    store(db, status("devA", "ONLINE", T0 + timedelta(minutes=2), runtime="openvino", inference_device="CPU", precision="f32"))
    with db.session(readonly=True) as session:
        device = session.get(Device, "devA")
        assert (device.state, device.state_reason, device.precision) == ("ONLINE", None, "f32")


def test_out_of_distribution_fields_are_stored_in_one_batch(db: Database, payloads: Any) -> None:
    store(db, *ood_results(payloads, "devA", [True, False] * 300, T0))
    with db.session(readonly=True) as session:
        rows = session.scalars(select(Classification).order_by(Classification.sent_at)).all()
    assert len(rows) == 600
    assert [(r.out_of_distribution, r.ood_score) for r in rows[:2]] == [(True, 9.5), (False, 0.5)]


def evaluate(db: Database, rules: AlertRules, at: datetime) -> list[Alert]:
    """Run the rules once and return every alert."""
    with db.session() as session:
        alerts.evaluate(session, rules, now=at)
    with db.session(readonly=True) as session:
        return list(session.scalars(select(Alert).order_by(Alert.id)))


def test_no_model_raises_a_critical_alert_until_the_node_serves_again(db: Database) -> None:
    rules = AlertRules()
    store(db, status("devA", "NO_MODEL", T0, reason="package signature not trusted"))
    [alert] = [a for a in evaluate(db, rules, T0 + timedelta(seconds=5)) if a.kind == "no_model"]
    assert alert.severity == "critical" and "package signature not trusted" in alert.message and alert.resolved_at is None
    store(db, status("devA", "OFFLINE", T0 + timedelta(seconds=20)))
    [alert] = [a for a in evaluate(db, rules, T0 + timedelta(seconds=30)) if a.kind == "no_model"]
    assert alert.resolved_at is None, "going offline is not serving"
    store(db, status("devA", "ONLINE", T0 + timedelta(minutes=1)))
    [alert] = [a for a in evaluate(db, rules, T0 + timedelta(minutes=1, seconds=5)) if a.kind == "no_model"]
    assert alert.resolved_at is not None


def test_rising_share_of_out_of_distribution_results_raises_an_alert_that_clears(db: Database, payloads: Any) -> None:
    rules = AlertRules.from_confs(type("D", (), {"ood_alert_share": 0.25, "ood_alert_window": 20, "ood_alert_min_results": 8})())
    store(db, *ood_results(payloads, "devA", [True, False, False, True, False, False, False], T0))
    assert not [a for a in evaluate(db, rules, T0 + timedelta(minutes=1)) if a.kind == "ood_share"], "too few results yet"
    store(db, *ood_results(payloads, "devA", [True, True], T0 + timedelta(seconds=30)))
    [alert] = [a for a in evaluate(db, rules, T0 + timedelta(minutes=1)) if a.kind == "ood_share"]
    assert alert.resolved_at is None and "44% of the latest 9 results out of distribution" in alert.message
    store(db, *ood_results(payloads, "devA", [False] * 20, T0 + timedelta(minutes=2)))
    [alert] = [a for a in evaluate(db, rules, T0 + timedelta(minutes=3)) if a.kind == "ood_share"]
    assert alert.resolved_at is not None


@pytest.fixture
def viewer(app: Flask, viewer_user: tuple[User, str]) -> FlaskClient:
    """A signed-in viewer; streams poll fast and end soon."""
    app.config.update(SSE_POLL_S=0.05, SSE_LIFETIME_S=1.0)
    return sign_in(app.test_client(), viewer_user[0].username, viewer_user[1])


@pytest.fixture
def seeded(db: Database, payloads: Any) -> None:
    """A node serving on openvino/CPU/f32 with one OOD and one normal result, and a node with no model."""
    now = datetime.now(UTC)
    store(db, status("serving", "ONLINE", now - timedelta(seconds=5), runtime="openvino", inference_device="CPU",
                     precision="f32"),
          status("broken", "NO_MODEL", now - timedelta(seconds=5), reason="self-test: outputs differ by up to 0.0608"),
          *ood_results(payloads, "serving", [True, False], now - timedelta(seconds=3)))


def test_fleet_and_node_pages_show_serving_info_and_a_red_no_model_node(viewer: FlaskClient, seeded: None) -> None:
    html = viewer.get("/").get_data(as_text=True)
    broken = re.search(r'<tr data-node="broken" class="([^"]*)">(.*?)</tr>', html, re.S)
    serving = re.search(r'<tr data-node="serving" class="([^"]*)">(.*?)</tr>', html, re.S)
    assert broken and serving
    assert "no-model" in broken.group(1) and 'class="badge NO_MODEL"' in broken.group(2)
    assert "self-test: outputs differ by up to 0.0608" in broken.group(2)
    for field, value in (("runtime", "openvino"), ("inference_device", "CPU"), ("precision", "f32")):
        assert f'data-field="{field}">{value}<' in serving.group(2)
    node = viewer.get("/nodes/broken").get_data(as_text=True)
    assert "Serves no model: self-test: outputs differ by up to 0.0608" in node
    node = viewer.get("/nodes/serving").get_data(as_text=True)
    for field, value in (("runtime", "openvino"), ("inference_device", "CPU"), ("precision", "f32")):
        assert f'data-field="{field}">{value}<' in node
    assert node.count(NEEDS_REVIEW) == 1 and "9.50" in node


def test_results_page_csv_and_api_read_needs_review_for_ood(db: Database, viewer: FlaskClient, client: FlaskClient,
                                                             admin_user: tuple[User, str], seeded: None) -> None:
    page = viewer.get("/results").get_data(as_text=True)
    rows = re.findall(r'<tr data-result="\d+">(.*?)</tr>', page, re.S)
    assert len(rows) == 2
    ood_row = next(r for r in rows if NEEDS_REVIEW in r)
    assert ">Pro<" not in ood_row and "9.50" in ood_row, "an OOD result never reads as a diagnosis"
    only = viewer.get("/results?ood=yes").get_data(as_text=True)
    assert len(re.findall(r'<tr data-result="\d+">', only)) == 1 and NEEDS_REVIEW in only
    assert NEEDS_REVIEW not in viewer.get("/results?ood=no").get_data(as_text=True).split("<tbody>")[1]

    exported = list(csv.DictReader(io.StringIO(viewer.get("/results.csv").get_data(as_text=True))))
    by_flag = {row["out_of_distribution"]: row for row in exported}
    assert by_flag["true"]["verdict"] == NEEDS_REVIEW and by_flag["true"]["label"] == "Pro"
    assert by_flag["true"]["ood_score"] == "9.5000" and by_flag["false"]["verdict"] == "Pro"

    with db.session() as session:
        token = tokens.create_api_token(session, admin_user[0], "test")
    headers = {"Authorization": f"Bearer {token}"}
    found = client.get("/api/v1/results?out_of_distribution=true", headers=headers).json["results"]
    assert [(r["verdict"], r["label"], r["ood_score"], r["out_of_distribution"]) for r in found] == [(NEEDS_REVIEW, "Pro", 9.5, True)]
    assert "probabilities" in found[0]
    assert client.get("/api/v1/results?out_of_distribution=maybe", headers=headers).status_code == 400
    spec = client.get("/api/v1/openapi.json", headers=headers).json["paths"]["/results"]["get"]
    assert "out_of_distribution" in [p["name"] for p in spec["parameters"]]
    schema = spec["responses"]["200"]["content"]["application/json"]["schema"]
    assert "needs review" in schema["properties"]["results"]["items"]["properties"]["verdict"]["description"]


def test_streams_carry_no_model_reason_serving_info_and_verdicts(viewer: FlaskClient, db: Database, payloads: Any,
                                                                 seeded: None) -> None:
    fleet = events(viewer.get("/stream/fleet", buffered=False).iter_encoded(), lambda e: len(e) >= 2)
    nodes = {data["device_id"]: data for kind, data in fleet if kind == "node"}
    assert nodes["broken"]["state"] == "NO_MODEL" and "0.0608" in nodes["broken"]["reason"]
    assert (nodes["serving"]["runtime"], nodes["serving"]["precision"], nodes["serving"]["reason"]) == ("openvino", "f32", None)

    response = viewer.get("/stream/results", buffered=False)
    chunks = response.iter_encoded()
    next(chunks)
    store(db, *ood_results(payloads, "serving", [True], datetime.now(UTC)))
    [(kind, data)] = events(chunks, lambda e: len(e) >= 1)
    assert (kind, data["verdict"], data["out_of_distribution"], data["ood_score"]) == ("result", NEEDS_REVIEW, True, "9.50")
