"""The sliding-window counter: pure functions, a reference model, and the store."""

from __future__ import annotations

from collections import defaultdict
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from support import FakeClock
from tierpolicy.engine._gcra import US, GcraWindow
from tierpolicy.engine._ratelimit_store import InMemoryRateLimitStore
from tierpolicy.engine._sliding import sliding_window


def window(quota: int, period: int, name: str = "w") -> GcraWindow:
    """A window of ``quota`` per ``period`` seconds."""
    return GcraWindow(name=name, quota=quota, period=period, burst=quota)


def run(windows, hits):
    """Feed (time in seconds, cost) hits through the pure function; return the allow list."""
    states = [None] * len(windows)
    answers = []
    for at, cost in hits:
        result = sliding_window(states, int(at * US), windows, cost)
        if result.allowed:
            states = list(result.states)
        answers.append(result.allowed)
    return answers


def test_a_period_admits_its_quota():
    """Within one period exactly ``quota`` requests are admitted."""
    assert run([window(3, 10)], [(0, 1)] * 4) == [True, True, True, False]


def test_the_previous_period_counts_by_its_overlap():
    """Halfway into the next period, half of the previous period's count still counts."""
    hits = [(0, 1)] * 10 + [(10, 1)] + [(15, 1)] * 6
    assert run([window(10, 10)], hits) == [True] * 10 + [False] + [True] * 5 + [False]


def test_retry_after_says_when_the_request_fits():
    """A denied request's retry-after is exactly when the overlap has shrunk enough."""
    w = window(10, 10)
    states = [None]
    for _ in range(10):
        states = list(sliding_window(states, 0, [w]).states)
    denied = sliding_window(states, 0, [w])
    assert not denied.allowed
    assert denied.windows[0].retry_after == pytest.approx(11.0)
    assert not sliding_window(states, int(10.9 * US), [w]).allowed
    assert sliding_window(states, 11 * US, [w]).allowed


def test_denied_by_one_window_counts_in_none():
    """A request denied by one window is not counted in the others."""
    windows = [window(1, 1, "second"), window(100, 60, "minute")]
    first = sliding_window([None, None], 0, windows)
    denied = sliding_window(list(first.states), 0, windows)
    assert not denied.allowed
    assert denied.deciding == 0
    assert denied.states[1][2] == 1
    assert denied.windows[1].remaining == 99


def test_cost_above_quota_never_fits():
    """A request costing more than the quota is denied even from rest."""
    result = sliding_window([None], 0, [window(2, 1)], cost=3)
    assert not result.allowed
    assert result.windows[0].remaining == 2


def test_bad_arguments_raise():
    """Mismatched states and negative costs are programming errors."""
    with pytest.raises(ValueError, match="stored states"):
        sliding_window([], 0, [window(1, 1)])
    with pytest.raises(ValueError, match="negative"):
        sliding_window([None], 0, [window(1, 1)], cost=-1)


def reference(windows, hits):
    """Count per aligned period and estimate with exact fractions, independently of the module."""
    counts = [defaultdict(int) for _ in windows]
    answers = []
    for at, cost in hits:
        estimates = []
        for w, c in zip(windows, counts, strict=True):
            period = w.period * US
            index, elapsed = divmod(at, period)
            estimates.append(c[index - 1] * Fraction(period - elapsed, period) + c[index])
        allowed = all(e + cost <= w.quota for e, w in zip(estimates, windows, strict=True))
        if allowed:
            for w, c in zip(windows, counts, strict=True):
                c[at // (w.period * US)] += cost
        answers.append(allowed)
    return answers


@settings(max_examples=200, deadline=None)
@given(
    windows=st.lists(
        st.builds(window, quota=st.integers(1, 10), period=st.integers(1, 5)), min_size=1, max_size=3
    ),
    gaps=st.lists(st.tuples(st.integers(0, 3 * US), st.integers(0, 4)), min_size=1, max_size=50),
)
def test_sliding_window_agrees_with_the_reference_model(windows, gaps):
    """Any sequence of hits gets the same allow/deny as per-period counting with exact fractions."""
    hits = []
    now = 0
    for gap, cost in gaps:
        now += gap
        hits.append((now, cost))
    states = [None] * len(windows)
    answers = []
    for at, cost in hits:
        result = sliding_window(states, at, windows, cost)
        if result.allowed:
            states = list(result.states)
        answers.append(result.allowed)
    assert answers == reference(windows, hits)


def test_store_keeps_and_sweeps_sliding_state():
    """The store counts sliding windows per key and drops them once both periods have passed."""
    clock = FakeClock(0.0)
    store = InMemoryRateLimitStore(clock=clock, sweep_interval=3600)
    windows = [window(2, 10)]
    assert [store.hit_sliding("k", windows).allowed for _ in range(3)] == [True, True, False]
    for i in range(1000):
        store.hit_sliding(f"once{i}", windows)
    assert len(store) == 1001
    clock.now = 19.0
    assert store.sweep() == 0
    clock.now = 20.0
    assert store.sweep() == 1001
    assert len(store) == 0
    store.hit_sliding("k", windows)
    store.reset("k")
    assert len(store) == 0


def test_store_sweeps_gcra_and_sliding_counters_by_their_own_expiry():
    """One sweep drops each kind of counter once it is at rest: GCRA at its last TAT, sliding after two periods."""
    clock = FakeClock(0.0)
    store = InMemoryRateLimitStore(clock=clock, sweep_interval=3600)
    store.hit("gcra", [window(10, 10)])  # at rest after one emission interval: 1 s
    store.hit_sliding("sliding", [window(10, 10)])  # at rest after two periods: 20 s
    clock.now = 1.0
    assert store.sweep() == 1
    assert len(store) == 1
    clock.now = 20.0
    assert store.sweep() == 1
    assert len(store) == 0
