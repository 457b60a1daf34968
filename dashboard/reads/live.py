"""Reads shared by the live streams of one worker: each distinct poll runs once per interval, whatever the tab count.

Twenty tabs on the fleet page used to run twenty fleet queries a second; now they share one snapshot, and a
results tab asks the database for rows only when the shared newest-id probe says something arrived.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

from flask import Flask

T = TypeVar("T")
MAX_ENTRIES = 512


class SharedReads:
    """A short-lived cache of poll answers: the first tab to ask computes, the others reuse it for ttl_s."""

    def __init__(self, ttl_s: float) -> None:
        self.ttl_s = ttl_s
        self._entries: dict[Hashable, tuple[float, Any]] = {}
        self._locks: dict[Hashable, threading.Lock] = {}
        self._guard = threading.Lock()
        self.computed = 0

    def get(self, key: Hashable, compute: Callable[[], T]) -> T:
        """compute()'s answer for key, at most ttl_s old; concurrent askers of one key wait for one computation."""
        entry = self._entries.get(key)
        if entry is not None and time.monotonic() - entry[0] < self.ttl_s:
            return entry[1]  # type: ignore[no-any-return]
        with self._guard:
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:
            entry = self._entries.get(key)
            if entry is not None and time.monotonic() - entry[0] < self.ttl_s:
                return entry[1]  # type: ignore[no-any-return]
            value = compute()
            self.computed += 1
            self._entries[key] = (time.monotonic(), value)
        if len(self._entries) > MAX_ENTRIES:
            self._prune()
        return value

    def _prune(self) -> None:
        """Forget answers too old to be served again (tabs that closed, cursors left behind)."""
        cutoff = time.monotonic() - self.ttl_s
        with self._guard:
            for key in [k for k, (at, _) in list(self._entries.items()) if at < cutoff]:
                self._entries.pop(key, None)
                self._locks.pop(key, None)


def shared_reads(app: Flask) -> SharedReads:
    """The app's SharedReads, made on first use with a lifetime just under the streams' poll interval."""
    found = app.extensions.get("shared_reads")
    if found is None:
        interval = float(app.config.get("SSE_POLL_S", 1.0))
        found = app.extensions.setdefault("shared_reads", SharedReads(ttl_s=0.9 * interval))
    return found  # type: ignore[no-any-return]
