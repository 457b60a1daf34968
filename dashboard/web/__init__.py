"""Admins' web app: server-rendered pages, forms and live streams."""
from __future__ import annotations

from typing import Any

from flask import Blueprint, Flask, Response, render_template, request
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import Forbidden, NotFound, RequestEntityTooLarge

from dashboard.web import (
    admin, alerts, api_docs, audit_views, auth_views, fleet, node, node_live, releases, results, review, rollouts,
    specimens, streams,
)
from dashboard.web.common import register_filters

BLUEPRINTS: tuple[Blueprint, ...] = (
    auth_views.bp, fleet.bp, node.bp, results.bp, alerts.bp, releases.bp, rollouts.bp, audit_views.bp, streams.bp,
    node_live.bp, admin.bp, api_docs.bp, specimens.bp, review.bp,
)
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; object-src 'none'; "
    "frame-ancestors 'none'; base-uri 'self'; form-action 'self'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
}


def _error_page(title: str, message: str, status: int) -> tuple[str, int]:
    return render_template("error.html", title=title, message=message, back=request.referrer), status


def _add_error_pages(blueprint: Blueprint) -> None:
    """Readable error pages for the web blueprints only (the API answers in JSON)."""

    @blueprint.errorhandler(Forbidden)
    def _forbidden(_: Exception) -> Any:
        needed = "reviewer" if request.blueprint == "review" else "admin"
        return _error_page("Not allowed", f"This action needs the {needed} role.", 403)

    @blueprint.errorhandler(NotFound)
    def _not_found(_: Exception) -> Any:
        return _error_page("Not found", "There is nothing at this address.", 404)

    @blueprint.errorhandler(CSRFError)
    def _csrf(_: Exception) -> Any:
        return _error_page("Form expired", "The form was missing its security token or it expired. Reload the page and try again.", 400)

    @blueprint.errorhandler(RequestEntityTooLarge)
    def _too_large(_: Exception) -> Any:
        return _error_page("Upload too large", "The file is larger than the configured package size limit.", 413)


def _security_headers(response: Response) -> Response:
    """Every response: strict CSP, no framing, no sniffing, no cross-site referrers."""
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    if response.mimetype == "text/html":
        response.headers.setdefault("Cache-Control", "no-store")
    return response


for _blueprint in BLUEPRINTS:
    _add_error_pages(_blueprint)


def register_web(app: Flask) -> None:
    """Register the web blueprints, security headers and template helpers on the app."""
    for blueprint in BLUEPRINTS:
        app.register_blueprint(blueprint)
    register_filters(app)
    app.after_request(_security_headers)
