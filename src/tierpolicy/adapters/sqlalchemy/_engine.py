"""Engines for the store's URLs, set up the way the store needs each database.

* ``postgresql://`` and ``postgres://`` get the psycopg 3 driver
  (``postgresql+psycopg://``); connections are pinged before use (a restarted server
  costs one retry, not an error) and give up connecting after ``connect_timeout``
  seconds (5 unless the URL says otherwise).
* ``sqlite:///path.db``: foreign keys on, write-ahead logging (readers never wait for
  the writer), a busy timeout, and transactions that SQLAlchemy begins itself: plain
  ``BEGIN`` to read, ``BEGIN IMMEDIATE`` to write, so two writers queue on the file
  lock instead of one failing with "database is locked" when both upgrade a read lock.
* ``sqlite://`` (in memory): one connection shared by every thread, for tests and
  one-off tools; it is not for concurrent use.
"""

from __future__ import annotations

import functools
import json
from typing import TYPE_CHECKING, Any, cast

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import URL, make_url
from sqlalchemy.pool import StaticPool

from tierpolicy.engine._exceptions import StoreError

from ._errors import UNPARSEABLE, redact

if TYPE_CHECKING:
    import sqlite3

    from sqlalchemy.engine import Connection, Engine
    from sqlalchemy.engine.interfaces import DBAPIConnection
    from sqlalchemy.pool import ConnectionPoolEntry

WRITE = "tierpolicy_write"
"""Execution option of a connection whose transaction will write (``BEGIN IMMEDIATE`` on SQLite)."""

CONNECT_TIMEOUT = 5
"""Seconds to wait for a PostgreSQL connection unless the URL sets ``connect_timeout``."""
SQLITE_BUSY_TIMEOUT = 30.0
"""Seconds a SQLite writer waits for another to commit before giving up."""

dumps = functools.partial(json.dumps, allow_nan=False, ensure_ascii=False, separators=(",", ":"))
"""JSON as stored: strict (no NaN, which PostgreSQL refuses), compact, UTF-8."""


def normalize(url: str | URL) -> URL:
    """The URL with the driver the store uses.

    Raises:
        StoreError: The URL does not parse, or names a database other than SQLite or PostgreSQL.
    """
    try:
        parsed = make_url(url)
    except (sa_exc.ArgumentError, ValueError) as exc:
        raise StoreError("the database URL does not parse", store=UNPARSEABLE) from exc
    if parsed.drivername in ("postgresql", "postgres"):
        return parsed.set(drivername="postgresql+psycopg")
    if parsed.get_backend_name() not in ("sqlite", "postgresql"):
        msg = f"unsupported database {parsed.get_backend_name()!r}: use sqlite:///path.db or postgresql://"
        raise StoreError(msg, store=redact(parsed))
    return parsed


def is_memory(url: URL) -> bool:
    """Whether a SQLite URL names an in-memory database."""
    return url.database in (None, "", ":memory:") or url.query.get("mode") == "memory"


def create(url: str | URL, **options: Any) -> Engine:  # noqa: ANN401  passed through to create_engine
    """An engine for ``url``, set up for the store (see the module's description).

    Args:
        url: ``sqlite:///path.db``, ``sqlite://``, ``postgresql://...`` or
            ``postgresql+psycopg://...``.
        **options: Passed to :func:`sqlalchemy.create_engine`; they win over the defaults.

    Raises:
        StoreError: The URL is not usable (see :func:`normalize`), or its driver is missing.
    """
    parsed = normalize(url)
    kwargs: dict[str, Any] = {"json_serializer": dumps}
    sqlite = parsed.get_backend_name() == "sqlite"
    memory = sqlite and is_memory(parsed)
    if memory:
        kwargs.update(poolclass=StaticPool, connect_args={"check_same_thread": False})
    elif sqlite:
        kwargs.update(connect_args={"timeout": SQLITE_BUSY_TIMEOUT, "check_same_thread": False})
    else:
        kwargs["pool_pre_ping"] = True
        if "connect_timeout" not in parsed.query:
            kwargs["connect_args"] = {"connect_timeout": CONNECT_TIMEOUT}
    kwargs.update(options)
    try:
        engine = sa.create_engine(parsed, **kwargs)
    except (ImportError, sa_exc.ArgumentError) as exc:
        raise StoreError(f"cannot set up the database: {exc}", store=redact(parsed)) from exc
    if sqlite:
        _set_up_sqlite(engine, wal=not memory)
    return engine


def _set_up_sqlite(engine: Engine, *, wal: bool) -> None:
    def on_connect(dbapi_connection: DBAPIConnection, _record: ConnectionPoolEntry) -> None:
        connection = cast("sqlite3.Connection", dbapi_connection)
        # The driver's own BEGIN handling skips SELECTs and DDL; we begin ourselves.
        connection.isolation_level = None
        connection.execute("PRAGMA foreign_keys = ON")
        if wal:
            connection.execute("PRAGMA journal_mode = WAL")

    def on_begin(connection: Connection) -> None:
        write = connection.get_execution_options().get(WRITE, False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

    event.listen(engine, "connect", on_connect)
    event.listen(engine, "begin", on_begin)
