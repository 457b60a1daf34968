"""Classification results: filters, keyset-free pagination and CSV-ready iteration."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from dashboard.models import Classification

MAX_PER_PAGE = 500
CSV_COLUMNS = (
    "sent_at", "device_id", "sample_id", "verdict", "label", "confidence", "uncertain", "out_of_distribution", "ood_score",
    "model_version", "inference_ms", "message_id",
)
NEEDS_REVIEW = "needs review: outside what this model was trained on"


def verdict(result: Classification) -> str:
    """What a result says: its label, or "needs review" when the input is unlike the training data."""
    return NEEDS_REVIEW if result.out_of_distribution else result.label


def ood_score_text(result: Classification) -> str:
    """The OOD score for a table cell; empty when the model has no detector."""
    return "" if result.ood_score is None else f"{result.ood_score:.4f}"


@dataclass(frozen=True)
class ResultFilter:
    """What to select; every field optional. Values are bound parameters, never SQL text."""

    device: str | None = None
    label: str | None = None
    min_confidence: float | None = None
    max_confidence: float | None = None
    since: datetime | None = None
    until: datetime | None = None
    uncertain: bool | None = None
    out_of_distribution: bool | None = None


@dataclass(frozen=True)
class Page:
    """One page of results."""

    items: list[Classification]
    page: int
    per_page: int
    has_next: bool
    total: int | None = None


def _filtered(query: Select[Any], f: ResultFilter) -> Select[Any]:
    """Apply a filter to a query over Classification."""
    if f.device:
        query = query.where(Classification.device_id == f.device)
    if f.label:
        query = query.where(Classification.label == f.label)
    if f.min_confidence is not None:
        query = query.where(Classification.confidence >= f.min_confidence)
    if f.max_confidence is not None:
        query = query.where(Classification.confidence <= f.max_confidence)
    if f.since is not None:
        query = query.where(Classification.sent_at >= f.since)
    if f.until is not None:
        query = query.where(Classification.sent_at < f.until)
    if f.uncertain is not None:
        query = query.where(Classification.uncertain.is_(f.uncertain))
    if f.out_of_distribution is not None:
        query = query.where(Classification.out_of_distribution.is_(f.out_of_distribution))
    return query


def query_results(
    session: Session, f: ResultFilter, page: int = 1, per_page: int = 50, with_total: bool = False
) -> Page:
    """A page of results, newest first; the total is counted only when asked (it costs a scan)."""
    page = max(1, int(page))
    per_page = max(1, min(MAX_PER_PAGE, int(per_page)))
    query = _filtered(select(Classification), f).order_by(Classification.sent_at.desc(), Classification.id.desc())
    rows = list(session.scalars(query.limit(per_page + 1).offset((page - 1) * per_page)))
    total = None
    if with_total:
        total = int(session.scalar(_filtered(select(func.count(Classification.id)), f)) or 0)
    return Page(rows[:per_page], page, per_page, len(rows) > per_page, total)


def iter_results(session: Session, f: ResultFilter, batch: int = 1000) -> Iterator[Classification]:
    """Every matching result, newest first, streamed in batches (for CSV export)."""
    query = _filtered(select(Classification), f).order_by(Classification.sent_at.desc(), Classification.id.desc())
    yield from session.scalars(query.execution_options(yield_per=batch))


def csv_row(result: Classification) -> list[str]:
    """A result as CSV cells, in CSV_COLUMNS order; cells starting with formula characters are defused."""
    cells = [
        result.sent_at.isoformat(), result.device_id, result.sample_id, verdict(result), result.label,
        f"{result.confidence:.4f}", "1" if result.uncertain else "0", "1" if result.out_of_distribution else "0",
        ood_score_text(result), result.model_version, f"{result.inference_ms:.2f}", result.message_id,
    ]
    return ["'" + cell if cell[:1] in ("=", "+", "-", "@", "\t", "\r") else cell for cell in cells]


def to_dict(result: Classification) -> dict[str, Any]:
    """A result as JSON-ready data; `verdict` is the label, or "needs review" for an out-of-distribution input."""
    return {
        "message_id": result.message_id, "device": result.device_id, "sample_id": result.sample_id,
        "image_sha256": result.image_sha256, "verdict": verdict(result), "label": result.label,
        "out_of_distribution": bool(result.out_of_distribution), "ood_score": result.ood_score,
        "confidence": result.confidence,
        "probabilities": result.probabilities, "model_version": result.model_version,
        "inference_ms": result.inference_ms, "uncertain": result.uncertain, "sent_at": result.sent_at.isoformat(),
    }
