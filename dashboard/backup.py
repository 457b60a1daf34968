"""Backup and restore of the dashboard database while ingest runs: SQLite's online backup API, or pg_dump."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, MetaData, inspect, select
from sqlalchemy.engine import URL, make_url

SQLITE_MAGIC = b"SQLite format 3\x00"
PG_DUMP_MAGIC = b"PGDMP"


class BackupError(RuntimeError):
    """A backup or restore that cannot be done, with the reason."""


def _sqlite_path(url: URL) -> Path:
    if not url.database or url.database == ":memory:" or url.database.startswith("file:"):
        raise BackupError(f"cannot back up SQLite database {url.database!r}: give a file path")
    return Path(url.database)


def _private_copy_target(target: Path) -> Path:
    """A temporary file beside target, mode 600, that becomes target once complete."""
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    partial.unlink(missing_ok=True)
    os.close(os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    return partial


def _pg_env(url: URL) -> dict[str, str]:
    """libpq settings for pg_dump / pg_restore; the password goes in the environment, never on the command line."""
    env = {**os.environ, "PGHOST": url.host or "127.0.0.1", "PGPORT": str(url.port or 5432),
           "PGDATABASE": url.database or "", "PGUSER": url.username or os.environ.get("PGUSER", "postgres")}
    if url.password:
        env["PGPASSWORD"] = str(url.password)
    return env


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise BackupError(f"{name} not found: install postgresql-client (make system-deps)")
    return path


def _run(args: list[str], env: dict[str, str]) -> None:
    result = subprocess.run(args, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise BackupError(f"{Path(args[0]).name} failed: {result.stderr.strip()[-500:]}")


def backup(database_url: str, target: Path) -> Path:
    """Write a consistent copy of the database to target (mode 600) while it is in use; returns target."""
    url = make_url(database_url)
    partial = _private_copy_target(Path(target))
    try:
        if url.get_backend_name() == "sqlite":
            source = sqlite3.connect(_sqlite_path(url), timeout=30)
            copy = sqlite3.connect(partial)
            try:
                # One step: a write by the ingest between steps would restart a stepped copy, again and again.
                # In WAL mode this one read transaction neither blocks the ingest nor is blocked by it.
                source.backup(copy, pages=-1)
            finally:
                copy.close()
                source.close()
        elif url.get_backend_name() == "postgresql":
            # One snapshot (pg_dump's repeatable-read transaction); readers and the ingest's writes go on.
            _run([_tool("pg_dump"), "--format=custom", "--no-owner", "--no-privileges", f"--file={partial}"],
                 _pg_env(url))
        else:
            raise BackupError(f"no backup for {url.get_backend_name()} databases")
        with partial.open("rb") as handle:
            os.fsync(handle.fileno())
        partial.replace(target)
    finally:
        partial.unlink(missing_ok=True)
    return Path(target)


def restore(database_url: str, source: Path, engine: Engine, force: bool = False) -> None:
    """Load a backup into the database at database_url; refuses one that holds tables unless force."""
    url, source = make_url(database_url), Path(source)
    head = source.read_bytes()[:16] if source.exists() else b""
    if inspect(engine).get_table_names() and not force:
        raise BackupError("the target database is not empty: restore into a fresh one, or pass --force to replace it")
    if url.get_backend_name() == "sqlite":
        if not head.startswith(SQLITE_MAGIC):
            raise BackupError(f"{source} is not a SQLite backup")
        engine.dispose()
        copy = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
        target = sqlite3.connect(_sqlite_path(url), timeout=30)
        try:
            copy.backup(target)
        finally:
            target.close()
            copy.close()
    elif url.get_backend_name() == "postgresql":
        if not head.startswith(PG_DUMP_MAGIC):
            raise BackupError(f"{source} is not a pg_dump backup")
        engine.dispose()
        clean = ["--clean", "--if-exists"] if force else []
        _run([_tool("pg_restore"), "--no-owner", "--no-privileges", "--exit-on-error", "--single-transaction",
              *clean, f"--dbname={_pg_env(url)['PGDATABASE']}", str(source)], _pg_env(url))
    else:
        raise BackupError(f"no restore for {url.get_backend_name()} databases")


def _canonical(value: Any) -> Any:
    """A value in a form that hashes the same on every backend."""
    if isinstance(value, (datetime, date)):
        return value.replace(tzinfo=None).isoformat() if isinstance(value, datetime) else value.isoformat()
    if isinstance(value, (Decimal, float)):
        return repr(float(value))
    if isinstance(value, (bytes, memoryview)):
        return bytes(value).hex()
    return value


def table_digests(engine: Engine) -> dict[str, tuple[int, str]]:
    """Per table: row count and sha256 of every row in primary-key order (to compare a restore with its source)."""
    metadata = MetaData()
    metadata.reflect(engine)
    digests = {}
    with engine.connect() as connection:
        for name, table in sorted(metadata.tables.items()):
            order = list(table.primary_key.columns) or list(table.columns)
            digest, rows = hashlib.sha256(), 0
            for row in connection.execute(select(table).order_by(*order)):
                digest.update(json.dumps([_canonical(v) for v in row], sort_keys=True, default=str).encode())
                rows += 1
            digests[name] = (rows, digest.hexdigest())
    return digests
