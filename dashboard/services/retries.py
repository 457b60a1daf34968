"""One back-off rule for the outbound queues (notifications, FHIR pushes): sent, retried later or given up."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Literal, Protocol


class RetryRow(Protocol):
    """A queued outbound item as stored: its tries, state and when to try again."""

    attempts: int
    state: str
    sent_at: datetime | None
    last_error: str | None
    next_attempt_at: datetime


Outcome = Literal["sent", "failed", "retry"]


def settle(row: RetryRow, error: str | None, now: datetime, max_attempts: int, retry_after_s: float) -> Outcome:
    """Apply one try's outcome to row (attempts already counted); the delay doubles with each failed try."""
    if error is None:
        row.state, row.sent_at, row.last_error = "sent", now, None
        return "sent"
    row.last_error = error[:2000]
    if row.attempts >= max_attempts:
        row.state = "failed"
        return "failed"
    row.next_attempt_at = now + timedelta(seconds=retry_after_s * 2 ** (row.attempts - 1))
    return "retry"
