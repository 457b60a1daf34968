"""Database access without Flask: an engine with sane pragmas and a transactional session scope."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from flask import current_app
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from dashboard.state_files import private_file

logger = logging.getLogger(__name__)

SQLITE_BUSY_TIMEOUT_MS = 10_000


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    """WAL for concurrent readers and one writer, a busy timeout, real FKs, and commits that survive power loss."""
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA foreign_keys=ON")
    # FULL, not NORMAL: under WAL, NORMAL skips the fsync at commit, so a power cut can take back
    # transactions ingest has already acknowledged to the broker, losing those messages for good.
    # With batches of up to 1000 rows one fsync per commit costs little.
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.close()


def _sqlite_autocommit_driver(dbapi_connection: Any, _record: Any) -> None:
    """Let SQLAlchemy, not pysqlite, emit BEGIN, so writers can take the write lock up front."""
    dbapi_connection.isolation_level = None


def _sqlite_begin(connection: Any) -> None:
    """BEGIN IMMEDIATE for writers: a deferred read-then-write transaction fails at once under WAL contention."""
    readonly = connection.get_execution_options().get("readonly", False)
    connection.exec_driver_sql("BEGIN" if readonly else "BEGIN IMMEDIATE")


def build_engine(url: str, **kwargs: Any) -> Engine:
    """An engine for url; SQLite gets WAL, busy_timeout and foreign keys, and its folder is created."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:" and not parsed.database.startswith("file:"):
            private_file(parsed.database)
        engine = create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}, **kwargs)
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "connect", _sqlite_autocommit_driver)
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    return create_engine(url, pool_pre_ping=True, **kwargs)


class Database:
    """One engine and its session factory; usable by the web app, ingest and the CLI alike."""

    def __init__(self, url: str, **engine_kwargs: Any) -> None:
        self.url = url
        self.engine = build_engine(url, **engine_kwargs)
        self._factory = sessionmaker(self.engine, expire_on_commit=False)

    @property
    def dialect(self) -> str:
        """'sqlite', 'postgresql', ..."""
        return self.engine.dialect.name

    @contextmanager
    def session(self, readonly: bool = False) -> Iterator[Session]:
        """A session that commits on success and rolls back on any exception.

        On SQLite a writer takes the write lock when its transaction begins (waiting up to the busy
        timeout); pass readonly=True for pure reads so they never wait for writers.
        """
        session = self._factory()
        if readonly:
            session.connection(execution_options={"readonly": True})
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    def dispose(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()


def insert_ignore(session: Session, table: Any, rows: Iterable[Mapping[str, Any]], key: str = "message_id") -> int:
    """Insert rows, silently skipping those whose unique key already exists; returns rows inserted."""
    rows = list(rows)
    if not rows:
        return 0
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        statement: Any = postgresql.insert(table).on_conflict_do_nothing(index_elements=[key])
    elif dialect == "sqlite":
        statement = sqlite.insert(table).on_conflict_do_nothing(index_elements=[key])
    else:
        raise NotImplementedError(f"insert-ignore is not implemented for {dialect}")
    # RETURNING counts what was really inserted on every backend (executemany rowcount is -1 on psycopg).
    result = session.execute(statement.returning(table.c[key]), rows)
    return len(result.all())


def get_db() -> Database:
    """The Database of the current Flask app."""
    return current_app.extensions["db"]  # type: ignore[no-any-return]
