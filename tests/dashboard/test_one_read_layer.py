"""One read layer: the same filter gives the same rows through the results page, the API, the CSV and the stream."""

from __future__ import annotations

import csv
import io
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from dashboard.db import Database
from dashboard.models import User
from dashboard.reads.live import SharedReads
from dashboard.reads.results import ResultFilter, iter_results, numbered_page, results_page
from dashboard.services import tokens
from support.web_seed import add_classifications, add_device, classification_row, sign_in

START = datetime(2025, 3, 1, 10, 0, tzinfo=UTC)
END = START + timedelta(minutes=5)


@pytest.fixture
def seeded(db: Database) -> None:
    """Results a minute apart around [START, END) on two nodes, one exactly on each bound."""
    with db.session() as session:
        add_device(session, "node-a")
        add_device(session, "node-b")
        rows = [
            classification_row("node-a" if n % 3 else "node-b", START + timedelta(seconds=30 * n), sample_id=f"s{n + 4:03d}",
                               label="Pre" if n % 2 else "Benign", confidence=0.6 + n / 100, uncertain=n % 4 == 0)
            for n in range(-4, 16)
        ]
        add_classifications(session, rows)


@pytest.fixture
def viewer(app: Flask, viewer_user: tuple[User, str]) -> FlaskClient:
    """The viewer signed in through the login form."""
    return sign_in(app.test_client(), viewer_user[0].username, viewer_user[1])


@pytest.fixture
def token(db: Database, viewer_user: tuple[User, str]) -> str:
    """An API token of the viewer."""
    with db.session() as session:
        return tokens.create_api_token(session, viewer_user[0], "reads")


def page_ids(viewer: FlaskClient, query: dict[str, str]) -> list[str]:
    """Sample ids the results page shows for these filters (the From/To fields are UTC, to the second)."""
    html = viewer.get("/results", query_string={**query, "per_page": "200"}).get_data(as_text=True)
    return re.findall(r'<td class="mono">(s\d{3})</td>', html)


def api_ids(viewer: FlaskClient, token: str, query: dict[str, str]) -> list[str]:
    """Sample ids the API lists for these filters (times with their zone)."""
    args = {("device" if k == "node" else k): (v + "Z" if k in ("since", "until") else v) for k, v in query.items()}
    body = viewer.get("/api/v1/results", query_string={**args, "per_page": "200"},
                      headers={"Authorization": f"Bearer {token}"}).json
    return [row["sample_id"] for row in body["results"]]


def csv_ids(viewer: FlaskClient, query: dict[str, str]) -> list[str]:
    """Sample ids of the CSV export for the page's filters."""
    text = viewer.get("/results.csv", query_string=query).get_data(as_text=True)
    return [row["sample_id"] for row in csv.DictReader(io.StringIO(text))]


FILTERS: list[dict[str, str]] = [
    {"since": "2025-03-01T10:00:00", "until": "2025-03-01T10:05:00"},
    {"since": "2025-03-01T10:00:00", "until": "2025-03-01T10:05:00", "node": "node-a", "label": "Pre"},
    {"until": "2025-03-01T10:02:30", "uncertain": "yes"},
    {"since": "2025-03-01T10:01:00", "min_confidence": "0.65", "max_confidence": "0.7"},
    {},
]


@pytest.mark.parametrize("query", FILTERS, ids=["range", "range-node-label", "until-uncertain", "since-confidence", "all"])
def test_same_filter_same_rows_on_page_api_and_csv(viewer: FlaskClient, token: str, seeded: None, query: dict[str, str]) -> None:
    api_query = {k: v for k, v in query.items() if k != "uncertain"}
    if "uncertain" in query:
        api_query["uncertain"] = "true" if query["uncertain"] == "yes" else "false"
    shown, listed, exported = page_ids(viewer, query), api_ids(viewer, token, api_query), csv_ids(viewer, query)
    assert shown and shown == listed == exported


def test_until_is_exclusive_and_since_inclusive_everywhere(viewer: FlaskClient, token: str, seeded: None, db: Database) -> None:
    query = {"since": "2025-03-01T10:00:00", "until": "2025-03-01T10:05:00"}
    expected = [f"s{n + 4:03d}" for n in reversed(range(0, 10))]  # s004 sits on since, s014 on until
    assert page_ids(viewer, query) == api_ids(viewer, token, query) == csv_ids(viewer, query) == expected
    with db.session(readonly=True) as session:
        f = ResultFilter(since=START, until=END)
        assert [r.sample_id for r in results_page(session, f, None, 100).rows] == expected
        assert [r.sample_id for r in numbered_page(session, f, 1, 100).items] == expected
        assert [r.sample_id for r in iter_results(session, f, batch=3)] == expected


def test_the_results_stream_applies_the_same_filter(app: Flask, viewer: FlaskClient, seeded: None, db: Database) -> None:
    app.config.update(SSE_LIFETIME_S=0.3, SSE_POLL_S=0.1)
    response = viewer.get("/stream/results?node=node-b&until=2025-03-01T10:05:00", headers={"Last-Event-ID": "0"},
                          buffered=True)
    ids = re.findall(r'"sample_id":"(s\d{3})"', response.get_data(as_text=True))
    assert ids == [f"s{n + 4:03d}" for n in range(-4, 10) if n % 3 == 0]


def test_shared_reads_compute_once_per_interval_for_every_tab() -> None:
    shared = SharedReads(ttl_s=60.0)
    calls: list[int] = []

    def compute() -> Any:
        calls.append(1)
        return len(calls)

    assert [shared.get(("fleet",), compute) for _ in range(20)] == [1] * 20
    assert shared.get(("other",), compute) == 2 and shared.computed == 2
