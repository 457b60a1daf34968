"""Typed SQLAlchemy 2.0 models of everything the dashboard stores."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, Boolean, DateTime, Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint, false
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

ID = String(64)
MESSAGE_ID = String(36)


def utcnow() -> datetime:
    """Current aware UTC time."""
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Stored as naive UTC on every backend, always returned timezone-aware."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are refused: pass an aware UTC datetime")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


class Base(DeclarativeBase):
    """Declarative base with the UTC datetime type mapped."""

    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: JSON, list[Any]: JSON}


class Device(Base):
    """An edge node, with its latest status and telemetry snapshot for the fleet view."""

    __tablename__ = "devices"

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    location: Mapped[str] = mapped_column(ID)
    zone: Mapped[str] = mapped_column(ID, index=True)
    state: Mapped[str | None] = mapped_column(String(16))
    model_version: Mapped[str | None] = mapped_column(String(32))
    software_version: Mapped[str | None] = mapped_column(String(32))
    first_seen: Mapped[datetime | None]
    last_seen: Mapped[datetime | None] = mapped_column(index=True)
    status_at: Mapped[datetime | None]
    status_session: Mapped[datetime | None]
    registered_at: Mapped[datetime] = mapped_column(default=utcnow)
    cpu_percent: Mapped[float | None]
    memory_percent: Mapped[float | None]
    disk_percent: Mapped[float | None]
    temperature_c: Mapped[float | None]
    outbox_depth: Mapped[int | None]
    uptime_s: Mapped[float | None]
    inference_count: Mapped[int | None]
    telemetry_at: Mapped[datetime | None]
    state_reason: Mapped[str | None] = mapped_column(Text)
    runtime: Mapped[str | None] = mapped_column(String(16))
    inference_device: Mapped[str | None] = mapped_column(String(64))
    precision: Mapped[str | None] = mapped_column(String(8))
    serving_at: Mapped[datetime | None]


class StatusChange(Base):
    """A Status message: ONLINE, OFFLINE or NO_MODEL (with its reason), with versions."""

    __tablename__ = "status_changes"
    __table_args__ = (Index("ix_status_device_sent", "device_id", "sent_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    message_id: Mapped[str] = mapped_column(MESSAGE_ID, unique=True)
    device_id: Mapped[str] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"))
    state: Mapped[str] = mapped_column(String(16))
    model_version: Mapped[str | None] = mapped_column(String(32))
    software_version: Mapped[str | None] = mapped_column(String(32))
    reason: Mapped[str | None] = mapped_column(Text)
    sent_at: Mapped[datetime]
    received_at: Mapped[datetime] = mapped_column(default=utcnow)


class Telemetry(Base):
    """One Life message."""

    __tablename__ = "telemetry"
    __table_args__ = (Index("ix_telemetry_device_sent", "device_id", "sent_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    message_id: Mapped[str] = mapped_column(MESSAGE_ID, unique=True)
    device_id: Mapped[str] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"))
    sent_at: Mapped[datetime]
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    cpu_percent: Mapped[float]
    memory_percent: Mapped[float]
    disk_percent: Mapped[float]
    temperature_c: Mapped[float | None]
    uptime_s: Mapped[float]
    inference_count: Mapped[int]
    inference_ms_mean: Mapped[float | None]
    outbox_depth: Mapped[int]
    model_version: Mapped[str | None] = mapped_column(String(32))


class Classification(Base):
    """One Sensors message: a classification result (sample ids are opaque)."""

    __tablename__ = "classifications"
    __table_args__ = (
        Index("ix_class_device_sent", "device_id", "sent_at"),
        Index("ix_class_label_sent", "label", "sent_at"),
        Index("ix_class_sent", "sent_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    message_id: Mapped[str] = mapped_column(MESSAGE_ID, unique=True)
    device_id: Mapped[str] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"))
    sample_id: Mapped[str] = mapped_column(ID)
    image_sha256: Mapped[str] = mapped_column(String(64))
    label: Mapped[str] = mapped_column(ID)
    confidence: Mapped[float] = mapped_column(Float)
    probabilities: Mapped[dict[str, Any]]
    model_version: Mapped[str] = mapped_column(String(32))
    inference_ms: Mapped[float]
    uncertain: Mapped[bool] = mapped_column(Boolean)
    out_of_distribution: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    ood_score: Mapped[float | None]
    specimen_id: Mapped[str | None] = mapped_column(ID, index=True)
    sent_at: Mapped[datetime]
    received_at: Mapped[datetime] = mapped_column(default=utcnow)


class Review(Base):
    """A reviewer's judgement of one result: confirmed or corrected label, with a comment (issue 14)."""

    __tablename__ = "reviews"

    id: Mapped[int] = mapped_column(primary_key=True)
    classification_id: Mapped[int] = mapped_column(ForeignKey("classifications.id", ondelete="CASCADE"), unique=True)
    reviewer: Mapped[str] = mapped_column(String(64))
    agrees: Mapped[bool] = mapped_column(Boolean)
    label: Mapped[str] = mapped_column(ID)
    comment: Mapped[str | None] = mapped_column(Text)
    # Whether the result came to the queue by the random share: only those estimate field accuracy unbiased.
    sampled: Mapped[bool] = mapped_column(Boolean, default=False)
    device_id: Mapped[str] = mapped_column(ID, index=True)
    model_version: Mapped[str] = mapped_column(String(32))
    reviewed_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)

    classification: Mapped[Classification] = relationship()


class FhirPush(Base):
    """One specimen's final FHIR report to push to the configured server, retried until sent or given up."""

    __tablename__ = "fhir_pushes"

    specimen_id: Mapped[str] = mapped_column(ID, primary_key=True)
    state: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    sent_at: Mapped[datetime | None]


class WarningEvent(Base):
    """One Warnings message."""

    __tablename__ = "warnings"
    __table_args__ = (Index("ix_warning_device_sent", "device_id", "sent_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    message_id: Mapped[str] = mapped_column(MESSAGE_ID, unique=True)
    device_id: Mapped[str] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"))
    code: Mapped[str] = mapped_column(String(32))
    severity: Mapped[str] = mapped_column(String(16))
    message: Mapped[str] = mapped_column(Text)
    details: Mapped[dict[str, Any]]
    sent_at: Mapped[datetime]
    received_at: Mapped[datetime] = mapped_column(default=utcnow)


class UpdateEvent(Base):
    """One Updates message: OTA progress of a command on a node."""

    __tablename__ = "update_events"
    __table_args__ = (Index("ix_update_device_sent", "device_id", "sent_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    message_id: Mapped[str] = mapped_column(MESSAGE_ID, unique=True)
    device_id: Mapped[str] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"))
    command_id: Mapped[str] = mapped_column(ID, index=True)
    state: Mapped[str] = mapped_column(String(16))
    version: Mapped[str | None] = mapped_column(String(32))
    reason: Mapped[str | None] = mapped_column(Text)
    progress: Mapped[float | None]
    sent_at: Mapped[datetime]
    received_at: Mapped[datetime] = mapped_column(default=utcnow)


class Alert(Base):
    """Something an admin should look at; at most one open alert per (device, kind)."""

    __tablename__ = "alerts"
    __table_args__ = (Index("ix_alert_open", "device_id", "kind", "resolved_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    device_id: Mapped[str | None] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(32))
    severity: Mapped[str] = mapped_column(String(16))
    message: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    resolved_at: Mapped[datetime | None]
    acknowledged_by: Mapped[str | None] = mapped_column(String(64))
    acknowledged_at: Mapped[datetime | None]
    notified: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())


class AlertSetting(Base):
    """A site's alert thresholds as set on the admin page (over confs.json's)."""

    __tablename__ = "alert_settings"

    site: Mapped[str] = mapped_column(ID, primary_key=True)
    thresholds: Mapped[dict[str, Any]]
    updated_by: Mapped[str] = mapped_column(String(64))
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class Notification(Base):
    """One alert to send on one channel (email, webhook), retried until sent or given up."""

    __tablename__ = "notifications"
    __table_args__ = (
        UniqueConstraint("alert_id", "channel", "target", name="uq_notification_alert_channel_target"),
        Index("ix_notification_due", "state", "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    alert_id: Mapped[int] = mapped_column(ForeignKey("alerts.id", ondelete="CASCADE"))
    channel: Mapped[str] = mapped_column(String(16))
    target: Mapped[str] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    sent_at: Mapped[datetime | None]


class ModelRelease(Base):
    """A verified, stored model package with its manifest, metrics and confusion matrix."""

    __tablename__ = "model_releases"
    __table_args__ = (UniqueConstraint("name", "version", name="uq_release_name_version"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(ID)
    version: Mapped[str] = mapped_column(String(32))
    filename: Mapped[str] = mapped_column(String(255))
    sha256: Mapped[str] = mapped_column(String(64), unique=True)
    size: Mapped[int]
    classes: Mapped[list[Any]]
    manifest: Mapped[dict[str, Any]]
    metrics: Mapped[dict[str, Any]]
    confusion_matrix: Mapped[list[Any] | None] = mapped_column(JSON)
    uploaded_by: Mapped[str] = mapped_column(String(64))
    uploaded_at: Mapped[datetime] = mapped_column(default=utcnow)


class Rollout(Base):
    """A staged deployment of a release: canary first, then the rest; halts past its failure threshold."""

    __tablename__ = "rollouts"

    id: Mapped[int] = mapped_column(primary_key=True)
    release_id: Mapped[int] = mapped_column(ForeignKey("model_releases.id"))
    target_kind: Mapped[str] = mapped_column(String(16))
    target_value: Mapped[str | None] = mapped_column(Text)
    canary_size: Mapped[int]
    failure_threshold: Mapped[int]
    failure_baseline: Mapped[int] = mapped_column(default=0)
    state: Mapped[str] = mapped_column(String(16), index=True)
    intent: Mapped[str | None] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(Text)
    created_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    # Phases after the canary ("3" nodes or "25%"), the soak between them and whether a health gate guards each.
    phases: Mapped[list[Any]] = mapped_column(JSON, default=list)
    soak_s: Mapped[int] = mapped_column(default=0)
    health_gate: Mapped[bool] = mapped_column(Boolean, default=False)
    scheduled_at: Mapped[datetime | None]
    phase: Mapped[int] = mapped_column(default=0)
    soak_until: Mapped[datetime | None]
    started_at: Mapped[datetime | None]
    completed_at: Mapped[datetime | None]
    phase_log: Mapped[list[Any]] = mapped_column(JSON, default=list)
    model_change_confirmed: Mapped[bool] = mapped_column(Boolean, default=False)

    release: Mapped[ModelRelease] = relationship()
    targets: Mapped[list[RolloutTarget]] = relationship(
        back_populates="rollout", order_by="RolloutTarget.id", cascade="all, delete-orphan"
    )


class RolloutTarget(Base):
    """One node in a rollout, with the command sent to it and the state its Updates report."""

    __tablename__ = "rollout_targets"
    __table_args__ = (UniqueConstraint("rollout_id", "device_id", name="uq_target_rollout_device"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    rollout_id: Mapped[int] = mapped_column(ForeignKey("rollouts.id", ondelete="CASCADE"))
    device_id: Mapped[str] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"))
    is_canary: Mapped[bool] = mapped_column(Boolean, default=False)
    phase: Mapped[int] = mapped_column(default=0)
    state: Mapped[str] = mapped_column(String(16))
    command_id: Mapped[str] = mapped_column(ID, unique=True)
    rollback_command_id: Mapped[str] = mapped_column(ID, unique=True)
    sends: Mapped[int] = mapped_column(default=0)
    sent_at: Mapped[datetime | None]
    reported_at: Mapped[datetime | None]
    activated_at: Mapped[datetime | None]
    reason: Mapped[str | None] = mapped_column(Text)

    rollout: Mapped[Rollout] = relationship(back_populates="targets")


class User(Base):
    """A person who logs in to the web app; role is 'admin', 'reviewer' or 'viewer'."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(16))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    failed_logins: Mapped[int] = mapped_column(default=0)
    locked_until: Mapped[datetime | None]
    last_login_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # Part of every session's id: bumping it (logout, password or role change) ends all saved sessions.
    session_generation: Mapped[int] = mapped_column(default=0)

    # Flask-Login protocol
    @property
    def is_authenticated(self) -> bool:
        return True

    @property
    def is_active(self) -> bool:
        return self.active

    @property
    def is_anonymous(self) -> bool:
        return False

    def get_id(self) -> str:
        return f"{self.id}:{self.session_generation}"

    @property
    def is_admin(self) -> bool:
        """True for the admin role."""
        return self.role == "admin"


class ApiToken(Base):
    """A REST API bearer token of a user (only its hash is stored)."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(64))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]

    user: Mapped[User] = relationship()


class DeviceToken(Base):
    """A node's bearer token for package downloads (only its hash is stored)."""

    __tablename__ = "device_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    device_id: Mapped[str] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[datetime | None]


class AuditLog(Base):
    """One admin action: who, what, on what, when."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    actor: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(64))
    target: Mapped[str | None] = mapped_column(Text)
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    remote_addr: Mapped[str | None] = mapped_column(String(64))


class RejectedMessage(Base):
    """Count of payloads ingest refused, per reason, with the latest example's topic and error."""

    __tablename__ = "rejected_messages"

    reason: Mapped[str] = mapped_column(String(32), primary_key=True)
    count: Mapped[int] = mapped_column(default=0)
    last_at: Mapped[datetime | None]
    last_topic: Mapped[str | None] = mapped_column(Text)
    last_error: Mapped[str | None] = mapped_column(Text)


class LoginThrottleEntry(Base):
    """Consecutive failed sign-ins of one username (known or not), shared by every web worker."""

    __tablename__ = "login_throttle"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    failures: Mapped[int] = mapped_column(default=0)
    locked_until: Mapped[datetime | None]
    last_failure: Mapped[datetime] = mapped_column(index=True)


class _TelemetryRollup:
    """Columns shared by the per-minute and per-hour roll-ups of Life telemetry: means over a time bucket."""

    id: Mapped[int] = mapped_column(primary_key=True)
    device_id: Mapped[str] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"))
    bucket: Mapped[datetime]
    samples: Mapped[int]
    cpu_percent: Mapped[float]
    memory_percent: Mapped[float]
    disk_percent: Mapped[float]
    temperature_c: Mapped[float | None]
    inference_ms_mean: Mapped[float | None]
    outbox_depth: Mapped[float]
    max_temperature_c: Mapped[float | None]
    max_outbox_depth: Mapped[int]

    @property
    def sent_at(self) -> datetime:
        """The bucket's start, so charts read a roll-up like a raw row."""
        return self.bucket


class TelemetryMinute(_TelemetryRollup, Base):
    """Life telemetry of one node rolled up per minute (kept past the raw retention)."""

    __tablename__ = "telemetry_minute"
    __table_args__ = (UniqueConstraint("device_id", "bucket", name="uq_telemetry_minute_device_bucket"),)


class TelemetryHour(_TelemetryRollup, Base):
    """Life telemetry of one node rolled up per hour (kept longest)."""

    __tablename__ = "telemetry_hour"
    __table_args__ = (UniqueConstraint("device_id", "bucket", name="uq_telemetry_hour_device_bucket"),)


class RetentionState(Base):
    """Where the retention job got to: telemetry seen by rolled_up_to is rolled up; what was pruned."""

    __tablename__ = "retention_state"

    id: Mapped[int] = mapped_column(primary_key=True)
    rolled_up_to: Mapped[datetime | None]
    rolled_up_id: Mapped[int | None]
    raw_pruned_before: Mapped[datetime | None]
    minute_pruned_before: Mapped[datetime | None]
    hour_pruned_before: Mapped[datetime | None]
