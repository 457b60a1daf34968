"""Per username+address throttling of failed logins, the same for known and unknown usernames."""
from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

FREE_ATTEMPTS = 5
BASE_LOCK_S = 30.0
MAX_LOCK_S = 15 * 60.0
FORGET_AFTER_S = 60 * 60.0
MAX_KEYS = 50_000


@dataclass
class _Record:
    failures: int = 0
    locked_until: float = 0.0
    last_failure: float = 0.0


class LoginThrottle:
    """Counts consecutive failures per key; after FREE_ATTEMPTS the key is locked, doubling each time.

    The account lock in the users service only exists for real users; this one also locks unknown
    usernames, so the lock message itself does not tell an attacker which usernames exist.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic, free_attempts: int = FREE_ATTEMPTS) -> None:
        self._clock = clock
        self._free = free_attempts
        self._records: dict[str, _Record] = {}
        self._lock = threading.Lock()

    @staticmethod
    def key(username: str, address: str | None) -> str:
        """The throttling key of a login attempt."""
        return f"{username.strip().lower()}|{address or '-'}"

    def locked_for(self, key: str) -> float:
        """Seconds left on key's lock, 0 when it may try."""
        with self._lock:
            record = self._records.get(key)
            return max(0.0, record.locked_until - self._clock()) if record else 0.0

    def failure(self, key: str) -> None:
        """Count a failed attempt and lock the key once it is past its free attempts."""
        now = self._clock()
        with self._lock:
            self._forget_old(now)
            record = self._records.setdefault(key, _Record())
            record.failures += 1
            record.last_failure = now
            if record.failures >= self._free:
                lock = min(BASE_LOCK_S * 2 ** (record.failures - self._free), MAX_LOCK_S)
                record.locked_until = now + lock

    def success(self, key: str) -> None:
        """Forget a key's failures after a good login."""
        with self._lock:
            self._records.pop(key, None)

    def _forget_old(self, now: float) -> None:
        """Drop stale records so memory stays bounded under a spray of usernames."""
        if len(self._records) < MAX_KEYS:
            return
        for key in [k for k, r in self._records.items() if now - r.last_failure > FORGET_AFTER_S]:
            del self._records[key]
        while len(self._records) >= MAX_KEYS:
            self._records.pop(next(iter(self._records)))
