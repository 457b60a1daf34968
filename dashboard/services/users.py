"""Users: creation with generated passwords, login with throttling of failed attempts."""

from __future__ import annotations

import logging
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session
from werkzeug.security import check_password_hash, generate_password_hash

from dashboard.models import User, utcnow

logger = logging.getLogger(__name__)

ROLES = ("admin", "reviewer", "viewer")
USERNAME_PATTERN = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")
MIN_PASSWORD_LENGTH = 12
FREE_ATTEMPTS = 5
BASE_LOCK = timedelta(seconds=30)
MAX_LOCK = timedelta(minutes=15)
# Compared against when the username is unknown, so timing does not reveal which users exist.
_DUMMY_HASH = generate_password_hash(secrets.token_hex(16))


class UserError(ValueError):
    """A user that cannot be created or changed as asked."""


@dataclass(frozen=True)
class LoginResult:
    """Outcome of a login attempt: the user on success, else why not (never which part was wrong)."""

    user: User | None
    locked_until: datetime | None = None

    @property
    def ok(self) -> bool:
        """True when the credentials were right and the account usable."""
        return self.user is not None


def generate_password() -> str:
    """A random password to print once."""
    return secrets.token_urlsafe(18)


def check_username(username: str) -> str:
    """Return username if acceptable, else raise UserError."""
    if not isinstance(username, str) or not USERNAME_PATTERN.match(username):
        raise UserError("username must be 1-64 characters from A-Z a-z 0-9 _ . @ -")
    return username


def create_user(session: Session, username: str, role: str, password: str | None = None) -> tuple[User, str]:
    """Create a user; returns it with its password (generated when none is given)."""
    check_username(username)
    if role not in ROLES:
        raise UserError(f"role must be one of {', '.join(ROLES)}")
    if session.scalar(select(User).where(User.username == username)) is not None:
        raise UserError(f"user {username!r} already exists")
    password = password or generate_password()
    if len(password) < MIN_PASSWORD_LENGTH:
        raise UserError(f"password must have at least {MIN_PASSWORD_LENGTH} characters")
    user = User(username=username, role=role, password_hash=generate_password_hash(password))
    session.add(user)
    session.flush()
    return user, password


def set_password(session: Session, user: User, password: str) -> None:
    """Replace a user's password and clear any lock."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise UserError(f"password must have at least {MIN_PASSWORD_LENGTH} characters")
    user.password_hash = generate_password_hash(password)
    user.failed_logins = 0
    user.locked_until = None
    end_sessions(user)


def set_role(session: Session, user: User, role: str) -> None:
    """Change a user's role; sessions signed in under the old role end."""
    if role not in ROLES:
        raise UserError(f"role must be one of {', '.join(ROLES)}")
    if user.role != role:
        user.role = role
        end_sessions(user)


def end_sessions(user: User) -> None:
    """Invalidate every session cookie issued to user so far (the generation is part of the session id)."""
    user.session_generation = (user.session_generation or 0) + 1


def load_session_user(session: Session, session_id: str) -> User | None:
    """The active user a session id `user:generation` belongs to, None when stale or malformed."""
    user_id, sep, generation = str(session_id).partition(":")
    if not sep or not user_id.isdigit() or not generation.isdigit() or len(user_id) > 18 or len(generation) > 18:
        return None
    user = session.get(User, int(user_id))
    if user is None or not user.active or user.session_generation != int(generation):
        return None
    return user


def burn_hash_time(password: str) -> None:
    """Spend one password check's time, so refusals that need none take as long as those that do."""
    check_password_hash(_DUMMY_HASH, password or "")


def get_user(session: Session, user_id: int | str) -> User | None:
    """A user by id (as Flask-Login hands it over), or None."""
    try:
        return session.get(User, int(user_id))
    except (TypeError, ValueError):
        return None


def get_user_by_name(session: Session, username: str) -> User | None:
    """A user by username, or None."""
    return session.scalar(select(User).where(User.username == username))


def lock_duration(failed_logins: int) -> timedelta:
    """How long an account stays locked after this many consecutive failures (doubling, capped)."""
    if failed_logins < FREE_ATTEMPTS:
        return timedelta(0)
    return min(BASE_LOCK * (2 ** (failed_logins - FREE_ATTEMPTS)), MAX_LOCK)


def authenticate(session: Session, username: str, password: str, now: datetime | None = None) -> LoginResult:
    """Check credentials; failures count towards a lock that refuses even the right password until it ends."""
    now = now or utcnow()
    user = get_user_by_name(session, username) if isinstance(username, str) else None
    if user is None:
        check_password_hash(_DUMMY_HASH, password or "")
        return LoginResult(None)
    if user.locked_until is not None and user.locked_until > now:
        check_password_hash(_DUMMY_HASH, password or "")  # a locked account answers as slowly as any other
        return LoginResult(None, user.locked_until)
    if not user.active or not check_password_hash(user.password_hash, password or ""):
        user.failed_logins += 1
        duration = lock_duration(user.failed_logins)
        user.locked_until = now + duration if duration else None
        logger.warning("failed login for %r (%d in a row)", username, user.failed_logins)
        return LoginResult(None, user.locked_until)
    user.failed_logins = 0
    user.locked_until = None
    user.last_login_at = now
    return LoginResult(user)
