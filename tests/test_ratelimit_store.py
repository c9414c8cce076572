"""Every rate-limit store, from one table: the in-memory store and the Redis store answer alike.

Each test here runs once per store. The Redis store runs against the tests' own
redis-server with an injected clock (sent to the script instead of ``TIME``), so
both stores see exactly the same times and must give exactly the same answers.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from redisserver import TIMEOUTS, unique_prefix
from support import FakeClock, ReferenceBucket, reference
from tierpolicy.engine._gcra import US, GcraWindow
from tierpolicy.engine._ratelimit_store import Hit, InMemoryRateLimitStore, apply_hits

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from redisserver import RedisServer
    from tierpolicy.engine._ratelimit_store import RateLimitStore

STORES = ["memory", "redis"]

MakeStore = "Callable[[FakeClock], RateLimitStore]"


@pytest.fixture(params=STORES)
def make_store(request: pytest.FixtureRequest) -> Iterator[Callable[[FakeClock], RateLimitStore]]:
    """A factory of fresh stores of one kind on a given fake clock (Redis: a new key prefix each)."""
    made: list[object] = []
    if request.param == "memory":

        def memory(clock: FakeClock) -> RateLimitStore:
            return InMemoryRateLimitStore(clock=clock)

        yield memory
        return
    from tierpolicy.adapters.redis import RedisRateLimitStore  # noqa: PLC0415  only the redis row needs it

    server: RedisServer = request.getfixturevalue("redis_server")

    def redis(clock: FakeClock) -> RateLimitStore:
        store = RedisRateLimitStore.from_url(server.url, prefix=unique_prefix(), **TIMEOUTS, clock=clock)
        made.append(store)
        return store

    yield redis
    for store in made:
        assert isinstance(store, RedisRateLimitStore)
        store.close()


def window(quota: int, period: int, burst: int | None = None, name: str = "w") -> GcraWindow:
    """A window of ``quota`` per ``period`` seconds."""
    return GcraWindow(name=name, quota=quota, period=period, burst=quota if burst is None else burst)


def hit(key: str, windows: list[GcraWindow], cost: int = 1, **options: object) -> Hit:
    """A hit on counter ``key`` (given a hash tag, as the limiter's keys have)."""
    return Hit(f"rl:{{{key}}}:t:{key}", tuple(windows), cost, **options)  # type: ignore[arg-type]


windows_strategy = st.lists(
    st.builds(window, quota=st.integers(1, 20), period=st.integers(1, 10), burst=st.integers(1, 30)),
    min_size=1,
    max_size=3,
)
gaps_strategy = st.lists(st.tuples(st.integers(0, 3 * US), st.integers(0, 5)), min_size=1, max_size=40)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(windows=windows_strategy, gaps=gaps_strategy)
def test_gcra_agrees_with_the_reference_model(make_store, windows, gaps):
    """On a fake clock, every store admits exactly what the reference leaky bucket admits."""
    clock = FakeClock(1_700_000_000.0)
    store = make_store(clock)
    buckets = [ReferenceBucket(w.emission_interval, w.tolerance) for w in windows]
    for gap, cost in gaps:
        clock.now += gap / US
        now = int(clock.now * US)
        step = store.hit_many([hit("k", windows, cost)])
        allowed, remaining = reference(buckets, now, cost)
        assert step.allowed == allowed
        assert [w.remaining for w in step.results[0].windows] == remaining


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    windows=st.lists(
        st.builds(window, quota=st.integers(1, 12), period=st.integers(1, 5)), min_size=1, max_size=2
    ),
    gaps=gaps_strategy,
)
def test_sliding_window_agrees_with_the_pure_function(make_store, windows, gaps):
    """Every store's sliding-window answers equal the engine's pure step on the same times."""
    clock = FakeClock(1_700_000_000.0)
    store = make_store(clock)
    states = None
    for gap, cost in gaps:
        clock.now += gap / US
        now = int(clock.now * US)
        h = hit("s", windows, cost, algorithm="sliding_window")
        expected = apply_hits([h], [states], now)
        got = store.hit_many([h])
        assert got.results == expected.results
        if expected.writes:
            states = expected.writes[0].state


@pytest.mark.parametrize("algorithm", ["gcra", "sliding_window"])
def test_a_single_shadow_hit_is_allowed_and_reports_its_denial(make_store, algorithm):
    """One counter in shadow mode: a request past its quota is let through, reported as denied, and not counted."""
    clock = FakeClock(1_700_000_000.0)
    store = make_store(clock)
    shadow = hit("one", [window(2, 60)], algorithm=algorithm, shadow=True)
    steps = [store.hit_many([shadow]) for _ in range(4)]
    assert [s.allowed for s in steps] == [True, True, True, True]
    assert [s.results[0].allowed for s in steps] == [True, True, False, False]
    assert steps[3].results[0].windows[0].remaining == 0


def test_windows_of_one_hit_are_atomic(make_store):
    """A request denied by the burst window spends nothing from the sustained window."""
    clock = FakeClock(1_700_000_000.0)
    store = make_store(clock)
    burst, sustained = window(2, 1, name="burst"), window(5, 60, name="minute")
    answers = [store.hit_many([hit("a", [burst, sustained])]).allowed for _ in range(3)]
    assert answers == [True, True, False]
    clock.advance(1.0)
    step = store.hit_many([hit("a", [burst, sustained])])
    assert step.allowed
    assert step.results[0].windows[1].remaining == 2  # 5 - 3 admitted; the denied one spent nothing


def test_hits_of_one_call_are_all_or_nothing(make_store):
    """Two limits checked together: when one denies, the other spends nothing."""
    clock = FakeClock(1_700_000_000.0)
    store = make_store(clock)
    tight, loose = hit("p", [window(1, 60)]), hit("p2", [window(10, 60)])
    tight = Hit("rl:{p}:tight:p", tight.windows)
    loose = Hit("rl:{p}:loose:p", loose.windows)
    assert store.hit_many([tight, loose]).allowed
    denied = store.hit_many([tight, loose])
    assert not denied.allowed
    assert [r.allowed for r in denied.results] == [False, True]
    assert denied.results[1].windows[0].remaining == 9  # as it stands: nothing spent
    assert store.hit_many([loose]).results[0].windows[0].remaining == 8


def test_a_shadow_hit_counts_but_never_blocks(make_store):
    """A denying shadow hit does not stop the batch; the other hits are still spent."""
    clock = FakeClock(1_700_000_000.0)
    store = make_store(clock)
    shadow = Hit("rl:{q}:shadow:q", (window(1, 60),), shadow=True)
    real = Hit("rl:{q}:real:q", (window(10, 60),))
    assert store.hit_many([shadow, real]).allowed
    step = store.hit_many([shadow, real])
    assert step.allowed
    assert [r.allowed for r in step.results] == [False, True]
    assert step.results[1].windows[0].remaining == 8


def test_refund_gives_the_cost_back(make_store):
    """Refunding an allowed batch restores every window it spent from, GCRA and sliding alike."""
    clock = FakeClock(1_700_000_000.0)
    store = make_store(clock)
    g = hit("r", [window(3, 60), window(2, 1)], cost=2)
    s = Hit("rl:{r}:s:r", (window(3, 60),), 2, "sliding_window")
    assert store.hit_many([g, s]).allowed
    assert not store.hit_many([g, s]).allowed
    store.refund_many([g, s])
    again = store.hit_many([g, s])
    assert again.allowed


def test_refund_of_a_fresh_key_is_harmless(make_store):
    """Refunding a counter that holds nothing changes nothing."""
    store = make_store(FakeClock(1_700_000_000.0))
    store.refund_many([hit("nothing", [window(1, 60)])])
    assert store.hit_many([hit("nothing", [window(1, 60)])]).results[0].windows[0].remaining == 0


def test_cost_zero_asks_without_spending(make_store):
    """A hit of cost 0 reports the window and spends nothing."""
    store = make_store(FakeClock(1_700_000_000.0))
    for _ in range(3):
        step = store.hit_many([hit("z", [window(2, 60)], cost=0)])
        assert step.allowed
        assert step.results[0].windows[0].remaining == 2


def test_state_of_another_shape_counts_as_fresh(make_store):
    """When a limit gains a window or changes algorithm, its old counter is ignored, not misread."""
    store = make_store(FakeClock(1_700_000_000.0))
    one = hit("c", [window(1, 60)])
    assert store.hit_many([one]).allowed
    assert not store.hit_many([one]).allowed
    two = hit("c", [window(1, 60), window(1, 1)])
    assert store.hit_many([two]).allowed
    sliding = hit("c", [window(1, 60)], algorithm="sliding_window")
    assert store.hit_many([sliding]).allowed
    assert store.hit_many([one]).allowed  # the sliding counter replaced the GCRA one
    assert not store.hit_many([one]).allowed


def test_a_step_is_its_decision_hits_states_and_time(make_store):
    """A store's Step unpacks as (allowed, hits, states, now), and its details match the pure step's."""
    clock = FakeClock(1_700_000_000.0)
    store = make_store(clock)
    h = hit("st", [window(2, 60), window(1, 1)])
    first = store.hit_many([h])
    allowed, hits, states, now = first
    assert (allowed, list(hits), list(states), now) == (True, [h], [None], int(clock.now * US))
    second = store.hit_many([h])
    assert not second.allowed
    assert second.results == apply_hits([h], list(second[2]), second.now).results
    assert second.writes == ()


def test_async_and_sync_share_one_counter(make_store):
    """The asyncio entry points count in the same counters as the sync ones."""
    store = make_store(FakeClock(1_700_000_000.0))
    h = hit("as", [window(3, 60)])
    assert store.hit_many([h]).allowed

    async def rest() -> list[bool]:
        results = [(await store.ahit_many([h])).allowed for _ in range(3)]
        await store.arefund_many([h])
        results.append((await store.ahit_many([h])).allowed)
        await store.aclose()
        return results

    assert asyncio.run(rest()) == [True, True, False, True]


@pytest.mark.parametrize(
    ("windows", "cost"),
    [
        ([window(1_000_000, 1)], 1),  # one unit per microsecond, the finest rate
        ([window(1, 366 * 86400)], 1),  # the longest period
        ([window(7, 1), window(13, 3600, burst=1_000)], 3),  # intervals that do not divide evenly
        ([GcraWindow("w", 1, 86400 * 366, 3000)], 2),  # a tolerance near the 2**48 microsecond bound
        ([window(1_000_000_000, 366 * 86400)], 999_999_999),  # the largest quota and cost
    ],
)
def test_extreme_windows_give_the_same_answers_in_every_store(make_store, windows, cost):
    """At the edges of what a policy may declare, both stores still agree with the pure step exactly."""
    clock = FakeClock(4_102_444_800.0)  # 2100-01-01: microseconds since the epoch near their largest use
    store = make_store(clock)
    state = None
    for gap in (0, 0, 1, 0, 17, 3600, 0):
        clock.now += gap
        h = hit("x", windows, cost)
        expected = apply_hits([h], [state], int(clock.now * US))
        assert store.hit_many([h]).results == expected.results
        if expected.writes:
            state = expected.writes[0].state
