"""Rollout and release reads of the pages, the API and the rollout stream."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from contracts.model_package import version_key
from dashboard.models import ModelRelease, Rollout

WITH_RELEASE_AND_TARGETS = (selectinload(Rollout.release), selectinload(Rollout.targets))


def list_rollouts(session: Session, limit: int = 200) -> list[Rollout]:
    """Rollouts newest first, with their release and targets loaded in two more queries (not one per row)."""
    query = select(Rollout).options(*WITH_RELEASE_AND_TARGETS).order_by(Rollout.id.desc()).limit(limit)
    return list(session.scalars(query).all())


def get_rollout(session: Session, rollout_id: int) -> Rollout | None:
    """One rollout with its release and targets, or None."""
    return session.scalar(select(Rollout).where(Rollout.id == rollout_id).options(*WITH_RELEASE_AND_TARGETS))


def releases_by_upload(session: Session) -> list[ModelRelease]:
    """Releases, the newest upload first (the Models page and the rollout form)."""
    query = select(ModelRelease).order_by(ModelRelease.uploaded_at.desc(), ModelRelease.id.desc())
    return list(session.scalars(query).all())


def releases_by_version(session: Session) -> list[ModelRelease]:
    """Releases, the highest version first (the API)."""
    return sorted(session.scalars(select(ModelRelease)), key=lambda r: (r.name, version_key(r.version)), reverse=True)
