"""Admin pages: alert thresholds per site, and API tokens created and revoked in the browser."""
from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, url_for
from flask_login import current_user
from flask_wtf import FlaskForm
from pydantic import ValidationError
from wtforms import BooleanField, FloatField, StringField
from wtforms.validators import DataRequired, Length, NumberRange, Optional

from contracts.alert_confs import SiteThresholds
from dashboard.db import get_db
from dashboard.models import ApiToken, User, utcnow
from dashboard.reads.history import api_tokens
from dashboard.services import alert_settings, audit, notify, tokens
from dashboard.services.auth import role_required
from dashboard.web.common import require_login
from dashboard.web.forms import ActionForm

bp = require_login(Blueprint("admin", __name__, url_prefix="/admin"))


@bp.before_request
def _admins_only() -> None:
    if not current_user.is_admin:
        abort(403)


class ThresholdsForm(FlaskForm):
    """One site's alert thresholds; shares in percent on the page."""

    offline_after_s = FloatField("Offline after (s)", validators=[DataRequired(), NumberRange(min=1, max=7 * 86400)])
    max_temperature_c = FloatField("Max temperature (°C)", validators=[DataRequired(), NumberRange(min=-50, max=200)])
    max_disk_percent = FloatField("Max disk use (%)", validators=[DataRequired(), NumberRange(min=1, max=100)])
    uncertain_share = FloatField("Uncertain share (%)", validators=[DataRequired(), NumberRange(min=1, max=100)])
    ood_share = FloatField("Out-of-distribution share (%)", validators=[DataRequired(), NumberRange(min=1, max=100)])
    self_test_failure = BooleanField("Alert on self-test failure", validators=[Optional()])
    ota_failure = BooleanField("Alert on update failure", validators=[Optional()])


class TokenForm(FlaskForm):
    """Name of a new API token."""

    name = StringField("Token name", validators=[DataRequired(), Length(max=64)])


@bp.route("/")
def index() -> Any:
    """Alert thresholds of every site, notification channels and API tokens."""
    return _page()


def _page(new_token: tuple[str, str] | None = None) -> Any:
    """The admin page, with a just-created token shown once (never put in the session cookie)."""
    confs = current_app.config["CONFS"]
    with get_db().session(readonly=True) as session:
        overrides = alert_settings.stored(session)
        sites = alert_settings.sites(session, confs.dashboard, confs.identity.location)
        rows = api_tokens(session)
    forms = []
    for site in sites:
        t = alert_settings.effective(confs.dashboard, site, overrides.get(site))
        form = ThresholdsForm(formdata=None, prefix=site, data={
            **t.model_dump(), "uncertain_share": t.uncertain_share * 100, "ood_share": (t.ood_share or 0) * 100})
        forms.append((site, form, site in overrides))
    return render_template(
        "admin.html", forms=forms, tokens=[tuple(r) for r in rows], token_form=TokenForm(), action_form=ActionForm(),
        notify=confs.dashboard.notify, notify_on=notify.configured(confs.dashboard.notify), new_token=new_token,
    )


@bp.route("/alerts/<site>", methods=["POST"])
@role_required("admin")
def save_thresholds(site: str) -> Any:
    """Store one site's thresholds (audited); the ingest process applies them at its next evaluation."""
    form = ThresholdsForm(prefix=site)
    if not form.validate_on_submit():
        flash("Thresholds not saved: " + "; ".join(f"{form[k].label.text}: {v[0]}" for k, v in form.errors.items()), "error")
        return redirect(url_for("admin.index"))
    try:
        values = SiteThresholds(
            offline_after_s=form.offline_after_s.data, max_temperature_c=form.max_temperature_c.data,
            max_disk_percent=form.max_disk_percent.data, uncertain_share=form.uncertain_share.data / 100,
            ood_share=form.ood_share.data / 100, self_test_failure=form.self_test_failure.data,
            ota_failure=form.ota_failure.data,
        )
    except ValidationError as exc:
        flash(f"Thresholds not saved: {exc.errors()[0]['msg']}", "error")
        return redirect(url_for("admin.index"))
    with get_db().session() as session:
        alert_settings.save(session, site[:64], values, current_user.username, request.remote_addr)
    flash(f"Alert thresholds of site {site} saved.", "success")
    return redirect(url_for("admin.index"))


@bp.route("/tokens", methods=["POST"])
@role_required("admin")
def create_token() -> Any:
    """A new API token for the signed-in admin, shown once."""
    form = TokenForm()
    if not form.validate_on_submit():
        flash("Token not created: give it a name (at most 64 characters).", "error")
        return redirect(url_for("admin.index"))
    with get_db().session() as session:
        user = session.get(User, current_user.id)
        token = tokens.create_api_token(session, user, form.name.data)  # type: ignore[arg-type]
        audit.record(session, current_user.username, "api_token.create", form.name.data, {}, request.remote_addr)
    return _page(new_token=(form.name.data, token))


@bp.route("/tokens/<int:token_id>/revoke", methods=["POST"])
@role_required("admin")
def revoke_token(token_id: int) -> Any:
    """Revoke an API token at once (any user's)."""
    if not ActionForm().validate_on_submit():
        abort(400)
    with get_db().session() as session:
        row = session.get(ApiToken, token_id)
        if row is None:
            abort(404)
        if row.revoked_at is None:
            row.revoked_at = utcnow()
            audit.record(session, current_user.username, "api_token.revoke", row.name, {"token_id": token_id},
                         request.remote_addr)
    flash("API token revoked.", "success")
    return redirect(url_for("admin.index"))
