"""Databases of the tests' own on the machine's PostgreSQL, created and dropped per test.

Tests never touch an existing database: each gets ``tierpolicy_test_<random>``, created
through the maintenance database and dropped (connections and all) when the test ends.
The server is ``postgresql://postgres@127.0.0.1:5432/postgres`` (trust authentication)
unless ``TIERPOLICY_TEST_POSTGRES`` names another. When it does not answer, the
PostgreSQL tests skip with the reason, except under ``CI=true``, where a missing
service is a failure.
"""

from __future__ import annotations

import contextlib
import os
import socket
import uuid
from typing import TYPE_CHECKING

import psycopg
import pytest
from psycopg import sql
from sqlalchemy.engine import make_url

if TYPE_CHECKING:
    from collections.abc import Iterator

ADMIN_URL = os.environ.get("TIERPOLICY_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")
PREFIX = "tierpolicy_test_"


def closed_port() -> int:
    """A TCP port on 127.0.0.1 that nobody listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class PostgresServer:
    """The PostgreSQL server the tests create their databases on.

    Args:
        admin_url: A libpq URL of a maintenance database (``postgres``) on it.
    """

    def __init__(self, admin_url: str = ADMIN_URL) -> None:
        self.admin_url = admin_url

    def _admin(self) -> psycopg.Connection[tuple[object, ...]]:
        # CREATE/DROP DATABASE cannot run inside a transaction block.
        return psycopg.connect(self.admin_url, autocommit=True, connect_timeout=5)

    def require(self) -> None:
        """Skip the test (fail it under ``CI=true``) when the server does not answer."""
        try:
            with self._admin() as connection:
                connection.execute("SELECT 1")
        except psycopg.OperationalError as exc:
            reason = f"PostgreSQL at {make_url(self.admin_url).render_as_string(hide_password=True)} is unreachable: {exc}"
            if os.environ.get("CI") == "true":
                pytest.fail(reason)
            pytest.skip(reason)

    def url(self, name: str) -> str:
        """The SQLAlchemy URL (psycopg 3 driver) of database ``name`` on this server."""
        return (
            make_url(self.admin_url)
            .set(drivername="postgresql+psycopg", database=name)
            .render_as_string(hide_password=False)
        )

    def create(self) -> str:
        """Create an empty database with a new unique name and return the name."""
        name = f"{PREFIX}{uuid.uuid4().hex[:16]}"
        with self._admin() as connection:
            connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return name

    def drop(self, name: str) -> None:
        """Drop a database this module created, closing whatever connections are left on it."""
        if not name.startswith(PREFIX):  # never anyone else's database
            msg = f"refusing to drop {name!r}: not a test database"
            raise ValueError(msg)
        with self._admin() as connection:
            connection.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )

    @contextlib.contextmanager
    def database(self) -> Iterator[str]:
        """A new empty database for the ``with`` block, as a SQLAlchemy URL; dropped afterwards."""
        name = self.create()
        try:
            yield self.url(name)
        finally:
            self.drop(name)
