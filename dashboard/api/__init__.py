"""REST API under /api/v1 with bearer-token authentication and an OpenAPI 3 document."""

from __future__ import annotations

from flask import Blueprint, Response

api_blueprint = Blueprint("api", __name__, url_prefix="/api/v1")


@api_blueprint.after_request
def _no_sniffing(response: Response) -> Response:
    """JSON is only ever JSON: browsers must not sniff it into HTML, and nothing is cached."""
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Cache-Control"] = "no-store"
    return response

from dashboard.api import routes  # noqa: E402,F401  (registers the views on the blueprint)
from dashboard.api import lab_routes  # noqa: E402,F401  (specimens, review, FHIR, metrics)
