"""Redis clients from a store URL: ``redis://``, ``rediss://``, ``unix://`` and the cluster schemes.

``redis+cluster://host:port`` and ``rediss+cluster://`` (TLS) connect to a Redis
Cluster through one of its nodes; the other schemes are redis-py's own
(``redis://[[user]:password@]host[:port][/db]``, query options such as
``?socket_timeout=0.2``). Connections time out quickly by default (``socket_timeout``
and ``socket_connect_timeout`` of 0.25 s) because a rate limiter that waits seconds for
a dead Redis is worse than one that applies its failure mode at once.
"""

from __future__ import annotations

import asyncio
import urllib.parse
from typing import TYPE_CHECKING, Any

import redis
import redis.asyncio
import redis.asyncio.cluster
import redis.cluster

from tierpolicy.engine._exceptions import StoreError

from ._errors import redact, translate

if TYPE_CHECKING:
    from collections.abc import Mapping

SyncClient = redis.Redis | redis.cluster.RedisCluster
AsyncClient = redis.asyncio.Redis | redis.asyncio.cluster.RedisCluster

DEFAULT_TIMEOUT = 0.25
"""Seconds to wait for a connection or an answer, unless the URL or the caller says otherwise."""

_SCHEMES = ("redis", "rediss", "unix", "redis+cluster", "rediss+cluster")


def _split(url: str) -> tuple[str, bool]:
    """The URL redis-py understands, and whether it names a cluster."""
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme not in _SCHEMES:
        msg = f"unsupported Redis URL scheme {scheme!r}: use one of {', '.join(s + '://' for s in _SCHEMES)}"
        raise StoreError(msg, store=redact(url))
    if scheme.endswith("+cluster"):
        return scheme.removesuffix("+cluster") + url[len(scheme) :], True
    return url, False


def _options(url: str, options: Mapping[str, Any]) -> dict[str, Any]:
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)
    merged: dict[str, Any] = {}
    if "socket_timeout" not in query:
        merged["socket_timeout"] = DEFAULT_TIMEOUT
    if "socket_connect_timeout" not in query:
        merged["socket_connect_timeout"] = DEFAULT_TIMEOUT
    merged.update(options)
    return merged


def sync_client(url: str, **options: Any) -> SyncClient:  # noqa: ANN401  passed through to redis-py
    """A redis-py client for ``url`` (a cluster client for the ``+cluster`` schemes).

    Raises:
        StoreError: The URL is not a Redis URL.
    """
    plain, cluster = _split(url)
    kwargs = _options(plain, options)
    try:
        if cluster:
            return redis.cluster.RedisCluster.from_url(plain, **kwargs)
        return redis.Redis.from_url(plain, **kwargs)
    except ValueError as exc:
        raise StoreError(f"bad Redis URL: {exc}", store=redact(url)) from exc
    except redis.RedisError as exc:  # a cluster client asks a node for the slot map at once
        raise translate(exc, redact(url)) from exc


def async_client(url: str, **options: Any) -> AsyncClient:  # noqa: ANN401  passed through to redis-py
    """A redis-py asyncio client for ``url`` (see :func:`sync_client`).

    Raises:
        StoreError: The URL is not a Redis URL.
    """
    plain, cluster = _split(url)
    kwargs = _options(plain, options)
    try:
        if cluster:
            return redis.asyncio.cluster.RedisCluster.from_url(plain, **kwargs)
        return redis.asyncio.Redis.from_url(plain, **kwargs)
    except ValueError as exc:
        raise StoreError(f"bad Redis URL: {exc}", store=redact(url)) from exc
    except redis.RedisError as exc:  # a cluster client asks a node for the slot map at once
        raise translate(exc, redact(url)) from exc


def describe(client: object) -> str:
    """A name for the server ``client`` connects to, for messages (no password)."""
    pool = getattr(client, "connection_pool", None)
    kwargs = getattr(pool, "connection_kwargs", {}) if pool is not None else {}
    if "path" in kwargs:
        return f"unix://{kwargs['path']}"
    if "host" in kwargs:
        return f"redis://{kwargs['host']}:{kwargs.get('port', 6379)}/{kwargs.get('db', 0)}"
    return f"redis ({type(client).__name__})"


class Clients:
    """The sync and asyncio redis-py clients of one adapter object.

    Clients passed in are used as they are and belong to the caller. Clients made from
    the URL are made on first use, and the asyncio one again in every new event loop
    (redis-py's asyncio connections belong to the loop that opened them: ``asyncio.run``
    twice, or a test per loop, would otherwise reuse dead connections); only these are
    closed by :meth:`close` and :meth:`aclose`.

    Args:
        client: A sync client, or ``None``.
        async_client: An asyncio client, or ``None``.
        url: Where clients are made when none was given.
        options: Passed to redis-py with the URL.
        what: What the owner is, for messages ("this rate-limit store").

    Raises:
        ValueError: Neither a client nor a URL was given.
    """

    def __init__(
        self,
        client: SyncClient | None,
        async_client: AsyncClient | None,
        url: str | None,
        options: Mapping[str, Any] | None,
        *,
        what: str,
    ) -> None:
        if client is None and async_client is None and url is None:
            msg = "give a Redis client, an asyncio client or a URL"
            raise ValueError(msg)
        self.name = redact(url) if url is not None else describe(client or async_client)
        """The server's address without its password, for messages and logs."""
        self._client = client
        self._async_client = async_client
        self._url = url
        self._options = dict(options or {})
        self._what = what
        self._owns_client = client is None
        self._owns_async_client = async_client is None
        self._async_loop: asyncio.AbstractEventLoop | None = None

    @property
    def sync(self) -> SyncClient:
        """The sync client.

        Raises:
            TypeError: Only an asyncio client was given (use the ``a...`` methods).
        """
        if self._client is None:
            if self._url is None:
                msg = f"{self._what} was given only an asyncio client: use its async methods"
                raise TypeError(msg)
            self._client = sync_client(self._url, **self._options)
        return self._client

    @property
    def asyncio(self) -> AsyncClient:
        """The asyncio client, for the running event loop.

        Raises:
            TypeError: Only a sync client was given (use the sync methods).
        """
        if self._owns_async_client and self._url is not None:
            loop = asyncio.get_running_loop()
            if self._async_client is None or self._async_loop is not loop:
                self._async_client = async_client(self._url, **self._options)
                self._async_loop = loop
        if self._async_client is None:
            msg = f"{self._what} was given only a sync client: use its sync methods"
            raise TypeError(msg)
        return self._async_client

    def close(self) -> None:
        """Close the sync client if it was made here."""
        if self._client is not None and self._owns_client:
            self._client.close()

    async def aclose(self) -> None:
        """Close the asyncio client if it was made here (from the loop it was used in)."""
        if self._async_client is not None and self._owns_async_client:
            await self._async_client.aclose()


class DirectConnections:
    """redis-py connections for a hot command, used without the client's per-command layers.

    redis-py's asyncio client spends about twice as much CPU on a command in its pool,
    instrumentation and timeout handling as the connection needs to send it and parse
    the reply (``socket_timeout`` alone wraps every write in ``asyncio.wait_for``, a task
    per command); for the rate limiter, a command on every request, that was a third of
    the seller service's CPU per request over Redis (docs/benchmarks.md). This keeps
    redis-py's own connections (the same class and settings as the client's pool: host,
    database, password, TLS, protocol, decoding), takes an idle one per call, and times
    the whole call with one ``asyncio.timeout`` of the client's ``socket_timeout``.

    A connection that fails or is interrupted (a timeout, a cancelled request) is closed,
    never reused. A reused idle connection that fails with a connection error is
    replaced and the command sent once more: a connection the server or a proxy closed
    while idle fails without the command having run. (Should the server have run it and
    the connection then broken before the reply, a rate-limit call is counted twice: the
    limit errs on the safe side.)

    Args:
        client: A ``redis.asyncio.Redis`` whose pool's settings the connections copy.
        max_idle: Idle connections kept for reuse, more being closed when handed back
            (default: the client pool's ``max_connections``, as its pool keeps them: a
            busy event loop needs as many as it has calls in flight, and closing the
            surplus after each call would reconnect on the next).
    """

    def __init__(self, client: redis.asyncio.Redis, max_idle: int | None = None) -> None:
        pool = client.connection_pool
        if max_idle is None:
            max_idle = getattr(pool, "max_connections", None) or 2**31
        kwargs = dict(pool.connection_kwargs)
        self.timeout: float | None = kwargs.get("socket_timeout")
        kwargs["socket_timeout"] = None  # the call as a whole is timed instead
        self._class = pool.connection_class
        self._kwargs = kwargs
        self._idle: list[redis.asyncio.connection.AbstractConnection] = []
        self._max_idle = max_idle
        self.client = client

    async def call(self, *args: str | bytes | int) -> Any:  # noqa: ANN401  a raw Redis reply
        """Send one command and return its reply (an error reply raises, as redis-py raises it).

        Raises:
            redis.exceptions.RedisError: What redis-py raises, and ``TimeoutError`` (redis-py's)
                when the call takes longer than the client's ``socket_timeout``.
            OSError: The socket failed.
        """
        reused = bool(self._idle)
        try:
            return await self._call_on(self._idle.pop() if reused else self._class(**self._kwargs), args)
        except (redis.ConnectionError, OSError):
            if not reused:
                raise
        return await self._call_on(self._class(**self._kwargs), args)

    async def _call_on(
        self, connection: redis.asyncio.connection.AbstractConnection, args: tuple[Any, ...]
    ) -> Any:  # noqa: ANN401  a raw Redis reply
        try:
            async with asyncio.timeout(self.timeout):
                await connection.connect()  # type: ignore[no-untyped-call, unused-ignore]  # typed in some redis-py versions only; returns at once when connected
                await connection.send_packed_command(connection.pack_command(*args), check_health=False)
                reply = await connection.read_response()
        except redis.ResponseError:
            await self._give_back(connection)  # the whole error reply was read: the connection is sound
            raise
        except TimeoutError:
            await connection.disconnect(nowait=True)
            msg = f"Timeout after {self.timeout}s waiting for Redis"
            raise redis.TimeoutError(msg) from None
        except BaseException:
            # Mid-command (an error, or the request cancelled): what the socket holds is unknown.
            await connection.disconnect(nowait=True)
            raise
        await self._give_back(connection)
        return reply

    async def _give_back(self, connection: redis.asyncio.connection.AbstractConnection) -> None:
        if len(self._idle) < self._max_idle:
            self._idle.append(connection)
        else:
            await connection.disconnect()

    async def aclose(self) -> None:
        """Close the idle connections."""
        idle, self._idle = self._idle, []
        for connection in idle:
            await connection.disconnect()
