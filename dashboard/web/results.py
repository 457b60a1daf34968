"""Results page: filters, keyset pagination, live new rows and a streamed, formula-safe CSV export."""
from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from flask import Blueprint, Response, render_template, request, stream_with_context

from dashboard.db import get_db
from dashboard.reads.results import Cursor, ResultFilter, iter_results, results_page
from dashboard.services.results import CSV_COLUMNS, csv_row
from dashboard.web.common import require_login, utc_now
from dashboard.web.forms import ResultFilterForm

bp = require_login(Blueprint("results", __name__))


def parse_filters(args: Any) -> tuple[ResultFilterForm, ResultFilter, dict[str, str]]:
    """Validate query-string filters (From/To in UTC, To excluded); invalid fields are reported on the form and ignored."""
    form = ResultFilterForm(args)
    form.validate()

    def ok(field: Any) -> Any:
        return None if field.errors else field.data

    uncertain = {"yes": True, "no": False}.get(ok(form.uncertain) or "")
    ood = {"yes": True, "no": False}.get(ok(form.ood) or "")
    since, until = ok(form.since), ok(form.until)
    filters = ResultFilter(
        device=(ok(form.node) or "").strip() or None,
        label=ok(form.label) or None,
        min_confidence=float(ok(form.min_confidence)) if ok(form.min_confidence) is not None else None,
        max_confidence=float(ok(form.max_confidence)) if ok(form.max_confidence) is not None else None,
        uncertain=uncertain,
        out_of_distribution=ood,
        since=since.replace(tzinfo=UTC) if isinstance(since, datetime) else None,
        until=until.replace(tzinfo=UTC) if isinstance(until, datetime) else None,
    )
    kept = {
        name: args.get(name)
        for name in ("node", "label", "min_confidence", "max_confidence", "uncertain", "ood", "since", "until")
        if args.get(name) and not getattr(form, name).errors
    }
    return form, filters, kept


def per_page_of(form: ResultFilterForm) -> int:
    """Rows per page, bounded."""
    value = form.per_page.data if not form.per_page.errors else 50
    return value if value in (25, 50, 100, 200) else 50


@bp.route("/results")
def index() -> Any:
    """A page of results, newest first; the first page also receives new rows live."""
    form, filters, filter_args = parse_filters(request.args)
    per_page = per_page_of(form)
    if per_page != 50:
        filter_args["per_page"] = str(per_page)
    cursor = Cursor.decode(request.args.get("after"))
    with get_db().session(readonly=True) as session:
        page = results_page(session, filters, cursor, per_page)
    return render_template(
        "results.html", form=form, page=page, cursor=cursor, filter_args=filter_args, per_page=per_page
    )


@bp.route("/results.csv")
def export_csv() -> Response:
    """Every result matching the filters as CSV, streamed in keyset batches."""
    _, filters, _ = parse_filters(request.args)
    db = get_db()

    def generate() -> Iterator[str]:
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(CSV_COLUMNS)
        with db.session(readonly=True) as session:
            for count, row in enumerate(iter_results(session, filters), start=1):
                writer.writerow(csv_row(row))
                if count % 500 == 0:
                    yield buffer.getvalue()
                    buffer.seek(0)
                    buffer.truncate()
        yield buffer.getvalue()

    stamp = utc_now().strftime("%Y%m%dT%H%M%SZ")
    return Response(
        stream_with_context(generate()),
        mimetype="text/csv",
        headers={"Content-Disposition": f'attachment; filename="results-{stamp}.csv"', "Cache-Control": "no-store"},
    )
