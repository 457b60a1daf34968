"""REST API under /api/v1 with bearer-token authentication and an OpenAPI 3 document."""

from __future__ import annotations

from flask import Blueprint

api_blueprint = Blueprint("api", __name__, url_prefix="/api/v1")

from dashboard.api import routes  # noqa: E402,F401  (registers the views on the blueprint)
