"""Specimens: a smear's fields of view (results sharing a specimen_id), aggregated by the documented rule."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from contracts.specimens import FieldOfView, SpecimenRule, SpecimenVerdict, Verdict, aggregate
from dashboard.models import Classification, Review

FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
CSV_COLUMNS = (
    "specimen_id", "verdict", "final", "fields", "usable", "malignant", "uncertain", "out_of_distribution",
    "reviewed", "review_status", "distribution", "devices", "models", "first_at", "last_at",
)


@dataclass(frozen=True)
class SpecimenFilter:
    """What the Specimens page and API narrow by; None means any."""

    verdict: Verdict | None = None
    device: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    specimen: str | None = None


@dataclass(frozen=True)
class Specimen:
    """A specimen's verdict, the figures behind it, and where its fields came from."""

    specimen_id: str
    result: SpecimenVerdict
    final: bool
    devices: tuple[str, ...]
    models: tuple[str, ...]
    first_at: datetime
    last_at: datetime
    needs_review: int
    reviewed_of_needed: int
    fields: tuple[tuple[Classification, Review | None], ...] = ()

    @property
    def review_status(self) -> str:
        """'not needed', 'pending' (some uncertain or OOD field unreviewed) or 'complete'."""
        if self.needs_review == 0:
            return "not needed"
        return "complete" if self.reviewed_of_needed >= self.needs_review else "pending"

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready summary."""
        return {
            "specimen_id": self.specimen_id, **self.result.as_dict(), "final": self.final,
            "review_status": self.review_status, "devices": list(self.devices), "models": list(self.models),
            "first_at": self.first_at.isoformat(), "last_at": self.last_at.isoformat(),
        }


def field_of(row: Classification, review: Review | None) -> FieldOfView:
    """A stored result as the rule sees it (with a reviewer's label when there is one)."""
    return FieldOfView(
        row.label, row.confidence, row.probabilities, row.uncertain, row.out_of_distribution,
        review.label if review is not None else None,
    )


def build(specimen_id: str, pairs: list[tuple[Classification, Review | None]], rule: SpecimenRule, now: datetime) -> Specimen:
    """Aggregate one specimen's fields."""
    pairs.sort(key=lambda pair: (pair[0].sent_at, pair[0].id))
    needing = [(c, r) for c, r in pairs if c.uncertain or c.out_of_distribution]
    last_at = pairs[-1][0].sent_at
    return Specimen(
        specimen_id=specimen_id, result=aggregate((field_of(c, r) for c, r in pairs), rule),
        final=now - last_at >= timedelta(seconds=rule.final_after_s),
        devices=tuple(sorted({c.device_id for c, _ in pairs})), models=tuple(sorted({c.model_version for c, _ in pairs})),
        first_at=pairs[0][0].sent_at, last_at=last_at, needs_review=len(needing),
        reviewed_of_needed=sum(1 for _, r in needing if r is not None), fields=tuple(pairs),
    )


def _fields(session: Session, specimen_ids: Iterable[str]) -> dict[str, list[tuple[Classification, Review | None]]]:
    ids = list(specimen_ids)
    grouped: dict[str, list[tuple[Classification, Review | None]]] = defaultdict(list)
    for start in range(0, len(ids), 500):
        query = (
            select(Classification, Review)
            .outerjoin(Review, Review.classification_id == Classification.id)
            .where(Classification.specimen_id.in_(ids[start:start + 500]))
        )
        for row, review in session.execute(query):
            grouped[str(row.specimen_id)].append((row, review))
    return grouped


def get_specimen(session: Session, specimen_id: str, rule: SpecimenRule, now: datetime) -> Specimen | None:
    """One specimen with its fields, or None when no result carries that id."""
    pairs = _fields(session, [specimen_id]).get(specimen_id)
    return build(specimen_id, pairs, rule, now) if pairs else None


def list_specimens(
    session: Session, rule: SpecimenRule, now: datetime, filters: SpecimenFilter = SpecimenFilter(), limit: int = 200
) -> list[Specimen]:
    """Specimens, most recently active first, filtered (the verdict filter applies after aggregation)."""
    last = func.max(Classification.sent_at)
    query = select(Classification.specimen_id, last).where(Classification.specimen_id.is_not(None))
    if filters.device:
        query = query.where(Classification.device_id == filters.device)
    if filters.specimen:
        query = query.where(Classification.specimen_id.contains(filters.specimen, autoescape=True))
    query = query.group_by(Classification.specimen_id)
    if filters.since:
        query = query.having(last >= filters.since)
    if filters.until:
        query = query.having(last < filters.until)
    scan = limit if filters.verdict is None else limit * 10
    ids = [str(s) for s, _ in session.execute(query.order_by(last.desc()).limit(scan))]
    grouped = _fields(session, ids)
    found = [build(s, grouped[s], rule, now) for s in ids if grouped.get(s)]
    if filters.verdict is not None:
        found = [s for s in found if s.result.verdict is filters.verdict]
    return found[:limit]


def csv_safe(value: Any) -> str:
    """Text of a cell, quoted so spreadsheets never run it as a formula."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(FORMULA_PREFIXES) else text


def csv_row(specimen: Specimen) -> list[str]:
    """One specimen as a formula-safe CSV row."""
    r = specimen.result
    distribution = " ".join(f"{k}={v}" for k, v in r.distribution.items())
    values = (
        specimen.specimen_id, r.verdict.value, specimen.final, r.fields, r.usable, r.malignant, r.uncertain,
        r.out_of_distribution, r.reviewed, specimen.review_status, distribution, " ".join(specimen.devices),
        " ".join(specimen.models), specimen.first_at.isoformat(), specimen.last_at.isoformat(),
    )
    return [csv_safe(v) for v in values]


def finished_before(session: Session, cutoff: datetime, limit: int = 200) -> list[str]:
    """Specimens whose latest field is older than cutoff (their verdict is final), oldest first."""
    last = func.max(Classification.sent_at)
    query = (
        select(Classification.specimen_id).where(Classification.specimen_id.is_not(None))
        .group_by(Classification.specimen_id).having(last < cutoff).order_by(last).limit(limit)
    )
    return [str(s) for s in session.scalars(query)]
