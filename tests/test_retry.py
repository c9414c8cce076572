"""Tests of retry decisions: backoff and jitter, deadlines, Retry-After and budgets."""

from __future__ import annotations

import dataclasses
import random as stdlib_random

import pytest
from hypothesis import given
from hypothesis import strategies as st
from tests.strategies import operation_policies, retry_policies

from tierpolicy.engine._resilience import BudgetPolicy, OperationPolicy, RetryPolicy
from tierpolicy.engine._retry import (
    RetryBudget,
    RetryDecision,
    RetryReason,
    backoff_delay,
    decide_retry,
    delay_bounds,
    exponential_delay,
)

RETRY = RetryPolicy(
    max_attempts=3,
    initial_delay=0.2,
    multiplier=2.0,
    max_delay=2.0,
    jitter="none",
    deadline=8.0,
    categories=None,
    honor_retry_after=True,
    max_retry_after=3.0,
    budget=None,
)
POLICY = OperationPolicy(
    pattern="payments.*",
    idempotent=True,
    timeout=2.0,
    retry=RETRY,
    breaker=None,
    bulkhead=None,
    fallback=(),
    rule="resilience:payments.*",
    source="resilience.yaml:8:5",
)


class FixedRandom:
    """A random source that always returns the same fraction."""

    def __init__(self, value: float) -> None:
        self.value = value

    def random(self) -> float:
        """Return the fixed fraction."""
        return self.value


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def __call__(self) -> float:
        """Return the current fake time."""
        return self.now


def with_retry(**changes: object) -> OperationPolicy:
    """POLICY with its retry policy changed."""
    return dataclasses.replace(POLICY, retry=dataclasses.replace(RETRY, **changes))  # type: ignore[arg-type]


def decide(policy: OperationPolicy = POLICY, **overrides: object) -> RetryDecision:
    """decide_retry with defaults for a first retryable failure."""
    arguments: dict[str, object] = {
        "retryable": True,
        "category": "transient",
        "never_executed": False,
        "failed_attempt": 1,
        "elapsed": 0.0,
        "previous_delay": None,
        "retry_after": None,
        "random": FixedRandom(0.5),
        "budget": None,
    }
    arguments.update(overrides)
    return decide_retry(policy, **arguments)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- backoff


def test_exponential_delay_grows_and_caps():
    """Without jitter the delays are initial * multiplier**(n-1), capped at max_delay."""
    assert [exponential_delay(RETRY, n) for n in range(1, 7)] == [0.2, 0.4, 0.8, 1.6, 2.0, 2.0]


def test_exponential_delay_never_overflows():
    """A huge attempt number gives the cap, not an overflow."""
    assert exponential_delay(dataclasses.replace(RETRY, multiplier=100.0), 10**9) == 2.0


@pytest.mark.parametrize(
    ("jitter", "fraction", "expected"),
    [
        ("none", 0.5, 0.8),
        ("full", 0.0, 0.0),
        ("full", 0.5, 0.4),
        ("equal", 0.0, 0.4),
        ("equal", 0.5, 0.6),
        ("decorrelated", 0.0, 0.2),
        ("decorrelated", 0.5, 0.2 + 0.5 * (1.2 - 0.2)),
    ],
)
def test_backoff_formula_per_jitter_mode(jitter, fraction, expected):
    """Each jitter mode applies the AWS formula to attempt 3 (decorrelated: previous 0.4)."""
    policy = dataclasses.replace(RETRY, jitter=jitter)
    assert backoff_delay(policy, 3, 0.4, FixedRandom(fraction)) == pytest.approx(expected)


def test_decorrelated_is_capped():
    """Decorrelated jitter never exceeds max_delay, whatever the previous delay."""
    policy = dataclasses.replace(RETRY, jitter="decorrelated")
    assert backoff_delay(policy, 5, 10.0, FixedRandom(0.99)) == 2.0
    assert delay_bounds(policy, 5, 10.0) == (0.2, 2.0)


@given(
    policy=retry_policies(),
    failed_attempt=st.integers(1, 40),
    previous=st.none() | st.floats(0, 100),
    seed=st.integers(0, 2**32),
)
def test_every_jitter_mode_stays_within_its_bounds(policy, failed_attempt, previous, seed):
    """A drawn delay lies within delay_bounds, which lie within [0, max_delay]."""
    low, high = delay_bounds(policy, failed_attempt, previous)
    delay = backoff_delay(policy, failed_attempt, previous, stdlib_random.Random(seed))
    assert 0.0 <= low <= delay <= high <= policy.max_delay
    exponential = exponential_delay(policy, failed_attempt)
    if policy.jitter == "none":
        assert delay == exponential
    elif policy.jitter == "full":
        assert (low, high) == (0.0, exponential)
    elif policy.jitter == "equal":
        assert (low, high) == (exponential / 2, exponential)
    else:
        assert low == min(policy.max_delay, policy.initial_delay)


@given(policy=retry_policies(), seeds=st.tuples(st.integers(0, 2**32), st.integers(0, 2**32)))
def test_decorrelated_state_never_leaks_between_calls(policy, seeds):
    """Two calls interleaved get exactly the delays each gets when run alone."""
    policy = dataclasses.replace(policy, jitter="decorrelated")

    def alone(seed: int) -> list[float]:
        rng, previous, delays = stdlib_random.Random(seed), None, []
        for attempt in range(1, 8):
            previous = backoff_delay(policy, attempt, previous, rng)
            delays.append(previous)
        return delays

    expected = (alone(seeds[0]), alone(seeds[1]))
    rngs = (stdlib_random.Random(seeds[0]), stdlib_random.Random(seeds[1]))
    previous: list[float | None] = [None, None]
    got: tuple[list[float], list[float]] = ([], [])
    for attempt in range(1, 8):
        for call in (1, 0):
            previous[call] = backoff_delay(policy, attempt, previous[call], rngs[call])
            got[call].append(previous[call])  # type: ignore[arg-type]
    assert got == expected


# --------------------------------------------------------------------------- decisions


def test_first_failure_is_retried_after_the_backoff():
    """A retryable failure of attempt 1 schedules attempt 2 after the first backoff."""
    assert decide() == RetryDecision(True, 0.2, RetryReason.RETRY, 2, (0.2, 0.2))


def test_no_retry_policy_means_one_attempt():
    """An operation without retry policy is never retried."""
    decision = decide(dataclasses.replace(POLICY, retry=None))
    assert (decision.retry, decision.reason) == (False, RetryReason.NO_RETRY_POLICY)


def test_non_retryable_error_is_not_retried():
    """Classification decides: a non-retryable error is final."""
    assert decide(retryable=False) == RetryDecision(False, 0.0, RetryReason.NOT_RETRYABLE, 2)


def test_category_narrowing():
    """With a category list, only those categories are retried."""
    policy = with_retry(categories=frozenset({"unavailable"}))
    assert decide(policy, category="transient").reason is RetryReason.CATEGORY_EXCLUDED
    assert decide(policy, category="unavailable").reason is RetryReason.RETRY


def test_non_idempotent_retries_only_requests_that_never_ran():
    """A non-idempotent operation retries only when the request never reached the server."""
    policy = dataclasses.replace(POLICY, idempotent=False)
    assert decide(policy).reason is RetryReason.NOT_IDEMPOTENT
    assert decide(policy, never_executed=True).reason is RetryReason.RETRY


def test_attempts_exhausted():
    """The last allowed attempt is not followed by another."""
    assert decide(failed_attempt=2).retry is True
    assert decide(failed_attempt=3) == RetryDecision(False, 0.0, RetryReason.ATTEMPTS_EXHAUSTED, 4)


def test_retry_after_is_used_when_larger():
    """A server's Retry-After longer than the backoff becomes the delay."""
    assert decide(retry_after=1.5).delay == 1.5
    assert decide(retry_after=0.1).delay == 0.2


def test_retry_after_is_capped_by_policy():
    """Retry-After is capped at max_retry_after."""
    assert decide(retry_after=60.0, elapsed=1.0).delay == 3.0


def test_retry_after_ignored_when_not_honoured():
    """With honor_retry_after false the hint is not used."""
    assert decide(with_retry(honor_retry_after=False), retry_after=1.5).delay == 0.2


def test_retry_after_beyond_the_deadline_gives_up():
    """A hint that does not fit in the remaining deadline ends the retries."""
    decision = decide(with_retry(max_retry_after=None), retry_after=7.0, elapsed=2.0)
    assert (decision.retry, decision.reason) == (False, RetryReason.RETRY_AFTER_EXCEEDS_DEADLINE)


def test_never_sleeps_past_the_deadline():
    """A backoff that would end at or after the deadline is not scheduled."""
    assert decide(failed_attempt=2, elapsed=7.7).reason is RetryReason.DEADLINE
    assert decide(failed_attempt=2, elapsed=7.5).retry is True


def test_budget_exhausted_stops_retries():
    """An exhausted budget refuses the retry."""
    budget = RetryBudget(BudgetPolicy("token_bucket", max_tokens=2, token_ratio=1))
    budget.record_failure()
    assert decide(budget=budget).reason is RetryReason.BUDGET_EXHAUSTED


@given(
    policy=operation_policies(),
    category=st.sampled_from(("transient", "internal")),
    attempt=st.integers(1, 12),
)
def test_a_non_retryable_error_is_never_retried(policy, category, attempt):
    """Whatever the policy, retryable=False never retries."""
    decision = decide(policy, retryable=False, category=category, failed_attempt=attempt, never_executed=True)
    assert decision.retry is False


@given(
    policy=operation_policies(deadline=True),
    durations=st.lists(st.sampled_from((0.0, 0.05, 0.5, 1.0, 2.5)), min_size=12, max_size=12),
    hints=st.lists(st.none() | st.sampled_from((0.0, 0.3, 2.0, 9.0)), min_size=12, max_size=12),
    seed=st.integers(0, 2**32),
)
def test_planned_sleep_never_passes_the_deadline(policy, durations, hints, seed):
    """In a run of failing attempts, sleeps end before the deadline and attempts stay within max."""
    retry = policy.retry
    rng = stdlib_random.Random(seed)
    elapsed, previous, attempt, slept = 0.0, None, 1, 0.0
    while True:
        assert attempt <= retry.max_attempts
        elapsed += (
            durations[attempt - 1] if policy.timeout is None else min(durations[attempt - 1], policy.timeout)
        )
        decision = decide(
            policy,
            never_executed=True,
            failed_attempt=attempt,
            elapsed=elapsed,
            previous_delay=previous,
            retry_after=hints[attempt - 1],
            random=rng,
        )
        if not decision.retry:
            break
        assert decision.delay >= 0
        assert elapsed + decision.delay < retry.deadline
        slept += decision.delay
        elapsed += decision.delay
        previous = decision.delay
        attempt += 1
    assert slept < retry.deadline
    assert attempt <= retry.max_attempts


# --------------------------------------------------------------------------- budgets


def test_token_bucket_follows_grpc_a6():
    """Tokens start at max, failures take one, successes add the ratio; retry while > max/2."""
    budget = RetryBudget(BudgetPolicy("token_bucket", max_tokens=10, token_ratio=0.5))
    assert budget.tokens == 10
    for _ in range(4):
        budget.record_failure()
    assert budget.try_retry() is True
    budget.record_failure()
    assert (budget.tokens, budget.try_retry()) == (5.0, False)
    budget.record_success()
    assert (budget.tokens, budget.try_retry()) == (5.5, True)
    for _ in range(20):
        budget.record_success()
    assert budget.tokens == 10
    for _ in range(20):
        budget.record_failure()
    assert budget.tokens == 0


def test_percent_budget_limits_retries_to_a_share_of_requests():
    """Retries are at most percent of the window's requests, with a per-second minimum."""
    clock = FakeClock(100.0)
    budget = RetryBudget(
        BudgetPolicy("percent", percent=20, min_retries_per_second=0.1, window=10), clock=clock
    )
    assert [budget.try_retry() for _ in range(2)] == [True, False]
    for _ in range(20):
        budget.record_request()
    assert [budget.try_retry() for _ in range(4)] == [True, True, True, False]
    clock.now = 110.0
    assert [budget.try_retry() for _ in range(2)] == [True, False]
