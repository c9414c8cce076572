"""The Redis rate-limit store: one server-side script call per partition, clock from Redis ``TIME``.

Every window of every counter of one call is checked and then written only if all
allow, by ``_ratelimit.lua`` in one round trip. The script reads the clock with
``TIME``, so replicas' clocks never matter, and writes each counter with its TTL in one
``SET ... PX``, so no key outlives its windows. It is called with ``EVALSHA``; after a
``NOSCRIPT`` (a restarted server, ``SCRIPT FLUSH``, a failover) it is loaded again and
the call repeated, transparently.

The script decides and writes; it returns the server's time and what each counter
held before the call, and the client builds the per-window details from those with
the engine's own pure step (:func:`~tierpolicy.engine._ratelimit_store.apply_hits`)
when they are first read, so both stores report remaining, reset and retry times from
one implementation. Should the script's decision ever differ from the engine's (the two
transcriptions disagreeing), the script's stands, since it has written, and an error
is logged.

Keys are ``<prefix>rl:{<partition>}:<limit>:<key>``: every counter of one partition
shares a Redis Cluster hash tag, so one call's keys live in one slot. The sync and
asyncio shells share all of the logic above (:class:`_Codec`) and differ only in the
client call.
"""

from __future__ import annotations

import hashlib
import importlib.resources
from typing import TYPE_CHECKING, Any

import redis.asyncio
from redis import exceptions as rex

from tierpolicy.engine._exceptions import StoreError
from tierpolicy.engine._ratelimit_store import Hit, State, Step

from ._connect import AsyncClient, Clients, DirectConnections, SyncClient, sync_client
from ._errors import translate

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from tierpolicy.engine._gcra import GcraWindow

SCRIPT = importlib.resources.files(__package__).joinpath("_ratelimit.lua").read_text(encoding="utf-8")
"""The Lua source of the rate-limit script."""

SCRIPT_SHA = hashlib.sha1(SCRIPT.encode(), usedforsecurity=False).hexdigest()
"""What ``EVALSHA`` calls it (Redis names scripts by SHA-1)."""

_TAGS = {"gcra": "g", "sliding_window": "s"}


class _Codec:
    """The I/O-free half of the store: arguments for the script, and results from its reply."""

    def __init__(self, prefix: str, store: str, clock: Callable[[], float] | None = None) -> None:
        if "{" in prefix or "}" in prefix:
            msg = "a Redis key prefix cannot contain '{' or '}': they would become the cluster hash tag"
            raise ValueError(msg)
        self.prefix = prefix
        self.store = store
        self.clock = clock
        self._specs: dict[tuple[str, tuple[GcraWindow, ...], bool, int], str] = {}

    def _spec(self, hit: Hit) -> str:
        """One hit's argument: ``"<algorithm> <shadow> <cost> <n> <a1> <b1> ..."``."""
        key = (hit.algorithm, hit.windows, hit.shadow, hit.cost)
        cached = self._specs.get(key)
        if cached is None:
            if hit.algorithm == "gcra":
                pairs = [(w.emission_interval, w.tolerance) for w in hit.windows]
            else:
                pairs = [(w.period * 1_000_000, w.quota) for w in hit.windows]
            numbers = " ".join(f"{a} {b}" for a, b in pairs)
            cached = (
                f"{_TAGS[hit.algorithm]} {'1' if hit.shadow else '0'} {hit.cost} {len(hit.windows)} {numbers}"
            )
            if len(self._specs) < 10_000:  # windows come from policies: few distinct specs
                self._specs[key] = cached
        return cached

    def request(self, mode: str, hits: Sequence[Hit]) -> tuple[list[str], list[str]]:
        """The keys and arguments of one script call."""
        prefix = self.prefix
        now = "" if self.clock is None else str(int(self.clock() * 1_000_000))
        return [prefix + h.key for h in hits], [mode, now, *(self._spec(h) for h in hits)]

    def step(self, hits: Sequence[Hit], reply: Any) -> Step:  # noqa: ANN401  a raw Redis reply
        """The answer of a ``hit`` call, from the script's reply.

        The script's decision is the decision (it has written the counters); the
        details are computed from the states it read when first asked for.
        """
        try:
            text = reply.decode() if isinstance(reply, bytes) else reply
            head, *before = text.split("|")
            now_text, written_text = head.split(" ")
            now = int(now_text)
            written = written_text == "1"
            states = [self._state(h, raw) for h, raw in zip(hits, before, strict=True)]
        except (AttributeError, TypeError, ValueError, IndexError) as exc:
            msg = f"unexpected reply from the rate-limit script: {reply!r:.200}"
            raise StoreError(msg, store=self.store) from exc
        return Step((written, hits, states, now))

    @staticmethod
    def _state(hit: Hit, text: str) -> State | None:
        if not text.startswith(_TAGS[hit.algorithm] + ","):
            return None
        values = tuple(int(v) for v in text[2:].split(","))
        return values if len(values) == hit.size else None


class RedisRateLimitStore:
    """Rate-limit counters in Redis, shared by every replica; sync and asyncio from one object.

    Give it a redis-py client, an asyncio client, or both; or build both lazily from a URL
    with :meth:`from_url`. :meth:`hit_many` and :meth:`refund_many` use the sync client,
    :meth:`ahit_many` and :meth:`arefund_many` the asyncio one.

    Args:
        client: A ``redis.Redis`` or ``redis.cluster.RedisCluster``.
        async_client: A ``redis.asyncio.Redis`` or ``redis.asyncio.cluster.RedisCluster``.
        prefix: Prepended to every key (no braces), so several applications or tests can
            share a server.
        url: Where the lazily created clients connect (set by :meth:`from_url`).
        options: Passed to redis-py when clients are created from ``url``.
        clock: Seconds from an injected clock, sent to the script instead of it reading
            Redis ``TIME``: for tests and simulations only. Leave it ``None`` in
            production, where replicas' clocks must not matter.

    Raises:
        ValueError: The prefix contains a brace, or neither a client nor a URL was given.
    """

    def __init__(
        self,
        client: SyncClient | None = None,
        *,
        async_client: AsyncClient | None = None,
        prefix: str = "tierpolicy:",
        url: str | None = None,
        options: dict[str, Any] | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self._clients = Clients(client, async_client, url, options, what="this rate-limit store")
        self.name = self._clients.name
        self._codec = _Codec(prefix, self.name, clock)
        self._sha = SCRIPT_SHA
        self._direct: DirectConnections | None = None

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        prefix: str = "tierpolicy:",
        clock: Callable[[], float] | None = None,
        **options: Any,  # noqa: ANN401  passed through to redis-py
    ) -> RedisRateLimitStore:
        """A store whose clients connect to ``url`` when first used (see :mod:`._connect`).

        Raises:
            StoreError: The URL is not a Redis URL.
        """
        sync_client(url, **options)  # fail now on a bad URL, not at the first request
        return cls(prefix=prefix, url=url, options=options, clock=clock)

    @property
    def client(self) -> SyncClient:
        """The sync client (made from the URL on first use)."""
        return self._clients.sync

    @property
    def async_client(self) -> AsyncClient:
        """The asyncio client (made from the URL on first use, and again in a new event loop)."""
        return self._clients.asyncio

    # ------------------------------------------------------------------ sync shell

    def _call(self, keys: list[str], args: list[str]) -> Any:  # noqa: ANN401  a raw Redis reply
        client = self.client
        try:
            try:
                return client.evalsha(self._sha, len(keys), *keys, *args)
            except rex.NoScriptError:
                client.script_load(SCRIPT)
                return client.evalsha(self._sha, len(keys), *keys, *args)
        except (rex.RedisError, OSError) as exc:
            raise translate(exc, self.name) from exc

    def hit_many(self, hits: Sequence[Hit]) -> Step:
        """Check every window of every hit and spend from all only if no blocking hit denies.

        Raises:
            StoreUnavailableError: Redis cannot be reached.
            StoreError: Redis answered with an error.
        """
        keys, args = self._codec.request("hit", hits)
        return self._codec.step(hits, self._call(keys, args))

    def refund_many(self, hits: Sequence[Hit]) -> None:
        """Give back what an allowed :meth:`hit_many` of the same hits spent."""
        keys, args = self._codec.request("refund", hits)
        self._call(keys, args)

    # ------------------------------------------------------------------ asyncio shell

    async def _acall(self, keys: list[str], args: list[str]) -> Any:  # noqa: ANN401  a raw Redis reply
        client = self.async_client
        try:
            if isinstance(client, redis.asyncio.Redis):
                call = self._direct_for(client).call
                try:
                    return await call("EVALSHA", self._sha, len(keys), *keys, *args)
                except rex.NoScriptError:
                    await call("SCRIPT", "LOAD", SCRIPT)
                    return await call("EVALSHA", self._sha, len(keys), *keys, *args)
            # A cluster client routes by key slot (and loads scripts on every primary) itself.
            try:
                return await client.evalsha(self._sha, len(keys), *keys, *args)  # type: ignore[misc, unused-ignore]  # redis-py's typing of evalsha differs between versions
            except rex.NoScriptError:
                await client.script_load(SCRIPT)
                return await client.evalsha(self._sha, len(keys), *keys, *args)  # type: ignore[misc, unused-ignore]  # as above
        except (rex.RedisError, OSError) as exc:
            raise translate(exc, self.name) from exc

    def _direct_for(self, client: redis.asyncio.Redis) -> DirectConnections:
        """The direct connections of ``client`` (see :class:`DirectConnections`)."""
        if self._direct is None or self._direct.client is not client:
            # A new event loop made a new client; the old loop's connections went with it.
            self._direct = DirectConnections(client)
        return self._direct

    async def ahit_many(self, hits: Sequence[Hit]) -> Step:
        """:meth:`hit_many` over the asyncio client."""
        keys, args = self._codec.request("hit", hits)
        return self._codec.step(hits, await self._acall(keys, args))

    async def arefund_many(self, hits: Sequence[Hit]) -> None:
        """:meth:`refund_many` over the asyncio client."""
        keys, args = self._codec.request("refund", hits)
        await self._acall(keys, args)

    # ------------------------------------------------------------------ admin

    def ping(self) -> None:
        """Check that Redis answers (readiness probes).

        Raises:
            StoreUnavailableError: It does not.
        """
        try:
            self.client.ping()
        except (rex.RedisError, OSError) as exc:
            raise translate(exc, self.name) from exc

    async def aping(self) -> None:
        """:meth:`ping` over the asyncio client."""
        try:
            await self.async_client.ping()  # type: ignore[misc, unused-ignore]  # redis-py's typing of ping differs between versions
        except (rex.RedisError, OSError) as exc:
            raise translate(exc, self.name) from exc

    def reset(self, key: str) -> None:
        """Forget a counter (an admin action); ``key`` as in :class:`Hit`."""
        try:
            self.client.delete(self._codec.prefix + key)
        except (rex.RedisError, OSError) as exc:
            raise translate(exc, self.name) from exc

    def close(self) -> None:
        """Close the sync client if this store made it (a client passed in is the caller's)."""
        self._clients.close()

    async def aclose(self) -> None:
        """Close the asyncio client if this store made it (from the loop it was used in), and its direct connections."""
        if self._direct is not None:
            await self._direct.aclose()
            self._direct = None
        await self._clients.aclose()
