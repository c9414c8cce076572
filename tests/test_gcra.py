"""GCRA as pure functions, the in-memory store, and the reference model they must agree with."""

from __future__ import annotations

import asyncio
import threading
from typing import TYPE_CHECKING

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from support import FakeClock, ReferenceBucket, reference
from tierpolicy.engine._gcra import US, GcraWindow, RateLimitDecision, gcra
from tierpolicy.engine._ratelimit_store import Hit, InMemoryRateLimitStore

if TYPE_CHECKING:
    from collections.abc import Callable


def window(quota: int, period: int, burst: int | None = None, name: str = "w") -> GcraWindow:
    """A window of ``quota`` per ``period`` seconds."""
    return GcraWindow(name=name, quota=quota, period=period, burst=quota if burst is None else burst)


windows_strategy = st.lists(
    st.builds(
        window,
        quota=st.integers(1, 20),
        period=st.integers(1, 10),
        burst=st.integers(1, 30),
    ),
    min_size=1,
    max_size=3,
)
hits_strategy = st.lists(
    st.tuples(st.integers(0, 3 * US), st.integers(0, 5)),
    min_size=1,
    max_size=60,
)


# --------------------------------------------------------------------------- pure functions


def test_fresh_key_admits_exactly_the_burst():
    """From rest, a window admits ``burst`` requests at one instant and denies the next."""
    w = window(10, 60, burst=3)
    tats: tuple[int | None, ...] = (None,)
    answers = []
    for _ in range(4):
        result = gcra(tats, 0, [w])
        tats = result.tats
        answers.append(result.allowed)
    assert answers == [True, True, True, False]


def test_capacity_refills_one_unit_per_emission_interval():
    """After the burst is spent, one more request is allowed every period/quota seconds."""
    w = window(60, 60)
    tats: tuple[int | None, ...] = (None,)
    for _ in range(60):
        tats = gcra(tats, 0, [w]).tats
    denied = gcra(tats, 0, [w])
    assert not denied.allowed
    assert denied.windows[0].retry_after == pytest.approx(1.0)
    assert not gcra(tats, US - 1, [w]).allowed
    assert gcra(tats, US, [w]).allowed


def test_allowed_reports_remaining_and_reset():
    """An allowed request reports the units left and when the window is full again."""
    result = gcra([None], 0, [window(10, 10)], cost=3)
    [w] = result.windows
    assert (w.allowed, w.remaining, w.reset_after, w.retry_after) == (True, 7, 3.0, 0.0)


def test_denied_by_one_window_consumes_none():
    """A request denied by the burst window leaves the sustained window untouched."""
    burst, sustained = window(2, 1, name="burst"), window(100, 60, name="minute")
    tats: tuple[int | None, ...] = (None, None)
    for _ in range(2):
        tats = gcra(tats, 0, [burst, sustained]).tats
    denied = gcra(tats, 0, [burst, sustained])
    assert not denied.allowed
    assert denied.tats == tats
    assert denied.deciding == 0
    assert denied.windows[1].allowed
    assert denied.windows[1].remaining == 98


def test_deciding_window_when_allowed_has_fewest_remaining():
    """When every window allows, the one with the fewest units left decides."""
    result = gcra([None, None], 0, [window(100, 60), window(5, 1)])
    assert result.allowed
    assert result.deciding == 1
    assert result.windows[1].remaining == 4


def test_cost_above_burst_is_never_allowed():
    """A request costing more than a window's burst can never be admitted."""
    result = gcra([None], 0, [window(5, 1)], cost=6)
    assert not result.allowed
    assert result.windows[0].remaining == 5


def test_bad_arguments_raise():
    """Mismatched states and negative costs are programming errors."""
    with pytest.raises(ValueError, match="stored states"):
        gcra([None, None], 0, [window(1, 1)])
    with pytest.raises(ValueError, match="negative"):
        gcra([None], 0, [window(1, 1)], cost=-1)


@settings(max_examples=300, deadline=None)
@given(windows=windows_strategy, hits=hits_strategy)
def test_gcra_agrees_with_the_reference_model(windows, hits):
    """Any sequence of hits and costs gets the same allow/deny and remaining as the leaky bucket."""
    buckets = [ReferenceBucket(w.emission_interval, w.tolerance) for w in windows]
    tats: tuple[int | None, ...] = tuple(None for _ in windows)
    now = 0
    for gap, cost in hits:
        now += gap
        result = gcra(tats, now, windows, cost)
        allowed, remaining = reference(buckets, now, cost)
        assert result.allowed == allowed
        assert [w.remaining for w in result.windows] == remaining
        tats = result.tats


@settings(max_examples=100, deadline=None)
@given(windows=windows_strategy, hits=hits_strategy)
def test_store_agrees_with_the_reference_model(windows, hits):
    """The in-memory store, on a fake clock, answers exactly as the reference model."""
    clock = FakeClock(0.0)
    store = InMemoryRateLimitStore(clock=clock, sweep_interval=1.0)
    buckets = [ReferenceBucket(w.emission_interval, w.tolerance) for w in windows]
    for gap, cost in hits:
        clock.now += gap / US
        now = store.now()
        result = store.hit("k", windows, cost)
        allowed, _ = reference(buckets, now, cost)
        assert result.allowed == allowed


@settings(max_examples=100, deadline=None)
@given(windows=windows_strategy, hits=hits_strategy)
def test_allow_decides_as_hit_does(windows, hits):
    """allow() gives hit()'s decision and spends alike: two stores fed the same hits never disagree."""
    clock = FakeClock(0.0)
    detailed = InMemoryRateLimitStore(clock=clock, sweep_interval=1.0)
    bare = InMemoryRateLimitStore(clock=clock, sweep_interval=1.0)
    for gap, cost in hits:
        clock.now += gap / US
        assert bare.allow("k", windows, cost) == detailed.hit("k", windows, cost).allowed


def test_allow_refuses_a_negative_cost():
    """A negative cost would hand units back: allow() raises instead, and stores nothing."""
    store = InMemoryRateLimitStore(clock=FakeClock())
    with pytest.raises(ValueError, match="cannot be negative"):
        store.allow("k", [window(1, 60)], -1)
    assert len(store) == 0


def test_aallow_counts_in_the_same_counter_as_allow():
    """The asyncio entry point spends from the counter the sync one spends from."""
    store = InMemoryRateLimitStore(clock=FakeClock())
    windows = [window(2, 60)]
    assert store.allow("k", windows)

    async def rest() -> list[bool]:
        return [await store.aallow("k", windows) for _ in range(2)]

    assert asyncio.run(rest()) == [True, False]


# --------------------------------------------------------------------------- the store


def admitted_by_threads(decide: Callable[[], bool], *, each: int, threads: int = 8) -> int:
    """How many of ``threads`` x ``each`` calls of ``decide``, started together, answered True."""
    admitted = []
    barrier = threading.Barrier(threads)

    def worker() -> None:
        barrier.wait()
        admitted.append(sum(decide() for _ in range(each)))

    started = [threading.Thread(target=worker) for _ in range(threads)]
    for t in started:
        t.start()
    for t in started:
        t.join()
    return sum(admitted)


def test_threads_on_one_key_admit_exactly_the_limit():
    """8 threads hammering one key on a frozen clock admit exactly N requests."""
    store = InMemoryRateLimitStore(clock=FakeClock())
    windows = [window(50, 60)]
    assert admitted_by_threads(lambda: store.hit("seller:1", windows).allowed, each=40) == 50


def test_threads_on_the_default_clock_admit_exactly_the_limit():
    """On the store's own monotonic clock (read inline), 8 threads on one key admit exactly N."""
    store = InMemoryRateLimitStore()
    hit = Hit("seller:1", (window(100, 3600),))  # one unit refills in 36 s: none during the test
    assert admitted_by_threads(lambda: store.hit_many([hit]).allowed, each=50) == 100
    assert admitted_by_threads(lambda: store.allow("seller:2", hit.windows), each=50) == 100


def test_asyncio_tasks_on_one_key_admit_exactly_the_limit():
    """Concurrent asyncio tasks share the limit exactly, through the async entry point."""
    store = InMemoryRateLimitStore(clock=FakeClock())
    windows = [window(10, 60)]

    async def main() -> int:
        results = await asyncio.gather(*(store.ahit("k", windows) for _ in range(30)))
        return sum(r.allowed for r in results)

    assert asyncio.run(main()) == 10


def test_idle_keys_are_swept_so_memory_stays_bounded():
    """A million one-off keys are all dropped by one sweep once their windows have passed."""
    clock = FakeClock()
    store = InMemoryRateLimitStore(clock=clock, sweep_interval=3600)
    windows = [window(10, 1)]
    for i in range(1_000_000):
        store.hit(f"k{i}", windows)
    assert len(store) == 1_000_000
    clock.advance(1.0)
    assert store.sweep() == 1_000_000
    assert len(store) == 0


def test_sweeping_happens_during_hits():
    """A hit after ``sweep_interval`` sweeps expired keys without being asked."""
    clock = FakeClock()
    store = InMemoryRateLimitStore(clock=clock, sweep_interval=10)
    windows = [window(1, 1)]
    for i in range(1000):
        store.hit(f"k{i}", windows)
    clock.advance(11)
    store.hit("fresh", windows)
    assert len(store) == 1


def test_busy_keys_survive_a_sweep():
    """A key whose window is still refilling is kept, and keeps its state."""
    clock = FakeClock()
    store = InMemoryRateLimitStore(clock=clock)
    windows = [window(2, 60)]
    store.hit("k", windows)
    store.hit("k", windows)
    assert store.sweep() == 0
    assert not store.hit("k", windows).allowed


def test_a_denied_or_free_hit_stores_nothing_for_a_fresh_key():
    """Asking with cost 0, or being denied, never creates an entry."""
    store = InMemoryRateLimitStore(clock=FakeClock())
    assert store.hit("free", [window(1, 1)], cost=0).allowed
    assert not store.hit("huge", [window(1, 1)], cost=2).allowed
    assert len(store) == 0


def test_reset_forgets_a_key():
    """``reset`` gives a key its full capacity back."""
    store = InMemoryRateLimitStore(clock=FakeClock())
    windows = [window(1, 60)]
    store.hit("k", windows)
    store.reset("k")
    assert store.hit("k", windows).allowed


# --------------------------------------------------------------------------- headers


def _decision(*, allowed: bool, remaining: int, reset: float, retry: float) -> RateLimitDecision:
    minute, burst = window(60, 60, name="seller-api"), window(10, 1, name="seller-api-burst")
    return RateLimitDecision(
        allowed=allowed,
        limited=not allowed,
        limit="seller-api",
        window=minute,
        windows=(minute, burst),
        remaining=remaining,
        reset_after=reset,
        retry_after=retry,
    )


def test_headers_of_an_allowed_request():
    """RateLimit-Policy lists every window with q and w; RateLimit gives r and t of the decider."""
    headers = _decision(allowed=True, remaining=59, reset=0.5, retry=0).headers()
    assert headers == {
        "RateLimit-Policy": '"seller-api";q=60;w=60, "seller-api-burst";q=10;w=1',
        "RateLimit": '"seller-api";r=59;t=1',
    }


def test_headers_of_a_denied_request_add_retry_after():
    """A denied request also gets Retry-After in whole seconds, rounded up."""
    headers = _decision(allowed=False, remaining=0, reset=60.0, retry=0.2).headers()
    assert headers["RateLimit"] == '"seller-api";r=0;t=60'
    assert headers["Retry-After"] == "1"
