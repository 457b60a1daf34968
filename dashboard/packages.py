"""Model package downloads for nodes: per-device bearer tokens, HTTP Range through send_file."""

from __future__ import annotations

import logging
from pathlib import Path

from flask import Blueprint, Response, abort, current_app, jsonify, request, send_file

from dashboard.db import get_db
from dashboard.models import ModelRelease
from dashboard.services.tokens import bearer_token, device_for_token

logger = logging.getLogger(__name__)
packages_blueprint = Blueprint("packages", __name__)


def package_path(package_dir: str | Path, release: ModelRelease) -> Path:
    """Where a release's package file is kept."""
    return Path(package_dir).resolve() / str(release.id) / release.filename


@packages_blueprint.get("/packages/<int:release_id>/<filename>")
def download(release_id: int, filename: str) -> Response:
    """Serve a release's package to a node presenting its device token (Range and If-Range honoured)."""
    with get_db().session() as session:
        device_id = device_for_token(session, bearer_token(request.headers.get("Authorization")))
        if device_id is None:
            response = jsonify(error="unauthorized", message="a valid device bearer token is required")
            response.status_code = 401
            response.headers["WWW-Authenticate"] = 'Bearer realm="packages"'
            return response
        release = session.get(ModelRelease, release_id)
        if release is None or release.filename != filename:
            abort(404)
        path = package_path(current_app.config["PACKAGE_DIR"], release)
        etag = release.sha256
    if not path.is_file():
        logger.error("package file of release %d is missing at %s", release_id, path)
        abort(404)
    logger.info("device %s downloads release %d (Range: %s)", device_id, release_id, request.headers.get("Range"))
    response = send_file(
        path, mimetype="application/gzip", as_attachment=True, download_name=filename, conditional=True, etag=etag
    )
    response.headers["Cache-Control"] = "private, no-store"
    return response
