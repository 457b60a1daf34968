"""Specimens page: verdicts by the documented rule, filterable, one specimen with its fields, CSV export."""
from __future__ import annotations

import csv
import io
from datetime import UTC, datetime
from typing import Any

from flask import Blueprint, Response, abort, current_app, render_template, request

from contracts.specimens import Verdict
from dashboard.db import get_db
from dashboard.models import utcnow
from dashboard.services import review, specimens
from dashboard.web.common import require_login

bp = require_login(Blueprint("specimens", __name__))


def _day(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(value).replace(tzinfo=UTC)
    except ValueError:
        return None


def parse_filters(args: Any) -> tuple[specimens.SpecimenFilter, dict[str, str]]:
    """Filters from the query string; invalid values are ignored (and not kept in links)."""
    verdict = args.get("verdict")
    verdict = verdict if verdict in {v.value for v in Verdict} else None
    since, until = _day(args.get("since")), _day(args.get("until"))
    filters = specimens.SpecimenFilter(
        verdict=Verdict(verdict) if verdict else None, device=(args.get("node") or "").strip() or None,
        since=since, until=until, specimen=(args.get("specimen") or "").strip()[:64] or None,
    )
    kept = {k: v for k, v in {
        "verdict": verdict, "node": filters.device, "specimen": filters.specimen,
        "since": args.get("since") if since else None, "until": args.get("until") if until else None,
    }.items() if v}
    return filters, kept


def _confs() -> Any:
    return current_app.config["CONFS"].dashboard


@bp.route("/specimens")
def index() -> Any:
    """Specimens, most recently active first."""
    filters, kept = parse_filters(request.args)
    with get_db().session(readonly=True) as session:
        found = specimens.list_specimens(session, _confs().specimens, utcnow(), filters)
    return render_template(
        "specimens.html", specimens=found, filters=kept, verdicts=[v.value for v in Verdict], rule=_confs().specimens,
    )


@bp.route("/specimens/<specimen_id>")
def detail(specimen_id: str) -> Any:
    """One specimen: its verdict, the figures behind it and every field."""
    share = _confs().review.sample_share
    with get_db().session(readonly=True) as session:
        found = specimens.get_specimen(session, specimen_id[:64], _confs().specimens, utcnow())
        if found is None:
            abort(404)
        queued = {c.id: review.reason(c, share) for c, r in found.fields if r is None}
    return render_template("specimen.html", s=found, rule=_confs().specimens, queued=queued)


@bp.route("/specimens.csv")
def export_csv() -> Response:
    """The filtered specimens as formula-safe CSV."""
    filters, _ = parse_filters(request.args)
    with get_db().session(readonly=True) as session:
        found = specimens.list_specimens(session, _confs().specimens, utcnow(), filters, limit=10_000)
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(specimens.CSV_COLUMNS)
    writer.writerows(specimens.csv_row(s) for s in found)
    stamp = utcnow().strftime("%Y%m%dT%H%M%SZ")
    return Response(buffer.getvalue(), mimetype="text/csv", headers={
        "Content-Disposition": f'attachment; filename="specimens-{stamp}.csv"', "Cache-Control": "no-store",
    })
