"""Alerts raised by what nodes report: self-test and model errors in Warnings, failed OTA commands in Updates."""

from __future__ import annotations

from sqlalchemy.orm import Session

from contracts.messages import UpdateMessage, UpdateState, WarningCode, WarningMessage
from dashboard.models import Device
from dashboard.services import alerts

EVENT_ALERT_CODES = {WarningCode.SELF_TEST_FAILED: "self_test_failed", WarningCode.MODEL_ERROR: "model_error"}


def on_warning(session: Session, device: Device, m: WarningMessage) -> None:
    """A critical alert for the warnings an admin must act on."""
    if m.code in EVENT_ALERT_CODES:
        alerts.raise_event_alert(session, device.id, EVENT_ALERT_CODES[m.code], "critical", m.message)


def on_update_outcome(session: Session, device: Device, m: UpdateMessage) -> None:
    """A critical alert when a model update (not a rollback) ended FAILED or fell back to the old model."""
    if m.state in (UpdateState.FAILED, UpdateState.ROLLED_BACK):
        alerts.raise_event_alert(
            session, device.id, "ota_failed", "critical", f"OTA {m.state.value} for {m.command_id}: {m.reason or ''}"
        )
