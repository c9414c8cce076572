"""Tests of the policy-version channel against a real redis-server of the tests' own."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading

import pytest
import redis
import redis.asyncio.cluster

import tierpolicy
from tierpolicy.adapters.redis._channel import (
    MAX_VERSION_LENGTH,
    PolicyChannel,
    default_backoff,
    validate_version,
)
from tierpolicy.adapters.redis._connect import async_client, sync_client

pytestmark = pytest.mark.redis

WAIT = 10.0
"""Seconds to wait for something that should happen at once (generous: CI machines are slow)."""


def fast(failures: int) -> float:  # noqa: ARG001  the backoff signature
    """A backoff for tests: reconnect at once."""
    return 0.01


class Inbox:
    """A callback that collects versions, and waits for them."""

    def __init__(self) -> None:
        self.versions: queue.Queue[str] = queue.Queue()

    def __call__(self, version: str) -> None:
        """Take one version."""
        self.versions.put(version)

    def next(self) -> str:
        """The next version delivered (fails the test if none comes)."""
        return self.versions.get(timeout=WAIT)

    def empty(self) -> bool:
        """Whether nothing more was delivered."""
        return self.versions.empty()


@contextlib.contextmanager
def channel_on(url: str, prefix: str):
    """A channel with clients of its own (a replica's), closed afterwards."""
    channel = PolicyChannel.from_url(url, prefix=prefix)
    try:
        yield channel
    finally:
        channel.close()


@pytest.fixture
def channel(redis_server, redis_prefix):
    """A channel on the session's server under this test's prefix."""
    with channel_on(redis_server.url, redis_prefix) as made:
        yield made


# --------------------------------------------------------------------------- publish and read


def test_a_late_replica_reads_the_current_version(channel, redis_server, redis_prefix):
    """Nothing published: None; after publish, current() on another replica returns the version."""
    assert channel.current() is None
    assert channel.publish("0123456789abcdef") == 0  # nobody subscribed yet
    with channel_on(redis_server.url, redis_prefix) as late:
        assert late.current() == "0123456789abcdef"
    assert channel.client.ttl(channel.key) == -1  # kept until the next publish


def test_the_key_and_the_channel_share_the_prefixed_name(channel, redis_prefix):
    """Key and channel are both <prefix>policy-version."""
    assert channel.key == f"{redis_prefix}policy-version"
    pubsub = channel.client.pubsub()
    pubsub.subscribe(channel.key)
    assert pubsub.get_message(timeout=WAIT)["type"] == "subscribe"
    assert channel.publish("v1") == 1
    message = pubsub.get_message(timeout=WAIT)
    assert (message["channel"], message["data"]) == (channel.key.encode(), b"v1")
    pubsub.close()


def test_two_subscribers_both_receive_a_published_version(channel, redis_server, redis_prefix):
    """Two replicas subscribed: both are called back with the version, and publish counts them."""
    first, second = Inbox(), Inbox()
    with (
        channel_on(redis_server.url, redis_prefix) as other,
        channel.subscribe(first, backoff=fast) as one,
        other.subscribe(second, backoff=fast) as two,
    ):
        assert one.wait_subscribed(WAIT)
        assert two.wait_subscribed(WAIT)
        assert one.subscribed
        assert channel.publish("a1b2c3d4e5f60718") == 2
        assert (first.next(), second.next()) == ("a1b2c3d4e5f60718", "a1b2c3d4e5f60718")
        assert one.last == "a1b2c3d4e5f60718"


def test_a_subscriber_starts_with_the_current_version_unless_it_has_it(channel):
    """The current version is delivered at once, unless it is the known one; repeats are not delivered."""
    channel.publish("v1")
    inbox = Inbox()
    with channel.subscribe(inbox, backoff=fast) as subscription:
        assert inbox.next() == "v1"
        assert subscription.wait_subscribed(WAIT)
        channel.publish("v1")  # the same again: nothing new
        channel.publish("v2")
        assert inbox.next() == "v2"
    known = Inbox()
    with channel.subscribe(known, known="v2", backoff=fast) as subscription:
        assert subscription.wait_subscribed(WAIT)
        channel.publish("v3")
        assert known.next() == "v3"


def test_a_failing_callback_is_reported_and_the_subscription_goes_on(channel):
    """An exception from the callback goes to on_error; the next version is still delivered."""
    errors: list[BaseException] = []
    inbox = Inbox()

    def reload(version: str) -> None:
        if version == "bad":
            raise tierpolicy.PolicyLoadError([])
        inbox(version)

    with channel.subscribe(reload, on_error=errors.append, backoff=fast) as subscription:
        assert subscription.wait_subscribed(WAIT)
        channel.publish("bad")
        channel.publish("good")
        assert inbox.next() == "good"
    assert [type(e) for e in errors] == [tierpolicy.PolicyLoadError]


def test_an_invalid_version_found_in_redis_is_reported_not_delivered(channel):
    """A value another writer put at the key, with a control character, is refused on the way in."""
    channel.client.set(channel.key, "bad\x01version")
    errors: list[BaseException] = []
    inbox = Inbox()
    with channel.subscribe(inbox, on_error=errors.append, backoff=fast) as subscription:
        assert subscription.wait_subscribed(WAIT)
        channel.publish("fine")
        assert inbox.next() == "fine"
    assert [type(e) for e in errors] == [ValueError]


def test_errors_are_logged_by_default_and_a_failing_on_error_is_survived(channel, caplog):
    """Without on_error, errors are warnings on tierpolicy.redis; an on_error that raises is logged too."""
    inbox = Inbox()

    def broken(version: str) -> None:
        if version == "boom":
            raise RuntimeError(version)
        inbox(version)

    def raising(error: BaseException) -> None:
        raise error

    with caplog.at_level(logging.WARNING, logger="tierpolicy.redis"):
        with channel.subscribe(broken, backoff=fast) as subscription:
            assert subscription.wait_subscribed(WAIT)
            channel.publish("boom")
            channel.publish("after")
            assert inbox.next() == "after"
        with channel.subscribe(broken, known="after", on_error=raising, backoff=fast) as subscription:
            assert subscription.wait_subscribed(WAIT)
            channel.publish("boom")
            channel.publish("later")
            assert inbox.next() == "later"
    messages = [record.getMessage() for record in caplog.records]
    assert "policy-version subscription: RuntimeError: boom" in messages
    assert "the on_error callback of a policy-version subscription raised" in messages


# --------------------------------------------------------------------------- reconnecting


def test_a_subscriber_reconnects_and_catches_up_after_redis_restarts(own_redis_server, redis_prefix):
    """Redis stops and restarts: the subscriber reconnects, sees the version published meanwhile, then the next."""
    errors: list[BaseException] = []
    gate, failed = threading.Event(), threading.Event()

    def backoff(failures: int) -> float:  # noqa: ARG001  the backoff signature
        failed.set()
        assert gate.wait(WAIT)  # hold the subscriber off until the test has published
        return 0.0

    inbox = Inbox()
    with (
        channel_on(own_redis_server.url, redis_prefix) as channel,
        channel.subscribe(inbox, backoff=backoff, on_error=errors.append) as subscription,
    ):
        assert subscription.wait_subscribed(WAIT)
        channel.publish("v1")
        assert inbox.next() == "v1"
        own_redis_server.stop()
        assert failed.wait(WAIT)
        assert not subscription.subscribed
        own_redis_server.start()
        assert channel.publish("v2") == 0  # while the subscriber is away: no one hears it
        gate.set()
        assert inbox.next() == "v2"  # through the re-read on resubscription
        assert subscription.wait_subscribed(WAIT)
        channel.publish("v3")
        assert inbox.next() == "v3"
    assert isinstance(errors[0], tierpolicy.StoreUnavailableError)
    assert isinstance(errors[0].__cause__, redis.ConnectionError)


def test_a_subscriber_whose_re_read_fails_tries_again(channel):
    """The re-read after subscribing fails (a hash at the key): reported, retried, then caught up."""
    channel.client.hset(channel.key, "a", "b")
    errors: list[BaseException] = []
    failed = threading.Event()

    def on_error(error: BaseException) -> None:
        errors.append(error)
        failed.set()

    inbox = Inbox()
    with channel.subscribe(inbox, backoff=fast, on_error=on_error):
        assert failed.wait(WAIT)
        channel.client.delete(channel.key)
        channel.publish("v1")
        assert inbox.next() == "v1"
    assert isinstance(errors[0], tierpolicy.StoreError)
    assert isinstance(errors[0].__cause__, redis.ResponseError)


class Glitchy(PolicyChannel):
    """A channel whose first re-read fails with something no one expected."""

    glitched = False

    def current(self) -> str | None:
        """Fail once, then read the version."""
        if not self.glitched:
            self.glitched = True
            raise RuntimeError("glitch")
        return super().current()


def test_an_unexpected_error_in_the_thread_is_reported_and_survived(redis_server, redis_prefix):
    """Anything else going wrong in the subscription thread is reported, and the thread carries on."""
    channel = Glitchy.from_url(redis_server.url, prefix=redis_prefix)
    errors: list[BaseException] = []
    inbox = Inbox()
    with channel.subscribe(inbox, backoff=fast, on_error=errors.append) as subscription:
        channel.publish("v1")
        assert inbox.next() == "v1"
        assert subscription.alive
    channel.close()
    assert [str(e) for e in errors] == ["glitch"]


def test_close_stops_the_thread_even_while_it_waits_to_reconnect(own_redis_server, redis_prefix):
    """Closed during a long backoff, the thread ends at once (close joins it)."""
    failed = threading.Event()

    def backoff(failures: int) -> float:  # noqa: ARG001  the backoff signature
        failed.set()
        return 3_600.0

    with channel_on(own_redis_server.url, redis_prefix) as channel:
        subscription = channel.subscribe(Inbox(), backoff=backoff, on_error=lambda _: None)
        assert subscription.wait_subscribed(WAIT)
        own_redis_server.stop()
        assert failed.wait(WAIT)
        subscription.close()
        assert subscription.closed
        assert not subscription.alive


def test_close_stops_a_listening_thread(channel):
    """Closed while listening, the thread ends; a callback may close its own subscription."""
    subscription = channel.subscribe(Inbox(), backoff=fast)
    assert subscription.wait_subscribed(WAIT)
    subscription.close()
    assert not subscription.alive
    assert not subscription.subscribed

    holder: list[object] = []
    done = threading.Event()

    def close_myself(version: str) -> None:  # noqa: ARG001  the callback signature
        holder[0].close()  # type: ignore[attr-defined]
        done.set()

    holder.append(channel.subscribe(close_myself, backoff=fast))
    channel.publish("v1")
    assert done.wait(WAIT)
    holder[0]._thread.join(WAIT)  # type: ignore[attr-defined]
    assert not holder[0].alive  # type: ignore[attr-defined]


def test_the_default_backoff_grows_with_jitter_and_is_capped():
    """0.05-0.1 s after one failure, doubling, never above 5 s."""
    assert 0.05 <= default_backoff(1) <= 0.1
    assert 0.1 <= default_backoff(2) <= 0.2
    assert all(2.5 <= default_backoff(n) <= 5.0 for n in (7, 30, 10_000))


# --------------------------------------------------------------------------- asyncio


def test_watch_yields_the_current_then_each_new_version(redis_server, redis_prefix):
    """The async iterator starts with the current version and then yields each published one."""

    async def scenario() -> list[str]:
        channel = PolicyChannel.from_url(redis_server.url, prefix=redis_prefix)
        await channel.apublish("v1")
        seen: list[str] = []
        async with contextlib.aclosing(channel.watch(backoff=fast)) as versions:
            async for version in versions:
                seen.append(version)
                if version == "v1":
                    assert await channel.apublish("v1") == 1  # the same again: not yielded
                    assert await channel.apublish("v2") == 1
                else:
                    break
        assert await channel.acurrent() == "v2"
        await channel.aclose()
        return seen

    assert asyncio.run(scenario()) == ["v1", "v2"]


def test_watch_skips_the_known_version(redis_server, redis_prefix):
    """With known= the current version is not yielded again."""

    async def scenario() -> str:
        channel = PolicyChannel.from_url(redis_server.url, prefix=redis_prefix)
        await channel.apublish("v1")
        async with contextlib.aclosing(channel.watch(known="v1", backoff=fast)) as versions:
            waiting = asyncio.ensure_future(anext(versions))
            for _ in range(int(WAIT / 0.01)):  # publish until the watcher has subscribed and hears it
                if await channel.apublish("v2"):
                    break
                await asyncio.sleep(0.01)
            version = await asyncio.wait_for(waiting, WAIT)
        await channel.aclose()
        return version

    assert asyncio.run(scenario()) == "v2"


def test_watch_reconnects_and_catches_up_after_redis_restarts(own_redis_server, redis_prefix):
    """Redis restarts: the watcher reconnects, yields the version published meanwhile, then the next."""
    errors: list[BaseException] = []

    async def scenario() -> list[str]:
        channel = PolicyChannel.from_url(own_redis_server.url, prefix=redis_prefix)
        publisher = PolicyChannel.from_url(own_redis_server.url, prefix=redis_prefix)

        def backoff(failures: int) -> float:
            if failures == 1:  # Redis is back, and v2 published, before the watcher resubscribes
                own_redis_server.start()
                publisher.publish("v2")
            return 0.01

        seen: list[str] = []
        async with contextlib.aclosing(channel.watch(backoff=backoff, on_error=errors.append)) as versions:
            await channel.apublish("v1")
            async for version in versions:
                seen.append(version)
                if version == "v1":
                    own_redis_server.stop()
                elif version == "v2":
                    await channel.apublish("v3")
                else:
                    break
        await channel.aclose()
        publisher.close()
        return seen

    assert asyncio.run(asyncio.wait_for(scenario(), 3 * WAIT)) == ["v1", "v2", "v3"]
    assert isinstance(errors[0], tierpolicy.StoreUnavailableError)


# --------------------------------------------------------------------------- reloading a PolicyHolder


def test_a_replica_reloads_its_policy_holder_on_a_new_version(channel, small_set):
    """The documented pattern: the callback reloads a PolicyHolder from the version's directory."""
    engines = {"v1": tierpolicy.Engine(small_set), "v2": tierpolicy.Engine(small_set)}
    holder = tierpolicy.PolicyHolder(engines["v1"], loader=lambda path: engines[str(path)])
    swapped = threading.Event()

    def reload(version: str) -> None:
        holder.reload(version)
        swapped.set()

    with channel.subscribe(reload, known="v1", backoff=fast) as subscription:
        assert subscription.wait_subscribed(WAIT)
        channel.publish("v2")
        assert swapped.wait(WAIT)
    assert holder.engine is engines["v2"]


# --------------------------------------------------------------------------- validation and construction


@pytest.mark.parametrize(
    ("version", "message"),
    [
        ("", "cannot be empty"),
        ("x" * (MAX_VERSION_LENGTH + 1), "at most 256 characters, not 257"),
        ("v1\n", r"control characters \('\\n' at 2\)"),
        ("v\x7f", "control characters"),
        ("v\x85", "control characters"),
    ],
)
def test_bad_versions_are_rejected(channel, version, message):
    """Empty, too long, or with control characters: ValueError, before Redis is asked."""
    with pytest.raises(ValueError, match=message):
        channel.publish(version)
    with pytest.raises(ValueError, match=message):
        asyncio.run(channel.apublish(version))
    with pytest.raises(ValueError, match=message):
        channel.subscribe(Inbox(), known=version)
    assert channel.client.exists(channel.key) == 0


def test_a_version_is_a_string(channel):
    """Anything but a string is a TypeError; a long release tag is fine."""
    with pytest.raises(TypeError, match="a policy version is a string, not int"):
        validate_version(42)
    tag = "release-2026.11.28+build." + "7" * 200
    assert validate_version(tag) == tag
    channel.publish(tag)
    assert channel.current() == tag


def test_redis_down_is_store_unavailable(own_redis_server, redis_prefix):
    """Publish and current with Redis stopped: StoreUnavailableError from the driver's error."""
    with channel_on(own_redis_server.url, redis_prefix) as channel:
        own_redis_server.stop()
        for method in (lambda: channel.publish("v1"), channel.current):
            with pytest.raises(tierpolicy.StoreUnavailableError) as info:
                method()
            assert isinstance(info.value.__cause__, redis.ConnectionError)

        async def scenario() -> None:
            with pytest.raises(tierpolicy.StoreUnavailableError):
                await channel.apublish("v1")
            with pytest.raises(tierpolicy.StoreUnavailableError):
                await channel.acurrent()
            await channel.aclose()

        asyncio.run(scenario())


def test_a_flushed_script_cache_is_reloaded(channel):
    """After SCRIPT FLUSH the publish script is loaded again, sync and async."""
    channel.client.script_flush()
    channel.publish("v1")

    async def scenario() -> None:
        await channel.async_client.script_flush()
        await channel.apublish("v2")
        await channel.aclose()

    asyncio.run(scenario())
    assert channel.current() == "v2"


def test_a_key_of_another_type_is_a_store_error(channel):
    """A hash at the version key: a StoreError caused by Redis's WRONGTYPE."""
    channel.client.hset(channel.key, "a", "b")
    with pytest.raises(tierpolicy.StoreError) as info:
        channel.current()
    assert isinstance(info.value.__cause__, redis.ResponseError)


def test_construction_and_client_kinds(redis_server, redis_prefix):
    """No client or a bad URL is refused; a channel offers only what its clients allow."""
    with pytest.raises(ValueError, match="give a Redis client"):
        PolicyChannel()
    with pytest.raises(tierpolicy.StoreError, match="unsupported Redis URL scheme"):
        PolicyChannel.from_url("http://localhost")
    client = sync_client(redis_server.url)
    sync_only = PolicyChannel(client, prefix=redis_prefix)
    assert sync_only.name == f"redis://127.0.0.1:{redis_server.port}/0"
    with pytest.raises(TypeError, match="only a sync client"):
        asyncio.run(sync_only.acurrent())
    sync_only.close()  # the caller's client stays open
    assert sync_only.current() is None
    client.close()

    async def scenario() -> None:
        aclient = async_client(redis_server.url)
        async_only = PolicyChannel(async_client=aclient, prefix=redis_prefix)
        with pytest.raises(TypeError, match="only an asyncio client"):
            async_only.subscribe(Inbox())
        assert await async_only.acurrent() is None
        await async_only.aclose()
        await aclient.aclose()

    asyncio.run(scenario())


def test_watch_needs_a_client_with_pub_sub(redis_server):
    """redis-py's asyncio cluster client has no pub/sub: watch says so."""

    async def scenario() -> None:
        cluster = redis.asyncio.cluster.RedisCluster(host="127.0.0.1", port=redis_server.port)
        channel = PolicyChannel(async_client=cluster)
        with pytest.raises(TypeError, match="has no pub/sub"):
            await anext(channel.watch())

    asyncio.run(scenario())
