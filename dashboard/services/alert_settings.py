"""Alert thresholds per site: confs.json's defaults, its per-site overrides, then what admins set on the admin page."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from contracts.alert_confs import AlertThresholds, SiteThresholds
from contracts.confs import DashboardConfs
from dashboard.models import AlertSetting, Device, utcnow
from dashboard.services import audit
from dashboard.services.alerts import AlertRules


def effective(dashboard: DashboardConfs, site: str, stored: dict[str, Any] | None) -> AlertThresholds:
    """A site's thresholds: defaults, then confs.json's site overrides, then the admin page's."""
    values = dashboard.alerts.defaults.model_dump()
    if values["ood_share"] is None:
        values["ood_share"] = dashboard.ood_alert_share
    for layer in (dashboard.alerts.sites.get(site), SiteThresholds.model_validate(stored) if stored else None):
        if layer is not None:
            values.update({k: v for k, v in layer.model_dump().items() if v is not None})
    return AlertThresholds.model_validate(values)


def to_rules(dashboard: DashboardConfs, thresholds: AlertThresholds) -> AlertRules:
    """The evaluator's rules for these thresholds."""
    return replace(
        AlertRules.from_confs(dashboard), offline_minutes=thresholds.offline_after_s / 60,
        max_temperature_c=thresholds.max_temperature_c, max_disk_percent=thresholds.max_disk_percent,
        uncertain_share=thresholds.uncertain_share, ood_share=thresholds.ood_share or dashboard.ood_alert_share,
        self_test_failure=thresholds.self_test_failure, ota_failure=thresholds.ota_failure,
    )


def sites(session: Session, dashboard: DashboardConfs, own_site: str) -> list[str]:
    """Every site known: this dashboard's, its devices' and those configured or set."""
    known = {own_site, *dashboard.alerts.sites}
    known.update(session.scalars(select(Device.location).distinct()))
    known.update(session.scalars(select(AlertSetting.site)))
    return sorted(known)


def stored(session: Session) -> dict[str, dict[str, Any]]:
    """The admin page's overrides by site."""
    return {row.site: row.thresholds for row in session.scalars(select(AlertSetting))}


def rules_by_site(session: Session, dashboard: DashboardConfs) -> dict[str, AlertRules]:
    """Rules of every site that has overrides (others use rules_for's default)."""
    overrides = stored(session)
    named = set(overrides) | set(dashboard.alerts.sites)
    return {site: to_rules(dashboard, effective(dashboard, site, overrides.get(site))) for site in named}


def rules_lookup(session: Session, dashboard: DashboardConfs) -> Any:
    """A site -> AlertRules function for alerts.evaluate, read once per evaluation."""
    by_site = rules_by_site(session, dashboard)
    default = to_rules(dashboard, effective(dashboard, "", None))
    return lambda site: by_site.get(site, default)


def save(session: Session, site: str, values: SiteThresholds, actor: str, remote_addr: str | None = None) -> None:
    """Store a site's overrides from the admin page and audit the change."""
    row = session.get(AlertSetting, site)
    data = values.model_dump(exclude_none=True)
    before = dict(row.thresholds) if row is not None else {}
    if row is None:
        session.add(AlertSetting(site=site, thresholds=data, updated_by=actor, updated_at=utcnow()))
    else:
        row.thresholds, row.updated_by, row.updated_at = data, actor, utcnow()
    audit.record(session, actor, "alert_rules.update", f"site {site}", {"before": before, "after": data}, remote_addr)
