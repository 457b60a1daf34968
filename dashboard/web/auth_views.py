"""Sign in and sign out with a session cookie; failed sign-ins are throttled."""
from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlsplit

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_user, logout_user

from dashboard.db import get_db
from dashboard.services import audit, users
from dashboard.web.forms import ActionForm, LoginForm
from dashboard.web.throttle import LoginThrottle

logger = logging.getLogger(__name__)

bp = Blueprint("auth", __name__)

BAD_CREDENTIALS = "Invalid username or password."
LOCKED = "Too many failed sign-in attempts. Wait a few minutes and try again."


def _throttle() -> LoginThrottle:
    return LoginThrottle(get_db())


def _safe_next(target: str | None) -> str:
    """Only same-site relative paths are followed after sign-in (no open redirect); control characters are a 400."""
    if target and any(ord(c) < 32 or ord(c) == 127 for c in target):
        abort(400)
    if target:
        parts = urlsplit(target)
        if not parts.scheme and not parts.netloc and target.startswith("/") and not target.startswith("//") and "\\" not in target:
            return target
    return url_for("fleet.index")


@bp.route("/login", methods=["GET", "POST"])
def login() -> Any:
    """Show the sign-in form, or check the credentials it posts."""
    next_url = _safe_next(request.args.get("next"))
    if current_user.is_authenticated:
        return redirect(next_url)
    form = LoginForm()
    status = 200
    if form.validate_on_submit():
        username = form.username.data or ""
        key = LoginThrottle.key(username, request.remote_addr)
        if _throttle().locked_for(key) > 0:
            users.burn_hash_time(form.password.data or "")  # a lock answers as slowly as a password check
            flash(LOCKED, "error")
            return render_template("login.html", form=form, next_url=next_url), 429
        with get_db().session() as session:
            result = users.authenticate(session, username, form.password.data or "")
            if result.ok and result.user is not None:
                audit.record(session, result.user.username, "auth.login", None, None, request.remote_addr)
        if result.ok and result.user is not None:
            _throttle().success(key)
            login_user(result.user)
            return redirect(next_url)
        _throttle().failure(key)
        locked = result.locked_until is not None or _throttle().locked_for(key) > 0
        flash(LOCKED if locked else BAD_CREDENTIALS, "error")
        status = 429 if locked else 401
    elif request.method == "POST":
        flash("Enter a username and a password." if not form.errors.get("csrf_token") else
              "Your sign-in form expired. Please try again.", "error")
        status = 400
    return render_template("login.html", form=form, next_url=next_url), status


@bp.route("/logout", methods=["POST"])
def logout() -> Any:
    """End the session (a POST with a CSRF token, so no other site can sign a user out)."""
    form = ActionForm()
    if not form.validate_on_submit():
        return redirect(url_for("fleet.index"))
    if current_user.is_authenticated:
        with get_db().session() as session:
            user = users.get_user(session, current_user.id)
            if user is not None:
                users.end_sessions(user)
    logout_user()
    flash("You are signed out.", "info")
    return redirect(url_for("auth.login"))
