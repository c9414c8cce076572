"""Translating redis-py's exceptions into the library's own, at the adapter boundary.

Everything that means "the store cannot answer right now" (refused or reset
connections, timeouts, a server still loading its data, a read-only replica, a cluster
that is down or resharding, out of memory) becomes :class:`StoreUnavailableError`, to
which rate limits apply their declared ``on_store_error`` mode. Any other Redis error (a
wrong key type, a script error) becomes :class:`StoreError`. The driver's exception is
kept on ``__cause__``.
"""

from __future__ import annotations

import urllib.parse

from redis import exceptions as rex

from tierpolicy.engine._exceptions import StoreError, StoreUnavailableError

_UNAVAILABLE: tuple[type[BaseException], ...] = (
    rex.ConnectionError,  # includes AuthenticationError, BusyLoadingError, MaxConnectionsError
    rex.TimeoutError,
    rex.ReadOnlyError,
    rex.ClusterDownError,
    rex.TryAgainError,
    rex.MasterDownError,
    rex.OutOfMemoryError,
    rex.SlotNotCoveredError,
    OSError,
)


def redact(url: str) -> str:
    """``url`` without its password, for messages and logs."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return "<unparseable store URL>"
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = parts.username or ""
    return urllib.parse.urlunsplit(parts._replace(netloc=f"{user}:***@{netloc}"))


def translate(exc: BaseException, store: str) -> StoreError:
    """The library's exception for a redis-py exception (``store`` is already redacted)."""
    if isinstance(exc, _UNAVAILABLE):
        return StoreUnavailableError(f"Redis is unavailable: {type(exc).__name__}: {exc}", store=store)
    return StoreError(f"Redis failed: {type(exc).__name__}: {exc}", store=store)
