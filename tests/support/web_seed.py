"""Rows for dashboard page tests and benchmarks, written straight through the models (real SQLite)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import insert
from sqlalchemy.orm import Session

from dashboard.models import Alert, Classification, Device, Telemetry, WarningEvent

LABELS = ("Benign", "Early", "Pre", "Pro")


def now() -> datetime:
    """Current aware UTC time."""
    return datetime.now(UTC)


def add_device(
    session: Session, device_id: str, *, zone: str = "Lab1", state: str = "ONLINE", last_seen: datetime | None = None,
    model_version: str | None = "1.0.0", cpu: float | None = 12.5, memory: float | None = 40.0,
    temperature: float | None = 51.0, outbox: int | None = 0,
) -> Device:
    """A device with a status and telemetry snapshot."""
    seen = last_seen or now()
    device = Device(
        id=device_id, location="Hospital", zone=zone, state=state, model_version=model_version, software_version="0.1.0",
        first_seen=seen, last_seen=seen, status_at=seen, cpu_percent=cpu, memory_percent=memory, disk_percent=30.0,
        temperature_c=temperature, outbox_depth=outbox, uptime_s=100.0, inference_count=0, telemetry_at=seen,
    )
    session.add(device)
    session.flush()
    return device


def classification_row(
    device_id: str, sent_at: datetime, *, label: str = "Benign", confidence: float = 0.95, uncertain: bool = False,
    sample_id: str | None = None, model_version: str = "1.0.0",
) -> dict[str, Any]:
    """A Classification row as a dict for bulk insert."""
    others = (1.0 - confidence) / (len(LABELS) - 1)
    return {
        "message_id": str(uuid.uuid4()), "device_id": device_id, "sample_id": sample_id or uuid.uuid4().hex[:16],
        "image_sha256": "ab" * 32, "label": label, "confidence": confidence,
        "probabilities": {name: (confidence if name == label else others) for name in LABELS},
        "model_version": model_version, "inference_ms": 3.2, "uncertain": uncertain, "sent_at": sent_at,
        "received_at": sent_at,
    }


def add_classifications(session: Session, rows: Sequence[dict[str, Any]]) -> None:
    """Bulk insert Classification rows (one executemany)."""
    if rows:
        session.execute(insert(Classification), list(rows))


def add_telemetry(session: Session, device_id: str, start: datetime, count: int, step: timedelta) -> None:
    """count Life samples from start, step apart, with a rising CPU curve."""
    rows = [
        {
            "message_id": str(uuid.uuid4()), "device_id": device_id, "sent_at": start + i * step,
            "cpu_percent": float(10 + (i * 7) % 80), "memory_percent": 40.0 + (i % 10), "disk_percent": 30.0,
            "temperature_c": 45.0 + (i % 15), "uptime_s": float(i * 10), "inference_count": i,
            "inference_ms_mean": 3.0 + (i % 5) * 0.5, "outbox_depth": i % 7, "model_version": "1.0.0",
        }
        for i in range(count)
    ]
    if rows:
        session.execute(insert(Telemetry), rows)


def add_warning(session: Session, device_id: str, code: str = "TOO_HOT", message: str = "too hot") -> WarningEvent:
    """One warning event."""
    event = WarningEvent(
        message_id=str(uuid.uuid4()), device_id=device_id, code=code, severity="warning", message=message,
        details={}, sent_at=now(),
    )
    session.add(event)
    return event


def add_alert(session: Session, device_id: str | None, kind: str = "offline", message: str = "node offline") -> Alert:
    """One open alert."""
    alert = Alert(device_id=device_id, kind=kind, severity="warning", message=message)
    session.add(alert)
    session.flush()
    return alert


def csrf_from(client: Any, url: str) -> str:
    """The CSRF token of the first form on a page, as a browser would post it."""
    import re

    page = client.get(url)
    match = re.search(rb'name="csrf_token" (?:type="hidden" )?value="([^"]+)"', page.data)
    assert match, f"no CSRF token on {url} (status {page.status_code})"
    return match.group(1).decode()


def sign_in(client: Any, username: str, password: str) -> Any:
    """Sign in through the real login form (CSRF token included); returns the client."""
    token = csrf_from(client, "/login")
    response = client.post("/login", data={"username": username, "password": password, "csrf_token": token})
    assert response.status_code == 302, f"sign-in as {username} failed with {response.status_code}"
    return client
