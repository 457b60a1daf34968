"""Classification reads: one ResultFilter, keyset and numbered pages, the CSV's batches, the live stream's poll.

Time ranges are half-open everywhere: `since` is included and `until` is not (since <= sent_at < until), so
adjacent ranges never share a row and a To of 10:05 means "before 10:05:00" on the page, in the API and the CSV.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Select, and_, func, select, tuple_
from sqlalchemy.orm import Session

from dashboard.models import Classification

MAX_PER_PAGE = 500


@dataclass(frozen=True)
class ResultFilter:
    """What to select; every field optional; values are bound parameters, never SQL text; until is exclusive."""

    device: str | None = None
    label: str | None = None
    min_confidence: float | None = None
    max_confidence: float | None = None
    since: datetime | None = None
    until: datetime | None = None
    uncertain: bool | None = None
    out_of_distribution: bool | None = None

    def apply(self, query: Select[Any]) -> Select[Any]:
        """Add these filters' WHERE clauses to a query over Classification."""
        conditions = []
        if self.device:
            conditions.append(Classification.device_id == self.device)
        if self.label:
            conditions.append(Classification.label == self.label)
        if self.min_confidence is not None:
            conditions.append(Classification.confidence >= self.min_confidence)
        if self.max_confidence is not None:
            conditions.append(Classification.confidence <= self.max_confidence)
        if self.uncertain is not None:
            conditions.append(Classification.uncertain.is_(self.uncertain))
        if self.out_of_distribution is not None:
            conditions.append(Classification.out_of_distribution.is_(self.out_of_distribution))
        if self.since is not None:
            conditions.append(Classification.sent_at >= self.since)
        if self.until is not None:
            conditions.append(Classification.sent_at < self.until)
        return query.where(and_(*conditions)) if conditions else query


NEWEST_FIRST = (Classification.sent_at.desc(), Classification.id.desc())


@dataclass(frozen=True)
class Cursor:
    """Keyset position: the (sent_at, id) of the last row shown."""

    sent_at: datetime
    id: int

    def encode(self) -> str:
        """Opaque text for a query string."""
        return f"{int(self.sent_at.timestamp() * 1_000_000)}_{self.id}"

    @classmethod
    def decode(cls, text: str | None) -> "Cursor | None":
        """Parse encode()'s text; None for anything malformed."""
        if not text or len(text) > 64:
            return None
        micros, _, ident = text.partition("_")
        try:
            return cls(datetime.fromtimestamp(int(micros) / 1_000_000, UTC), int(ident))
        except (ValueError, OverflowError, OSError):
            return None


@dataclass(frozen=True)
class ResultPage:
    """One keyset page of results, newest first, with the cursor of the next (older) page."""

    rows: Sequence[Classification]
    next_cursor: Cursor | None


@dataclass(frozen=True)
class NumberedPage:
    """One numbered page of results (the API's page/per_page)."""

    items: list[Classification]
    page: int
    per_page: int
    has_next: bool


def results_page(session: Session, filters: ResultFilter, after: Cursor | None, per_page: int) -> ResultPage:
    """A keyset page ordered by (sent_at, id) descending: constant cost however deep the page."""
    query = filters.apply(select(Classification))
    if after is not None:
        query = query.where(tuple_(Classification.sent_at, Classification.id) < tuple_(after.sent_at, after.id))
    rows = list(session.scalars(query.order_by(*NEWEST_FIRST).limit(per_page + 1)).all())
    more = len(rows) > per_page
    rows = rows[:per_page]
    return ResultPage(rows, Cursor(rows[-1].sent_at, rows[-1].id) if more and rows else None)


def numbered_page(session: Session, filters: ResultFilter, page: int = 1, per_page: int = 50) -> NumberedPage:
    """Page number `page` of the same newest-first order, per_page bounded to 1..MAX_PER_PAGE."""
    page = max(1, int(page))
    per_page = max(1, min(MAX_PER_PAGE, int(per_page)))
    query = filters.apply(select(Classification)).order_by(*NEWEST_FIRST)
    rows = list(session.scalars(query.limit(per_page + 1).offset((page - 1) * per_page)))
    return NumberedPage(rows[:per_page], page, per_page, len(rows) > per_page)


def iter_results(session: Session, filters: ResultFilter, batch: int = 2000) -> Iterator[Classification]:
    """Every matching result, newest first, fetched in keyset batches so memory stays flat (the CSV export)."""
    after: Cursor | None = None
    while True:
        page = results_page(session, filters, after, batch)
        yield from page.rows
        if page.next_cursor is None:
            return
        after = page.next_cursor
        session.expunge_all()


def results_newer_than(
    session: Session, filters: ResultFilter, last_id: int, upto_id: int | None = None, limit: int = 100
) -> list[Classification]:
    """The newest `limit` matching results with last_id < id <= upto_id, oldest first (the results stream's poll).

    A tab shows only its newest rows, so a burst is answered with its tail, not replayed from last_id.
    """
    query = select(Classification).where(Classification.id > last_id)
    if upto_id is not None:
        query = query.where(Classification.id <= upto_id)
    rows = list(session.scalars(filters.apply(query).order_by(Classification.id.desc()).limit(limit)).all())
    rows.reverse()
    return rows


def latest_result_id(session: Session) -> int:
    """Id of the newest stored result, 0 when there is none."""
    return int(session.scalar(select(func.max(Classification.id))) or 0)
