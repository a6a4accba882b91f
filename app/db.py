"""Database engine and sessions.

One `Database` per process (created by the app factory, the CLI or the worker), one
SQLAlchemy `Session` per request (opened lazily, closed at teardown). SQLite gets WAL mode,
foreign keys and a busy timeout so several gunicorn workers and the job worker can share it.
PostgreSQL (psycopg 3) gets a pool sized for the process (`Config.db_pool`), pre-ping (a
restarted server or a dropped connection is replaced, not handed out) and recycling.

Where two processes may write the same rows, the services lock them with `lock_row`
(SELECT ... FOR UPDATE on PostgreSQL; on SQLite the database-wide write lock already
serialises writers, and FOR UPDATE does not exist there).
"""
from __future__ import annotations

import contextlib
import logging
from typing import Iterator

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

log = logging.getLogger(__name__)


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=15000")
    cur.close()


def make_engine(url: str, pool_size: int = 5, max_overflow: int = 5) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 15, "check_same_thread": False})
        event.listen(engine, "connect", _sqlite_pragmas)
    else:
        connect_args = {"connect_timeout": 10} if url.startswith("postgresql") else {}
        engine = create_engine(url, pool_pre_ping=True, pool_size=pool_size,
                               max_overflow=max_overflow, pool_timeout=30,
                               pool_recycle=1800, connect_args=connect_args)
    return engine


def lock_row(session: Session, table, row_id: int) -> None:
    """Lock one row until the session's transaction ends (SELECT ... FOR UPDATE), so two
    writers of the same row go one after the other: a save's version number, a lease. A no-op
    on SQLite, whose writers are serialised by its database lock."""
    if session.get_bind().dialect.name == "sqlite":
        return
    from sqlalchemy import select
    session.execute(select(table.id).where(table.id == row_id).with_for_update())


class Database:
    """An engine and its session factory (pool: `pool_size` + `max_overflow` connections
    at most, for server databases)."""

    def __init__(self, url: str, pool_size: int = 5, max_overflow: int = 5):
        self.url = url
        self.engine = make_engine(url, pool_size, max_overflow)
        self.sessionmaker = sessionmaker(self.engine, expire_on_commit=False)

    def session(self) -> Session:
        return self.sessionmaker()

    @contextlib.contextmanager
    def session_scope(self) -> Iterator[Session]:
        """A session that commits on success and rolls back on error (CLI, jobs, tests)."""
        session = self.sessionmaker()
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    def dispose(self) -> None:
        """Drop pooled connections; call after fork so children never share a socket."""
        self.engine.dispose(close=False)


def end_transaction(session: Session) -> None:
    """Commit what the session holds, so no transaction (and no SQLite lock) stays open across
    a long call that follows: inference, file conversion, a child process. Objects stay usable
    (the session does not expire them on commit); the next query starts a new transaction."""
    session.commit()


def probe_write(engine: Engine, timeout_s: float = 2.0) -> None:
    """Prove that a write could start now, within `timeout_s`, without writing anything: on
    SQLite take the write lock (BEGIN IMMEDIATE) and roll back; elsewhere run a statement
    under a statement timeout. Raises when the database is locked or down (a process that
    holds the SQLite write lock blocks every write of the app, while reads still work)."""
    with engine.connect() as conn:
        raw = conn.connection.driver_connection
        if engine.dialect.name == "sqlite":
            old = raw.execute("PRAGMA busy_timeout").fetchone()[0]
            raw.execute(f"PRAGMA busy_timeout={int(timeout_s * 1000)}")
            try:
                if raw.in_transaction:
                    raw.rollback()
                raw.execute("BEGIN IMMEDIATE")
                raw.execute("ROLLBACK")
            finally:
                raw.execute(f"PRAGMA busy_timeout={int(old)}")
        else:
            with conn.begin():
                conn.exec_driver_sql(f"SET LOCAL statement_timeout = {int(timeout_s * 1000)}")
                conn.exec_driver_sql("SELECT 1")
