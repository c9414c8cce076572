"""The Redis rate-limit store against real Redis: time, TTLs, scripts, slots, concurrency, outages."""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import time

import pytest
import redis
import redis.crc

import tierpolicy
from redisserver import TIMEOUTS, RedisServer, unique_prefix
from support import FakeClock
from tierpolicy.adapters import rate_limit_store
from tierpolicy.adapters.redis import SCRIPT, SCRIPT_SHA, RedisRateLimitStore
from tierpolicy.engine._gcra import GcraWindow
from tierpolicy.engine._ratelimit_store import Hit, InMemoryRateLimitStore

POLICY = """\
apiVersion: tierpolicy/v1
kind: Context
metadata: {name: ctx}
spec:
  attributes:
    request: {client_ip: string, route: string}
---
apiVersion: tierpolicy/v1
kind: Tiers
metadata: {name: t}
spec:
  tiers: [{name: bronze}, {name: gold}]
---
apiVersion: tierpolicy/v1
kind: RateLimits
metadata: {name: rl}
spec:
  limits:
    - name: open
      match: {routes: ["/open"]}
      key: seller.id
      windows: [{rate: 2/hour}]
      on_store_error: fail_open
    - name: closed
      match: {routes: ["/closed"]}
      key: seller.id
      windows: [{rate: 2/hour}]
      on_store_error: fail_closed
    - name: local
      match: {routes: ["/local"]}
      key: seller.id
      windows: [{rate: 8/hour}]
      on_store_error: local
    - name: per-seller
      match: {routes: ["/both"]}
      key: seller.id
      windows: [{rate: 5/hour}, {name: per-seller-burst, rate: 2/s}]
    - name: per-seller-route
      match: {routes: ["/both"]}
      key: seller.id + ":" + request.route
      partition: seller.id
      windows: [{rate: {bronze: 3/hour, gold: 6/hour}}]
    - name: per-address
      match: {routes: ["/both"]}
      key: request.client_ip
      windows: [{rate: 100/hour}]
"""

SELLER = {"seller": {"id": "s-1", "tier": "bronze"}, "request": {"client_ip": "10.0.0.1", "route": "/both"}}


@pytest.fixture(scope="module")
def policies() -> tierpolicy.PolicySet:
    """The limits above, compiled once."""
    return tierpolicy.load_files({"rl.yaml": POLICY}, root="t")


def window(quota: int, period: int) -> GcraWindow:
    """A window of ``quota`` per ``period`` seconds."""
    return GcraWindow(name="w", quota=quota, period=period, burst=quota)


# --------------------------------------------------------------------------- the script


def test_counters_use_the_servers_clock_and_carry_a_ttl(redis_server, redis_prefix):
    """Without an injected clock the script reads TIME; every written key gets a TTL no longer than its windows."""
    store = RedisRateLimitStore.from_url(redis_server.url, prefix=redis_prefix, **TIMEOUTS)
    step = store.hit_many([Hit("rl:{t}:ttl:t", (window(60, 60), window(10, 1)))])
    assert step.allowed
    raw = redis.Redis.from_url(redis_server.url)
    ttl = raw.pttl(redis_prefix + "rl:{t}:ttl:t")
    assert 0 < ttl <= 1000  # one unit of 60/minute refills in a second; so does one of 10/s
    tat = int(raw.get(redis_prefix + "rl:{t}:ttl:t").split(b",")[1])
    server_us = int(raw.time()[0]) * 1_000_000
    assert abs(tat - server_us) < 60_000_000  # server time, not some other clock
    raw.close()
    store.close()


def test_with_an_injected_clock_counters_outlive_real_time(redis_server, redis_prefix):
    """A frozen test clock keeps its counters: TTLs are a minute of real time at least, so a slow run cannot drop them."""
    store = RedisRateLimitStore.from_url(
        redis_server.url, prefix=redis_prefix, clock=FakeClock(1_700_000_000.0), **TIMEOUTS
    )
    fine = (window(1_000_000, 1),)  # a TAT one microsecond ahead: its TTL on the clock rounds to 1 ms
    first = store.hit_many([Hit("rl:{f}:fine:f", fine)]).results[0]
    time.sleep(0.02)  # far longer than that millisecond of real time
    second = store.hit_many([Hit("rl:{f}:fine:f", fine)]).results[0]
    assert (first.windows[0].remaining, second.windows[0].remaining) == (999_999, 999_998)
    raw = redis.Redis.from_url(redis_server.url)
    assert 59_000 < raw.pttl(redis_prefix + "rl:{f}:fine:f") <= 60_000
    raw.close()
    store.close()


def test_a_key_expires_once_its_windows_have_refilled(redis_server, redis_prefix):
    """A counter disappears from Redis when its windows are full again: no key lives forever."""
    store = RedisRateLimitStore.from_url(redis_server.url, prefix=redis_prefix, **TIMEOUTS)
    store.hit_many([Hit("rl:{e}:exp:e", (window(5, 1),))])
    raw = redis.Redis.from_url(redis_server.url)
    assert raw.exists(redis_prefix + "rl:{e}:exp:e") == 1
    deadline = time.monotonic() + 5
    while raw.exists(redis_prefix + "rl:{e}:exp:e") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert raw.exists(redis_prefix + "rl:{e}:exp:e") == 0
    raw.close()
    store.close()


def test_script_flush_is_survived_transparently(redis_server, redis_prefix):
    """After SCRIPT FLUSH the next hit reloads the script (NOSCRIPT) and keeps counting."""
    store = RedisRateLimitStore.from_url(redis_server.url, prefix=redis_prefix, **TIMEOUTS)
    h = Hit("rl:{f}:flush:f", (window(2, 3600),))
    assert store.hit_many([h]).allowed
    raw = redis.Redis.from_url(redis_server.url)
    raw.script_flush()
    assert raw.script_exists(SCRIPT_SHA) == [False]
    assert store.hit_many([h]).allowed
    assert raw.script_exists(SCRIPT_SHA) == [True]
    assert not store.hit_many([h]).allowed  # the count survived the flush
    raw.close()
    store.close()


def test_async_client_reloads_after_script_flush(redis_server, redis_prefix):
    """The asyncio shell also reloads the script after NOSCRIPT."""
    store = RedisRateLimitStore.from_url(redis_server.url, prefix=redis_prefix, **TIMEOUTS)
    h = Hit("rl:{af}:flush:af", (window(2, 3600),))
    raw = redis.Redis.from_url(redis_server.url)
    raw.script_flush()
    raw.close()

    async def run() -> list[bool]:
        answers = [(await store.ahit_many([h])).allowed for _ in range(3)]
        await store.aclose()
        return answers

    assert asyncio.run(run()) == [True, True, False]


def test_script_sha_is_the_sha1_of_the_shipped_script():
    """EVALSHA's name for the script is computed from the script itself."""
    import hashlib  # noqa: PLC0415  only this test needs it

    assert hashlib.sha1(SCRIPT.encode(), usedforsecurity=False).hexdigest() == SCRIPT_SHA


def test_a_prefix_with_braces_is_rejected():
    """A prefix cannot contain braces: they would become the cluster hash tag."""
    with pytest.raises(ValueError, match="hash tag"):
        RedisRateLimitStore(redis.Redis(), prefix="app{1}:")


def test_a_store_needs_a_client_or_a_url():
    """Constructing a store with nothing to connect with is a clear error."""
    with pytest.raises(ValueError, match="client"):
        RedisRateLimitStore()


def test_one_sided_stores_say_which_side_they_lack(redis_server, redis_prefix):
    """A store given only a sync client refuses async calls with a TypeError (a wiring mistake), and vice versa."""
    sync_only = RedisRateLimitStore(redis.Redis.from_url(redis_server.url), prefix=redis_prefix)
    with pytest.raises(TypeError, match="only a sync client"):
        asyncio.run(sync_only.ahit_many([Hit("rl:{o}:o:o", (window(1, 1),))]))
    sync_only.close()
    async_only = RedisRateLimitStore(async_client=redis.asyncio.Redis.from_url(redis_server.url))
    with pytest.raises(TypeError, match="only an asyncio client"):
        async_only.hit_many([Hit("rl:{o}:o:o", (window(1, 1),))])
    assert async_only.name == f"redis://127.0.0.1:{redis_server.port}/0"


def test_a_wrong_key_type_is_a_store_error_not_an_outage(redis_server, redis_prefix):
    """A counter key holding a list gives StoreError (not StoreUnavailableError) with redis-py's error as cause."""
    raw = redis.Redis.from_url(redis_server.url)
    raw.rpush(redis_prefix + "rl:{w}:wrong:w", "x")
    store = RedisRateLimitStore.from_url(redis_server.url, prefix=redis_prefix, **TIMEOUTS)
    with pytest.raises(tierpolicy.StoreError) as caught:
        store.hit_many([Hit("rl:{w}:wrong:w", (window(1, 1),))])
    assert not isinstance(caught.value, tierpolicy.StoreUnavailableError)
    assert isinstance(caught.value.__cause__, redis.ResponseError)
    raw.close()
    store.close()


def test_reset_forgets_a_counter(redis_server, redis_prefix):
    """reset() deletes the counter, giving the key its full capacity back."""
    store = RedisRateLimitStore.from_url(redis_server.url, prefix=redis_prefix, **TIMEOUTS)
    h = Hit("rl:{r}:reset:r", (window(1, 3600),))
    assert store.hit_many([h]).allowed
    assert not store.hit_many([h]).allowed
    store.reset(h.key)
    assert store.hit_many([h]).allowed
    store.close()


# --------------------------------------------------------------------------- URLs and clients


def test_urls_choose_the_backend(redis_server):
    """memory:// gives the in-memory store, redis:// the Redis store; others are clear errors."""
    assert isinstance(rate_limit_store("memory://"), InMemoryRateLimitStore)
    store = rate_limit_store(redis_server.url, prefix=unique_prefix(), **TIMEOUTS)
    assert isinstance(store, RedisRateLimitStore)
    assert store.hit_many([Hit("rl:{u}:url:u", (window(1, 1),))]).allowed
    with pytest.raises(tierpolicy.StoreError, match="unknown store URL scheme 'mongodb'"):
        rate_limit_store("mongodb://user:secret@host/db")
    with pytest.raises(tierpolicy.StoreError, match="takes no host"):
        rate_limit_store("memory://somewhere")


def test_the_url_password_never_appears_in_names_or_errors():
    """A URL's password is redacted from the store's name and from its errors."""
    store = RedisRateLimitStore.from_url("redis://app:hunter2@127.0.0.1:1/0")
    assert "hunter2" not in store.name
    assert store.name == "redis://app:***@127.0.0.1:1/0"
    with pytest.raises(tierpolicy.StoreUnavailableError) as caught:
        store.hit_many([Hit("rl:{p}:p:p", (window(1, 1),))])
    assert "hunter2" not in str(caught.value)
    with pytest.raises(tierpolicy.StoreError) as unknown:
        rate_limit_store("mongodb://app:hunter2@h/db")
    assert "hunter2" not in str(unknown.value)


def test_a_malformed_redis_url_is_a_store_error():
    """A Redis URL redis-py cannot parse is reported as a StoreError at construction."""
    with pytest.raises(tierpolicy.StoreError, match="bad Redis URL"):
        RedisRateLimitStore.from_url("redis://127.0.0.1:notaport/0")


def test_cluster_urls_reach_a_real_cluster_with_one_slot_per_partition(redis_cluster):
    """redis+cluster:// picks the cluster client; a request's keys share one slot, so its script call is legal."""
    store = rate_limit_store(redis_cluster.url, prefix=unique_prefix(), **TIMEOUTS)
    assert isinstance(store, RedisRateLimitStore)
    assert isinstance(store.client, redis.cluster.RedisCluster)
    seller_wide = Hit("rl:{seller-9}:per-seller:seller-9", (window(2, 3600),))
    per_route = Hit("rl:{seller-9}:per-seller-route:seller-9:/x", (window(1, 3600),))
    assert store.hit_many([seller_wide, per_route]).allowed
    assert not store.hit_many([seller_wide, per_route]).allowed

    async def run() -> bool:
        answer = (await store.ahit_many([Hit("rl:{s2}:a:s2", (window(1, 3600),))])).allowed
        await store.aclose()
        return answer

    assert asyncio.run(run())
    store.close()


def test_the_keys_of_one_partition_map_to_one_cluster_slot(policies):
    """Every counter of one request's partition hashes to one slot; different partitions may not."""
    limiter = tierpolicy.RateLimiter(policies)
    limits = limiter.limits_for(route="/both")
    counters = [p.counter(SELLER) for p in limits]
    by_partition: dict[str, set[int]] = {}
    for key, partition in counters:
        by_partition.setdefault(partition, set()).add(redis.crc.key_slot(("app:" + key).encode()))
    assert set(by_partition) == {"s-1", "10.0.0.1"}
    assert all(len(slots) == 1 for slots in by_partition.values())
    weird = {"seller": {"id": "a}b{c%", "tier": "gold"}, "request": {"client_ip": "x", "route": "/both"}}
    key, partition = limits[0].counter(weird)
    assert partition == "a}b{c%"
    assert key == "rl:{a%7Db%7Bc%25}:per-seller:a}b{c%"


# --------------------------------------------------------------------------- concurrency


def test_four_processes_of_eight_threads_admit_exactly_the_limit(redis_server, redis_prefix):
    """32 clients in 4 processes hammering one counter admit exactly what GCRA allows, no more."""
    quota, processes, threads, per_thread = 100, 4, 8, 10
    started = time.monotonic()
    with multiprocessing.get_context("spawn").Pool(processes) as pool:
        import ratelimit_workers  # noqa: PLC0415  importable by spawned children

        admitted = pool.starmap(
            ratelimit_workers.hammer,
            [(redis_server.url, redis_prefix, quota, threads, per_thread)] * processes,
        )
    elapsed = time.monotonic() - started
    # 100/hour refills one unit every 36 s: during this run GCRA allows the burst, plus one per 36 s.
    assert sum(admitted) == quota + int(elapsed // 36)
    assert processes * threads * per_thread > quota  # the limit was really contended


def test_concurrent_asyncio_tasks_admit_exactly_the_limit(redis_server, redis_prefix, policies):
    """50 concurrent acheck calls on one seller admit exactly that seller's limit (5/hour)."""
    store = RedisRateLimitStore.from_url(redis_server.url, prefix=redis_prefix, **TIMEOUTS)
    limiter = tierpolicy.RateLimiter(policies, store)

    async def run() -> int:
        results = await asyncio.gather(
            *(
                limiter.acheck(
                    {**SELLER, "request": {"client_ip": f"10.1.0.{i}", "route": "/both"}}, route="/both"
                )
                for i in range(50)
            )
        )
        await store.aclose()
        return sum(r.allowed for r in results)

    # per-seller allows 5 but its burst window 2/s and per-seller-route (bronze 3/hour) bind first.
    assert asyncio.run(run()) == 2


# --------------------------------------------------------------------------- the limiter on Redis


def test_limits_of_one_request_across_partitions_refund_on_denial(redis_server, redis_prefix, policies):
    """When the per-address limit denies, the seller's counters get their units back."""
    store = RedisRateLimitStore.from_url(
        redis_server.url, prefix=redis_prefix, clock=FakeClock(1_700_000_000.0)
    )
    limiter = tierpolicy.RateLimiter(policies, store)
    raw = redis.Redis.from_url(redis_server.url)
    # Exhaust the per-address limit from other sellers on that address.
    raw.set(
        redis_prefix + "rl:{10.0.0.1}:per-address:10.0.0.1",
        f"g,{1_700_000_000 * 10**6 + 100 * 36 * 10**6}",
        px=3_600_000,
    )
    result = limiter.check(SELLER, route="/both")
    assert not result.allowed
    assert result.deciding is not None
    assert result.deciding.limit == "per-address"
    # The seller's partition was checked first and allowed, then refunded: nothing is stored for it.
    assert raw.get(redis_prefix + "rl:{s-1}:per-seller:s-1") is None
    assert raw.get(redis_prefix + "rl:{s-1}:per-seller-route:s-1:/both") is None
    raw.close()
    store.close()


def test_outage_mid_run_applies_each_limits_mode_then_recovers(own_redis_server, caplog):
    """With Redis stopped: fail_open allows, fail_closed denies, local counts its share; then Redis is used again."""
    clock = FakeClock(0.0)
    store = RedisRateLimitStore.from_url(own_redis_server.url, prefix=unique_prefix(), **TIMEOUTS)
    policies = tierpolicy.load_files({"rl.yaml": POLICY}, root="t")
    limiter = tierpolicy.RateLimiter(policies, store, replicas=4, retry_interval=5.0, clock=clock)
    ctx = {"seller": {"id": "s-1"}}
    for route in ("/open", "/closed", "/local"):
        decision = limiter.check(ctx, route=route).decisions[0]
        assert (decision.allowed, decision.fallback) == (True, None)

    own_redis_server.stop()
    with caplog.at_level(logging.WARNING, logger="tierpolicy.ratelimit"):
        opened = [limiter.check(ctx, route="/open") for _ in range(5)]
    assert all(r.allowed and r.decisions[0].fallback == "fail_open" for r in opened)
    assert "unavailable" in caplog.text
    assert not limiter.store_available
    closed = limiter.check(ctx, route="/closed")
    assert not closed.allowed
    assert closed.decisions[0].fallback == "fail_closed"
    assert closed.headers()["Retry-After"] == "5"
    # local: 8/hour shared by 4 replicas -> 2 here.
    local = [limiter.check(ctx, route="/local").allowed for _ in range(4)]
    assert local == [True, True, False, False]
    assert limiter.check(ctx, route="/local").decisions[0].window.quota == 2

    own_redis_server.start()
    assert limiter.check(ctx, route="/closed").decisions[0].fallback == "fail_closed"  # still backing off
    clock.advance(5.0)
    with caplog.at_level(logging.WARNING, logger="tierpolicy.ratelimit"):
        back = limiter.check(ctx, route="/closed")
    assert back.decisions[0].fallback is None
    assert "available again" in caplog.text
    # The server restarted empty (no persistence): the count starts over.
    assert back.allowed
    store.close()


def test_a_stopped_server_raises_store_unavailable_from_the_driver_error(own_redis_server):
    """The store itself translates connection errors: StoreUnavailableError from redis-py's ConnectionError."""
    store = RedisRateLimitStore.from_url(own_redis_server.url, prefix=unique_prefix(), **TIMEOUTS)
    own_redis_server.stop()
    with pytest.raises(tierpolicy.StoreUnavailableError) as caught:
        store.hit_many([Hit("rl:{d}:down:d", (window(1, 1),))])
    assert isinstance(caught.value.__cause__, redis.ConnectionError)
    assert caught.value.store == own_redis_server.url

    async def run() -> None:
        with pytest.raises(tierpolicy.StoreUnavailableError):
            await store.ahit_many([Hit("rl:{d}:down:d", (window(1, 1),))])
        await store.aclose()

    asyncio.run(run())
    own_redis_server.start()
    assert store.hit_many([Hit("rl:{d}:down:d", (window(1, 1),))]).allowed
    store.close()


def test_async_limiter_applies_failure_modes_too(own_redis_server):
    """The async check applies on_store_error exactly as the sync one does."""
    store = RedisRateLimitStore.from_url(own_redis_server.url, prefix=unique_prefix(), **TIMEOUTS)
    policies = tierpolicy.load_files({"rl.yaml": POLICY}, root="t")
    limiter = tierpolicy.RateLimiter(policies, store, clock=FakeClock(0.0))
    own_redis_server.stop()

    async def run() -> tuple[bool, bool]:
        opened = await limiter.acheck({"seller": {"id": "x"}}, route="/open")
        closed = await limiter.acheck({"seller": {"id": "x"}}, route="/closed")
        await store.aclose()
        return opened.allowed, closed.allowed

    assert asyncio.run(run()) == (True, False)


def test_server_fixture_restarts_on_the_same_port(own_redis_server: RedisServer):
    """The tests' own server can be stopped and started again on its port (what the outage tests rely on)."""
    port = own_redis_server.port
    own_redis_server.stop()
    assert not own_redis_server.ping()
    own_redis_server.start()
    assert own_redis_server.port == port
    assert own_redis_server.ping()


def test_a_store_from_a_url_follows_the_event_loop(redis_server, redis_prefix):
    """asyncio.run twice with one store works: a new loop gets a new asyncio client."""
    store = RedisRateLimitStore.from_url(redis_server.url, prefix=redis_prefix, **TIMEOUTS)
    h = Hit("rl:{loop}:loop:loop", (window(2, 3600),))

    async def once() -> bool:
        allowed = (await store.ahit_many([h])).allowed
        await store.aclose()
        return allowed

    assert [asyncio.run(once()) for _ in range(3)] == [True, True, False]


# --------------------------------------------------------------------------- boundaries


def test_unsupported_schemes_and_unparseable_urls_are_store_errors():
    """A URL that is not a Redis URL fails at construction with a StoreError naming the problem."""
    with pytest.raises(tierpolicy.StoreError, match="unsupported Redis URL scheme 'http'"):
        RedisRateLimitStore.from_url("http://127.0.0.1/0")
    with pytest.raises(tierpolicy.StoreError, match="unsupported Redis URL scheme ''"):
        RedisRateLimitStore.from_url("127.0.0.1:6379")


def test_redaction_survives_urls_it_cannot_parse():
    """A URL urllib cannot split is named generically, never echoed."""
    from tierpolicy.adapters.redis._errors import redact  # noqa: PLC0415  a private helper

    assert redact("redis://[::1:6379/0") == "<unparseable store URL>"
    assert redact("redis://:pw@host:1/0") == "redis://:***@host:1/0"
    assert redact("redis://host:1/0") == "redis://host:1/0"


def test_an_unreadable_or_contradicting_script_reply_is_an_error(caplog):
    """An unreadable reply raises StoreError; a decision that differs from the engine's is logged."""
    from tierpolicy.adapters.redis._ratelimit import _Codec  # noqa: PLC0415  the I/O-free half

    codec = _Codec("p:", "redis://test")
    h = Hit("rl:{c}:c:c", (window(1, 60),))
    with pytest.raises(tierpolicy.StoreError, match="unexpected reply"):
        codec.step([h], b"not a number|")
    with pytest.raises(tierpolicy.StoreError, match="unexpected reply"):
        codec.step([h], [1, 2])
    contradicting = codec.step([h], b"1700000000000000 0|")  # fresh: the engine allows
    assert not contradicting.allowed  # the script has decided (and written): its answer stands
    with caplog.at_level(logging.ERROR, logger="tierpolicy.ratelimit"):
        assert contradicting.results[0].allowed
    assert "decided False where the engine decides True" in caplog.text
    assert codec.step([h], "1700000000000000 1|g,5").allowed  # str replies (decode_responses) work too


def test_sync_ping_and_reset_report_an_outage(own_redis_server):
    """ping() answers while Redis runs; ping and reset raise StoreUnavailableError once it stops."""
    store = RedisRateLimitStore.from_url(own_redis_server.url, prefix=unique_prefix())
    store.ping()
    own_redis_server.stop()
    with pytest.raises(tierpolicy.StoreUnavailableError):
        store.ping()
    with pytest.raises(tierpolicy.StoreUnavailableError):
        store.reset("rl:{x}:x:x")
    store.close()


def test_clients_passed_in_are_used_and_left_open(redis_server, redis_prefix):
    """A store given clients uses them and does not close them: they belong to the caller."""
    client = redis.Redis.from_url(redis_server.url)
    store = RedisRateLimitStore(client, prefix=redis_prefix)
    assert store.hit_many([Hit("rl:{k}:k:k", (window(1, 60),))]).allowed
    store.close()
    assert client.ping()
    client.close()
