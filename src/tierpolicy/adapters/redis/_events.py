"""An event channel: JSON messages published to, and heard by, every replica through Redis pub/sub.

:meth:`EventChannel.publish` (or :meth:`EventChannel.apublish`) sends JSON objects on
one pub/sub channel; :meth:`EventChannel.listen` is an async iterator that yields every
message heard on it, reconnecting after a backoff when Redis goes away.

Redis pub/sub keeps nothing for a subscriber that is not connected: messages published
while a listener was away are lost to it. So :meth:`EventChannel.listen` also yields a
:class:`Subscribed` marker each time Redis confirms the subscription, with ``first``
false on every subscription but a clean first one (after a lost connection, re-made by
the listener after its backoff or by redis-py on its own, or after a first attempt that
failed): the caller then knows it may have missed messages and must catch up by other
means (drop its caches, tell its clients to re-read).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final

import redis.asyncio
from redis import exceptions as rex

from ._channel import default_backoff
from ._connect import AsyncClient, Clients, SyncClient, sync_client
from ._errors import translate

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator, Callable

    from tierpolicy.engine._exceptions import StoreError

logger = logging.getLogger("tierpolicy.redis")

MAX_MESSAGE_BYTES: Final = 65_536
"""The largest message published or accepted, as encoded JSON."""

DEFAULT_CHANNEL: Final = "tierpolicy:events"

_POLL: Final = 5.0
"""Seconds one read of the subscription waits for a message before it is made again."""


@dataclasses.dataclass(frozen=True, slots=True)
class Subscribed:
    """Redis confirmed the listener's subscription.

    Attributes:
        first: ``True`` for a clean first subscription; ``False`` when messages may
            have been missed before it (a lost connection, or a failed first attempt).
    """

    first: bool


def _log_error(error: BaseException) -> None:
    logger.warning("event channel: %s: %s", type(error).__name__, error)


def _report(on_error: Callable[[BaseException], object], error: BaseException) -> None:
    """Hand ``error`` to ``on_error``, which must not end a listener by raising itself."""
    try:
        on_error(error)
    except Exception:
        logger.exception("the on_error callback of an event listener raised")


def encode(message: Mapping[str, Any]) -> str:
    """``message`` as compact JSON text.

    Raises:
        TypeError: It is not a mapping, or holds something JSON cannot carry.
        ValueError: It holds NaN or an infinity, or encodes to more than
            :data:`MAX_MESSAGE_BYTES`.
    """
    if not isinstance(message, Mapping):
        raise TypeError(f"an event message is a JSON object (a mapping), not {type(message).__name__}")
    text = json.dumps(dict(message), separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    size = len(text.encode("utf-8"))
    if size > MAX_MESSAGE_BYTES:
        raise ValueError(f"an event message is at most {MAX_MESSAGE_BYTES:,} bytes of JSON, not {size:,}")
    return text


def decode(data: bytes | str) -> dict[str, Any]:
    """A message heard on the channel as a JSON object.

    Raises:
        ValueError: It is too large, not UTF-8, not JSON, or not a JSON object.
    """
    raw = data.encode("utf-8") if isinstance(data, str) else data
    if len(raw) > MAX_MESSAGE_BYTES:
        raise ValueError(f"an event message of {len(raw):,} bytes is larger than {MAX_MESSAGE_BYTES:,}")
    try:
        value = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise ValueError(f"an event message is not JSON: {type(exc).__name__}") from None
    if not isinstance(value, dict):
        # ValueError like every other malformed message: the caller skips them all alike.
        raise ValueError(f"an event message is a JSON object, not {type(value).__name__}")  # noqa: TRY004
    return value


class EventChannel:
    """Publishes JSON messages on one Redis pub/sub channel, and listens to it.

    Give it a redis-py client, an asyncio client, or both; or let :meth:`from_url` create
    them when first used. :meth:`publish` uses the sync client, :meth:`apublish` and
    :meth:`listen` the asyncio one (which must be a ``redis.asyncio.Redis``: redis-py's
    asyncio cluster client has no pub/sub).

    Args:
        client: A ``redis.Redis`` or ``redis.cluster.RedisCluster``.
        async_client: A ``redis.asyncio.Redis``.
        channel: The pub/sub channel's name.
        url: Where clients created on first use connect (set by :meth:`from_url`).
        options: Passed to redis-py when clients are created from ``url``.

    Raises:
        ValueError: Neither a client nor a URL was given, or the channel name is empty.
    """

    def __init__(
        self,
        client: SyncClient | None = None,
        *,
        async_client: AsyncClient | None = None,
        channel: str = DEFAULT_CHANNEL,
        url: str | None = None,
        options: dict[str, Any] | None = None,
    ) -> None:
        if not channel:
            raise ValueError("the event channel needs a name")
        self._clients = Clients(client, async_client, url, options, what="this event channel")
        self.name = self._clients.name
        """The server's address without its password, for messages and logs."""
        self.channel = channel
        """The pub/sub channel's name."""

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        channel: str = DEFAULT_CHANNEL,
        **options: Any,  # noqa: ANN401  passed through to redis-py
    ) -> EventChannel:
        """A channel whose clients connect to ``url`` when first used.

        Raises:
            StoreError: The URL is not a Redis URL.
        """
        sync_client(url, **options)  # fail now on a bad URL, not at the first publish
        return cls(channel=channel, url=url, options=options)

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

    def publish(self, *messages: Mapping[str, Any]) -> int:
        """Publish ``messages``, in order, in one round trip; how many deliveries Redis made.

        Raises:
            TypeError: A message is not a JSON object.
            ValueError: A message cannot be encoded, or is too large.
            StoreUnavailableError: Redis cannot be reached.
            StoreError: Redis answered with an error.
        """
        texts = [encode(message) for message in messages]
        if not texts:
            return 0
        client = self.client
        try:
            with client.pipeline(transaction=False) as pipe:
                for text in texts:
                    pipe.execute_command("PUBLISH", self.channel, text)
                replies = pipe.execute()
        except (rex.RedisError, OSError) as exc:
            raise translate(exc, self.name) from exc
        return sum(int(reply) for reply in replies)

    async def apublish(self, *messages: Mapping[str, Any]) -> int:
        """:meth:`publish` over the asyncio client."""
        texts = [encode(message) for message in messages]
        if not texts:
            return 0
        client = self.async_client
        try:
            async with client.pipeline(transaction=False) as pipe:
                for text in texts:
                    pipe.execute_command("PUBLISH", self.channel, text)
                replies = await pipe.execute()
        except (rex.RedisError, OSError) as exc:
            raise translate(exc, self.name) from exc
        return sum(int(reply) for reply in replies)

    async def listen(
        self,
        *,
        backoff: Callable[[int], float] = default_backoff,
        on_error: Callable[[BaseException], object] = _log_error,
    ) -> AsyncGenerator[Subscribed | dict[str, Any], None]:
        """Yield a :class:`Subscribed` marker on each subscription, and each message heard, forever.

        Reconnects after ``backoff(n)`` seconds (``n`` failures in a row) when Redis goes
        away; each error goes to ``on_error`` (a lost connection as a
        :class:`~tierpolicy.StoreError`, a message that is not a JSON object as a
        :class:`ValueError`, which is then skipped). Close it when done (or cancel the
        task iterating it), so that its connection is released::

            async with contextlib.aclosing(channel.listen()) as heard:
                async for item in heard:
                    ...

        Raises:
            TypeError: The asyncio client has no pub/sub (a cluster client).
        """
        client = self.async_client
        if not isinstance(client, redis.asyncio.Redis):
            raise TypeError(
                "redis-py's asyncio cluster client has no pub/sub: listen through a redis.asyncio.Redis client"
            )
        clean = True  # until something fails, the next subscription is a clean first one
        failures = 0
        while True:
            pubsub = client.pubsub()
            try:
                await pubsub.subscribe(self.channel)
                while True:
                    # A bounded wait, again and again: redis-py before 8 applies the socket
                    # timeout to a blocking read (timeout=None), which would end an idle
                    # subscription after a quarter of a second.
                    message = await pubsub.get_message(timeout=_POLL)
                    if message is None:
                        continue
                    kind = message["type"]
                    kind = kind.decode() if isinstance(kind, bytes) else kind
                    if kind == "subscribe":
                        # Subscribed, the first time or again after a reconnection (ours or redis-py's).
                        failures = 0
                        yield Subscribed(first=clean)
                        clean = False
                    elif kind == "message":
                        try:
                            decoded = decode(message["data"])
                        except ValueError as exc:
                            _report(on_error, exc)
                            continue
                        yield decoded
            except (rex.RedisError, OSError) as exc:
                error: StoreError = translate(exc, self.name)
                error.__cause__ = exc
            finally:
                with contextlib.suppress(rex.RedisError, OSError):
                    await pubsub.aclose()  # type: ignore[no-untyped-call, unused-ignore]  # untyped in redis-py
            clean = False
            failures += 1
            _report(on_error, error)
            await asyncio.sleep(backoff(failures))

    def close(self) -> None:
        """Close the sync client if this channel made it (a client passed in is the caller's)."""
        self._clients.close()

    async def aclose(self) -> None:
        """Close the asyncio client if this channel made it."""
        await self._clients.aclose()


__all__ = ["DEFAULT_CHANNEL", "MAX_MESSAGE_BYTES", "EventChannel", "Subscribed", "decode", "encode"]
