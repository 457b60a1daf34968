"""Results page: filters, keyset pagination, live new rows and a streamed, formula-safe CSV export."""
from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from flask import Blueprint, Response, render_template, request, stream_with_context

from dashboard.db import get_db
from dashboard.models import Classification
from dashboard.services.results import ood_score_text, verdict
from dashboard.web import queries
from dashboard.web.common import require_login, utc_now
from dashboard.web.forms import ResultFilterForm

bp = require_login(Blueprint("results", __name__))

CSV_COLUMNS = (
    "id", "sent_at", "received_at", "device_id", "sample_id", "image_sha256", "verdict", "label", "confidence",
    "uncertain", "out_of_distribution", "ood_score", "model_version", "inference_ms", "probabilities",
)
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def parse_filters(args: Any) -> tuple[ResultFilterForm, queries.ResultFilter, dict[str, str]]:
    """Validate query-string filters; invalid fields are reported on the form and ignored."""
    form = ResultFilterForm(args)
    form.validate()

    def ok(field: Any) -> Any:
        return None if field.errors else field.data

    uncertain = {"yes": True, "no": False}.get(ok(form.uncertain) or "")
    ood = {"yes": True, "no": False}.get(ok(form.ood) or "")
    since, until = ok(form.since), ok(form.until)
    filters = queries.ResultFilter(
        node=(ok(form.node) or "").strip() or None,
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
    cursor = queries.Cursor.decode(request.args.get("after"))
    with get_db().session(readonly=True) as session:
        page = queries.results_page(session, filters, cursor, per_page)
    return render_template(
        "results.html", form=form, page=page, cursor=cursor, filter_args=filter_args, per_page=per_page
    )


def csv_safe(value: Any) -> str:
    """Text of a cell, quoted so spreadsheets never run it as a formula."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(FORMULA_PREFIXES) else text


def _csv_row(row: Classification) -> list[str]:
    values = {
        "id": row.id, "sent_at": row.sent_at.isoformat(), "received_at": row.received_at.isoformat(),
        "device_id": row.device_id, "sample_id": row.sample_id, "image_sha256": row.image_sha256,
        "verdict": verdict(row), "label": row.label, "confidence": f"{row.confidence:.6f}",
        "uncertain": "true" if row.uncertain else "false",
        "out_of_distribution": "true" if row.out_of_distribution else "false", "ood_score": ood_score_text(row),
        "model_version": row.model_version, "inference_ms": f"{row.inference_ms:.3f}",
        "probabilities": ";".join(f"{k}={v:.6f}" for k, v in sorted(row.probabilities.items())),
    }
    return [csv_safe(values[column]) for column in CSV_COLUMNS]


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
            for count, row in enumerate(queries.iter_results(session, filters), start=1):
                writer.writerow(_csv_row(row))
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
