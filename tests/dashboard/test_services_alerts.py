"""Alert rules: each raises once while it holds, clears when it stops, and acknowledgement records who and when."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from contracts.messages import Severity, WarningCode, WarningMessage, to_bytes
from contracts.topics import Channel, device_topic
from dashboard.db import Database
from dashboard.ingest.store import BatchWriter
from dashboard.ingest.validate import Accepted, validate
from dashboard.models import Alert, AuditLog, Device, ModelRelease, Rollout, RolloutTarget
from dashboard.reads import history
from dashboard.services import alerts
from dashboard.services.alerts import AlertRules
from support.web_seed import add_classifications, classification_row

T0 = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
RULES = AlertRules(offline_minutes=5, max_temperature_c=80, max_disk_percent=90, uncertain_share=0.3,
                   uncertain_window=10, uncertain_min_results=5)


def add_node(database: Database, device_id: str, **values: Any) -> None:
    """A device seen at T0 with a healthy snapshot, overridden by values."""
    fields: dict[str, Any] = dict(location="Hospital", zone="Lab1", state="ONLINE", first_seen=T0, last_seen=T0,
                                  status_at=T0, registered_at=T0, temperature_c=50.0, disk_percent=40.0)
    with database.session() as session:
        session.add(Device(id=device_id, **(fields | values)))


def update_node(database: Database, device_id: str, **values: Any) -> None:
    """Change a device's snapshot as ingest would."""
    with database.session() as session:
        device = session.get(Device, device_id)
        for name, value in values.items():
            setattr(device, name, value)


def evaluate(database: Database, now: datetime) -> None:
    """One evaluation of every rule, in its own transaction (as the ingest process runs it)."""
    with database.session() as session:
        alerts.evaluate(session, RULES, now=now)


def alerts_of(database: Database, device_id: str, kind: str) -> list[Alert]:
    """Every alert of this kind for the device, oldest first."""
    with database.session(readonly=True) as session:
        return list(session.scalars(select(Alert).where(Alert.device_id == device_id, Alert.kind == kind).order_by(Alert.id)))


def standing(database: Database, device_id: str, kind: str) -> list[Alert]:
    """The unresolved alerts of this kind for the device."""
    return [a for a in alerts_of(database, device_id, kind) if a.resolved_at is None]


def test_offline_raises_once_resolves_on_return_and_raises_again_later(database: Database) -> None:
    add_node(database, "quiet", last_seen=T0 - timedelta(minutes=10), status_at=T0 - timedelta(minutes=10))
    add_node(database, "fresh")
    evaluate(database, T0)
    evaluate(database, T0 + timedelta(minutes=1))
    evaluate(database, T0 + timedelta(minutes=2))
    [alert] = alerts_of(database, "quiet", "offline")
    assert alert.resolved_at is None and alert.updated_at == T0 + timedelta(minutes=2)
    assert alerts_of(database, "fresh", "offline") == []

    update_node(database, "quiet", last_seen=T0 + timedelta(minutes=3))
    evaluate(database, T0 + timedelta(minutes=3))
    [alert] = alerts_of(database, "quiet", "offline")
    assert alert.resolved_at == T0 + timedelta(minutes=3)

    evaluate(database, T0 + timedelta(minutes=20))
    history = alerts_of(database, "quiet", "offline")
    assert len(history) == 2 and history[0].resolved_at is not None and history[1].resolved_at is None


def test_a_clean_offline_status_alerts_only_after_the_grace_period(database: Database) -> None:
    add_node(database, "stopped", state="OFFLINE")
    evaluate(database, T0 + timedelta(minutes=4))
    assert alerts_of(database, "stopped", "offline") == []
    evaluate(database, T0 + timedelta(minutes=6))
    assert len(standing(database, "stopped", "offline")) == 1


def test_a_registered_node_never_seen_is_not_offline(database: Database) -> None:
    add_node(database, "unborn", state=None, first_seen=None, last_seen=None, status_at=None,
             temperature_c=None, disk_percent=None)
    evaluate(database, T0 + timedelta(days=3))
    with database.session(readonly=True) as session:
        assert list(session.scalars(select(Alert))) == []


@pytest.mark.parametrize(("kind", "field", "limit"), [("temperature", "temperature_c", 80.0), ("disk", "disk_percent", 90.0)])
def test_limits_raise_once_hold_through_ack_and_clear(database: Database, kind: str, field: str, limit: float) -> None:
    add_node(database, "n1", **{field: limit})
    evaluate(database, T0)
    assert alerts_of(database, "n1", kind) == [], "at the limit is not over it"

    update_node(database, "n1", **{field: limit + 5})
    for minute in range(3):
        evaluate(database, T0 + timedelta(minutes=minute))
    [alert] = alerts_of(database, "n1", kind)
    assert str(limit + 5) in alert.message

    with database.session() as session:
        alerts.acknowledge(session, alert.id, "alice", "10.0.0.7")
    evaluate(database, T0 + timedelta(minutes=4))
    [alert] = alerts_of(database, "n1", kind)
    assert alert.acknowledged_by == "alice" and alert.resolved_at is None, "acknowledged, still standing, not raised anew"

    update_node(database, "n1", **{field: limit - 10})
    evaluate(database, T0 + timedelta(minutes=5))
    assert standing(database, "n1", kind) == []

    update_node(database, "n1", **{field: limit + 1})
    evaluate(database, T0 + timedelta(minutes=6))
    history = alerts_of(database, "n1", kind)
    assert len(history) == 2 and history[1].acknowledged_at is None and history[1].resolved_at is None


def add_results(database: Database, device_id: str, start: datetime, uncertain: list[bool]) -> datetime:
    """Results one second apart from start; returns the time after the last."""
    rows = [classification_row(device_id, start + timedelta(seconds=i), uncertain=flag) for i, flag in enumerate(uncertain)]
    with database.session() as session:
        add_classifications(session, rows)
    return start + timedelta(seconds=len(uncertain))


def test_uncertain_share_raises_when_rising_holds_on_a_plateau_and_clears(database: Database) -> None:
    add_node(database, "n1")
    at = add_results(database, "n1", T0, [False] * 10)
    evaluate(database, at)
    assert alerts_of(database, "n1", "uncertain_share") == []

    at = add_results(database, "n1", at, [True, False] * 5)  # 50% now, 0% before: rising past 30%
    evaluate(database, at)
    evaluate(database, at)
    [alert] = alerts_of(database, "n1", "uncertain_share")
    assert "50%" in alert.message

    at = add_results(database, "n1", at, [True, False] * 5)  # a plateau at 50%: not rising, still too high
    evaluate(database, at)
    at = add_results(database, "n1", at, [True] * 6 + [False] * 4)  # rising again while the alert stands
    evaluate(database, at)
    [alert] = alerts_of(database, "n1", "uncertain_share")
    assert alert.resolved_at is None and "60%" in alert.message

    at = add_results(database, "n1", at, [False] * 10)
    evaluate(database, at)
    [alert] = alerts_of(database, "n1", "uncertain_share")
    assert alert.resolved_at is not None


def test_uncertain_share_needs_enough_results(database: Database) -> None:
    add_node(database, "n1")
    at = add_results(database, "n1", T0, [True] * 4)
    evaluate(database, at)
    assert alerts_of(database, "n1", "uncertain_share") == []
    at = add_results(database, "n1", at, [True])
    evaluate(database, at)
    assert len(alerts_of(database, "n1", "uncertain_share")) == 1


def ingest(database: Database, *messages: Any) -> None:
    """Store messages through the ingest writer, as they would arrive from devA."""
    items = []
    for message in messages:
        channel = Channel.WARNINGS if isinstance(message, WarningMessage) else Channel.UPDATES
        outcome = validate(device_topic("Hospital", "Lab1", message.device, channel), to_bytes(message))
        assert isinstance(outcome, Accepted), outcome
        items.append(outcome)
    BatchWriter(database).write(items, [])


def warning(code: WarningCode, text: str = "self-test: 3 of 8 reference images misclassified") -> WarningMessage:
    return WarningMessage(device="devA", code=code, severity=Severity.CRITICAL, message=text)


def test_self_test_failure_raises_once_until_acknowledged(database: Database) -> None:
    ingest(database, warning(WarningCode.SELF_TEST_FAILED), warning(WarningCode.DISK_LOW, "disk 95%"))
    ingest(database, warning(WarningCode.SELF_TEST_FAILED, "again"))
    evaluate(database, datetime.now(UTC))
    [alert] = alerts_of(database, "devA", "self_test_failed")
    assert alert.message == "again" and alert.resolved_at is None, "refreshed, and not cleared by the condition rules"
    assert alerts_of(database, "devA", "disk") == [], "a node's own DISK_LOW warning is not the disk rule"

    with database.session() as session:
        alerts.acknowledge(session, alert.id, "alice")
    ingest(database, warning(WarningCode.SELF_TEST_FAILED, "third time"))
    history = alerts_of(database, "devA", "self_test_failed")
    assert len(history) == 2 and history[0].acknowledged_by == "alice" and history[1].acknowledged_at is None


def sent_commands(database: Database, device_id: str, *command_ids: str) -> None:
    """Record command ids as a rollout sent them to device_id (ingest ignores Updates for any other)."""
    add_node(database, device_id)
    with database.session() as session:
        release = ModelRelease(name="m", version="1.1.0", filename="m.tgz", sha256="e" * 64, size=1, classes=["A"],
                               manifest={}, metrics={}, uploaded_by="alice")
        session.add(release)
        session.flush()
        for command_id in command_ids:
            rollout = Rollout(release_id=release.id, target_kind="all", canary_size=1, failure_threshold=1,
                              state="RUNNING", created_by="alice")
            session.add(rollout)
            session.flush()
            session.add(RolloutTarget(rollout_id=rollout.id, device_id=device_id, state="SENT", command_id=command_id,
                                      rollback_command_id=f"{command_id}-rb"))


def test_ota_failure_raises_once_per_open_alert(database: Database, payloads) -> None:
    sent_commands(database, "devA", "cmd-1", "cmd-2", "cmd-3")
    ingest(database, payloads.update("devA", "cmd-1", "FAILED", reason="signature mismatch"))
    ingest(database, payloads.update("devA", "cmd-2", "ROLLED_BACK", reason="self-test failed"))
    [alert] = alerts_of(database, "devA", "ota_failed")
    assert alert.severity == "warning" and "cmd-2" in alert.message, "the previous model still serves: a warning"
    ingest(database, payloads.update("devA", "cmd-3", "ACTIVE", version="1.1.0"))
    assert len(alerts_of(database, "devA", "ota_failed")) == 1, "success raises nothing"


def test_acknowledge_records_who_when_and_audits_once(database: Database) -> None:
    add_node(database, "n1", temperature_c=99.0)
    evaluate(database, T0)
    [alert] = alerts_of(database, "n1", "temperature")
    before = datetime.now(UTC)
    with database.session() as session:
        alerts.acknowledge(session, alert.id, "alice", "10.0.0.7")
    with database.session() as session:
        alerts.acknowledge(session, alert.id, "bob")
    [alert] = alerts_of(database, "n1", "temperature")
    assert alert.acknowledged_by == "alice" and before <= alert.acknowledged_at <= datetime.now(UTC)
    with database.session(readonly=True) as session:
        entries = list(session.scalars(select(AuditLog).where(AuditLog.action == "alert.acknowledge")))
        assert [(e.actor, e.target, e.remote_addr) for e in entries] == [("alice", f"alert {alert.id}", "10.0.0.7")]
        assert history.open_alerts(session) == []
        with pytest.raises(KeyError):
            alerts.acknowledge(session, alert.id + 1000, "alice")


def test_one_failed_update_raises_one_alert_not_one_per_report(database: Database, payloads) -> None:
    sent_commands(database, "devA", "cmd-1")
    ingest(database, warning(WarningCode.SELF_TEST_FAILED, "model 1.1.0 failed its self-test: outputs differ"),
           payloads.update("devA", "cmd-1", "FAILED", reason="self-test failed"))
    with database.session(readonly=True) as session:
        raised = list(session.scalars(select(Alert).where(Alert.device_id == "devA")))
    assert len(raised) == 1, [(a.kind, a.message) for a in raised]
    assert "cmd-1" in raised[0].message and "outputs differ" in raised[0].message and raised[0].severity == "warning"


def test_a_site_can_switch_off_ota_failure_alerts(database: Database, payloads) -> None:
    sent_commands(database, "devA", "cmd-1")
    ingest(database, payloads.update("devA", "cmd-1", "FAILED", reason="disk full"))
    with database.session() as session:
        alerts.evaluate(session, lambda site: AlertRules(ota_failure=False), now=datetime.now(UTC))
    [alert] = alerts_of(database, "devA", "ota_failed")
    assert alert.resolved_at is not None and alert.notified, "resolved before anything was sent"
