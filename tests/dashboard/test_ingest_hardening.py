"""Ingest hardening against a real broker and SQLite: bound client ids, clock skew, nonsense results, stray Updates."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import func, select

from broker_config import add_dashboard
from dashboard.db import Database
from dashboard.models import Classification, RejectedMessage

pytestmark = pytest.mark.timeout(90)


def count(database: Database, model: type) -> int:
    with database.session(readonly=True) as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


def rejects(database: Database) -> dict[str, int]:
    with database.session(readonly=True) as session:
        return {r.reason: r.count for r in session.scalars(select(RejectedMessage))}


def test_shared_workers_with_their_own_accounts_work_when_client_ids_are_bound(
    broker_factory: Callable[..., Any], database: Database, run_ingest: Any, payloads: Any, wait: Any
) -> None:
    broker = broker_factory(settings={"bind_client_id": True})
    broker.credentials["dashboard-2"] = add_dashboard(broker.root, "dashboard-2", broker.dashboard_app, (broker.location,))
    broker.reload()
    broker._wait_login("dashboard-2", 5.0)
    first = run_ingest(broker, database, client_id="dashboard-ingest-g-1", shared_group="g")
    second = run_ingest(broker, database, client_id="dashboard-ingest-g-2", shared_group="g", username="dashboard-2")
    node = broker.client("devA", client_id="devA")
    topic = broker.topic("devA", "Sensors")
    for info in [node.publish(topic, payloads.to_bytes(payloads.sensors("devA", n)), qos=1) for n in range(300)]:
        info.wait_for_publish(10)
    wait(lambda: count(database, Classification) == 300, what="300 results from two workers")
    wait(lambda: first.totals.stored + second.totals.stored == 300, what="totals")
    assert first.totals.stored > 0 and second.totals.stored > 0, "both workers took a share"
    time.sleep(0.5)
    assert first.connected.is_set() and second.connected.is_set()
