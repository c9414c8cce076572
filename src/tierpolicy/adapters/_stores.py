"""Rate-limit stores chosen by URL: ``memory://`` or a Redis URL."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tierpolicy.engine._exceptions import StoreError
from tierpolicy.engine._ratelimit_store import InMemoryRateLimitStore

if TYPE_CHECKING:
    from tierpolicy.engine._ratelimit_store import RateLimitStore

_REDIS_SCHEMES = ("redis", "rediss", "unix", "redis+cluster", "rediss+cluster")


def rate_limit_store(url: str, *, prefix: str = "tierpolicy:", **options: Any) -> RateLimitStore:  # noqa: ANN401  passed through to the store
    """The rate-limit store a URL names.

    * ``memory://``: an :class:`~tierpolicy.InMemoryRateLimitStore` of this process
      (options: ``clock``, ``sweep_interval``).
    * ``redis://``, ``rediss://`` (TLS), ``unix://``: a
      :class:`~tierpolicy.adapters.redis.RedisRateLimitStore` on one server or a
      primary; ``redis+cluster://`` and ``rediss+cluster://``: on a Redis Cluster.
      Options go to redis-py (``socket_timeout=0.1``...), plus ``clock``. Needs the
      ``redis`` extra.

    Raises:
        StoreError: The URL names no store this library has, or is malformed.
    """
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme == "memory":
        if url.lower() not in ("memory://", "memory:///"):
            msg = "a memory:// URL takes no host, path or query; pass options as keyword arguments"
            raise StoreError(msg, store=url)
        return InMemoryRateLimitStore(**options)
    if scheme in _REDIS_SCHEMES:
        from .redis import RedisRateLimitStore  # noqa: PLC0415  redis is an optional extra

        return RedisRateLimitStore.from_url(url, prefix=prefix, **options)
    msg = f"unknown store URL scheme {scheme!r}: use memory://, redis://, rediss://, unix://, redis+cluster:// or rediss+cluster://"
    raise StoreError(msg, store=url.rsplit("@", maxsplit=1)[-1])  # never echo a password
