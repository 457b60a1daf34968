"""The reviewers' queue: uncertain and out-of-distribution results plus a random share of all others."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, false, func, or_, select, true
from sqlalchemy.orm import Session

from contracts.lab_confs import ReviewConfs
from dashboard.models import Classification, Review
from dashboard.services import agreement, audit

MAX_COMMENT = 2000


class ReviewError(ValueError):
    """A review that cannot be stored, with the reason for the reviewer."""


def _threshold(share: float) -> str | None:
    """The hex prefix below which a message id is sampled; None when every result is."""
    if share >= 1:
        return None
    return f"{int(share * 0x10000):04x}"


def is_sampled(message_id: str, share: float) -> bool:
    """Whether a result falls in the random share: its random (UUID4) message id decides, so it is stable."""
    threshold = _threshold(share)
    return threshold is None or message_id[:4].lower() < threshold


def sampled_clause(share: float) -> ColumnElement[bool]:
    """The same choice as is_sampled, in SQL."""
    threshold = _threshold(share)
    if threshold is None:
        return true()
    if threshold == "0000":
        return false()
    return func.lower(func.substr(Classification.message_id, 1, 4)) < threshold


def _queue_query(share: float) -> Any:
    return (
        select(Classification)
        .outerjoin(Review, Review.classification_id == Classification.id)
        .where(Review.id.is_(None))
        .where(or_(Classification.uncertain, Classification.out_of_distribution, sampled_clause(share)))
    )


def queue(session: Session, share: float, limit: int = 100, device: str | None = None) -> list[Classification]:
    """Unreviewed results that need a reviewer, out-of-distribution first, then oldest first."""
    query = _queue_query(share)
    if device:
        query = query.where(Classification.device_id == device)
    query = query.order_by(Classification.out_of_distribution.desc(), Classification.sent_at, Classification.id)
    return list(session.scalars(query.limit(limit)))


def queue_length(session: Session, share: float) -> int:
    """How many results wait for a reviewer."""
    return int(session.scalar(select(func.count()).select_from(_queue_query(share).subquery())) or 0)


def reason(result: Classification, share: float) -> str:
    """Why a result is in the queue."""
    if result.out_of_distribution:
        return "out of distribution"
    if result.uncertain:
        return "uncertain"
    return "random sample" if is_sampled(result.message_id, share) else "not queued"


@dataclass(frozen=True)
class Submitted:
    """A stored review and whether it moved an agreement alert."""

    review: Review
    alerts: list[str]


def submit(
    session: Session, classification_id: int, reviewer: str, label: str, comment: str | None, confs: ReviewConfs,
    remote_addr: str | None = None,
) -> Submitted:
    """Store a reviewer's label (confirming or correcting the model), audit it and re-check agreement alerts."""
    result = session.get(Classification, classification_id)
    if result is None:
        raise ReviewError("no such result")
    if session.scalar(select(Review.id).where(Review.classification_id == classification_id)) is not None:
        raise ReviewError("this result has already been reviewed")
    if label not in result.probabilities:
        raise ReviewError(f"label must be one of the model's classes: {', '.join(sorted(result.probabilities))}")
    comment = (comment or "").strip() or None
    if comment is not None and len(comment) > MAX_COMMENT:
        raise ReviewError(f"comment longer than {MAX_COMMENT} characters")
    review = Review(
        classification_id=result.id, reviewer=reviewer, agrees=label == result.label, label=label, comment=comment,
        sampled=is_sampled(result.message_id, confs.sample_share), device_id=result.device_id,
        model_version=result.model_version,
    )
    session.add(review)
    session.flush()
    audit.record(session, reviewer, "review.confirmed" if review.agrees else "review.corrected", f"result {result.id}", {
        "device": result.device_id, "model_version": result.model_version, "model_label": result.label, "label": label,
        "sample_id": result.sample_id, "specimen_id": result.specimen_id, "comment": comment,
    }, remote_addr)
    raised = agreement.check_alerts(session, result.device_id, result.model_version, confs)
    return Submitted(review, raised)
