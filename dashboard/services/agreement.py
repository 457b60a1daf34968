"""Agreement of the model with reviewers per node and per model: a field-accuracy estimate with a Wilson interval.

Only results that reached the queue by the random share estimate field accuracy without bias (uncertain and
OOD results are reviewed because they are hard); the agreement over every review is shown beside it.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from sqlalchemy import select
from sqlalchemy.orm import Session

from contracts.lab_confs import ReviewConfs
from dashboard.models import Alert, Review, utcnow
from dashboard.services.alerts import raise_event_alert

ALERT_KIND = "review_agreement"
Scope = Literal["device", "model"]


def wilson(agree: int, total: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval of a proportion (95 % by default); (0, 1) without data."""
    if total == 0:
        return 0.0, 1.0
    p = agree / total
    denominator = 1 + z * z / total
    centre = (p + z * z / (2 * total)) / denominator
    half = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass(frozen=True)
class Point:
    """One day's agreement."""

    day: datetime
    reviews: int
    agree: int
    estimate: float | None
    low: float | None
    high: float | None
    all_reviews: int
    all_agreement: float | None

    def as_dict(self) -> dict[str, object]:
        """JSON-ready point."""
        return {
            "t": int(self.day.timestamp()), "day": self.day.date().isoformat(), "reviews": self.reviews,
            "agree": self.agree, "estimate": self.estimate, "low": self.low, "high": self.high,
            "all_reviews": self.all_reviews, "all_agreement": self.all_agreement,
        }


def _column(scope: Scope) -> object:
    return Review.device_id if scope == "device" else Review.model_version


def keys(session: Session, scope: Scope) -> list[str]:
    """The nodes (or model versions) that have reviews."""
    column = _column(scope)
    return sorted(str(k) for k in session.scalars(select(column).distinct()))  # type: ignore[call-overload]


def series(session: Session, scope: Scope, key: str) -> list[Point]:
    """Daily agreement of one node or model version, oldest first."""
    query = select(Review.reviewed_at, Review.agrees, Review.sampled).where(_column(scope) == key)  # type: ignore[arg-type]
    days: dict[datetime, list[tuple[bool, bool]]] = defaultdict(list)
    for at, agrees, sampled in session.execute(query):
        day = datetime(at.year, at.month, at.day, tzinfo=UTC)
        days[day].append((bool(agrees), bool(sampled)))
    points = []
    for day in sorted(days):
        items = days[day]
        sampled = [a for a, s in items if s]
        agree = sum(sampled)
        low, high = wilson(agree, len(sampled)) if sampled else (None, None)
        points.append(Point(
            day, len(sampled), agree, agree / len(sampled) if sampled else None, low, high, len(items),
            sum(a for a, _ in items) / len(items),
        ))
    return points


def recent(session: Session, scope: Scope, key: str, window: int) -> tuple[int, int]:
    """(agreeing, total) over the latest `window` randomly sampled reviews of a node or model."""
    query = (
        select(Review.agrees).where(_column(scope) == key, Review.sampled)  # type: ignore[arg-type]
        .order_by(Review.reviewed_at.desc(), Review.id.desc()).limit(window)
    )
    flags = list(session.scalars(query))
    return sum(1 for f in flags if f), len(flags)


def _alert_key(scope: Scope, key: str) -> tuple[str | None, str]:
    """Alerts are one per (device, kind): a node's on its device, a model's on no device with its version in the kind."""
    return (key, ALERT_KIND) if scope == "device" else (None, f"{ALERT_KIND}:{key}"[:32])


def check_alerts(session: Session, device_id: str, model_version: str, confs: ReviewConfs) -> list[str]:
    """Raise an alert when agreement drops below the threshold, resolve it when it recovers; returns raised kinds."""
    raised = []
    for scope, key in (("device", device_id), ("model", model_version)):
        agree, total = recent(session, scope, key, confs.agreement_window)  # type: ignore[arg-type]
        alert_device, kind = _alert_key(scope, key)  # type: ignore[arg-type]
        dropped = total >= confs.agreement_min_reviews and agree / total < confs.agreement_alert_below
        if dropped:
            low, high = wilson(agree, total)
            what = f"node {key}" if scope == "device" else f"model {key}"
            raise_event_alert(
                session, alert_device, kind, "warning",
                f"{what} agrees with reviewers on {agree}/{total} sampled results ({agree / total:.0%}, "
                f"95% CI {low:.0%}-{high:.0%}), below {confs.agreement_alert_below:.0%}",
            )
            raised.append(kind)
            continue
        standing = session.scalars(
            select(Alert).where(Alert.device_id.is_(alert_device) if alert_device is None else Alert.device_id == alert_device,
                                Alert.kind == kind, Alert.resolved_at.is_(None))
        )
        for alert in standing:
            alert.resolved_at = utcnow()
    return raised
