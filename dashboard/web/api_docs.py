"""API documentation page: Swagger UI from the swagger-ui-bundle package, served by the app (no CDN, strict CSP)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from flask import Blueprint, abort, jsonify, render_template, send_from_directory

from dashboard.api.openapi import openapi_document
from dashboard.web.common import require_login

bp = require_login(Blueprint("api_docs", __name__, url_prefix="/api/docs"))
# Only these files of the bundle are served.
ASSETS = frozenset({"swagger-ui-bundle.js", "swagger-ui.css", "favicon-32x32.png"})


def swagger_ui_dir() -> Path | None:
    """The Swagger UI files of the installed swagger-ui-bundle, or None when it is missing."""
    try:
        import swagger_ui_bundle
    except ImportError:
        return None
    return Path(swagger_ui_bundle.swagger_ui_path)


@bp.route("/")
def index() -> Any:
    """Swagger UI over the OpenAPI document; a plain notice when the bundle is not installed."""
    return render_template("api_docs.html", available=swagger_ui_dir() is not None)


@bp.route("/openapi.json")
def document() -> Any:
    """The OpenAPI document, for the signed-in browser (the API's own copy needs a bearer token)."""
    return jsonify(openapi_document())


@bp.route("/assets/<name>")
def asset(name: str) -> Any:
    """One file of the Swagger UI bundle."""
    folder = swagger_ui_dir()
    if folder is None or name not in ASSETS:
        abort(404)
    return send_from_directory(folder, name, max_age=3600)
