"""The store's exceptions, and the translation of SQLAlchemy's and the drivers' errors into them.

Everything that means "the database cannot answer right now" (refused or dropped
connections, timeouts, a server shutting down or out of connections, a locked or
read-only SQLite file) becomes :class:`~tierpolicy.StoreUnavailableError`. A write that
breaks a constraint becomes :class:`ConflictError`. Anything else becomes
:class:`~tierpolicy.StoreError`. The original exception stays on ``__cause__``;
messages carry the driver's own words, never a SQL statement's parameters and never the
URL's password.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import make_url

from tierpolicy.engine._exceptions import StoreError, StoreUnavailableError

if TYPE_CHECKING:
    from collections.abc import Iterator

    from sqlalchemy.engine import URL

UNPARSEABLE = "<unparseable database URL>"

# SQLite result codes (and their extended forms, which share the prefix) that mean the
# file cannot be used right now rather than that the statement is wrong.
_SQLITE_UNAVAILABLE = (
    "SQLITE_BUSY",
    "SQLITE_LOCKED",
    "SQLITE_CANTOPEN",
    "SQLITE_IOERR",
    "SQLITE_FULL",
    "SQLITE_READONLY",
    "SQLITE_PROTOCOL",
    "SQLITE_NOMEM",
)
# SQLSTATE classes that mean the server cannot serve us now: connection exception,
# insufficient resources, operator intervention (shutdown, cancelled statement).
_SQLSTATE_UNAVAILABLE = ("08", "53", "57")
_UNDEFINED_TABLE = "42P01"
_MAX_DETAIL = 500


class NotFoundError(StoreError, LookupError):
    """The seller, override or policy version a call names is not in the store."""


class ConflictError(StoreError):
    """A write contradicts what the store holds: a duplicate policy version, or a broken constraint."""


def redact(url: str | URL) -> str:
    """``url`` without its password (``***`` in its place), for messages and logs."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except (sa_exc.ArgumentError, ValueError):
        return UNPARSEABLE


def _detail(exc: BaseException, secret: str | None) -> str:
    """The driver's message on one line, shortened, with the password blotted out."""
    text = " ".join(str(exc).split())
    if secret:
        text = text.replace(secret, "***")
    if len(text) > _MAX_DETAIL:
        text = text[: _MAX_DETAIL - 3] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _unavailable(exc: sa_exc.SQLAlchemyError) -> bool:
    if isinstance(exc, sa_exc.DisconnectionError | sa_exc.TimeoutError):
        return True
    if not isinstance(exc, sa_exc.DBAPIError):
        return False
    if exc.connection_invalidated or isinstance(exc, sa_exc.InterfaceError):
        return True
    errorname = getattr(exc.orig, "sqlite_errorname", None)
    if isinstance(errorname, str):
        return errorname.startswith(_SQLITE_UNAVAILABLE)
    sqlstate = getattr(exc.orig, "sqlstate", None)
    if isinstance(sqlstate, str) and sqlstate.startswith(_SQLSTATE_UNAVAILABLE):
        return True
    # Outside SQLite, DB-API's OperationalError is the server's trouble, not the statement's.
    return isinstance(exc, sa_exc.OperationalError)


def translate(exc: sa_exc.SQLAlchemyError, store: str, *, secret: str | None = None) -> StoreError:
    """The library's exception for a SQLAlchemy exception.

    Args:
        exc: What SQLAlchemy raised.
        store: The database URL, already redacted.
        secret: The URL's password, blotted out of the message should the driver quote it.
    """
    original = exc.orig if isinstance(exc, sa_exc.DBAPIError) and exc.orig is not None else exc
    detail = _detail(original, secret)
    if _unavailable(exc):
        return StoreUnavailableError(f"the database is unavailable: {detail}", store=store)
    if isinstance(exc, sa_exc.IntegrityError):
        return ConflictError(f"the write breaks a database constraint: {detail}", store=store)
    if getattr(original, "sqlstate", None) == _UNDEFINED_TABLE or "no such table" in detail:
        return StoreError(
            f"the database has no store tables; apply the migrations first (upgrade): {detail}", store=store
        )
    return StoreError(f"the database failed: {detail}", store=store)


@contextlib.contextmanager
def translated(store: str, *, secret: str | None = None) -> Iterator[None]:
    """Re-raise SQLAlchemy's exceptions as the library's, ``from`` the original."""
    try:
        yield
    except sa_exc.SQLAlchemyError as exc:
        raise translate(exc, store, secret=secret) from exc
