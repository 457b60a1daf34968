"""Push of final specimen reports to the configured FHIR server: PUT by a stable id, retried with backoff, audited."""

from __future__ import annotations

import json
import logging
import ssl
import urllib.error
import urllib.request
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from contracts.confs import DashboardConfs, read_secret
from contracts.lab_confs import FhirConfs
from dashboard.db import Database
from dashboard.models import FhirPush, utcnow
from dashboard.services import audit, fhir, retries, specimens

logger = logging.getLogger(__name__)
ACTOR = "system"
Sender = Callable[[FhirConfs, str, dict[str, Any]], None]


def send(confs: FhirConfs, url: str, resource: dict[str, Any]) -> None:
    """PUT one resource as application/fhir+json; anything but a 2xx fails."""
    headers = {"Content-Type": "application/fhir+json", "Accept": "application/fhir+json", "User-Agent": "all-fleet-dashboard"}
    token = read_secret("FHIR_TOKEN", confs.token_file)
    if token:
        headers["Authorization"] = f"Bearer {token}"
    body = json.dumps(resource, separators=(",", ":")).encode()
    request = urllib.request.Request(url, data=body, headers=headers, method="PUT")
    context = ssl.create_default_context() if url.startswith("https:") else None
    with urllib.request.urlopen(request, timeout=confs.timeout_s, context=context) as response:  # noqa: S310
        if not 200 <= response.status < 300:
            raise urllib.error.HTTPError(url, response.status, "not a 2xx answer", response.headers, None)


def enqueue_final(session: Session, confs: DashboardConfs, now: datetime) -> int:
    """Queue a push for every specimen whose verdict became final and has none yet."""
    cutoff = now - timedelta(seconds=confs.specimens.final_after_s)
    known = set(session.scalars(select(FhirPush.specimen_id)))
    added = 0
    for specimen_id in specimens.finished_before(session, cutoff, limit=1000):
        if specimen_id not in known:
            session.add(FhirPush(specimen_id=specimen_id, state="pending", attempts=0, next_attempt_at=now, created_at=now))
            added += 1
    return added


def _record(session: Session, confs: FhirConfs, specimen_id: str, error: str | None, now: datetime) -> None:
    row = session.get(FhirPush, specimen_id)
    if row is None:
        return
    row.attempts += 1
    details = {"specimen_id": specimen_id, "attempts": row.attempts, "report": fhir.report_id(specimen_id)}
    outcome = retries.settle(row, error, now, confs.max_attempts, confs.retry_after_s)
    if outcome == "sent":
        audit.record(session, ACTOR, "fhir.pushed", f"specimen {specimen_id}", details)
    elif outcome == "failed":
        audit.record(session, ACTOR, "fhir.push_failed", f"specimen {specimen_id}", {**details, "error": (error or "")[:500]})
    else:
        logger.warning("FHIR push of specimen %s failed, try %d: %s", specimen_id, row.attempts, error)

def run_once(db: Database, confs: DashboardConfs, now: datetime | None = None, sender: Sender = send) -> int:
    """Queue newly final specimens, then push what is due; returns how many were sent. Nothing without a base_url."""
    if not confs.fhir.base_url:
        return 0
    now = now or utcnow()
    base = confs.fhir.base_url.rstrip("/")
    with db.session() as session:
        enqueue_final(session, confs, now)
        due = list(session.scalars(
            select(FhirPush.specimen_id).where(FhirPush.state == "pending", FhirPush.next_attempt_at <= now).limit(50)
        ))
        reports = {}
        for specimen_id in due:
            specimen = specimens.get_specimen(session, specimen_id, confs.specimens, now)
            if specimen is not None:
                reports[specimen_id] = fhir.diagnostic_report(specimen, fhir.model_names(session, specimen.models), now)
    sent = 0
    for specimen_id, report in reports.items():
        try:
            sender(confs.fhir, f"{base}/DiagnosticReport/{report['id']}", report)
            error = None
            sent += 1
        except (OSError, ValueError) as exc:
            error = f"{type(exc).__name__}: {exc}"
        with db.session() as session:
            _record(session, confs.fhir, specimen_id, error, now)
    return sent
