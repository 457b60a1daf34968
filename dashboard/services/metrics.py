"""The dashboard's Prometheus metrics, read from the database at scrape time (web and ingest share it)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from dashboard.models import Alert, Classification, Device, RejectedMessage, Rollout, StatusChange, Telemetry, UpdateEvent, WarningEvent
from dashboard.services import review

STORED = {
    "Sensors": Classification, "Life": Telemetry, "Status": StatusChange, "Warnings": WarningEvent, "Updates": UpdateEvent,
}
LAG_SAMPLE = 100


class DashboardCollector(Collector):
    """One scrape's figures from one read-only session."""

    def __init__(self, session: Session, now: datetime, offline_after_s: float, review_share: float) -> None:
        self._session = session
        self._now = now
        self._offline_after = timedelta(seconds=offline_after_s)
        self._share = review_share

    def collect(self) -> Iterator[Metric]:
        s = self._session
        ingested = CounterMetricFamily("dashboard_messages_ingested", "Messages stored by ingest, by channel", labels=["channel"])
        for channel, model in STORED.items():
            ingested.add_metric([channel], float(s.scalar(select(func.count()).select_from(model)) or 0))
        yield ingested
        rejected = CounterMetricFamily("dashboard_messages_rejected", "Payloads ingest refused, by reason", labels=["reason"])
        for reason, count in s.execute(select(RejectedMessage.reason, RejectedMessage.count)):
            rejected.add_metric([reason], float(count))
        yield rejected
        recent = s.execute(
            select(Classification.sent_at, Classification.received_at).order_by(Classification.id.desc()).limit(LAG_SAMPLE)
        ).all()
        lag = GaugeMetricFamily("dashboard_ingest_lag_seconds", "Mean delay from a node's send to storage over the latest results")
        lag.add_metric([], sum((r - t).total_seconds() for t, r in recent) / len(recent) if recent else 0.0)
        yield lag
        nodes = GaugeMetricFamily("dashboard_nodes", "Nodes by whether they are online now", labels=["state"])
        online = offline = 0
        for state, last_seen in s.execute(select(Device.state, Device.last_seen)):
            fresh = last_seen is not None and last_seen >= self._now - self._offline_after
            online, offline = (online + 1, offline) if state == "ONLINE" and fresh else (online, offline + 1)
        nodes.add_metric(["online"], online)
        nodes.add_metric(["offline"], offline)
        yield nodes
        alerts = GaugeMetricFamily("dashboard_open_alerts", "Unresolved alerts by severity", labels=["severity"])
        for severity in ("info", "warning", "critical"):
            count = s.scalar(select(func.count()).select_from(Alert).where(Alert.resolved_at.is_(None), Alert.severity == severity))
            alerts.add_metric([severity], float(count or 0))
        yield alerts
        rollouts = GaugeMetricFamily("dashboard_rollouts", "Rollouts by state", labels=["state"])
        for state, count in s.execute(select(Rollout.state, func.count()).group_by(Rollout.state)):
            rollouts.add_metric([state], float(count))
        yield rollouts
        queue = GaugeMetricFamily("dashboard_review_queue_length", "Results waiting for a reviewer")
        queue.add_metric([], float(review.queue_length(s, self._share)))
        yield queue


def exposition(session: Session, now: datetime, offline_after_s: float, review_share: float) -> tuple[bytes, str]:
    """The text format Prometheus scrapes, and its content type."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(DashboardCollector(session, now, offline_after_s, review_share))
    return generate_latest(registry), CONTENT_TYPE_LATEST
