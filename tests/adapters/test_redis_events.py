"""Tests of the Redis event channel (JSON messages over pub/sub) against a real redis-server of the tests' own."""

from __future__ import annotations

import asyncio
import contextlib
import math
import time

import pytest
import redis
import redis.asyncio
import redis.asyncio.cluster

import tierpolicy
from redisserver import TIMEOUTS
from tierpolicy.adapters.redis import EventChannel, Subscribed
from tierpolicy.adapters.redis._events import MAX_MESSAGE_BYTES, decode, encode

pytestmark = pytest.mark.redis

WAIT = 10.0
"""Seconds to wait for something that should happen at once (generous: CI machines are slow)."""


def fast(failures: int) -> float:  # noqa: ARG001  the backoff signature
    """A backoff for tests: reconnect almost at once."""
    return 0.02


async def until_heard(channel: EventChannel, heard, message: dict[str, object]) -> list[object]:
    """Publish ``message`` until a listener is subscribed (so it is heard), then return what it yielded."""
    items = [await asyncio.wait_for(anext(heard), WAIT)]  # the subscription's confirmation
    assert await channel.apublish(message) >= 1
    items.append(await asyncio.wait_for(anext(heard), WAIT))
    return items


def test_a_listener_hears_messages_in_order_after_a_first_clean_subscription(redis_server, redis_prefix):
    """listen() yields Subscribed(first=True), then every message published, in order, as JSON objects."""

    async def scenario() -> list[object]:
        channel = EventChannel.from_url(redis_server.url, channel=f"{redis_prefix}events", **TIMEOUTS)
        async with contextlib.aclosing(channel.listen(backoff=fast)) as heard:
            seen = [await asyncio.wait_for(anext(heard), WAIT)]
            reached = channel.publish({"n": 1}, {"n": 2, "text": "grüße"})  # one round trip, in order
            seen += [await asyncio.wait_for(anext(heard), WAIT) for _ in range(2)]
            assert await channel.apublish({"n": 3}) == 1
            seen.append(await asyncio.wait_for(anext(heard), WAIT))
        await channel.aclose()
        channel.close()
        assert reached == 2  # two messages, one listener
        return seen

    assert asyncio.run(scenario()) == [Subscribed(first=True), {"n": 1}, {"n": 2, "text": "grüße"}, {"n": 3}]


def test_two_channels_with_one_name_share_messages_and_other_names_do_not(redis_server, redis_prefix):
    """Replicas on the same channel name hear each other; a channel of another name reaches nobody."""

    async def scenario() -> tuple[list[object], int]:
        listener = EventChannel.from_url(redis_server.url, channel=f"{redis_prefix}events", **TIMEOUTS)
        replica = EventChannel.from_url(redis_server.url, channel=f"{redis_prefix}events", **TIMEOUTS)
        stranger = EventChannel.from_url(redis_server.url, channel=f"{redis_prefix}other", **TIMEOUTS)
        async with contextlib.aclosing(listener.listen(backoff=fast)) as heard:
            seen = await until_heard(replica, heard, {"a": 1})
            reached = await stranger.apublish({"b": 2})
        for channel in (listener, replica, stranger):
            await channel.aclose()
        return seen, reached

    seen, reached = asyncio.run(scenario())
    assert seen == [Subscribed(first=True), {"a": 1}]
    assert reached == 0


def test_messages_that_are_not_json_objects_are_reported_and_skipped(redis_server, redis_prefix):
    """Text that is not JSON, a JSON array or invalid UTF-8 goes to on_error; the next event still arrives."""
    errors: list[BaseException] = []
    name = f"{redis_prefix}events"

    async def scenario() -> list[object]:
        channel = EventChannel.from_url(redis_server.url, channel=name, **TIMEOUTS)
        raw = redis.Redis.from_url(redis_server.url, **TIMEOUTS)
        async with contextlib.aclosing(channel.listen(backoff=fast, on_error=errors.append)) as heard:
            seen = [await asyncio.wait_for(anext(heard), WAIT)]
            for junk in (b"not json", b"[1, 2]", b"\xff\xfe", b"{" * 100_000):
                raw.publish(name, junk)
            channel.publish({"ok": True})
            seen.append(await asyncio.wait_for(anext(heard), WAIT))
        raw.close()
        await channel.aclose()
        return seen

    assert asyncio.run(scenario()) == [Subscribed(first=True), {"ok": True}]
    assert [type(e) for e in errors] == [ValueError] * 4
    assert "not JSON" in str(errors[0])
    assert "JSON object, not list" in str(errors[1])


def test_a_listener_reconnects_after_redis_restarts_and_says_it_may_have_missed_messages(
    own_redis_server, redis_prefix
):
    """Redis goes away and comes back: the error is reported, then Subscribed(first=False), then new messages."""
    errors: list[BaseException] = []

    async def scenario() -> list[object]:
        channel = EventChannel.from_url(own_redis_server.url, channel=f"{redis_prefix}events")
        publisher = EventChannel.from_url(own_redis_server.url, channel=f"{redis_prefix}events")

        def backoff(failures: int) -> float:
            if failures == 1:
                own_redis_server.start()
                publisher.publish({"missed": True})  # published before the listener is back: lost
            return 0.02

        async with contextlib.aclosing(channel.listen(backoff=backoff, on_error=errors.append)) as heard:
            seen = [await asyncio.wait_for(anext(heard), WAIT)]
            own_redis_server.stop()
            seen.append(await asyncio.wait_for(anext(heard), WAIT))
            await channel.apublish({"after": True})
            seen.append(await asyncio.wait_for(anext(heard), WAIT))
        await channel.aclose()
        publisher.close()
        return seen

    assert asyncio.run(asyncio.wait_for(scenario(), 3 * WAIT)) == [
        Subscribed(first=True),
        Subscribed(first=False),
        {"after": True},
    ]
    assert isinstance(errors[0], tierpolicy.StoreUnavailableError)
    assert isinstance(errors[0].__cause__, redis.ConnectionError)


def test_a_first_subscription_that_had_to_wait_for_redis_is_not_clean(own_redis_server, redis_prefix):
    """Redis is down when the listener starts: once it subscribes, it says messages may have been missed."""
    errors: list[BaseException] = []

    def backoff(failures: int) -> float:
        if failures == 2:
            own_redis_server.start()
        return 0.02

    async def scenario() -> object:
        channel = EventChannel.from_url(own_redis_server.url, channel=f"{redis_prefix}events")
        async with contextlib.aclosing(channel.listen(backoff=backoff, on_error=errors.append)) as heard:
            first = await asyncio.wait_for(anext(heard), 3 * WAIT)
        await channel.aclose()
        return first

    own_redis_server.stop()
    assert asyncio.run(scenario()) == Subscribed(first=False)
    assert len(errors) == 2
    assert all(isinstance(e, tierpolicy.StoreUnavailableError) for e in errors)


def test_publishing_while_redis_is_down_fails_fast_as_store_unavailable(own_redis_server, redis_prefix):
    """With Redis gone, publish and apublish raise StoreUnavailableError at once."""
    channel = EventChannel.from_url(own_redis_server.url, channel=f"{redis_prefix}events")
    assert channel.publish({"n": 1}) == 0  # connected once, nobody listening
    own_redis_server.stop()
    started = time.monotonic()
    with pytest.raises(tierpolicy.StoreUnavailableError, match="Redis is unavailable") as raised:
        channel.publish({"n": 2})
    assert time.monotonic() - started < 1.0
    assert isinstance(raised.value.__cause__, redis.ConnectionError)

    async def apublish() -> None:
        with pytest.raises(tierpolicy.StoreUnavailableError):
            await channel.apublish({"n": 3})
        await channel.aclose()

    asyncio.run(apublish())
    channel.close()


def test_publishing_after_a_restart_reconnects(own_redis_server, redis_prefix):
    """A pooled connection that died with the server is replaced: the first publish after a restart succeeds."""
    channel = EventChannel.from_url(own_redis_server.url, channel=f"{redis_prefix}events")
    assert channel.publish({"n": 1}) == 0
    own_redis_server.stop()
    own_redis_server.start()
    assert channel.publish({"n": 2}) == 0
    channel.close()


def test_messages_are_json_objects_of_bounded_size(redis_server, redis_prefix):
    """Only mappings encodable as strict JSON within MAX_MESSAGE_BYTES are published; nothing is sent otherwise."""
    channel = EventChannel.from_url(redis_server.url, channel=f"{redis_prefix}events")
    with pytest.raises(TypeError, match="JSON object"):
        channel.publish([1, 2])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="Out of range float"):
        channel.publish({"x": math.nan})
    with pytest.raises(TypeError, match="not JSON serializable"):
        channel.publish({"x": object()})
    with pytest.raises(ValueError, match="at most 65,536 bytes"):
        channel.publish({"x": "a" * MAX_MESSAGE_BYTES})
    assert channel.publish() == 0
    channel.close()
    assert encode({"a": [1, None]}) == '{"a":[1,null]}'
    assert decode('{"a": 1}') == {"a": 1}
    with pytest.raises(ValueError, match="larger than"):
        decode(b" " * (MAX_MESSAGE_BYTES + 1))


def test_construction_refuses_what_cannot_work(redis_server):
    """A bad URL is a StoreError at once, an empty name or no client a ValueError, a cluster client cannot listen."""
    with pytest.raises(tierpolicy.StoreError, match="unsupported Redis URL scheme"):
        EventChannel.from_url("http://127.0.0.1:1")
    with pytest.raises(ValueError, match="needs a name"):
        EventChannel(url=redis_server.url, channel="")
    with pytest.raises(ValueError, match="give a Redis client"):
        EventChannel()

    async def scenario() -> None:
        cluster = redis.asyncio.cluster.RedisCluster(host="127.0.0.1", port=redis_server.port)
        with pytest.raises(TypeError, match="has no pub/sub"):
            await anext(EventChannel(async_client=cluster).listen())

    asyncio.run(scenario())


def test_clients_passed_in_are_used_and_left_open(redis_server, redis_prefix):
    """A channel over the caller's clients publishes and listens with them, and does not close them."""
    client = redis.Redis.from_url(redis_server.url, **TIMEOUTS)
    channel = EventChannel(client, channel=f"{redis_prefix}events")
    assert channel.publish({"n": 1}) == 0
    channel.close()
    assert client.ping()
    client.close()
    assert channel.name.startswith("redis://127.0.0.1:")

    async def scenario() -> object:
        aclient = redis.asyncio.Redis.from_url(redis_server.url, **TIMEOUTS)
        listener = EventChannel(async_client=aclient, channel=f"{redis_prefix}events")
        async with contextlib.aclosing(listener.listen(backoff=fast)) as heard:
            seen = await until_heard(listener, heard, {"n": 2})
        await listener.aclose()
        assert await aclient.ping()
        await aclient.aclose()
        return seen

    assert asyncio.run(scenario()) == [Subscribed(first=True), {"n": 2}]


def test_errors_are_logged_by_default_and_a_failing_on_error_is_survived(redis_server, redis_prefix, caplog):
    """Without on_error a skipped message is logged; an on_error that raises is logged and listening goes on."""
    name = f"{redis_prefix}events"

    def broken(_error: BaseException) -> None:
        raise RuntimeError("boom")

    async def scenario() -> list[object]:
        channel = EventChannel.from_url(redis_server.url, channel=name, **TIMEOUTS)
        raw = redis.Redis.from_url(redis_server.url, **TIMEOUTS)
        seen: list[object] = []
        for on_error in ({}, {"on_error": broken}):
            async with contextlib.aclosing(channel.listen(backoff=fast, **on_error)) as heard:
                await asyncio.wait_for(anext(heard), WAIT)
                raw.publish(name, b"junk")
                assert await channel.apublish() == 0
                await channel.apublish({"ok": len(seen)})
                seen.append(await asyncio.wait_for(anext(heard), WAIT))
        raw.close()
        await channel.aclose()
        return seen

    assert asyncio.run(scenario()) == [{"ok": 0}, {"ok": 1}]
    assert "event channel: ValueError: an event message is not JSON" in caplog.text
    assert "the on_error callback of an event listener raised" in caplog.text
