"""The node's state (outbox, models, OTA journal, secrets) is private: directories 0700, files 0600."""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Iterable
from pathlib import Path

logger = logging.getLogger(__name__)

PRIVATE_DIR = 0o700
PRIVATE_FILE = 0o600
PRIVATE_UMASK = 0o077


def private_dir(path: Path) -> Path:
    """Create path (and missing parents) as 0700 directories; an existing one is left as it is."""
    missing = [p for p in (path, *path.parents) if not p.exists()]
    path.mkdir(parents=True, exist_ok=True)
    for created in missing:
        created.chmod(PRIVATE_DIR)
    return path


def private_file(path: Path) -> Path:
    """Create path empty with mode 0600 unless it exists (SQLite gives its -wal and -shm the same mode)."""
    private_dir(path.parent)
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE))
    except FileExistsError:
        pass
    return path


def looser_than_private(paths: Iterable[Path]) -> list[str]:
    """One line per existing path that group or others may read, write or enter."""
    problems = []
    for path in paths:
        try:
            info = path.stat()
        except OSError:
            continue
        mode = stat.S_IMODE(info.st_mode)
        if mode & 0o077:
            wanted = PRIVATE_DIR if stat.S_ISDIR(info.st_mode) else PRIVATE_FILE
            problems.append(f"{path} has mode {mode:04o}; node state should be {wanted:04o}")
    return problems


def warn_if_loose(paths: Iterable[Path]) -> list[str]:
    """Log a warning for every path looser than private; returns the lines."""
    problems = looser_than_private(paths)
    for line in problems:
        logger.warning("%s (chmod it: other local users could read or change it)", line)
    return problems
