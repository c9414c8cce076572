"""The policy-version channel: tells every replica of a service which policy version is active.

One string key and one pub/sub channel, both named ``<prefix>policy-version``.
:meth:`PolicyChannel.publish` sets the key and publishes the version on the channel
in one script call, so the two never disagree: a replica that subscribes late, or was
disconnected, reads the key (:meth:`PolicyChannel.current`); a replica that is
listening gets the message. The key has no TTL: the active version is kept until the
next publish.

Subscribers (:meth:`PolicyChannel.subscribe`, a background thread; or
:meth:`PolicyChannel.watch`, an async iterator) call back with, or yield, each
version that differs from the last one they delivered. They re-read the key every
time Redis confirms their subscription (when they first subscribe, and again whenever
the connection was lost and re-established, by them after a backoff or by redis-py on
its own), so a version published while they were away is delivered then, and the last
version a subscriber delivers is the current one. A version may still be delivered
twice in a row across a reconnection (or out of order with one published during it,
followed by the current one): reloading must be idempotent, which
:meth:`tierpolicy.PolicyHolder.reload` is.

Versions are strings: the engine's policy version is 16 hex digits
(:attr:`tierpolicy.PolicySet.version`), but any non-empty string of at most 256
characters without control characters is accepted, such as a release tag.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import random
import re
import threading
from typing import TYPE_CHECKING, Any, Final, Self

import redis.asyncio
from redis import exceptions as rex

from tierpolicy.engine._exceptions import StoreError

from ._connect import AsyncClient, Clients, SyncClient, sync_client
from ._errors import translate

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

logger = logging.getLogger("tierpolicy.redis")

MAX_VERSION_LENGTH: Final = 256
"""The longest version accepted, in characters."""

_CONTROL: Final = re.compile(r"[\x00-\x1f\x7f-\x9f]")

_PUBLISH_SCRIPT: Final = """\
redis.call('SET', KEYS[1], ARGV[1])
return redis.call('PUBLISH', KEYS[1], ARGV[1])
"""
"""Set the key and publish on the channel of the same name, atomically: the subscribers reached."""

_PUBLISH_SHA: Final = hashlib.sha1(_PUBLISH_SCRIPT.encode(), usedforsecurity=False).hexdigest()


def validate_version(version: object) -> str:
    """``version`` if it is a valid policy version.

    Raises:
        TypeError: It is not a string.
        ValueError: It is empty, longer than 256 characters, or contains a control
            character.
    """
    if not isinstance(version, str):
        msg = f"a policy version is a string, not {type(version).__name__}"
        raise TypeError(msg)
    if not version:
        msg = "a policy version cannot be empty"
        raise ValueError(msg)
    if len(version) > MAX_VERSION_LENGTH:
        msg = f"a policy version is at most {MAX_VERSION_LENGTH} characters, not {len(version)}"
        raise ValueError(msg)
    found = _CONTROL.search(version)
    if found is not None:
        msg = f"a policy version cannot contain control characters ({found.group()!r} at {found.start()})"
        raise ValueError(msg)
    return version


def default_backoff(failures: int) -> float:
    """Seconds to wait before reconnecting after ``failures`` failures in a row.

    Exponential from 0.1 s, capped at 5 s, with equal jitter (half fixed, half random),
    so that replicas that lost Redis together do not come back in lockstep.
    """
    delay = min(5.0, 0.1 * 2.0 ** min(failures - 1, 16))
    return delay / 2 + random.uniform(0, delay / 2)  # noqa: S311  jitter, not crypto


def _log_error(error: BaseException) -> None:
    logger.warning("policy-version subscription: %s: %s", type(error).__name__, error)


def _text(value: object) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


class PolicyChannel:
    """Publishes the active policy version, and notifies every replica that subscribes.

    Give it a redis-py client, an asyncio client, or both; or let :meth:`from_url`
    create them when first used. The sync methods use the sync client, the ``a``
    methods and :meth:`watch` the asyncio one (redis-py's asyncio cluster client has no
    pub/sub, so :meth:`watch` needs a ``redis.asyncio.Redis``).

    Args:
        client: A ``redis.Redis`` or ``redis.cluster.RedisCluster``.
        async_client: A ``redis.asyncio.Redis`` or ``redis.asyncio.cluster.RedisCluster``.
        prefix: Prepended to the key and channel name.
        url: Where clients created on first use connect (set by :meth:`from_url`).
        options: Passed to redis-py when clients are created from ``url``.

    Raises:
        ValueError: Neither a client nor a URL was given.
    """

    def __init__(
        self,
        client: SyncClient | None = None,
        *,
        async_client: AsyncClient | None = None,
        prefix: str = "tierpolicy:",
        url: str | None = None,
        options: dict[str, Any] | None = None,
    ) -> None:
        self._clients = Clients(client, async_client, url, options, what="this policy channel")
        self.name = self._clients.name
        self.key = f"{prefix}policy-version"
        """The key that holds the active version, and the name of the channel."""

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        prefix: str = "tierpolicy:",
        **options: Any,  # noqa: ANN401  passed through to redis-py
    ) -> PolicyChannel:
        """A channel whose clients connect to ``url`` when first used.

        Raises:
            StoreError: The URL is not a Redis URL.
        """
        sync_client(url, **options)  # fail now on a bad URL, not at the first call
        return cls(prefix=prefix, url=url, options=options)

    @property
    def client(self) -> SyncClient:
        """The sync client (made from the URL on first use).

        Raises:
            TypeError: The channel was given only an asyncio client.
        """
        return self._clients.sync

    @property
    def async_client(self) -> AsyncClient:
        """The asyncio client (made from the URL on first use, and again in a new event loop).

        Raises:
            TypeError: The channel was given only a sync client.
        """
        return self._clients.asyncio

    # ------------------------------------------------------------------ sync

    def publish(self, version: str) -> int:
        """Make ``version`` the active one and notify the subscribers; how many were listening.

        On a Redis Cluster the count is that of the subscribers connected to the node
        that ran the script (messages reach every node's subscribers all the same).

        Raises:
            ValueError: ``version`` is not a valid version (see :func:`validate_version`).
            TypeError: ``version`` is not a string.
            StoreUnavailableError: Redis cannot be reached.
            StoreError: Redis answered with an error.
        """
        validate_version(version)
        client = self.client
        try:
            try:
                reply = client.evalsha(_PUBLISH_SHA, 1, self.key, version)
            except rex.NoScriptError:  # a restarted server, SCRIPT FLUSH, a failover
                client.script_load(_PUBLISH_SCRIPT)
                reply = client.evalsha(_PUBLISH_SHA, 1, self.key, version)
        except (rex.RedisError, OSError) as exc:
            raise translate(exc, self.name) from exc
        return int(reply)  # type: ignore[arg-type, unused-ignore]  # redis-py's typing of the reply differs between versions

    def current(self) -> str | None:
        """The active version, or ``None`` if none was ever published.

        Raises:
            StoreUnavailableError: Redis cannot be reached.
            StoreError: Redis answered with an error (the key holds no string, say).
        """
        try:
            value = self.client.get(self.key)
        except (rex.RedisError, OSError) as exc:
            raise translate(exc, self.name) from exc
        return None if value is None else _text(value)

    def subscribe(
        self,
        callback: Callable[[str], object],
        *,
        known: str | None = None,
        backoff: Callable[[int], float] = default_backoff,
        on_error: Callable[[BaseException], object] = _log_error,
        poll_interval: float = 0.1,
    ) -> Subscription:
        """Call ``callback(version)``, in a background thread, for each new active version.

        Args:
            callback: Called with each version that differs from the last one delivered
                (the first time: from ``known``), starting with the current version.
                It runs in the subscription's thread; an exception it raises goes to
                ``on_error`` and the subscription goes on.
            known: The version the caller already runs, not to be delivered again.
            backoff: Seconds to wait before reconnecting after ``n`` failures in a row.
            on_error: Called with each error: a lost connection (as a
                :class:`StoreError`), or an exception of ``callback``. Logs a warning
                on the ``tierpolicy.redis`` logger by default.
            poll_interval: How often, in seconds, the thread checks whether it was closed
                while no message arrives (at most this long for :meth:`Subscription.close`).

        Returns:
            The running subscription; :meth:`Subscription.close` stops it.
        """
        if known is not None:
            validate_version(known)
        self.client  # noqa: B018  no sync client is the caller's error, not the thread's
        return Subscription(
            self, callback, known=known, backoff=backoff, on_error=on_error, poll_interval=poll_interval
        )

    # ------------------------------------------------------------------ asyncio

    async def apublish(self, version: str) -> int:
        """:meth:`publish` over the asyncio client."""
        validate_version(version)
        client = self.async_client
        try:
            try:
                reply = await client.evalsha(_PUBLISH_SHA, 1, self.key, version)  # type: ignore[misc, unused-ignore]  # redis-py's typing of evalsha differs between versions
            except rex.NoScriptError:  # a restarted server, SCRIPT FLUSH, a failover
                await client.script_load(_PUBLISH_SCRIPT)
                reply = await client.evalsha(_PUBLISH_SHA, 1, self.key, version)  # type: ignore[misc, unused-ignore]  # as above
        except (rex.RedisError, OSError) as exc:
            raise translate(exc, self.name) from exc
        return int(reply)

    async def acurrent(self) -> str | None:
        """:meth:`current` over the asyncio client."""
        try:
            value = await self.async_client.get(self.key)
        except (rex.RedisError, OSError) as exc:
            raise translate(exc, self.name) from exc
        return None if value is None else _text(value)

    async def watch(
        self,
        *,
        known: str | None = None,
        backoff: Callable[[int], float] = default_backoff,
        on_error: Callable[[BaseException], object] = _log_error,
    ) -> AsyncIterator[str]:
        """Yield each new active version, forever: the asyncio twin of :meth:`subscribe`.

        Reconnects after ``backoff(n)`` seconds when Redis goes away, and re-reads the
        current version on every (re)subscription, as :meth:`subscribe` does. Close it
        when done, so that its connection is released::

            async with contextlib.aclosing(channel.watch(known=holder.engine.version)) as versions:
                async for version in versions:
                    await asyncio.to_thread(holder.reload, policy_dir(version))
        """
        if known is not None:
            validate_version(known)
        client = self.async_client
        if not isinstance(client, redis.asyncio.Redis):
            msg = (
                "redis-py's asyncio cluster client has no pub/sub: watch through a redis.asyncio.Redis client"
            )
            raise TypeError(msg)
        last = known
        failures = 0
        while True:
            pubsub = client.pubsub()
            try:
                await pubsub.subscribe(self.key)
                while True:
                    message = await pubsub.get_message(timeout=None)
                    if message is None:  # pragma: no cover  only a health-check reply, with no timeout
                        continue
                    kind = _text(message["type"])
                    if kind == "subscribe":
                        # Subscribed, the first time or again after a reconnection: catch up.
                        failures = 0
                        version = await self.acurrent()
                    elif kind == "message":
                        version = _text(message["data"])
                    else:  # pragma: no cover  no other kind comes on a plain channel subscription
                        continue
                    fresh = _fresh(version, last, on_error)
                    if fresh is not None:
                        last = fresh
                        yield fresh
            except (rex.RedisError, OSError, StoreError) as exc:
                error = _store_error(exc, self.name)
            finally:
                with contextlib.suppress(rex.RedisError, OSError):
                    await pubsub.aclose()  # type: ignore[no-untyped-call, unused-ignore]  # untyped in redis-py
            failures += 1
            _report(on_error, error)
            await asyncio.sleep(backoff(failures))

    # ------------------------------------------------------------------ closing

    def close(self) -> None:
        """Close the sync client if this channel made it (a client passed in is the caller's)."""
        self._clients.close()

    async def aclose(self) -> None:
        """Close the asyncio client if this channel made it."""
        await self._clients.aclose()


def _fresh(version: str | None, last: str | None, on_error: Callable[[BaseException], object]) -> str | None:
    """``version`` if it is valid and differs from ``last``, else ``None`` (an invalid one is reported)."""
    if version is None or version == last:
        return None
    try:
        return validate_version(version)
    except ValueError as exc:
        _report(on_error, exc)
        return None


def _store_error(exc: BaseException, store: str) -> StoreError:
    """``exc`` as the library's exception, with the driver's on ``__cause__`` as if raised from it."""
    if isinstance(exc, StoreError):
        return exc
    error = translate(exc, store)
    error.__cause__ = exc
    return error


def _report(on_error: Callable[[BaseException], object], error: BaseException) -> None:
    """Hand ``error`` to ``on_error``, which must not end a subscription by raising itself."""
    try:
        on_error(error)
    except Exception:
        logger.exception("the on_error callback of a policy-version subscription raised")


class Subscription:
    """A running policy-version subscription: a daemon thread (see :meth:`PolicyChannel.subscribe`).

    Use it as a context manager, or call :meth:`close`.
    """

    def __init__(
        self,
        channel: PolicyChannel,
        callback: Callable[[str], object],
        *,
        known: str | None,
        backoff: Callable[[int], float],
        on_error: Callable[[BaseException], object],
        poll_interval: float,
    ) -> None:
        self.channel = channel
        self.last = known
        """The version delivered last (or ``known``)."""
        self._callback = callback
        self._backoff = backoff
        self._on_error = on_error
        self._poll_interval = poll_interval
        self._closed = threading.Event()
        self._subscribed = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tierpolicy-policy-version", daemon=True)
        self._thread.start()

    @property
    def subscribed(self) -> bool:
        """Whether it is subscribed right now (and has caught up with the current version)."""
        return self._subscribed.is_set()

    def wait_subscribed(self, timeout: float | None = None) -> bool:
        """Wait until it is subscribed (at most ``timeout`` seconds); whether it is."""
        return self._subscribed.wait(timeout)

    def close(self, timeout: float | None = 5.0) -> None:
        """Stop the thread and wait for it (at most ``timeout`` seconds).

        From the callback itself (the subscription's own thread) it only asks the thread
        to stop after the callback returns.
        """
        self._closed.set()
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout)

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed.is_set()

    @property
    def alive(self) -> bool:
        """Whether the thread is still running."""
        return self._thread.is_alive()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _deliver(self, version: str | None) -> None:
        fresh = _fresh(version, self.last, self._on_error)
        if fresh is None:
            return
        self.last = fresh
        try:
            self._callback(fresh)
        except Exception as exc:  # noqa: BLE001  the subscription outlives a failed reload
            _report(self._on_error, exc)

    def _run(self) -> None:
        channel = self.channel
        client = channel.client
        failures = 0
        while not self._closed.is_set():
            pubsub = client.pubsub()  # type: ignore[no-untyped-call, unused-ignore]  # RedisCluster.pubsub is untyped
            try:
                pubsub.subscribe(channel.key)
                while not self._closed.is_set():
                    message = pubsub.get_message(timeout=self._poll_interval)
                    if message is None:
                        continue
                    kind = _text(message["type"])
                    if kind == "subscribe":
                        # Subscribed, the first time or again after a reconnection: catch up.
                        self._deliver(channel.current())
                        failures = 0
                        self._subscribed.set()
                    elif (
                        kind == "message"
                    ):  # pragma: no branch  no other kind comes on a plain channel subscription
                        self._deliver(_text(message["data"]))
                break
            except (rex.RedisError, OSError, StoreError) as exc:
                error: BaseException = _store_error(exc, channel.name)
            except Exception as exc:  # noqa: BLE001  a thread nobody joins must not die silently
                error = exc
            finally:
                self._subscribed.clear()
                with contextlib.suppress(rex.RedisError, OSError):
                    pubsub.close()
            failures += 1
            _report(self._on_error, error)
            self._closed.wait(self._backoff(failures))
