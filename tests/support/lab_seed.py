"""Seeds for the laboratory workflow: specimen fields with chosen flags and message ids, and a reviewer."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from dashboard.models import Classification
from support.web_seed import LABELS, add_device, now

__all__ = ["LABELS", "add_device", "field_row", "add_fields", "ids_of", "now"]


def field_row(
    device_id: str, specimen_id: str | None, label: str, *, confidence: float = 0.95, uncertain: bool = False,
    ood: bool = False, sent_at: datetime | None = None, sampled: bool | None = None, model_version: str = "1.0.0",
    image_sha256: str = "ab" * 32,
) -> dict[str, Any]:
    """One result; `sampled` forces the message id into (True) or out of (False) any random share below 1."""
    message_id = str(uuid.uuid4())
    if sampled is not None:
        message_id = ("0000" if sampled else "ffff") + message_id[4:]
    others = (1.0 - confidence) / (len(LABELS) - 1)
    sent = sent_at or now()
    return {
        "message_id": message_id, "device_id": device_id, "sample_id": uuid.uuid4().hex[:16], "image_sha256": image_sha256,
        "label": label, "confidence": confidence,
        "probabilities": {name: (confidence if name == label else others) for name in LABELS},
        "model_version": model_version, "inference_ms": 3.2, "uncertain": uncertain, "out_of_distribution": ood,
        "ood_score": 9.0 if ood else 1.0, "specimen_id": specimen_id, "sent_at": sent, "received_at": sent + timedelta(seconds=1),
    }


def add_fields(session: Session, rows: list[dict[str, Any]]) -> list[int]:
    """Insert rows; returns their ids in order."""
    session.execute(insert(Classification), rows)
    return ids_of(session, [r["message_id"] for r in rows])


def ids_of(session: Session, message_ids: list[str]) -> list[int]:
    """Classification ids of message ids, in the given order."""
    found = dict(session.execute(select(Classification.message_id, Classification.id).where(Classification.message_id.in_(message_ids))).all())
    return [found[m] for m in message_ids]
