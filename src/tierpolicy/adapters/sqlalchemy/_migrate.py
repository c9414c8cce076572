"""Applying the store's Alembic migrations from code, with no ``alembic.ini``.

The Alembic environment ships inside the package (``migrations/``), so an installed
wheel can migrate its database: ``upgrade(url)`` brings a database to the newest
schema, ``downgrade(url, revision)`` takes it back, ``current(url)`` says where it is.
Each runs in one transaction: on PostgreSQL the whole upgrade applies or none of it
does, and replicas that upgrade at the same start-up take turns (an advisory lock)
instead of racing to create the same tables. The version is kept in the table
``tierpolicy_alembic_version``, so an application that runs Alembic for its own tables
in the same database keeps its ``alembic_version`` to itself.
"""

from __future__ import annotations

import contextlib
import importlib.resources
from typing import TYPE_CHECKING

from alembic import command, context
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine

from tierpolicy.engine._exceptions import StoreError

from ._engine import WRITE, create
from ._errors import redact, translated
from ._models import metadata

if TYPE_CHECKING:
    from collections.abc import Iterator

    from sqlalchemy.engine import URL

VERSION_TABLE = "tierpolicy_alembic_version"
"""Where Alembic records the store's schema revision."""

MIGRATION_LOCK = 0x7469_6572_706F_6C  # "tierpol": an arbitrary key no one else is likely to pick
"""The PostgreSQL advisory-lock key that serialises concurrent upgrades."""


def script_location() -> str:
    """The directory of the packaged Alembic environment."""
    return str(importlib.resources.files(__package__) / "migrations")


def config(connection: Connection | None = None) -> Config:
    """An Alembic configuration for the packaged migrations, built in code.

    Args:
        connection: The connection ``env.py`` migrates; Alembic commands that touch the
            database need it (``alembic.command.revision(config(c), autogenerate=True)``
            writes a new revision from the models' differences, for developers).
    """
    cfg = Config()
    # configparser interpolates '%': a path that holds one must escape it.
    cfg.set_main_option("script_location", script_location().replace("%", "%%"))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def head() -> str:
    """The newest revision the packaged migrations know."""
    revision = ScriptDirectory.from_config(config()).get_current_head()
    if revision is None:  # pragma: no cover  the package always ships a revision
        msg = "the packaged migrations have no head revision"
        raise StoreError(msg)
    return revision


def run_environment() -> None:
    """What ``migrations/env.py`` does: migrate the connection the configuration carries.

    Raises:
        TypeError: Alembic was run without that connection (e.g. its own command line
            with an ``alembic.ini``): the store migrates only through this module.
    """
    connection = context.config.attributes.get("connection")
    if not isinstance(connection, Connection):
        msg = (
            "the tierpolicy store migrates only through tierpolicy.adapters.sqlalchemy"
            " (upgrade, downgrade, or config(connection) for Alembic's own commands)"
        )
        raise TypeError(msg)
    context.configure(
        connection=connection,
        target_metadata=metadata,
        version_table=VERSION_TABLE,
        # SQLite alters a table by copying it; batch mode makes later revisions do that.
        render_as_batch=True,
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


@contextlib.contextmanager
def _connected(target: str | URL | Engine) -> Iterator[Connection]:
    engine = target if isinstance(target, Engine) else create(target)
    store = redact(engine.url)
    try:
        with translated(store, secret=engine.url.password), engine.connect() as connection:
            try:
                yield connection
            except CommandError as exc:
                raise StoreError(f"migration failed: {exc}", store=store) from exc
    finally:
        if engine is not target:
            engine.dispose()


def _migrate(target: str | URL | Engine, action: str, revision: str) -> None:
    with _connected(target) as connection:
        connection.execution_options(**{WRITE: True})
        with connection.begin():
            if connection.dialect.name == "postgresql":
                connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
            if action == "upgrade":
                command.upgrade(config(connection), revision)
            else:
                command.downgrade(config(connection), revision)


def upgrade(target: str | URL | Engine, revision: str = "head") -> None:
    """Migrate the database up to ``revision`` (the newest by default); a no-op when it is there.

    Args:
        target: A database URL (see :meth:`Database.from_url`) or an engine.
        revision: An Alembic revision id, ``head``, or a relative step such as ``+1``.

    Raises:
        StoreUnavailableError: The database cannot be reached.
        StoreError: A migration failed, or the revision is unknown; nothing was applied
            on PostgreSQL (SQLite applies DDL transactionally too).
    """
    _migrate(target, "upgrade", revision)


def downgrade(target: str | URL | Engine, revision: str) -> None:
    """Migrate the database down to ``revision`` (``base`` drops every table of the store).

    Raises:
        StoreUnavailableError: The database cannot be reached.
        StoreError: A migration failed, or the revision is unknown.
    """
    _migrate(target, "downgrade", revision)


def current(target: str | URL | Engine) -> str | None:
    """The database's revision, or ``None`` when the store was never migrated there.

    Raises:
        StoreUnavailableError: The database cannot be reached.
    """
    with _connected(target) as connection:
        context = MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE})
        return context.get_current_revision()
