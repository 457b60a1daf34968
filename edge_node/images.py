"""Classified images kept on the node for review, named by sha256, deleted after the retention period."""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from collections.abc import Callable
from pathlib import Path

from edge_node.state_files import private_dir

logger = logging.getLogger(__name__)

SHA256 = re.compile(r"^[0-9a-f]{64}$")
PURGE_EVERY_S = 60.0


class ImageStore:
    """Keeps image bytes by their sha256; `get` answers only while an image is within the retention period."""

    def __init__(self, folder: Path, retention_s: float, clock: Callable[[], float] = time.time) -> None:
        self.folder = Path(folder)
        self.retention_s = retention_s
        self._clock = clock
        self._lock = threading.Lock()
        self._next_purge = 0.0
        if self.enabled:
            private_dir(self.folder)

    @property
    def enabled(self) -> bool:
        """False when the retention is 0: nothing is kept."""
        return self.retention_s > 0

    def _path(self, sha256: str) -> Path:
        if not SHA256.match(sha256):
            raise ValueError("not a sha256")
        return self.folder / sha256[:2] / sha256

    def put(self, sha256: str, data: bytes) -> None:
        """Keep an image (once; a repeat refreshes its time) and purge expired ones now and then."""
        if not self.enabled:
            return
        path = self._path(sha256)
        with self._lock:
            path.parent.mkdir(mode=0o700, exist_ok=True)
            if not path.exists():
                tmp = path.with_suffix(".tmp")
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                with os.fdopen(fd, "wb") as handle:
                    handle.write(data)
                os.replace(tmp, path)
            # The file's mtime is when it was last classified: retention counts from there.
            now = self._clock()
            os.utime(path, (now, now))
        if self._clock() >= self._next_purge:
            self.purge()

    def expires_at(self, sha256: str) -> float | None:
        """When a kept image stops being served (epoch seconds), or None when it is not kept."""
        try:
            stored = self._path(sha256).stat().st_mtime
        except (OSError, ValueError):
            return None
        expires = stored + self.retention_s
        return expires if expires > self._clock() else None

    def get(self, sha256: str) -> tuple[bytes, float] | None:
        """The image and when it expires, or None when unknown or past the retention period."""
        expires = self.expires_at(sha256)
        if expires is None:
            return None
        try:
            return self._path(sha256).read_bytes(), expires
        except OSError:
            return None

    def purge(self) -> int:
        """Delete every image past the retention period; returns how many."""
        self._next_purge = self._clock() + PURGE_EVERY_S
        if not self.folder.is_dir():
            return 0
        cutoff, removed = self._clock() - self.retention_s, 0
        for path in self.folder.glob("*/*"):
            try:
                if path.stat().st_mtime < cutoff:
                    path.unlink()
                    removed += 1
            except OSError:
                continue
        if removed:
            logger.info("deleted %d images past their retention", removed)
        return removed
