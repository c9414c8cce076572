"""Redis clients from URLs, and the direct connections of the rate limiter's hot call, against real Redis."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time

import pytest
import redis
import redis.asyncio

import tierpolicy
from redisserver import TIMEOUTS, unique_prefix
from tierpolicy.adapters.redis import RedisRateLimitStore
from tierpolicy.adapters.redis._connect import DirectConnections, async_client
from tierpolicy.engine._gcra import GcraWindow
from tierpolicy.engine._ratelimit_store import Hit


def hit(name: str, quota: int = 100) -> Hit:
    """One hit on a counter of its own partition."""
    return Hit(f"rl:{{{name}}}:t:{name}", (GcraWindow(name="w", quota=quota, period=3600, burst=quota),))


def test_a_call_goes_out_on_the_clients_kind_of_connection_with_its_settings(redis_server):
    """The database (and every other setting of the URL) is the client's: a key set directly lands in db 3."""
    key = f"{unique_prefix()}direct"

    async def run() -> None:
        direct = DirectConnections(async_client(f"{redis_server.url}/3", **TIMEOUTS))
        assert await direct.call("SET", key, "v") in (True, b"OK", "OK")
        await direct.aclose()

    asyncio.run(run())
    in_db3 = redis.Redis.from_url(f"{redis_server.url}/3")
    in_db0 = redis.Redis.from_url(f"{redis_server.url}/0")
    try:
        assert in_db3.get(key) == b"v"
        assert in_db0.get(key) is None
    finally:
        in_db3.delete(key)
        in_db3.close()
        in_db0.close()


def test_an_error_reply_raises_and_keeps_the_connection(redis_server):
    """An error reply is raised as redis-py raises it; the connection read it whole, so it is reused."""

    async def run() -> tuple[int, object]:
        direct = DirectConnections(async_client(redis_server.url, **TIMEOUTS))
        with pytest.raises(redis.ResponseError, match="unknown command"):
            await direct.call("NO-SUCH-COMMAND")
        idle = len(direct._idle)
        answer = await direct.call("PING")
        await direct.aclose()
        return idle, answer

    idle, answer = asyncio.run(run())
    assert idle == 1
    assert answer in (True, b"PONG", "PONG")


def test_a_cancelled_call_closes_its_connection(redis_server):
    """A request cancelled mid-call leaves no half-read connection to be reused; the next call works."""

    async def run() -> tuple[int, object]:
        direct = DirectConnections(async_client(redis_server.url, **TIMEOUTS))
        waiting = asyncio.ensure_future(direct.call("BLPOP", f"{unique_prefix()}never", "2"))
        await asyncio.sleep(0.1)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        idle = len(direct._idle)
        answer = await direct.call("PING")
        await direct.aclose()
        return idle, answer

    idle, answer = asyncio.run(run())
    assert idle == 0
    assert answer in (True, b"PONG", "PONG")


def test_idle_connections_are_capped(redis_server):
    """Concurrent calls open connections as needed; only max_idle of them are kept afterwards."""

    async def run() -> tuple[list[object], int]:
        direct = DirectConnections(async_client(redis_server.url, **TIMEOUTS), max_idle=2)
        prefix = unique_prefix()
        answers = await asyncio.gather(*(direct.call("BLPOP", f"{prefix}{i}", "0.05") for i in range(5)))
        idle = len(direct._idle)
        await direct.aclose()
        return answers, idle

    answers, idle = asyncio.run(run())
    assert answers == [None] * 5
    assert idle == 2


def test_by_default_every_connection_of_a_busy_moment_is_kept(redis_server):
    """As many connections stay idle as calls were in flight (up to the pool's max_connections): none is reopened."""

    async def run() -> int:
        direct = DirectConnections(async_client(redis_server.url, **TIMEOUTS))
        prefix = unique_prefix()
        await asyncio.gather(*(direct.call("BLPOP", f"{prefix}{i}", "0.05") for i in range(5)))
        idle = len(direct._idle)
        await direct.aclose()
        return idle

    assert asyncio.run(run()) == 5


def test_a_server_that_never_answers_times_out_as_unavailable():
    """A call is bounded by the client's socket_timeout as a whole: StoreUnavailableError, from redis-py's TimeoutError."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        port = silent.getsockname()[1]
        store = RedisRateLimitStore.from_url(
            f"redis://127.0.0.1:{port}/0", socket_timeout=0.2, socket_connect_timeout=0.2
        )

        async def run() -> float:
            started = time.monotonic()
            with pytest.raises(tierpolicy.StoreUnavailableError) as caught:
                await store.ahit_many([hit("silent")])
            assert isinstance(caught.value.__cause__, redis.TimeoutError)
            await store.aclose()
            return time.monotonic() - started

        assert 0.2 <= asyncio.run(run()) < 2.0


def test_an_outage_then_recovery_in_one_event_loop(own_redis_server):
    """Calls fail as unavailable while Redis is down and succeed once it is back, on fresh connections."""
    store = RedisRateLimitStore.from_url(own_redis_server.url, prefix=unique_prefix(), **TIMEOUTS)

    async def run() -> list[object]:
        seen: list[object] = [(await store.ahit_many([hit("o")])).allowed]
        own_redis_server.stop()
        try:
            await store.ahit_many([hit("o")])
        except tierpolicy.StoreUnavailableError as exc:
            seen.append(type(exc.__cause__))
        own_redis_server.start()
        seen.append((await store.ahit_many([hit("o")])).allowed)
        await store.aclose()
        return seen

    assert asyncio.run(run()) == [True, redis.ConnectionError, True]


def test_a_connection_closed_while_idle_is_replaced_without_an_error(own_redis_server):
    """The server closing an idle connection (a restart, a proxy's idle timeout) costs the next call nothing."""
    store = RedisRateLimitStore.from_url(own_redis_server.url, prefix=unique_prefix(), **TIMEOUTS)

    async def run() -> list[bool]:
        first = (await store.ahit_many([hit("i", quota=1)])).allowed
        killer = redis.Redis.from_url(own_redis_server.url)
        with contextlib.closing(killer):
            killer.client_kill_filter(_type="normal", skipme=True)
        second = (await store.ahit_many([hit("i", quota=1)])).allowed
        await store.aclose()
        return [first, second]

    # The counter survived (the server did not restart): the second hit is counted, and denied.
    assert asyncio.run(run()) == [True, False]
