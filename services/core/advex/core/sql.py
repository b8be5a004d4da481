"""SQL engines for the services that keep state: storage's artifact registry
and the gateway's evaluations. Both go through SQLAlchemy, so a SQLite file
(one process) and PostgreSQL (several replicas) differ only by URL."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import make_url


def create_engine(url: str, setting: str) -> sa.Engine:
    """An engine for `url`, the value of the environment variable `setting`.

    In-memory SQLite is refused: what these databases hold must outlive the
    process, and an in-memory database is a single connection that the
    service's threads would share (one thread's rollback undoing another's
    write). A SQLite file gets its folder created, WAL and a busy timeout.
    """
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database in (None, "", ":memory:") or parsed.query.get("mode") == "memory":
            raise ValueError(
                f"{setting}={url} is an in-memory database: everything in it would be lost on restart. "
                "Use a file (sqlite:///var/NAME.db) or PostgreSQL (postgresql+psycopg://USER@HOST/DB)"
            )
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(url, pool_pre_ping=True)
    if engine.dialect.name == "sqlite":
        sa.event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    # Workers, watchers and RPC threads write concurrently: readers do not
    # block the writer (WAL), and a writer waits for the lock instead of
    # failing at once with "database is locked".
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()
