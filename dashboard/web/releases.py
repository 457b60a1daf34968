"""Models page: upload a signed package (admins), list releases with metrics and confusion matrix."""
from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any

from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, url_for
from flask_login import current_user

from contracts.release_metrics import ReleaseMetrics
from dashboard.db import get_db
from dashboard.models import ModelRelease
from dashboard.reads.rollouts import releases_by_upload
from dashboard.services import releases as releases_service
from dashboard.services.auth import role_required
from dashboard.web.common import require_login
from dashboard.web.forms import UploadForm
from dashboard.web.matrix import accuracy_text, confusion_matrix, release_figures

logger = logging.getLogger(__name__)

bp = require_login(Blueprint("releases", __name__))
bp.add_app_template_filter(accuracy_text, "release_accuracy")


def _max_bytes() -> int:
    confs = current_app.config["CONFS"]
    return int(confs.ota.max_package_bytes)


@bp.route("/models")
def index() -> Any:
    """Every release, newest first, with an upload form for admins."""
    with get_db().session(readonly=True) as session:
        releases = releases_by_upload(session)
    return render_template(
        "releases.html", releases=releases, upload_form=UploadForm(), max_mb=_max_bytes() // (1024 * 1024)
    )


@bp.route("/models/<int:release_id>")
def detail(release_id: int) -> Any:
    """One release: package facts, metrics and its confusion matrix as a heat map."""
    with get_db().session(readonly=True) as session:
        release = session.get(ModelRelease, release_id)
        if release is None:
            abort(404)
    return render_template(
        "release_detail.html", release=release, figures=release_figures(release.metrics),
        matrix=confusion_matrix(
            release.confusion_matrix or ReleaseMetrics.from_manifest(release.metrics).matrix_for(release.classes),
            release.classes,
        ),
    )


@bp.route("/models/upload", methods=["POST"])
@role_required("admin")
def upload() -> Any:
    """Verify an uploaded package against the trusted keys and register it; anything else is refused."""
    form = UploadForm()
    if not form.validate_on_submit():
        for errors in form.errors.values():
            for error in errors:
                flash(f"Upload refused: {error}", "error")
        return redirect(url_for("releases.index"))
    storage = form.package.data
    original = Path(storage.filename or "package.tar.gz").name
    with tempfile.TemporaryDirectory(prefix="upload-") as tmp:
        path = Path(tmp) / "upload.tar.gz"
        size = _save_bounded(storage.stream, path, _max_bytes())
        if size is None:
            flash(f"Upload refused: the file is larger than {_max_bytes() // (1024 * 1024)} MB.", "error")
            return redirect(url_for("releases.index"))
        outcome = register_upload(path, original)
    if isinstance(outcome, str):
        flash(f"Upload refused: {outcome}", "error")
        return redirect(url_for("releases.index"))
    flash(f"Registered {outcome.name} {outcome.version}: signature and file hashes verified.", "success")
    return redirect(url_for("releases.detail", release_id=outcome.id))


def _save_bounded(stream: Any, path: Path, limit: int) -> int | None:
    """Copy the upload to path; None when it exceeds limit bytes."""
    written = 0
    with open(path, "wb") as out:
        while chunk := stream.read(1 << 20):
            written += len(chunk)
            if written > limit:
                return None
            out.write(chunk)
    return written


def register_upload(path: Path, original_name: str) -> ModelRelease | str:
    """Hand the package to the releases service; returns the release, or the reason it was refused."""
    confs = current_app.config["CONFS"]
    with get_db().session() as session:
        try:
            release = releases_service.register_package(
                session, path, current_app.config["PACKAGE_DIR"], confs.ota.trusted_public_keys, _max_bytes(),
                current_user.username, request.remote_addr,
            )
        except releases_service.ReleaseError as exc:
            logger.warning("upload of %r refused: %s", original_name, exc)
            refused = str(exc)
        else:
            return release
    with get_db().session() as session:  # its own transaction: the refused one may have been rolled back
        releases_service.record_refusal(session, current_user.username, original_name, refused, request.remote_addr)
    return refused
