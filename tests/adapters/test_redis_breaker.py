"""Tests of the Redis breaker store against a real redis-server of the tests' own."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import threading
import time
import uuid
from typing import TYPE_CHECKING

import pytest
import redis
import redis.asyncio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tierpolicy
from strategies import breaker_policies
from support import count_breaker
from tierpolicy.adapters.redis._breaker import (
    MAX_TTL,
    RedisBreakerStore,
    decode,
    encode,
    ttl_seconds,
)
from tierpolicy.adapters.redis._connect import async_client, describe, sync_client
from tierpolicy.engine._breaker import (
    BreakerData,
    BreakerState,
    InMemoryBreakerStore,
    Permit,
    Rejection,
    Transition,
    Window,
)
from tierpolicy.engine._executor import BreakerStoreFailed, Executor

if TYPE_CHECKING:
    from tierpolicy.engine._resilience import BreakerPolicy

pytestmark = pytest.mark.redis

KEY = "payments.capture"
POLICY = count_breaker()


class Clock:
    """A fake clock: the caller's, and (injected) the shared time base's."""

    def __init__(self, now: float = 1_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        """The current fake time."""
        return self.now


@contextlib.contextmanager
def replica(url: str, prefix: str, **options: object):
    """A store with a client of its own, as another replica of the service would have."""
    options.setdefault("retry_interval", 0)
    store = RedisBreakerStore.from_url(url, prefix=prefix, **options)  # type: ignore[arg-type]
    try:
        yield store
    finally:
        store.close()


@pytest.fixture
def store(redis_server, redis_prefix):
    """A store on the session's server, under this test's prefix."""
    with replica(redis_server.url, redis_prefix) as made:
        yield made


def fail(store, count: int, now: float, policy: BreakerPolicy = POLICY, key: str = KEY) -> list[Transition]:
    """Acquire and record ``count`` failures; the transitions reported."""
    reported: list[Transition] = []
    for _ in range(count):
        permit = store.acquire(key, policy, now)
        assert isinstance(permit, Permit)
        reported += store.record(key, policy, permit, "failure", 0.1, now)
    return reported


# --------------------------------------------------------------------------- the same answers as in memory


OPERATIONS = st.lists(
    st.one_of(
        st.tuples(st.just("advance"), st.sampled_from((0.25, 0.5, 1.0, 2.0, 5.0))),
        st.tuples(st.just("acquire"), st.just(0)),
        st.tuples(
            st.just("record"),
            st.tuples(
                st.integers(0, 10),
                st.sampled_from(("success", "success", "failure", "ignored")),
                st.sampled_from((0.1, 1.0, 3.0)),
            ),
        ),
    ),
    max_size=40,
)


@settings(max_examples=75, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(policy=breaker_policies(), operations=OPERATIONS)
def test_answers_exactly_as_the_in_memory_store(policy, operations, redis_server, redis_prefix):
    """Any sequence of acquires, records and clock moves: the same permits, rejections, transitions, snapshots."""
    clock = Clock()
    key = f"op-{uuid.uuid4().hex[:8]}"
    memory = InMemoryBreakerStore()
    outstanding: list[Permit] = []
    with replica(redis_server.url, redis_prefix, server_clock=clock) as shared:
        for operation, argument in operations:
            if operation == "advance":
                clock.now += argument
            elif operation == "acquire":
                answer = shared.acquire(key, policy, clock.now)
                assert answer == memory.acquire(key, policy, clock.now)
                if isinstance(answer, Permit):
                    outstanding.append(answer)
            elif outstanding:
                index, outcome, duration = argument
                permit = outstanding.pop(index % len(outstanding))
                got = shared.record(key, policy, permit, outcome, duration, clock.now)
                assert got == memory.record(key, policy, permit, outcome, duration, clock.now)
            assert shared.snapshot(key, clock.now) == memory.snapshot(key, clock.now)


def test_times_are_handed_back_in_the_callers_clock(store):
    """Redis TIME is the time base; retry_at, transition times and open_until come back in the caller's clock."""
    now = 42.0  # a monotonic clock: nowhere near Redis's epoch seconds
    [opened] = fail(store, 4, now)
    assert opened.at == pytest.approx(now, abs=1.0)
    rejection = store.acquire(KEY, POLICY, now)
    assert isinstance(rejection, Rejection)
    assert rejection.retry_at == pytest.approx(now + POLICY.wait_in_open, abs=1.0)
    assert store.snapshot(KEY, now).open_until == pytest.approx(now + POLICY.wait_in_open, abs=1.0)
    stored = decode(store.client.get(store.key(KEY)).decode())
    assert stored.changed_at == pytest.approx(time.time(), abs=60.0)  # epoch seconds: Redis's clock


def test_a_half_open_breaker_hands_back_converted_transitions(redis_server, redis_prefix):
    """The open-to-half-open transition of a permit is in the caller's clock too."""
    shared = Clock(5_000.0)
    with replica(redis_server.url, redis_prefix, server_clock=shared) as store:
        fail(store, 4, 7.0)
        shared.now += 10.0
        permit = store.acquire(KEY, POLICY, 17.0)
        assert isinstance(permit, Permit)
        assert permit.transitions == (
            Transition(KEY, BreakerState.OPEN, BreakerState.HALF_OPEN, 17.0, "wait_elapsed"),
        )
        assert isinstance(store.acquire(KEY, POLICY, 17.0), Permit)  # the second of two probes
        assert store.acquire(KEY, POLICY, 17.0) == Rejection(KEY, BreakerState.HALF_OPEN, None)


# --------------------------------------------------------------------------- one breaker for every replica


def test_replicas_share_one_breaker(redis_server, redis_prefix):
    """Failures recorded by one replica open the breaker for another, which rejects."""
    with replica(redis_server.url, redis_prefix) as first, replica(redis_server.url, redis_prefix) as second:
        assert first.client is not second.client
        fail(first, 2, 0.0)
        fail(second, 2, 0.0)
        for store in (first, second):
            rejection = store.acquire(KEY, POLICY, 0.0)
            assert isinstance(rejection, Rejection)
            assert rejection.state is BreakerState.OPEN


def test_exactly_one_replica_reports_the_opening(redis_server, redis_prefix):
    """Eight threads on their own clients record failures at once: one of them reports CLOSED -> OPEN."""
    policy = dataclasses.replace(POLICY, window_size=20, minimum_calls=10, wait_in_open=600.0)
    threads, barrier = 8, threading.Barrier(8)
    reported: list[Transition] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def hammer() -> None:
        with replica(redis_server.url, redis_prefix) as store:
            barrier.wait()
            try:
                for _ in range(5):
                    permit = store.acquire(KEY, policy, 0.0)
                    if isinstance(permit, Permit):
                        changes = store.record(KEY, policy, permit, "failure", 0.1, 0.0)
                        with lock:
                            reported.extend(changes)
            except tierpolicy.StoreError as exc:
                errors.append(exc)

    pool = [threading.Thread(target=hammer) for _ in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    assert errors == []
    assert [(t.from_state, t.to_state) for t in reported] == [(BreakerState.CLOSED, BreakerState.OPEN)]
    with replica(redis_server.url, redis_prefix) as store:
        assert store.snapshot(KEY, 0.0).openings == 1


def test_half_open_permits_are_handed_out_exactly_once_across_replicas(redis_server, redis_prefix):
    """Twelve replicas ask a half-open breaker at once: exactly the permitted probes are admitted."""
    policy = dataclasses.replace(POLICY, permitted_calls_in_half_open=3)
    shared = Clock()
    with replica(redis_server.url, redis_prefix, server_clock=shared) as store:
        fail(store, 4, 0.0, policy)
    shared.now += policy.wait_in_open
    threads, barrier = 12, threading.Barrier(12)
    answers: list[Permit | Rejection] = []
    lock = threading.Lock()

    def probe() -> None:
        with replica(redis_server.url, redis_prefix, server_clock=shared) as store:
            barrier.wait()
            answer = store.acquire(KEY, policy, 0.0)
            with lock:
                answers.append(answer)

    pool = [threading.Thread(target=probe) for _ in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    permits = [a for a in answers if isinstance(a, Permit)]
    assert len(permits) == 3
    assert sum(len(a.transitions) for a in answers) == 1  # one caller saw OPEN -> HALF_OPEN


def test_sync_and_async_share_the_same_key(store):
    """Failures recorded with the sync client open the breaker for the asyncio client, and back."""

    async def scenario() -> None:
        rejection = await store.aacquire(KEY, POLICY, 0.0)
        assert isinstance(rejection, Rejection)
        await store.areset(KEY)
        for _ in range(4):
            permit = await store.aacquire(KEY, POLICY, 0.0)
            assert isinstance(permit, Permit)
            await store.arecord(KEY, POLICY, permit, "failure", 0.1, 0.0)
        assert (await store.asnapshot(KEY, 0.0)).state is BreakerState.OPEN
        await store.aclose()

    fail(store, 4, 0.0)
    asyncio.run(scenario())
    assert store.snapshot(KEY, 0.0).state is BreakerState.OPEN


def test_a_snapshot_without_the_policy_has_the_state_and_counts(redis_server, redis_prefix, store):
    """A replica that never used the breaker sees state and counts; given the policy, rates too."""
    fail(store, 2, 0.0)
    with replica(redis_server.url, redis_prefix) as other:
        bare = other.snapshot(KEY, 0.0)
        assert (bare.state, bare.calls, bare.failures, bare.failure_rate) == (BreakerState.CLOSED, 2, 2, None)
        full = other.snapshot(KEY, 0.0, POLICY)
        assert full == store.snapshot(KEY, 0.0)


def test_reset_forgets_the_breaker_for_every_replica(store):
    """After reset the breaker is fresh and closed, and its key is gone."""
    fail(store, 4, 0.0)
    store.reset(KEY)
    assert store.client.exists(store.key(KEY)) == 0
    assert store.acquire(KEY, POLICY, 0.0) == Permit(KEY, 0, BreakerState.CLOSED)


# --------------------------------------------------------------------------- the key and its TTL


def test_the_key_layout_and_compact_value(store, redis_prefix):
    """One key per breaker, hash-tagged by the breaker key, holding compact JSON."""
    assert store.key(KEY) == f"{redis_prefix}cb:{{{KEY}}}"
    assert store.prefix == redis_prefix
    fail(store, 1, 0.0)
    assert store.client.keys(f"{redis_prefix}*") == [store.key(KEY).encode()]
    assert store.client.get(store.key(KEY)).decode().startswith('[1,0,0,0,0.0,0,1,1,0,"1",[]')


def test_every_write_sets_a_ttl(store):
    """The value is written with its TTL: a day at least."""
    fail(store, 1, 0.0)
    pttl = store.client.pttl(store.key(KEY))
    assert 0.9 * 86_400_000 < pttl <= 86_400_000


def test_an_unchanged_breaker_refreshes_a_ttl_running_low(redis_server, redis_prefix):
    """A step that changes nothing rewrites the value only once less than half of its TTL is left."""
    with replica(redis_server.url, redis_prefix, min_ttl=100.0) as store:
        fail(store, 1, 0.0)
        key = store.key(KEY)
        store.client.pexpire(key, 60_000)
        store.acquire(KEY, POLICY, 0.0)  # a closed breaker's permit changes nothing
        assert store.client.pttl(key) <= 60_000
        store.client.pexpire(key, 40_000)
        store.acquire(KEY, POLICY, 0.0)
        assert store.client.pttl(key) > 90_000


def test_an_expired_breaker_is_a_fresh_closed_one(store):
    """When the key expires, the breaker starts again closed with an empty window."""
    fail(store, 4, 0.0)
    key = store.key(KEY)
    store.client.pexpire(key, 1)
    deadline = time.monotonic() + 5
    while store.client.exists(key) and time.monotonic() < deadline:
        time.sleep(0.005)
    assert store.acquire(KEY, POLICY, 0.0) == Permit(KEY, 0, BreakerState.CLOSED)
    assert store.snapshot(KEY, 0.0).calls == 0


def test_a_fresh_breaker_that_nothing_changes_writes_no_key(store):
    """Acquiring a closed breaker with no key leaves no key: absent already means fresh."""
    assert isinstance(store.acquire(KEY, POLICY, 0.0), Permit)
    assert store.client.exists(store.key(KEY)) == 0


def test_ttl_outlives_the_window_and_the_open_wait():
    """Twice the longest time the state matters, at least min_ttl, at most 30 days."""
    time_window = dataclasses.replace(POLICY, window_type="time", window_size=600)
    assert ttl_seconds(time_window, BreakerData(), 60.0) == 1_200.0
    assert ttl_seconds(POLICY, BreakerData(), 60.0) == 60.0
    opened = BreakerData(state=BreakerState.OPEN, openings=3)
    assert ttl_seconds(POLICY, opened, 1.0) == 2 * POLICY.open_wait(3)
    half_open = dataclasses.replace(POLICY, max_wait_in_half_open=45.0)
    assert ttl_seconds(half_open, BreakerData(state=BreakerState.HALF_OPEN), 1.0) == 90.0
    forever = dataclasses.replace(POLICY, max_wait_in_open=float("inf"), wait_multiplier=10.0)
    assert ttl_seconds(forever, BreakerData(state=BreakerState.OPEN, openings=60), 1.0) == MAX_TTL


# --------------------------------------------------------------------------- the stored form


def test_the_stored_form_round_trips_without_the_permit():
    """Encoding keeps everything but the cached permit, which acquire rebuilds."""
    data = BreakerData(
        state=BreakerState.HALF_OPEN,
        generation=7,
        window=Window(3, 1, 2, (), ((10, 2, 1, 1), (11, 1, 0, 1))),
        openings=2,
        changed_at=1_764_000_000.25,
        issued=1,
        probes=Window(1, 0, 1),
        permit=Permit("k", 7, BreakerState.HALF_OPEN),
    )
    assert decode(encode(data)) == data._replace(permit=None)
    counted = BreakerData(window=Window(4, 2, 1, (0, 1, 3, 2)))
    assert decode(encode(counted)) == counted


@pytest.mark.parametrize(
    "text",
    [
        "not json",
        "{}",
        '[2,0,0,0,0.0,0,0,0,0,"",[],0,0,0]',
        '[1,3,0,0,0.0,0,0,0,0,"",[],0,0,0]',
        '[1,0,0,0,0.0,0,0,0,0,"4",[],0,0,0]',
        '[1,0,0,0,0.0,0,0,0,0,"",[1,2,3],0,0,0]',
        '[1,0,"0",0,0.0,0,0,0,0,"",[],0,0,0]',
        '[1,0,0,0,"0",0,0,0,0,"",[],0,0,0]',
        "[1,0,0,0,0.0,0,0,0,0,[],[],0,0,0]",
        "[1,0,0]",
    ],
)
def test_a_value_that_is_not_a_breaker_state_is_rejected(text):
    """The decoder refuses anything the encoder could not have written."""
    with pytest.raises(ValueError, match="not a stored breaker state"):
        decode(text)


def test_a_foreign_value_at_the_key_is_a_store_error(store):
    """Something else at the breaker's key: StoreError (not unavailable), for acquire and snapshot."""
    store.client.set(store.key(KEY), "hello")
    with pytest.raises(tierpolicy.StoreError, match="is not a breaker state") as info:
        store.acquire(KEY, POLICY, 0.0)
    assert not isinstance(info.value, tierpolicy.StoreUnavailableError)
    with pytest.raises(tierpolicy.StoreError):
        store.snapshot(KEY, 0.0)


def test_a_key_of_another_type_is_a_store_error_from_redis(store):
    """A hash at the breaker's key: Redis's WRONGTYPE, as a StoreError caused by the driver's error."""
    store.client.hset(store.key(KEY), "a", "b")
    with pytest.raises(tierpolicy.StoreError) as info:
        store.acquire(KEY, POLICY, 0.0)
    assert isinstance(info.value.__cause__, redis.ResponseError)


def test_a_reply_that_is_not_the_read_scripts_is_a_store_error(store):
    """A script of another version under the same SHA would answer otherwise: StoreError, not a crash."""
    for reply in ([b"1"], [b"x", b"0", None, -2], None):
        with pytest.raises(tierpolicy.StoreError, match="unexpected reply"):
            store._core._read(reply)


# --------------------------------------------------------------------------- contention


def test_a_change_beaten_every_time_gives_up_as_unavailable(store):
    """When another writer changes the key between every read and write, the store gives up after its attempts."""
    other = store.client
    key = store.key(KEY)
    fail(store, 1, 0.0)

    def meddle() -> float:
        """The shared clock, read between the read and the write: another replica writes meanwhile."""
        value = decode(other.get(key).decode())
        other.set(key, encode(value._replace(changed_at=value.changed_at + 1)))
        return time.time()

    store._core.server_clock = meddle
    store._core.attempts = 3
    permit = Permit(KEY, 0, BreakerState.CLOSED)
    with pytest.raises(tierpolicy.StoreUnavailableError, match="changed under every one of 3 attempts"):
        store.record(KEY, POLICY, permit, "success", 0.1, 0.0)

    async def scenario() -> None:
        with pytest.raises(tierpolicy.StoreUnavailableError):
            await store.arecord(KEY, POLICY, permit, "failure", 0.1, 0.0)
        await store.aclose()

    asyncio.run(scenario())


# --------------------------------------------------------------------------- Redis down


def test_redis_down_is_store_unavailable_and_back_is_back(own_redis_server, redis_prefix):
    """Stopped: StoreUnavailableError from a redis-py error, sync and async; restarted: it works again."""
    with replica(own_redis_server.url, redis_prefix) as store:
        fail(store, 1, 0.0)
        own_redis_server.stop()
        with pytest.raises(tierpolicy.StoreUnavailableError) as info:
            store.acquire(KEY, POLICY, 0.0)
        assert isinstance(info.value.__cause__, redis.ConnectionError)
        assert store.name in str(info.value)

        async def down() -> None:
            with pytest.raises(tierpolicy.StoreUnavailableError) as ainfo:
                await store.aacquire(KEY, POLICY, 0.0)
            assert isinstance(ainfo.value.__cause__, redis.ConnectionError)
            await store.aclose()

        asyncio.run(down())
        own_redis_server.start()
        assert isinstance(store.acquire(KEY, POLICY, 0.0), Permit)
        assert store.snapshot(KEY, 0.0).calls == 0  # the restarted server kept nothing (no persistence)


def test_after_redis_was_down_the_store_leaves_it_alone_a_while(own_redis_server, redis_prefix):
    """Within retry_interval of a failure the store raises at once, from the failure it saw."""
    with replica(own_redis_server.url, redis_prefix, retry_interval=3_600) as store:
        own_redis_server.stop()
        with pytest.raises(tierpolicy.StoreUnavailableError) as first:
            store.acquire(KEY, POLICY, 0.0)
        own_redis_server.start()
        with pytest.raises(tierpolicy.StoreUnavailableError, match="not asking again yet") as second:
            store.acquire(KEY, POLICY, 0.0)
        assert second.value.__cause__ is first.value.__cause__


def test_a_flushed_script_cache_is_reloaded(store):
    """After SCRIPT FLUSH (a restarted server, a failover) the scripts are loaded again, sync and async."""
    fail(store, 1, 0.0)
    store.client.script_flush()
    fail(store, 1, 0.0)

    async def scenario() -> None:
        await store.async_client.script_flush()
        assert (await store.asnapshot(KEY, 0.0)).calls == 2
        await store.aclose()

    asyncio.run(scenario())


# --------------------------------------------------------------------------- construction


def test_construction_errors(redis_server):
    """No client, a braced prefix, out-of-range numbers and a bad URL are refused at once."""
    with pytest.raises(ValueError, match="give a Redis client"):
        RedisBreakerStore()
    with pytest.raises(ValueError, match="cannot contain"):
        RedisBreakerStore.from_url(redis_server.url, prefix="{app}:")
    for options, message in (
        ({"min_ttl": 0}, "min_ttl"),
        ({"attempts": 0}, "attempts"),
        ({"retry_interval": -1}, "retry_interval"),
    ):
        with pytest.raises(ValueError, match=message):
            RedisBreakerStore.from_url(redis_server.url, **options)  # type: ignore[arg-type]
    with pytest.raises(tierpolicy.StoreError, match="unsupported Redis URL scheme"):
        RedisBreakerStore.from_url("http://localhost")


def test_a_store_with_one_kind_of_client_refuses_the_other_kind(redis_server, redis_prefix):
    """A sync-only store has no async methods to offer, and the other way round: TypeError."""
    client = sync_client(redis_server.url)
    sync_only = RedisBreakerStore(client, prefix=redis_prefix)
    assert sync_only.name == f"redis://127.0.0.1:{redis_server.port}/0"
    with pytest.raises(TypeError, match="only a sync client"):
        asyncio.run(sync_only.aacquire(KEY, POLICY, 0.0))
    sync_only.close()  # the caller's client stays open
    assert isinstance(sync_only.acquire(KEY, POLICY, 0.0), Permit)
    client.close()

    async def scenario() -> None:
        aclient = async_client(redis_server.url)
        async_only = RedisBreakerStore(async_client=aclient, prefix=redis_prefix)
        with pytest.raises(TypeError, match="only an asyncio client"):
            async_only.acquire(KEY, POLICY, 0.0)
        assert isinstance(await async_only.aacquire(KEY, POLICY, 0.0), Permit)
        await async_only.aclose()
        await aclient.aclose()

    asyncio.run(scenario())


def test_describe_names_a_server_without_its_password():
    """Unix sockets, TCP servers and other clients get a name for messages."""
    assert describe(redis.Redis(unix_socket_path="/run/redis.sock")) == "unix:///run/redis.sock"
    secret = uuid.uuid4().hex
    assert describe(redis.Redis(host="cache", port=6380, db=2, password=secret)) == "redis://cache:6380/2"
    assert describe(object()) == "redis (object)"


# --------------------------------------------------------------------------- through the executor

RESILIENCE = """\
apiVersion: tierpolicy/v1
kind: Resilience
metadata: {name: resilience}
spec:
  operations:
    payments.capture:
      circuit_breaker:
        window: {type: count, size: 2}
        minimum_calls: 2
        failure_rate_threshold: 100
        wait_in_open: 60s
        permitted_calls_in_half_open: 1
"""


@pytest.fixture(scope="module")
def engine() -> tierpolicy.Engine:
    """An engine with one breaker on payments.capture (no Errors document: failures are INTERNAL)."""
    return tierpolicy.Engine(tierpolicy.load_files({"resilience.yaml": RESILIENCE}))


def down() -> object:
    """A dependency that is down."""
    raise ConnectionRefusedError


async def adown() -> object:
    """The awaitable twin of :func:`down`."""
    raise ConnectionRefusedError


def test_executors_on_two_replicas_share_the_breaker_sync(engine, redis_server, redis_prefix):
    """Two executors (two replicas): failures through one open the breaker for the other's run()."""
    with replica(redis_server.url, redis_prefix) as first, replica(redis_server.url, redis_prefix) as second:
        one, other = Executor(engine, breaker_store=first), Executor(engine, breaker_store=second)
        for _ in range(2):
            with pytest.raises(tierpolicy.ResilienceError):
                one.run(KEY, down)
        with pytest.raises(tierpolicy.CircuitOpenError) as info:
            other.run(KEY, lambda: "never called")
        assert info.value.retry_in == pytest.approx(60.0, abs=5.0)


def test_executors_on_two_replicas_share_the_breaker_async(engine, redis_server, redis_prefix):
    """The same with arun, which awaits the store's asyncio methods."""

    async def scenario() -> None:
        with (
            replica(redis_server.url, redis_prefix) as first,
            replica(redis_server.url, redis_prefix) as second,
        ):
            events: list[object] = []
            one = Executor(engine, breaker_store=first, on_event=events.append)
            other = Executor(engine, breaker_store=second)
            assert one._async_store is first
            for _ in range(2):
                with pytest.raises(tierpolicy.ResilienceError):
                    await one.arun(KEY, adown)
            assert any(isinstance(e, tierpolicy.BreakerTransition) and e.to_state == "open" for e in events)
            with pytest.raises(tierpolicy.CircuitOpenError):
                await other.arun(KEY, adown)
            await first.aclose()
            await second.aclose()

    asyncio.run(scenario())


def test_an_executor_lets_calls_through_while_redis_is_down(engine, own_redis_server, redis_prefix):
    """Redis stopped: run and arun make their calls as if the breaker were closed, and say why."""
    with replica(own_redis_server.url, redis_prefix) as store:
        events: list[object] = []
        executor = Executor(engine, breaker_store=store, on_event=events.append)
        own_redis_server.stop()
        assert executor.run(KEY, lambda: "made") == "made"

        async def made() -> str:
            return "made"

        async def scenario() -> str:
            try:
                return await executor.arun(KEY, made)
            finally:
                await store.aclose()

        assert asyncio.run(scenario()) == "made"
        failed = [e for e in events if isinstance(e, BreakerStoreFailed)]
        assert [(e.step, e.error) for e in failed] == [
            ("acquire", "tierpolicy.engine.StoreUnavailableError")
        ] * 2


# --------------------------------------------------------------------------- listing the breakers


async def listed(store: RedisBreakerStore) -> list[str]:
    """abreakers(), then the asyncio client closed in the loop that opened it."""
    try:
        return await store.abreakers()
    finally:
        await store.aclose()


def test_breakers_lists_the_breakers_under_its_prefix_alone(redis_server, redis_prefix):
    """breakers() and abreakers() name this prefix's breakers, sorted; a prefix's glob characters match only themselves."""
    # Unescaped, the pattern of "<p>a*:" would also match the keys of "<p>ab:".
    with (
        replica(redis_server.url, f"{redis_prefix}a*:") as mine,
        replica(redis_server.url, f"{redis_prefix}ab:") as other,
    ):
        for key in ("search.listings", "payments.capture", "payments.refund"):
            fail(mine, 1, 1_000.0, key=key)
        fail(other, 1, 1_000.0, key="shipping.quote")
        assert mine.breakers() == ["payments.capture", "payments.refund", "search.listings"]
        assert asyncio.run(listed(mine)) == ["payments.capture", "payments.refund", "search.listings"]
        assert other.breakers() == ["shipping.quote"]
        assert len(mine.breakers(limit=2)) == 2
        mine.reset("payments.refund")
        assert mine.breakers() == ["payments.capture", "search.listings"]
        with pytest.raises(ValueError, match="at least 1"):
            mine.breakers(limit=0)


def test_breakers_of_a_stopped_server_raise_the_library_error(own_redis_server):
    """Listing breakers on a Redis that is down raises StoreUnavailableError, not a redis-py error."""
    with replica(own_redis_server.url, "t:", socket_timeout=1, socket_connect_timeout=1) as shared:
        fail(shared, 1, 1_000.0)
        own_redis_server.stop()
        with pytest.raises(tierpolicy.StoreUnavailableError):
            shared.breakers()
        with pytest.raises(tierpolicy.StoreUnavailableError):
            asyncio.run(listed(shared))


def test_breakers_are_listed_from_every_node_of_a_cluster(redis_cluster, redis_prefix):
    """On Redis Cluster the breakers, whose hash tags spread them over the nodes, are all listed, sync and asyncio."""
    names = [f"op-{i}" for i in range(12)]
    with replica(redis_cluster.url, redis_prefix) as shared:
        client = shared.client
        assert isinstance(client, redis.cluster.RedisCluster)
        for name in names:
            fail(shared, 1, 1_000.0, key=name)
        nodes = {client.get_node_from_key(shared.key(name)).name for name in names}
        assert len(nodes) == len(client.get_primaries())  # every primary holds some of them
        assert shared.breakers() == sorted(names)
        assert asyncio.run(listed(shared)) == sorted(names)
