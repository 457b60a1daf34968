"""FHIR R4 DiagnosticReports of specimen verdicts: valid (fhir.resources), searchable, pushed with retries."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.diagnosticreport import DiagnosticReport
from sqlalchemy import select

from dashboard.models import AuditLog, FhirPush
from dashboard.services import fhir_push, tokens, users
from support.lab_seed import add_device, add_fields, field_row, now

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"


@pytest.fixture
def token(db) -> str:
    with db.session() as session:
        user, _ = users.create_user(session, "lis", "viewer")
        return tokens.create_api_token(session, user, "lis")


@pytest.fixture
def seeded(db) -> None:
    old = now() - timedelta(days=3)
    with db.session() as session:
        add_device(session, "node-a")
        add_fields(session, [field_row("node-a", "SP-FINAL", "Benign", sent_at=old) for _ in range(4)]
                   + [field_row("node-a", "SP-FINAL", "Pre", sent_at=old), field_row("node-a", "SP-FINAL", "Pro", sent_at=old),
                      field_row("node-a", "SP-FINAL", "Early", ood=True, sent_at=old),
                      field_row("node-a", "SP-FINAL", "Pro", confidence=0.5, uncertain=True, sent_at=old)])
        add_fields(session, [field_row("node-a", "SP-NEW", "Benign") for _ in range(2)])


def _get(client: Any, url: str, token: str) -> Any:
    return client.get(url, headers={"Authorization": f"Bearer {token}"})


def test_report_of_a_specimen_validates_and_says_research_use_only(client, token, seeded):
    answer = _get(client, "/api/v1/fhir/DiagnosticReport?specimen=SP-FINAL", token)
    assert answer.status_code == 200 and answer.mimetype == "application/fhir+json"
    bundle = Bundle.model_validate(answer.get_json())
    assert bundle.type == "searchset" and bundle.total == 1
    raw = answer.get_json()["entry"][0]["resource"]
    report = DiagnosticReport.model_validate(raw)
    assert report.status == "final" and report.specimen[0].identifier.value == "SP-FINAL"
    assert "not by a diagnostic device" in report.conclusion and "research" in report.conclusion.lower()
    assert report.conclusionCode[0].coding[0].code == "suspicious"
    observations = {o["code"]["coding"][0]["code"]: o for o in raw["contained"]}
    assert observations["fields"]["valueInteger"] == 8 and observations["usable-fields"]["valueInteger"] == 6
    assert observations["ood-fields"]["valueInteger"] == 1 and observations["uncertain-fields"]["valueInteger"] == 1
    assert observations["out-of-distribution"]["valueBoolean"] is True
    assert {f"mean-probability-{c}" for c in ("Benign", "Early", "Pre", "Pro")} <= set(observations)
    assert "1.0.0" in observations["model"]["valueString"] and observations["edge-device"]["valueString"] == "node-a"
    assert observations["review-status"]["valueString"] == "pending"
    assert {r.reference for r in report.result} == {f"#{o['id']}" for o in raw["contained"]}
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "fhir-diagnostic-report-SP-FINAL.json").write_text(json.dumps(raw, indent=2) + "\n")
    by_id = _get(client, f"/api/v1/fhir/DiagnosticReport/{raw['id']}", token)
    assert by_id.status_code == 200 and by_id.get_json()["identifier"][0]["value"] == "SP-FINAL"


def test_search_by_date_and_unknown_specimen(client, token, seeded):
    today = now().date().isoformat()
    recent = _get(client, f"/api/v1/fhir/DiagnosticReport?date=ge{today}", token).get_json()
    assert [e["resource"]["identifier"][0]["value"] for e in recent["entry"]] == ["SP-NEW"]
    assert recent["entry"][0]["resource"]["status"] == "preliminary"
    before = (now() - timedelta(days=1)).date().isoformat()
    old = _get(client, f"/api/v1/fhir/DiagnosticReport?date=le{before}", token).get_json()
    assert [e["resource"]["identifier"][0]["value"] for e in old["entry"]] == ["SP-FINAL"]
    assert _get(client, "/api/v1/fhir/DiagnosticReport?specimen=none", token).get_json()["total"] == 0
    assert _get(client, "/api/v1/fhir/DiagnosticReport?date=yesterday", token).status_code == 400
    assert client.get("/api/v1/fhir/DiagnosticReport?specimen=SP-FINAL").status_code == 401


class Receiver:
    """A local FHIR endpoint that fails the first `failures` PUTs with 503."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.received: list[tuple[str, dict[str, Any]]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_: Any) -> None:
                return None

            def do_PUT(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                receiver.received.append((self.path, body))
                status = 503 if len(receiver.received) <= receiver.failures else 200
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/fhir"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    found = Receiver(failures=2)
    yield found
    found.server.shutdown()


def test_final_verdicts_are_pushed_with_retries_until_the_server_takes_them(db, confs, seeded, receiver):
    confs.dashboard.fhir.base_url = receiver.url
    confs.dashboard.fhir.retry_after_s = 10
    start = now()
    assert fhir_push.run_once(db, confs.dashboard, start) == 0  # 503
    assert fhir_push.run_once(db, confs.dashboard, start + timedelta(seconds=5)) == 0  # not due yet: backing off
    assert fhir_push.run_once(db, confs.dashboard, start + timedelta(seconds=11)) == 0  # 503 again
    assert fhir_push.run_once(db, confs.dashboard, start + timedelta(seconds=40)) == 1
    assert fhir_push.run_once(db, confs.dashboard, start + timedelta(seconds=100)) == 0  # sent once only
    assert len(receiver.received) == 3
    path, body = receiver.received[-1]
    assert path == f"/fhir/DiagnosticReport/{body['id']}"  # PUT by a stable id: a retry cannot duplicate
    assert DiagnosticReport.model_validate(body).specimen[0].identifier.value == "SP-FINAL"
    with db.session() as session:
        push = session.get(FhirPush, "SP-FINAL")
        assert push is not None and (push.state, push.attempts) == ("sent", 3)
        assert session.get(FhirPush, "SP-NEW") is None  # still preliminary: not pushed
        assert session.scalars(select(AuditLog).where(AuditLog.action == "fhir.pushed")).one().target == "specimen SP-FINAL"


def test_a_push_is_given_up_after_max_attempts_and_audited(db, confs, seeded, receiver):
    receiver.failures = 99
    confs.dashboard.fhir.base_url = receiver.url
    confs.dashboard.fhir.max_attempts = 2
    confs.dashboard.fhir.retry_after_s = 1
    start = now()
    for step in range(4):
        fhir_push.run_once(db, confs.dashboard, start + timedelta(seconds=10 * step))
    assert len(receiver.received) == 2
    with db.session() as session:
        assert session.get(FhirPush, "SP-FINAL").state == "failed"
        assert session.scalars(select(AuditLog).where(AuditLog.action == "fhir.push_failed")).one()
