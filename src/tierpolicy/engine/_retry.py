"""Retry decisions: backoff with jitter, deadlines, server hints and retry budgets.

Everything here is pure and I/O-free: randomness and the clock are passed in, and the
per-call state (the previous delay of decorrelated jitter) is carried by the caller, so
no state is ever shared between calls. Seconds are floats throughout.

Backoff after failed attempt ``n`` (1-based), with ``e(n) = min(cap, initial * multiplier**(n-1))``
(AWS "Exponential Backoff and Jitter"):

* ``none``: ``e(n)``
* ``full``: ``U(0, e(n))``
* ``equal``: ``e(n)/2 + U(0, e(n)/2)``
* ``decorrelated``: ``min(cap, U(initial, previous * 3))`` with ``previous`` the last
  delay of this call (``initial`` before the first); the multiplier is not used.
"""

from __future__ import annotations

import collections
import dataclasses
import enum
import math
import threading
import time
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from collections.abc import Callable

    from ._resilience import BudgetPolicy, OperationPolicy, RetryPolicy

_MAX_EXPONENT = 1024
"""Exponents beyond this are capped anyway (by ``max_delay``); bounding them avoids overflow."""


class RandomSource(Protocol):
    """What backoff needs of randomness: ``random.Random`` fits."""

    def random(self) -> float:
        """A float uniformly drawn from [0, 1)."""
        ...


class RetryReason(enum.StrEnum):
    """Why a retry decision came out the way it did."""

    RETRY = "RETRY"
    """The attempt is retried after ``delay`` seconds."""
    NO_RETRY_POLICY = "NO_RETRY_POLICY"
    """The operation has no retry policy: one attempt only."""
    NOT_RETRYABLE = "NOT_RETRYABLE"
    """Classification says the error is not retryable."""
    CATEGORY_EXCLUDED = "CATEGORY_EXCLUDED"
    """The error's category is not among the policy's retried categories."""
    NOT_IDEMPOTENT = "NOT_IDEMPOTENT"
    """The operation is not idempotent and the request may have reached the server."""
    ATTEMPTS_EXHAUSTED = "ATTEMPTS_EXHAUSTED"
    """The failed attempt was the last one allowed."""
    RETRY_AFTER_EXCEEDS_DEADLINE = "RETRY_AFTER_EXCEEDS_DEADLINE"
    """The server asked to wait longer than the deadline leaves."""
    DEADLINE = "DEADLINE"
    """The backoff would end at or past the deadline."""
    BUDGET_EXHAUSTED = "BUDGET_EXHAUSTED"
    """The retry budget has no room: retrying would amplify an outage."""


@dataclasses.dataclass(frozen=True, slots=True)
class RetryDecision:
    """Whether to retry, after how long, and why.

    Attributes:
        retry: Whether to make another attempt.
        delay: Seconds to sleep before it (0 when not retrying).
        reason: Why.
        attempt: The number of the attempt this decision is about (the failed one + 1).
        delay_bounds: The (min, max) the jittered backoff could take for this attempt;
            a honoured Retry-After may make ``delay`` larger than the max.
    """

    retry: bool
    delay: float
    reason: RetryReason
    attempt: int
    delay_bounds: tuple[float, float] = (0.0, 0.0)


def _give_up(reason: RetryReason, attempt: int, bounds: tuple[float, float] = (0.0, 0.0)) -> RetryDecision:
    return RetryDecision(retry=False, delay=0.0, reason=reason, attempt=attempt, delay_bounds=bounds)


def _uniform(random: RandomSource, low: float, high: float) -> float:
    return low + (high - low) * random.random()


def exponential_delay(policy: RetryPolicy, failed_attempt: int) -> float:
    """``min(cap, initial * multiplier**(failed_attempt-1))``, the un-jittered backoff."""
    exponent = min(max(0, failed_attempt - 1), _MAX_EXPONENT)
    try:
        raw = policy.initial_delay * policy.multiplier**exponent
    except OverflowError:
        raw = math.inf
    return min(policy.max_delay, raw)


def delay_bounds(
    policy: RetryPolicy, failed_attempt: int, previous_delay: float | None
) -> tuple[float, float]:
    """The (min, max) of the backoff after ``failed_attempt`` for this policy's jitter mode."""
    if policy.jitter == "decorrelated":
        previous = policy.initial_delay if previous_delay is None else previous_delay
        high = max(policy.initial_delay, previous * 3.0)
        return min(policy.max_delay, policy.initial_delay), min(policy.max_delay, high)
    exponential = exponential_delay(policy, failed_attempt)
    if policy.jitter == "none":
        return exponential, exponential
    if policy.jitter == "full":
        return 0.0, exponential
    return exponential / 2, exponential


def backoff_delay(
    policy: RetryPolicy, failed_attempt: int, previous_delay: float | None, random: RandomSource
) -> float:
    """The backoff after attempt ``failed_attempt`` (1-based) fails, per the jitter mode.

    ``previous_delay`` is this call's last backoff (``None`` before the first); only
    decorrelated jitter reads it, and the caller keeps it per call.
    """
    if policy.jitter == "none":
        return exponential_delay(policy, failed_attempt)
    if policy.jitter == "decorrelated":
        previous = policy.initial_delay if previous_delay is None else previous_delay
        high = max(policy.initial_delay, previous * 3.0)
        return min(policy.max_delay, _uniform(random, policy.initial_delay, high))
    exponential = exponential_delay(policy, failed_attempt)
    if policy.jitter == "full":
        return _uniform(random, 0.0, exponential)
    half = exponential / 2
    return half + _uniform(random, 0.0, half)


def decide_retry(
    policy: OperationPolicy,
    *,
    retryable: bool,
    category: str,
    never_executed: bool,
    failed_attempt: int,
    elapsed: float,
    previous_delay: float | None,
    retry_after: float | None,
    random: RandomSource,
    budget: RetryBudget | None,
) -> RetryDecision:
    """Decide whether attempt ``failed_attempt`` (1-based) is followed by another, and when.

    Rules, in order: no retry policy, not retryable, category not retried, non-idempotent
    operation unless the request never ran, attempts exhausted; then the delay (jittered
    backoff, or the server's Retry-After when honoured and larger, capped by
    ``max_retry_after``) must end before the deadline; last, the budget must allow it.
    ``elapsed`` is the seconds since the first attempt started.
    """
    attempt = failed_attempt + 1
    retry = policy.retry
    if retry is None:
        return _give_up(RetryReason.NO_RETRY_POLICY, attempt)
    if not retryable:
        return _give_up(RetryReason.NOT_RETRYABLE, attempt)
    if retry.categories is not None and category not in retry.categories:
        return _give_up(RetryReason.CATEGORY_EXCLUDED, attempt)
    if not policy.idempotent and not never_executed:
        return _give_up(RetryReason.NOT_IDEMPOTENT, attempt)
    if failed_attempt >= retry.max_attempts:
        return _give_up(RetryReason.ATTEMPTS_EXHAUSTED, attempt)
    bounds = delay_bounds(retry, failed_attempt, previous_delay)
    delay = backoff_delay(retry, failed_attempt, previous_delay, random)
    remaining = math.inf if retry.deadline is None else retry.deadline - elapsed
    if retry_after is not None and retry.honor_retry_after:
        hint = retry_after if retry.max_retry_after is None else min(retry_after, retry.max_retry_after)
        if hint >= remaining:
            return _give_up(RetryReason.RETRY_AFTER_EXCEEDS_DEADLINE, attempt, bounds)
        delay = max(delay, hint)
    if delay >= remaining:
        return _give_up(RetryReason.DEADLINE, attempt, bounds)
    if budget is not None and not budget.try_retry():
        return _give_up(RetryReason.BUDGET_EXHAUSTED, attempt, bounds)
    return RetryDecision(
        retry=True, delay=delay, reason=RetryReason.RETRY, attempt=attempt, delay_bounds=bounds
    )


# --------------------------------------------------------------------------- budgets


class RetryBudget:
    """A retry budget shared by every call of one operation; thread-safe.

    ``token_bucket`` (gRPC proposal A6, retry throttling): tokens start at
    ``max_tokens``; each failed attempt takes one (down to 0), each success adds
    ``token_ratio`` (up to ``max_tokens``); retries are allowed while tokens exceed
    ``max_tokens / 2``.

    ``percent`` (Envoy-style retry budget over a time window, as in Linkerd and
    Finagle): in the last ``window`` seconds, retries may be at most ``percent`` of the
    requests, but ``min_retries_per_second * window`` retries are always allowed.
    Counts are kept in one-second buckets, so memory is bounded by the window.
    """

    def __init__(self, policy: BudgetPolicy, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.policy = policy
        self._clock = clock
        self._lock = threading.Lock()
        self._tokens = policy.max_tokens
        self._buckets: collections.deque[list[int]] = collections.deque()  # [second, requests, retries]

    @property
    def tokens(self) -> float:
        """The token bucket's current tokens (``token_bucket`` only)."""
        with self._lock:
            return self._tokens

    def record_request(self) -> None:
        """Count a call (its first attempt) towards the percent budget."""
        if self.policy.kind == "percent":
            with self._lock:
                self._bucket()[1] += 1

    def record_success(self) -> None:
        """A successful attempt: the token bucket gains ``token_ratio``."""
        if self.policy.kind == "token_bucket":
            with self._lock:
                self._tokens = min(self.policy.max_tokens, self._tokens + self.policy.token_ratio)

    def record_failure(self) -> None:
        """A failed attempt: the token bucket loses one token."""
        if self.policy.kind == "token_bucket":
            with self._lock:
                self._tokens = max(0.0, self._tokens - 1.0)

    def try_retry(self) -> bool:
        """Whether the budget allows one more retry now; an allowed retry is counted."""
        with self._lock:
            if self.policy.kind == "token_bucket":
                return self._tokens > self.policy.max_tokens / 2
            bucket = self._bucket()
            requests = sum(b[1] for b in self._buckets)
            retries = sum(b[2] for b in self._buckets)
            allowed = max(
                self.policy.min_retries_per_second * self.policy.window,
                self.policy.percent / 100.0 * requests,
            )
            if retries + 1 > allowed:
                return False
            bucket[2] += 1
            return True

    def _bucket(self) -> list[int]:
        second = math.floor(self._clock())
        oldest = second - math.ceil(self.policy.window) + 1
        while self._buckets and self._buckets[0][0] < oldest:
            self._buckets.popleft()
        if not self._buckets or self._buckets[-1][0] != second:
            self._buckets.append([second, 0, 0])
        return self._buckets[-1]
