"""Bearer tokens for the REST API (per user) and for package downloads (per device); only hashes are kept."""

from __future__ import annotations

import hashlib
import secrets

from sqlalchemy import select
from sqlalchemy.orm import Session

from dashboard.models import ApiToken, Device, DeviceToken, User, utcnow

API_PREFIX = "api_"
DEVICE_PREFIX = "dev_"


def hash_token(token: str) -> str:
    """sha256 of a token: tokens are 256-bit random, so a fast hash is enough."""
    return hashlib.sha256(token.encode()).hexdigest()


def create_api_token(session: Session, user: User, name: str) -> str:
    """A new API token for user; the plain token is returned once and never stored."""
    token = API_PREFIX + secrets.token_urlsafe(32)
    session.add(ApiToken(user_id=user.id, name=name[:64], token_hash=hash_token(token)))
    session.flush()
    return token


def user_for_api_token(session: Session, token: str | None) -> User | None:
    """The active user owning a valid, unrevoked API token, or None."""
    if not token or not token.startswith(API_PREFIX) or len(token) > 200:
        return None
    row = session.scalar(select(ApiToken).where(ApiToken.token_hash == hash_token(token)))
    if row is None or row.revoked_at is not None or not row.user.active:
        return None
    row.last_used_at = utcnow()
    return row.user


def create_device_token(session: Session, device: Device) -> str:
    """A new download token for a device; the plain token is returned once."""
    token = DEVICE_PREFIX + secrets.token_urlsafe(32)
    session.add(DeviceToken(device_id=device.id, token_hash=hash_token(token)))
    session.flush()
    return token


def device_for_token(session: Session, token: str | None) -> str | None:
    """The device id of a valid, unrevoked device token, or None."""
    if not token or not token.startswith(DEVICE_PREFIX) or len(token) > 200:
        return None
    row = session.scalar(select(DeviceToken).where(DeviceToken.token_hash == hash_token(token)))
    if row is None or row.revoked_at is not None:
        return None
    return row.device_id


def bearer_token(authorization: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header, else None."""
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip() or None
