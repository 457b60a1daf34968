"""The dashboard's state on disk (database, secret key, packages) is private: folders 0700, files 0600."""
from __future__ import annotations

import logging
import os
import stat
from collections.abc import Iterable
from pathlib import Path

logger = logging.getLogger(__name__)

DIR_MODE = 0o700
FILE_MODE = 0o600
SQLITE_SIDE_FILES = ("-wal", "-shm", "-journal")


def private_dir(path: Path | str) -> Path:
    """Create path and any missing parents as 0700 (folders that already exist are left as they are)."""
    path = Path(path)
    missing = []
    probe = path
    while not probe.exists():
        missing.append(probe)
        if probe.parent == probe:
            break
        probe = probe.parent
    for folder in reversed(missing):
        try:
            folder.mkdir(mode=DIR_MODE)
        except FileExistsError:
            continue
        os.chmod(folder, DIR_MODE)  # mkdir's mode is filtered by the umask; chmod is not
    return path


def private_file(path: Path | str) -> Path:
    """Create an empty file as 0600 when it does not exist yet (SQLite gives its -wal and -shm the same mode)."""
    path = Path(path)
    private_dir(path.parent)
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE))
    except FileExistsError:
        pass
    return path


def sqlite_files(database: Path | str) -> list[Path]:
    """A SQLite database file and the side files SQLite keeps next to it."""
    database = Path(database)
    return [database] + [database.with_name(database.name + suffix) for suffix in SQLITE_SIDE_FILES]


def loose_modes(paths: Iterable[Path | str]) -> list[str]:
    """'PATH is MODE' for each existing path that group or others may read, write or enter."""
    found = []
    for path in map(Path, paths):
        try:
            mode = stat.S_IMODE(path.stat().st_mode)
        except OSError:
            continue
        if mode & 0o077:
            wanted = DIR_MODE if path.is_dir() else FILE_MODE
            found.append(f"{path} is {mode:04o} (should be {wanted:04o})")
    return found


def warn_if_loose(paths: Iterable[Path | str]) -> list[str]:
    """Log a warning for every state path looser than 0700/0600; returns the findings."""
    found = loose_modes(paths)
    for finding in found:
        logger.warning("state readable by other local users: %s; chmod it", finding)
    return found
