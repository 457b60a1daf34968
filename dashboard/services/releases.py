"""Model releases: verify an uploaded package against the trusted keys, store it, keep its metrics."""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from contracts.model_package import PackageError, parse_public_key, read_manifest, sha256_file
from contracts.release_metrics import ReleaseMetrics
from dashboard.models import ModelRelease
from dashboard.services import audit
from dashboard.state_files import FILE_MODE, private_dir

logger = logging.getLogger(__name__)


class ReleaseError(ValueError):
    """A package that cannot become a release (refused, duplicate, too large)."""


def package_filename(name: str, version: str) -> str:
    """The stored file name, derived from the verified manifest (never from the upload's name)."""
    return f"{name}-{version}.tar.gz"


def record_refusal(session: Session, actor: str, name: str, reason: str, remote_addr: str | None = None) -> None:
    """Audit an upload that failed verification (who tried what, and why it was refused)."""
    audit.record(session, actor, "release.refused", name[:200], {"reason": reason[:1000]}, remote_addr)


def register_package(
    session: Session,
    source: Path,
    package_dir: Path | str,
    trusted_keys: Sequence[str],
    max_bytes: int,
    actor: str,
    remote_addr: str | None = None,
) -> ModelRelease:
    """Verify source fully (signature, hashes, safe archive), copy it under package_dir/<id>/ and record it."""
    source = Path(source)
    size = source.stat().st_size
    if size > max_bytes:
        raise ReleaseError(f"package is {size} bytes, over the limit of {max_bytes}")
    try:
        keys = [parse_public_key(key) for key in trusted_keys]
        manifest = read_manifest(source, keys)
    except PackageError as exc:
        raise ReleaseError(f"package refused: {exc}") from None
    digest = sha256_file(source)
    if session.scalar(select(ModelRelease).where(ModelRelease.sha256 == digest)) is not None:
        raise ReleaseError("this package is already registered")
    if session.scalar(
        select(ModelRelease).where(ModelRelease.name == manifest.name, ModelRelease.version == manifest.version)
    ) is not None:
        raise ReleaseError(f"{manifest.name} {manifest.version} is already registered")
    metrics = manifest.metrics or {}
    typed = ReleaseMetrics.from_manifest(metrics)
    release = ModelRelease(
        name=manifest.name, version=manifest.version, filename=package_filename(manifest.name, manifest.version),
        sha256=digest, size=size, classes=list(manifest.classes), manifest=manifest.model_dump(mode="json"),
        metrics=metrics, confusion_matrix=typed.matrix_for(manifest.classes), uploaded_by=actor,
    )
    session.add(release)
    session.flush()
    target = Path(package_dir).resolve() / str(release.id) / release.filename
    private_dir(target.parent)
    partial = target.with_name(target.name + ".partial")
    shutil.copyfile(source, partial)
    os.chmod(partial, FILE_MODE)
    partial.replace(target)
    audit.record(session, actor, "release.register", f"{release.name} {release.version}",
                 {"release_id": release.id, "sha256": digest, "size": size}, remote_addr)
    logger.info("registered %s %s (%d bytes) as release %d", release.name, release.version, size, release.id)
    return release


def to_dict(release: ModelRelease, public_url: str | None = None) -> dict[str, Any]:
    """A release as JSON-ready data."""
    data = {
        "id": release.id, "name": release.name, "version": release.version, "filename": release.filename,
        "sha256": release.sha256, "size": release.size, "classes": release.classes, "metrics": release.metrics,
        "test_accuracy": ReleaseMetrics.from_manifest(release.metrics).test_accuracy,
        "confusion_matrix": release.confusion_matrix, "uploaded_by": release.uploaded_by,
        "uploaded_at": release.uploaded_at.isoformat(),
    }
    if public_url:
        data["url"] = package_url(public_url, release)
    return data


def package_url(public_url: str, release: ModelRelease) -> str:
    """The URL nodes download the release from."""
    return f"{public_url.rstrip('/')}/packages/{release.id}/{release.filename}"
