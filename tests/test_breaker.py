"""Tests of the circuit breaker: resilience4j semantics, a reference model, concurrency."""

from __future__ import annotations

import asyncio
import dataclasses
import math
import threading
from fractions import Fraction
from typing import TYPE_CHECKING

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule
from tests.strategies import breaker_policies

from support import count_breaker
from tierpolicy.engine._breaker import (
    BreakerData,
    BreakerSnapshot,
    BreakerState,
    InMemoryBreakerStore,
    Permit,
    Rejection,
    Transition,
    acquire_step,
    record_step,
    snapshot_of,
)

if TYPE_CHECKING:
    from tierpolicy.engine._resilience import BreakerPolicy

KEY = "payments.*"
POLICY = count_breaker()


def call(store: InMemoryBreakerStore, outcome: str, now: float, *, duration: float = 0.1, policy=POLICY):
    """Acquire and record one call; return the transitions it caused."""
    permit = store.acquire(KEY, policy, now)
    assert isinstance(permit, Permit)
    return store.record(KEY, policy, permit, outcome, duration, now)


def open_breaker(store: InMemoryBreakerStore, now: float = 0.0, policy=POLICY) -> None:
    """Fail enough calls to open the breaker."""
    for _ in range(policy.minimum_calls):
        call(store, "failure", now, policy=policy)
    assert store.snapshot(KEY, now).state is BreakerState.OPEN


# --------------------------------------------------------------------------- examples


def test_stays_closed_below_minimum_calls():
    """Three failures of three calls do not count while minimum_calls is four."""
    store = InMemoryBreakerStore()
    for _ in range(3):
        assert call(store, "failure", 0.0) == ()
    snapshot = store.snapshot(KEY, 0.0)
    assert (snapshot.state, snapshot.calls, snapshot.failure_rate) == (BreakerState.CLOSED, 3, None)


def test_opens_at_exactly_the_threshold():
    """Two failures in four calls is 50%, which opens a 50% breaker (>=)."""
    store = InMemoryBreakerStore()
    for outcome in ("success", "failure", "success"):
        call(store, outcome, 0.0)
    assert call(store, "failure", 0.0) == (
        Transition(KEY, BreakerState.CLOSED, BreakerState.OPEN, 0.0, "threshold_reached"),
    )


def test_count_window_forgets_old_calls():
    """Only the last window_size calls count."""
    store = InMemoryBreakerStore()
    for outcome in ("failure", "success", "success", "success", "success", "failure"):
        call(store, outcome, 0.0)
    snapshot = store.snapshot(KEY, 0.0)
    assert (snapshot.state, snapshot.calls, snapshot.failures, snapshot.failure_rate) == (
        BreakerState.CLOSED,
        4,
        1,
        25.0,
    )


def test_time_window_forgets_calls_older_than_its_size():
    """A 10 s time window drops calls made 10 s or more before."""
    policy = dataclasses.replace(POLICY, window_type="time", window_size=10, minimum_calls=2)
    store = InMemoryBreakerStore()
    call(store, "failure", 0.5, policy=policy)
    assert call(store, "success", 10.2, policy=policy) == ()
    assert store.snapshot(KEY, 10.2).calls == 1
    assert call(store, "failure", 10.3, policy=policy)[0].to_state is BreakerState.OPEN


def test_slow_calls_open_the_breaker():
    """Successful but slow calls open the breaker at the slow-call rate threshold."""
    store = InMemoryBreakerStore()
    for _ in range(3):
        call(store, "success", 0.0, duration=1.5)
    assert call(store, "success", 0.0, duration=1.5)[0].to_state is BreakerState.OPEN


def test_a_call_at_the_slow_duration_is_not_slow():
    """Slow means longer than slow_call_duration."""
    store = InMemoryBreakerStore()
    for _ in range(4):
        assert call(store, "success", 0.0, duration=1.0) == ()


def test_ignored_outcomes_count_as_neither():
    """Ignored outcomes do not enter the window."""
    store = InMemoryBreakerStore()
    for _ in range(10):
        call(store, "ignored", 0.0)
    assert store.snapshot(KEY, 0.0).calls == 0


def test_open_rejects_until_the_wait_has_passed():
    """An open breaker rejects with the time it reopens, then admits a half-open probe."""
    store = InMemoryBreakerStore()
    open_breaker(store)
    assert store.acquire(KEY, POLICY, 9.9) == Rejection(KEY, BreakerState.OPEN, 10.0)
    permit = store.acquire(KEY, POLICY, 10.0)
    assert isinstance(permit, Permit)
    assert permit.state is BreakerState.HALF_OPEN
    assert permit.transitions == (
        Transition(KEY, BreakerState.OPEN, BreakerState.HALF_OPEN, 10.0, "wait_elapsed"),
    )


def test_half_open_admits_exactly_the_permitted_probes():
    """Two permits in half-open, then rejections until probes complete."""
    store = InMemoryBreakerStore()
    open_breaker(store)
    answers = [store.acquire(KEY, POLICY, 10.0) for _ in range(4)]
    assert [type(a) for a in answers] == [Permit, Permit, Rejection, Rejection]
    assert answers[2] == Rejection(KEY, BreakerState.HALF_OPEN, None)


def test_successful_probes_close_the_breaker_with_an_empty_window():
    """When all probes succeed the breaker closes and starts counting afresh."""
    store = InMemoryBreakerStore()
    open_breaker(store)
    first, second = store.acquire(KEY, POLICY, 10.0), store.acquire(KEY, POLICY, 10.0)
    assert store.record(KEY, POLICY, first, "success", 0.1, 10.5) == ()
    [transition] = store.record(KEY, POLICY, second, "success", 0.1, 11.0)
    assert (transition.to_state, transition.reason) == (BreakerState.CLOSED, "probes_succeeded")
    snapshot = store.snapshot(KEY, 11.0)
    assert (snapshot.calls, snapshot.openings) == (0, 0)


def test_failed_probes_reopen_with_a_growing_wait():
    """Probes at the threshold reopen the breaker, for wait * multiplier, capped."""
    store = InMemoryBreakerStore()
    open_breaker(store)
    now = 10.0
    for expected_wait in (20.0, 30.0, 30.0):
        permits = [store.acquire(KEY, POLICY, now) for _ in range(2)]
        store.record(KEY, POLICY, permits[0], "failure", 0.1, now)
        [transition] = store.record(KEY, POLICY, permits[1], "failure", 0.1, now)
        assert transition.reason == "probes_failed"
        assert store.snapshot(KEY, now).open_until == now + expected_wait
        now += expected_wait


def test_ignored_probe_returns_its_permit():
    """An ignored probe releases its permit so another probe may run."""
    store = InMemoryBreakerStore()
    open_breaker(store)
    first = store.acquire(KEY, POLICY, 10.0)
    store.acquire(KEY, POLICY, 10.0)
    assert isinstance(store.acquire(KEY, POLICY, 10.0), Rejection)
    store.record(KEY, POLICY, first, "ignored", 0.1, 10.0)
    assert isinstance(store.acquire(KEY, POLICY, 10.0), Permit)


def test_max_wait_in_half_open_reopens():
    """A breaker half-open for max_wait_in_half_open opens again."""
    policy = dataclasses.replace(POLICY, max_wait_in_half_open=5.0)
    store = InMemoryBreakerStore()
    open_breaker(store, policy=policy)
    store.acquire(KEY, policy, 10.0)
    rejection = store.acquire(KEY, policy, 15.0)
    assert isinstance(rejection, Rejection)
    assert rejection.transitions[0].reason == "half_open_timeout"
    assert rejection.retry_at == 15.0 + 20.0


def test_outcome_of_a_previous_state_is_dropped():
    """A call admitted while closed that ends after the breaker opened changes nothing."""
    store = InMemoryBreakerStore()
    late = store.acquire(KEY, POLICY, 0.0)
    open_breaker(store)
    assert store.record(KEY, POLICY, late, "failure", 0.1, 1.0) == ()
    assert store.snapshot(KEY, 1.0).openings == 1


def test_error_outcomes_follow_record_and_ignore():
    """Recorded categories and codes fail, ignored codes are ignored, others count as success."""
    policy = dataclasses.replace(
        POLICY, record_codes=frozenset({"PAYMENT_DECLINED"}), ignore_codes=frozenset({"NOT_FOUND"})
    )
    assert policy.outcome_of_error(category="transient", code=None) == "failure"
    assert policy.outcome_of_error(category="invalid_request", code="PAYMENT_DECLINED") == "failure"
    assert policy.outcome_of_error(category="transient", code="NOT_FOUND") == "ignored"
    assert policy.outcome_of_error(category="invalid_request", code="BAD_INPUT") == "success"


# --------------------------------------------------------------------------- concurrency


def test_threads_get_exactly_the_permitted_probes():
    """N threads acquiring a half-open breaker at once get exactly the permitted permits."""
    policy = dataclasses.replace(POLICY, permitted_calls_in_half_open=3)
    store = InMemoryBreakerStore()
    open_breaker(store, policy=policy)
    threads, barrier, results = 32, threading.Barrier(32), []
    lock = threading.Lock()

    def worker() -> None:
        barrier.wait()
        answer = store.acquire(KEY, policy, 10.0)
        with lock:
            results.append(answer)

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    assert sum(isinstance(r, Permit) for r in results) == 3
    assert sum(isinstance(r, Rejection) for r in results) == threads - 3


def test_tasks_get_exactly_the_permitted_probes():
    """N asyncio tasks acquiring a half-open breaker get exactly the permitted permits."""
    store = InMemoryBreakerStore()
    open_breaker(store)

    async def probe() -> Permit | Rejection:
        await asyncio.sleep(0)
        return store.acquire(KEY, POLICY, 10.0)

    async def main() -> list[Permit | Rejection]:
        return list(await asyncio.gather(*(probe() for _ in range(50))))

    results = asyncio.run(main())
    assert sum(isinstance(r, Permit) for r in results) == POLICY.permitted_calls_in_half_open


# --------------------------------------------------------------------------- reference model


class ReferenceBreaker:
    """A direct, unoptimised reading of the documented semantics."""

    def __init__(self, policy: BreakerPolicy) -> None:
        self.policy = policy
        self.state = "closed"
        self.generation = 0
        self.calls: list[tuple[float, bool, bool]] = []
        self.openings = 0
        self.since = 0.0
        self.issued = 0
        self.probes: list[tuple[bool, bool]] = []

    def _enter(self, state: str, now: float, openings: int) -> None:
        self.state, self.since, self.openings = state, now, openings
        self.generation += 1
        self.calls, self.probes, self.issued = [], [], 0

    def _settle(self, now: float) -> None:
        wait = self.policy.max_wait_in_half_open
        if self.state == "half_open" and wait > 0 and now >= self.since + wait:
            self._enter("open", now, self.openings + 1)

    def _trips(self, outcomes: list[tuple[bool, bool]], minimum: int) -> bool:
        if len(outcomes) < minimum or not outcomes:
            return False
        failure_rate = Fraction(sum(f for f, _ in outcomes) * 100, len(outcomes))
        slow_rate = Fraction(sum(s for _, s in outcomes) * 100, len(outcomes))
        return failure_rate >= Fraction(self.policy.failure_rate_threshold) or slow_rate >= Fraction(
            self.policy.slow_call_rate_threshold
        )

    def window(self, now: float) -> list[tuple[bool, bool]]:
        """The outcomes in the closed-state window at ``now``."""
        if self.policy.window_type == "count":
            return [(f, s) for _, f, s in self.calls[-self.policy.window_size :]]
        return [(f, s) for t, f, s in self.calls if math.floor(t) > math.floor(now) - self.policy.window_size]

    def acquire(self, now: float) -> int | None:
        """The generation of a granted permit, or ``None`` when rejected."""
        self._settle(now)
        if self.state == "open":
            wait = min(
                self.policy.max_wait_in_open,
                self.policy.wait_in_open * self.policy.wait_multiplier ** (self.openings - 1),
            )
            if now < self.since + wait:
                return None
            self._enter("half_open", now, self.openings)
        if self.state == "half_open":
            if self.issued >= self.policy.permitted_calls_in_half_open:
                return None
            self.issued += 1
        return self.generation

    def record(self, generation: int, outcome: str, duration: float, now: float) -> None:
        """Record the outcome of a call admitted under ``generation``."""
        self._settle(now)
        if generation != self.generation or self.state == "open":
            return
        if outcome == "ignored":
            if self.state == "half_open":
                self.issued -= 1
            return
        slow = self.policy.slow_call_duration is not None and duration > self.policy.slow_call_duration
        entry = (outcome == "failure", slow)
        if self.state == "closed":
            self.calls.append((now, *entry))
            if self._trips(self.window(now), self.policy.minimum_calls):
                self._enter("open", now, 1)
            return
        self.probes.append(entry)
        if len(self.probes) == self.policy.permitted_calls_in_half_open:
            if self._trips(self.probes, len(self.probes)):
                self._enter("open", now, self.openings + 1)
            else:
                self._enter("closed", now, 0)


class BreakerMachine(RuleBasedStateMachine):
    """The in-memory store and the reference model agree on every step."""

    def __init__(self) -> None:
        super().__init__()
        self.now = 0.0
        self.outstanding: list[tuple[Permit, int]] = []

    @initialize(policy=breaker_policies())
    def start(self, policy: BreakerPolicy) -> None:
        """Start with a drawn policy, an empty store and a fresh reference."""
        self.policy = policy
        self.store = InMemoryBreakerStore()
        self.reference = ReferenceBreaker(policy)

    @rule(step=st.sampled_from((0.25, 0.5, 1.0, 2.0, 5.0)))
    def advance(self, step: float) -> None:
        """Move the clock forward."""
        self.now += step

    @rule()
    def acquire(self) -> None:
        """Both admit, or both reject."""
        answer = self.store.acquire(KEY, self.policy, self.now)
        expected = self.reference.acquire(self.now)
        assert isinstance(answer, Permit) == (expected is not None)
        if isinstance(answer, Permit) and expected is not None:
            self.outstanding.append((answer, expected))

    @rule(
        index=st.integers(0, 10),
        outcome=st.sampled_from(("success", "failure", "ignored")),
        duration=st.sampled_from((0.1, 1.0, 3.0)),
    )
    def complete(self, index: int, outcome: str, duration: float) -> None:
        """Complete an outstanding call in both with the same outcome."""
        if not self.outstanding:
            return
        permit, generation = self.outstanding.pop(index % len(self.outstanding))
        self.store.record(KEY, self.policy, permit, outcome, duration, self.now)  # type: ignore[arg-type]
        self.reference.record(generation, outcome, duration, self.now)

    @invariant()
    def same_state(self) -> None:
        """State, openings, permits and window counts agree."""
        if not hasattr(self, "store"):
            return
        snapshot = self.store.snapshot(KEY, self.now)
        assert snapshot.state.value == self.reference.state
        assert snapshot.openings == self.reference.openings
        if self.reference.state == "half_open":
            assert (
                snapshot.half_open_permits_left
                == self.policy.permitted_calls_in_half_open - self.reference.issued
            )
            assert snapshot.calls == len(self.reference.probes)
        elif self.reference.state == "closed":
            window = self.reference.window(self.now)
            assert (snapshot.calls, snapshot.failures, snapshot.slow_calls) == (
                len(window),
                sum(f for f, _ in window),
                sum(s for _, s in window),
            )


BreakerMachine.TestCase.settings = settings(max_examples=150, stateful_step_count=60, deadline=None)
TestBreakerMatchesReference = BreakerMachine.TestCase


# --------------------------------------------------------------------------- the in-place fast path


class PureStore:
    """A store that only runs the pure step functions: what the in-memory store must equal."""

    def __init__(self) -> None:
        self.data: dict[str, BreakerData] = {}
        self.policies: dict[str, BreakerPolicy] = {}

    def acquire(self, key: str, policy: BreakerPolicy, now: float) -> Permit | Rejection:
        """:func:`acquire_step` on the key's data."""
        data, answer = acquire_step(self.data.get(key, BreakerData()), key, policy, now)
        self.data[key], self.policies[key] = data, policy
        return answer

    def record(
        self, key: str, policy: BreakerPolicy, permit: Permit, outcome: str, duration: float, now: float
    ) -> tuple[Transition, ...]:
        """:func:`record_step` on the key's data."""
        data, transitions = record_step(
            self.data.get(key, BreakerData()),
            key,
            policy,
            permit,
            outcome,  # type: ignore[arg-type]
            duration,
            now,
        )
        self.data[key], self.policies[key] = data, policy
        return transitions

    def snapshot(self, key: str, now: float) -> BreakerSnapshot:
        """:func:`snapshot_of` the key's data."""
        return snapshot_of(self.data.get(key, BreakerData()), key, self.policies.get(key), now)


class FastPathMachine(RuleBasedStateMachine):
    """The in-memory store answers exactly as the pure step functions, step by step.

    Harsher than :class:`BreakerMachine`: two policies used in turn on one key (so a
    live window meets a policy it was not built for), a clock that can go back, stale
    permits, and every answer, transition and snapshot compared in full.
    """

    def __init__(self) -> None:
        super().__init__()
        self.now = 0.0
        self.outstanding: list[Permit] = []

    @initialize(first=breaker_policies(), second=breaker_policies())
    def start(self, first: BreakerPolicy, second: BreakerPolicy) -> None:
        """Two drawn policies, an empty in-memory store and an empty pure store."""
        self.policies = (first, second)
        self.store = InMemoryBreakerStore()
        self.pure = PureStore()

    @rule(step=st.sampled_from((0.25, 0.5, 1.0, 2.0, 5.0, -0.5, -2.0)))
    def advance(self, step: float) -> None:
        """Move the clock, now and then backwards."""
        self.now = max(0.0, self.now + step)

    @rule(which=st.sampled_from((0, 0, 0, 1)))
    def acquire(self, which: int) -> None:
        """Both give the same permit or rejection."""
        policy = self.policies[which]
        answer = self.store.acquire(KEY, policy, self.now)
        assert answer == self.pure.acquire(KEY, policy, self.now)
        if isinstance(answer, Permit):
            self.outstanding.append(answer)

    @rule(
        which=st.sampled_from((0, 0, 0, 1)),
        index=st.integers(0, 10),
        outcome=st.sampled_from(("success", "success", "failure", "ignored")),
        duration=st.sampled_from((0.1, 1.0, 3.0)),
        keep=st.booleans(),
    )
    def complete(self, which: int, index: int, outcome: str, duration: float, keep: bool) -> None:
        """Both report the same transitions; a kept permit is reused later (stale or not)."""
        if not self.outstanding:
            return
        policy = self.policies[which]
        at = index % len(self.outstanding)
        permit = self.outstanding[at] if keep else self.outstanding.pop(at)
        got = self.store.record(KEY, policy, permit, outcome, duration, self.now)  # type: ignore[arg-type]
        assert got == self.pure.record(KEY, policy, permit, outcome, duration, self.now)

    @invariant()
    def same_snapshot(self) -> None:
        """Snapshots agree field by field."""
        if hasattr(self, "store"):
            assert self.store.snapshot(KEY, self.now) == self.pure.snapshot(KEY, self.now)


FastPathMachine.TestCase.settings = settings(max_examples=200, stateful_step_count=80, deadline=None)
TestFastPathMatchesPureSteps = FastPathMachine.TestCase


def test_a_full_count_window_of_successes_stays_closed_over_many_calls():
    """Steady state of the in-place path: successes replacing successes in a full window."""
    store = InMemoryBreakerStore()
    for _ in range(1_000):
        assert call(store, "success", 0.0) == ()
    assert call(store, "failure", 0.0) == ()
    snapshot = store.snapshot(KEY, 0.0)
    assert (snapshot.state, snapshot.calls, snapshot.failures) == (BreakerState.CLOSED, 4, 1)
    assert call(store, "failure", 0.0)[0].to_state is BreakerState.OPEN


def test_a_stricter_policy_trips_a_live_window_on_its_next_outcome():
    """A window below one policy's threshold trips under a stricter one at the next record."""
    store, pure = InMemoryBreakerStore(), PureStore()
    strict = dataclasses.replace(POLICY, failure_rate_threshold=20.0)
    for outcome in ("success", "failure", "success", "success"):
        for s in (store, pure):
            permit = s.acquire(KEY, POLICY, 0.0)
            s.record(KEY, POLICY, permit, outcome, 0.1, 0.0)
    assert store.snapshot(KEY, 0.0).state is BreakerState.CLOSED
    permits = [s.acquire(KEY, strict, 0.0) for s in (store, pure)]
    assert permits[0] == permits[1]
    # A success replacing the oldest success leaves 1 failure in 4 calls: 25 % >= 20 %.
    got = [s.record(KEY, strict, p, "success", 0.1, 0.0) for s, p in zip((store, pure), permits, strict=True)]
    assert got[0] == got[1]
    assert got[0][0].to_state is BreakerState.OPEN


def test_time_window_successes_in_one_second_and_expiry():
    """Many calls in one second, then the window moving past them, as the pure steps say."""
    policy = dataclasses.replace(POLICY, window_type="time", window_size=3, minimum_calls=4)
    store, pure = InMemoryBreakerStore(), PureStore()
    schedule = [(0.1, "failure")] + [(0.2 + i / 1000, "success") for i in range(50)] + [(1.5, "failure")]
    schedule += [(3.2, "failure"), (3.3, "success"), (3.4, "failure"), (3.5, "failure"), (4.0, "failure")]
    for now, outcome in schedule:
        answers = [s.acquire(KEY, policy, now) for s in (store, pure)]
        assert answers[0] == answers[1]
        if isinstance(answers[0], Permit):
            got = [
                s.record(KEY, policy, a, outcome, 0.1, now)
                for s, a in zip((store, pure), answers, strict=True)
            ]
            assert got[0] == got[1]
        assert store.snapshot(KEY, now) == pure.snapshot(KEY, now)
    assert store.snapshot(KEY, 4.0).state is BreakerState.OPEN


def test_a_success_that_reaches_minimum_calls_can_open_the_breaker():
    """Rates first count at minimum_calls: 3 failures then a success is 75 %, count or time window."""
    for policy in (POLICY, dataclasses.replace(POLICY, window_type="time", window_size=10)):
        store = InMemoryBreakerStore()
        for _ in range(3):
            assert call(store, "failure", 0.5, policy=policy) == ()
        [transition] = call(store, "success", 0.5, policy=policy)
        assert (transition.to_state, transition.reason) == (BreakerState.OPEN, "threshold_reached")


def _record_from_threads(
    store: InMemoryBreakerStore, policy: BreakerPolicy, threads: int, per_thread: int
) -> None:
    barrier = threading.Barrier(threads)

    def worker() -> None:
        barrier.wait()
        for i in range(per_thread):
            permit = store.acquire(KEY, policy, 1.5)
            assert isinstance(permit, Permit)
            store.record(KEY, policy, permit, "failure" if i % 4 == 0 else "success", 0.1, 1.5)

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()


def test_threads_recording_into_a_closed_window_lose_no_outcome():
    """The in-place window is updated under the store's lock: concurrent records all count."""
    never_trips = dataclasses.replace(POLICY, minimum_calls=5_000)  # more than the 4,000 calls made
    for policy in (
        dataclasses.replace(never_trips, window_size=10_000),
        dataclasses.replace(never_trips, window_type="time", window_size=10),
    ):
        store = InMemoryBreakerStore()
        _record_from_threads(store, policy, threads=8, per_thread=500)
        snapshot = store.snapshot(KEY, 1.5)
        assert (snapshot.state, snapshot.calls, snapshot.failures) == (BreakerState.CLOSED, 4_000, 1_000)


def test_a_shorter_time_window_drops_buckets_a_longer_one_kept():
    """Switching to a shorter time window expires buckets even within the current second."""
    longer = dataclasses.replace(POLICY, window_type="time", window_size=2, minimum_calls=1)
    shorter = dataclasses.replace(longer, window_size=1, failure_rate_threshold=20.0)
    store, pure = InMemoryBreakerStore(), PureStore()
    steps = [(longer, 2.75, "success")] * 4 + [(longer, 3.0, "failure"), (shorter, 3.0, "success")]
    steps += [(longer, 3.0, "success"), (shorter, 3.5, "success"), (longer, 4.0, "success")]
    for policy, now, outcome in steps:
        permits = [s.acquire(KEY, policy, now) for s in (store, pure)]
        assert permits[0] == permits[1]
        if isinstance(permits[0], Permit):
            got = [
                s.record(KEY, policy, a, outcome, 0.1, now)
                for s, a in zip((store, pure), permits, strict=True)
            ]
            assert got[0] == got[1]
        assert store.snapshot(KEY, now) == pure.snapshot(KEY, now)
