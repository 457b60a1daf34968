"""Schema of the dashboard's alert thresholds (per site) and notification channels in confs.json."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Severity = Literal["info", "warning", "critical"]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


class AlertThresholds(_Section):
    """When a node raises an alert."""

    offline_after_s: float = Field(300.0, gt=0, description="silence before an offline alert, seconds")
    max_temperature_c: float = Field(80.0, description="temperature above which a node alerts")
    max_disk_percent: float = Field(90.0, gt=0, le=100, description="disk use above which a node alerts")
    uncertain_share: float = Field(0.3, gt=0, le=1, description="rising share of uncertain results that alerts")
    ood_share: float | None = Field(
        None, gt=0, le=1, description="share of out-of-distribution results that alerts; null: dashboard.ood_alert_share"
    )
    self_test_failure: bool = Field(True, description="alert when a model fails its self-test")
    ota_failure: bool = Field(True, description="alert when an update fails or is rolled back on a node")


class SiteThresholds(_Section):
    """A site's overrides of the defaults: any field left out (null) keeps the default."""

    offline_after_s: float | None = Field(None, gt=0)
    max_temperature_c: float | None = None
    max_disk_percent: float | None = Field(None, gt=0, le=100)
    uncertain_share: float | None = Field(None, gt=0, le=1)
    ood_share: float | None = Field(None, gt=0, le=1)
    self_test_failure: bool | None = None
    ota_failure: bool | None = None


class AlertConfs(_Section):
    """Alert thresholds: fleet-wide defaults, overridden per site (location) here and on the admin page."""

    defaults: AlertThresholds = Field(default_factory=AlertThresholds, description="thresholds of every site")
    sites: dict[str, SiteThresholds] = Field(default_factory=dict, description="overrides per site (location)")
    evaluate_every_s: float = Field(10.0, gt=0, le=3600, description="how often ingest evaluates the alert rules")


class NotifyConfs(_Section):
    """Where alerts are sent: e-mail over SMTP and a webhook, with retries; secrets come from files or the env."""

    min_severity: Severity = Field("warning", description="alerts below this severity are not sent")
    email_to: list[str] = Field(default_factory=list, description="recipients; empty: no e-mail")
    smtp_host: str | None = Field(None, description="SMTP server; null: no e-mail")
    smtp_port: int = Field(25, ge=1, le=65535, description="SMTP port")
    smtp_starttls: bool = Field(False, description="upgrade the SMTP connection with STARTTLS")
    smtp_username: str | None = Field(None, description="SMTP login, if the server needs one")
    smtp_password_file: str | None = Field(None, description="git-ignored file with the SMTP password; SMTP_PASSWORD overrides")
    email_from: str = Field("all-fleet@localhost", description="sender address")
    webhook_url: str | None = Field(None, description="URL that receives each alert as a JSON POST; null: none")
    webhook_secret_file: str | None = Field(
        None, description="git-ignored file with the key signing webhook bodies (HMAC-SHA256); WEBHOOK_SECRET overrides"
    )
    max_attempts: int = Field(5, ge=1, le=50, description="tries per notification before it is given up (audited)")
    retry_after_s: float = Field(30.0, gt=0, description="wait before the first retry; doubles after each failure")
    timeout_s: float = Field(10.0, gt=0, le=120, description="network timeout of one try")
