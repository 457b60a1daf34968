"""Throttling of failed sign-ins per username, in the database so every web worker shares it.

Known and unknown usernames are counted, locked and answered alike, so neither the message, the status,
the number of tries nor the address an attacker comes from tells which usernames exist.
"""
from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.dialects import postgresql, sqlite

from dashboard.db import Database
from dashboard.models import LoginThrottleEntry, utcnow

FREE_ATTEMPTS = 5
BASE_LOCK = timedelta(seconds=30)
MAX_LOCK = timedelta(minutes=15)
FORGET_AFTER = timedelta(hours=1)


def lock_for(failures: int, free_attempts: int = FREE_ATTEMPTS) -> timedelta:
    """Lock after this many consecutive failures: none before free_attempts, then doubling, capped."""
    if failures < free_attempts:
        return timedelta(0)
    return min(BASE_LOCK * 2 ** min(failures - free_attempts, 16), MAX_LOCK)


class LoginThrottle:
    """Counts consecutive failures per username key; after FREE_ATTEMPTS the key is locked, doubling each time."""

    def __init__(self, db: Database, clock: Callable[[], datetime] = utcnow, free_attempts: int = FREE_ATTEMPTS) -> None:
        self._db = db
        self._clock = clock
        self._free = free_attempts

    @staticmethod
    def key(username: str, address: str | None = None) -> str:
        """The throttling key of a login attempt: the username alone (hashed), whichever address it comes from."""
        return hashlib.sha256(username.strip().lower().encode("utf-8", "surrogatepass")).hexdigest()

    def locked_for(self, key: str) -> float:
        """Seconds left on key's lock, 0 when it may try."""
        with self._db.session(readonly=True) as session:
            locked_until = session.scalar(select(LoginThrottleEntry.locked_until).where(LoginThrottleEntry.key == key))
        return max(0.0, (locked_until - self._clock()).total_seconds()) if locked_until else 0.0

    def failure(self, key: str) -> None:
        """Count a failed attempt and lock the key once it is past its free attempts."""
        now = self._clock()
        with self._db.session() as session:
            session.execute(delete(LoginThrottleEntry).where(LoginThrottleEntry.last_failure < now - FORGET_AFTER))
            dialect = session.get_bind().dialect.name
            insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
            session.execute(insert(LoginThrottleEntry).values(key=key, failures=0, last_failure=now)
                            .on_conflict_do_nothing(index_elements=["key"]))
            entry = session.scalars(select(LoginThrottleEntry).where(LoginThrottleEntry.key == key).with_for_update()).one()
            entry.failures += 1
            entry.last_failure = now
            lock = lock_for(entry.failures, self._free)
            entry.locked_until = now + lock if lock else None

    def success(self, key: str) -> None:
        """Forget a key's failures after a good login."""
        with self._db.session() as session:
            session.execute(delete(LoginThrottleEntry).where(LoginThrottleEntry.key == key))
