"""Tests of the resilience executor: retry, breaker, timeout, bulkhead and fallback, sync and async."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tierpolicy
from tierpolicy.engine._breaker import AsyncBreakerStore, InMemoryBreakerStore
from tierpolicy.engine._executor import (
    Attempt,
    AttemptFailed,
    AttemptStarted,
    AttemptSucceeded,
    AttemptTimeoutError,
    BreakerStoreFailed,
    BreakerTransition,
    BulkheadFullError,
    CircuitOpenError,
    Done,
    Executor,
    Fail,
    Failure,
    FallbackFailed,
    FallbackUsed,
    GaveUp,
    InMemoryResultCache,
    ResilienceError,
    RetryScheduled,
    Sleep,
    Success,
)

ERRORS = """\
apiVersion: tierpolicy/v1
kind: Errors
metadata: {name: errors}
spec:
  codes:
    UPSTREAM_UNAVAILABLE: {category: unavailable, status: 503, retryable: true, title: Unavailable, message: "Try later."}
    RATE_LIMITED: {category: throttled, status: 429, retryable: true, title: Rate limited, message: "Slow down."}
    CONNECT_FAILED:
      {category: transient, status: 503, retryable: true, never_executed: true, title: Connect failed, message: "Try later."}
    TIMED_OUT: {category: timeout, status: 504, retryable: true, title: Timed out, message: "Timed out."}
    BAD_INPUT: {category: invalid_request, status: 400, title: Bad input, message: "Bad input."}
    REJECTED: {category: unavailable, status: 503, title: Rejected, message: "Busy."}
    CIRCUIT_OPEN: {category: unavailable, status: 503, title: Circuit open, message: "{operation} is unavailable."}
    INTERNAL: {category: internal, status: 500, title: Internal, message: "Something went wrong."}
  rules:
    - {name: unavailable, match: {status: 503}, code: UPSTREAM_UNAVAILABLE}
    - {name: throttled, match: {status: 429}, code: RATE_LIMITED}
    - {name: refused, match: {exception: ConnectionRefusedError}, code: CONNECT_FAILED}
    - {name: timeout, match: {exception: TimeoutError}, code: TIMED_OUT}
    - {name: bad, match: {exception: ValueError}, code: BAD_INPUT}
    - {name: rejected, match: {exception: tierpolicy.engine.CallRejectedError}, code: REJECTED}
    - {name: circuit, match: {exception: tierpolicy.engine.CircuitOpenError}, code: CIRCUIT_OPEN}
    - {name: internal, code: INTERNAL}
"""

RESILIENCE = """\
apiVersion: tierpolicy/v1
kind: Resilience
metadata: {name: resilience}
spec:
  operations:
    plain.retry:
      retry: {max_attempts: 4, initial_delay: 250ms, multiplier: 2, max_delay: 10s, jitter: none}
    plain.deadline:
      retry: {max_attempts: 10, initial_delay: 500ms, multiplier: 2, max_delay: 10s, jitter: none, deadline: 2s}
    plain.hint:
      retry: {max_attempts: 3, initial_delay: 250ms, jitter: none, deadline: 10s, max_retry_after: 4s}
    plain.decorrelated:
      retry: {max_attempts: 4, initial_delay: 250ms, max_delay: 10s, jitter: decorrelated}
    plain.timeout:
      timeout: 1s
      retry: {max_attempts: 2, initial_delay: 250ms, jitter: none}
    plain.hang:
      timeout: 1ms
      retry: {max_attempts: 2, initial_delay: 250ms, jitter: none}
    plain.budget:
      retry:
        max_attempts: 3
        initial_delay: 250ms
        jitter: none
        budget: {kind: token_bucket, max_tokens: 4, token_ratio: 0.5}
    payments.capture:
      idempotent: false
      retry: {max_attempts: 3, initial_delay: 250ms, jitter: none}
    guarded.call:
      circuit_breaker:
        window: {type: count, size: 4}
        minimum_calls: 4
        failure_rate_threshold: 50
        wait_in_open: 30s
        permitted_calls_in_half_open: 2
    guarded.retry:
      retry: {max_attempts: 3, initial_delay: 250ms, jitter: none}
      circuit_breaker:
        window: {type: count, size: 2}
        minimum_calls: 2
        failure_rate_threshold: 100
        wait_in_open: 30s
        permitted_calls_in_half_open: 1
    narrow.call:
      bulkhead: {max_concurrent: 1}
    fallback.static:
      retry: {max_attempts: 2, initial_delay: 250ms, jitter: none}
      fallback: [{static: {value: {items: []}}}]
    fallback.cached:
      fallback: [{cached: {max_staleness: 60s}}, {static: {value: stale}}]
    fallback.cached_only:
      fallback: [{cached: {max_staleness: 60s}}]
    fallback.operation:
      fallback: [{operation: backup.call}, {static: {value: last-resort}}]
    fallback.fail:
      fallback: [{cached: {max_staleness: 60s}}, {fail: {}}]
    cycle.a:
      fallback: [{operation: cycle.b}]
    cycle.b:
      fallback: [{operation: cycle.a}]
"""


class HTTPStatusError(Exception):
    """An upstream HTTP error, shaped like an HTTP client library's."""

    def __init__(self, status_code: int, retry_after: float | None = None) -> None:
        super().__init__(f"HTTP {status_code}")
        self.status_code = status_code
        self.retry_after = retry_after


HTTP_ERROR = f"{HTTPStatusError.__module__}.HTTPStatusError"


class FakeTime:
    """A monotonic clock that only moves when told to, and sleeps that move it."""

    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        """The current fake time."""
        return self.now

    def sleep(self, seconds: float) -> None:
        """Record a sleep and advance the clock by it."""
        self.sleeps.append(seconds)
        self.now += seconds

    async def async_sleep(self, seconds: float) -> None:
        """The awaitable twin of :meth:`sleep`."""
        self.sleep(seconds)


class Script:
    """A flaky function: each call takes the next step (an exception to raise or a value)."""

    def __init__(self, time: FakeTime, *steps: object, duration: float = 0.0) -> None:
        self.time = time
        self.steps = list(steps)
        self.calls = 0
        self.duration = duration
        self.args: list[tuple[object, ...]] = []

    def step(self, *args: object) -> object:
        """Take the next step."""
        self.args.append(args)
        step = self.steps[min(self.calls, len(self.steps) - 1)]
        self.calls += 1
        self.time.now += self.duration
        if isinstance(step, BaseException):
            raise step
        return step

    def sync(self, *args: object) -> object:
        """The sync face."""
        return self.step(*args)

    async def coro(self, *args: object) -> object:
        """The async face."""
        return self.step(*args)


@pytest.fixture(scope="module")
def policy_set() -> tierpolicy.PolicySet:
    """The executor tests' policy set, compiled once."""
    return tierpolicy.load_files({"errors.yaml": ERRORS, "resilience.yaml": RESILIENCE}, root="executor")


@pytest.fixture
def time() -> FakeTime:
    """A fresh fake clock."""
    return FakeTime()


@pytest.fixture
def events() -> list[object]:
    """The events an executor emitted."""
    return []


def make(
    policy_set: tierpolicy.PolicySet, time: FakeTime, events: list[object], **options: object
) -> Executor:
    """An executor on fake time, recording its events."""
    return Executor(
        tierpolicy.Engine(policy_set),
        clock=time.clock,
        sleep=time.sleep,
        async_sleep=time.async_sleep,
        random=lambda: 0.5,
        on_event=events.append,
        **options,  # type: ignore[arg-type]
    )


@pytest.fixture
def executor(policy_set, time, events) -> Executor:
    """An executor on fake time with random fixed at 0.5."""
    return make(policy_set, time, events)


SHELLS = ["sync", "async"]


def call(shell: str, executor: Executor, operation: str, script: Script, *args: object) -> object:
    """Run the script through the sync or the async shell."""
    if shell == "sync":
        return executor.run(operation, script.sync, *args)
    return asyncio.run(executor.arun(operation, script.coro, *args))


def failure(shell: str, executor: Executor, operation: str, script: Script) -> BaseException:
    """Run the script and return what it raised."""
    with pytest.raises(Exception) as info:
        call(shell, executor, operation, script)
    return info.value


def kinds(events: list[object]) -> list[str]:
    """The events' class names, in order."""
    return [type(e).__name__ for e in events]


# --------------------------------------------------------------------------- retry


@pytest.mark.parametrize("shell", SHELLS)
def test_retries_with_the_policys_backoff_until_success(shell, executor, time):
    """503, 503, 503 then a value: four attempts, sleeping 0.25, 0.5 and 1 s (jitter none)."""
    script = Script(time, HTTPStatusError(503), HTTPStatusError(503), HTTPStatusError(503), "ok")
    assert call(shell, executor, "plain.retry", script) == "ok"
    assert script.calls == 4
    assert time.sleeps == [0.25, 0.5, 1.0]


@pytest.mark.parametrize("shell", SHELLS)
def test_gives_up_after_max_attempts_with_the_classified_error(shell, executor, time):
    """Always 503: exactly max_attempts calls, then ResilienceError raised from the last error."""
    last = HTTPStatusError(503)
    script = Script(time, HTTPStatusError(503), HTTPStatusError(503), HTTPStatusError(503), last)
    error = failure(shell, executor, "plain.retry", script)
    assert isinstance(error, ResilienceError)
    assert error.__cause__ is last
    assert error.classification.code == "UPSTREAM_UNAVAILABLE"
    assert (error.operation, error.attempts, error.reason) == ("plain.retry", 4, "ATTEMPTS_EXHAUSTED")
    assert script.calls == 4
    assert time.sleeps == [0.25, 0.5, 1.0]


@pytest.mark.parametrize("shell", SHELLS)
def test_never_sleeps_past_the_deadline(shell, executor, time):
    """Deadline 2s, backoff 0.5 then 1: the 2nd backoff would end at 2.1s, so it gives up."""
    script = Script(time, HTTPStatusError(503), duration=0.3)
    error = failure(shell, executor, "plain.deadline", script)
    assert isinstance(error, ResilienceError)
    assert error.reason == "DEADLINE"
    assert script.calls == 2
    assert time.sleeps == [0.5]
    assert sum(time.sleeps) + script.calls * 0.3 <= 2.0


@pytest.mark.parametrize("shell", SHELLS)
def test_honours_retry_after_capped_by_the_policy(shell, executor, time):
    """Retry-After 3s beats the 0.25s backoff; 9s is capped at max_retry_after 4s."""
    script = Script(time, HTTPStatusError(429, retry_after=3), HTTPStatusError(429, retry_after=9), "ok")
    assert call(shell, executor, "plain.hint", script) == "ok"
    assert time.sleeps == [3.0, 4.0]


@pytest.mark.parametrize("shell", SHELLS)
def test_gives_up_when_retry_after_exceeds_the_deadline(shell, executor, time):
    """A hint of 4s after 6.5s of a 10s deadline leaves too little: no sleep, give up."""
    script = Script(time, HTTPStatusError(429, retry_after=4), duration=6.5)
    error = failure(shell, executor, "plain.hint", script)
    assert isinstance(error, ResilienceError)
    assert error.reason == "RETRY_AFTER_EXCEEDS_DEADLINE"
    assert error.classification.retry_after == 4.0
    assert script.calls == 1
    assert time.sleeps == []


@pytest.mark.parametrize("shell", SHELLS)
def test_never_retries_a_non_retryable_error(shell, executor, time):
    """A ValueError (BAD_INPUT, not retryable) fails after one attempt."""
    script = Script(time, ValueError("bad"), "ok")
    error = failure(shell, executor, "plain.retry", script)
    assert isinstance(error, ResilienceError)
    assert (error.classification.code, error.reason, error.attempts) == ("BAD_INPUT", "NOT_RETRYABLE", 1)
    assert script.calls == 1


@pytest.mark.parametrize("shell", SHELLS)
def test_non_idempotent_operations_retry_only_errors_that_never_executed(shell, executor, time):
    """payments.capture is not idempotent: a 503 is final, a refused connection is retried."""
    script = Script(time, HTTPStatusError(503), "ok")
    error = failure(shell, executor, "payments.capture", script)
    assert isinstance(error, ResilienceError)
    assert error.reason == "NOT_IDEMPOTENT"
    assert script.calls == 1
    refused = Script(time, ConnectionRefusedError(), ConnectionRefusedError(), "captured")
    assert call(shell, executor, "payments.capture", refused) == "captured"
    assert refused.calls == 3


@pytest.mark.parametrize("shell", SHELLS)
def test_decorrelated_jitter_state_is_fresh_per_call(shell, executor, time):
    """Two identical failing calls sleep the same delays: no jitter state leaks between calls."""
    for _ in range(2):
        failure(shell, executor, "plain.decorrelated", Script(time, HTTPStatusError(503)))
    # random 0.5: U(0.25, 3*prev) midpoint -> 0.5, 0.875, 1.4375; the same again.
    assert time.sleeps == [0.5, 0.875, 1.4375, 0.5, 0.875, 1.4375]


@pytest.mark.parametrize("shell", SHELLS)
def test_retry_budget_stops_retries_when_exhausted(shell, executor, time):
    """A token bucket of 4 allows retries while tokens > 2: the second failure leaves 2, so it stops."""
    error = failure(shell, executor, "plain.budget", Script(time, HTTPStatusError(503)))
    assert isinstance(error, ResilienceError)
    assert (error.attempts, error.reason) == (2, "BUDGET_EXHAUSTED")
    assert time.sleeps == [0.25]


@pytest.mark.parametrize("shell", SHELLS)
def test_an_operation_without_policy_is_called_once(shell, executor, time):
    """No resilience policy: one attempt, its error classified and raised as ResilienceError."""
    assert call(shell, executor, "unlisted.op", Script(time, "ok")) == "ok"
    error = failure(shell, executor, "unlisted.op", Script(time, HTTPStatusError(503)))
    assert isinstance(error, ResilienceError)
    assert (error.classification.code, error.reason, error.attempts) == (
        "UPSTREAM_UNAVAILABLE",
        "NO_RETRY_POLICY",
        1,
    )


# --------------------------------------------------------------------------- timeout


def test_a_sync_attempt_that_overran_its_timeout_fails_as_a_timeout(executor, time):
    """Sync calls cannot be pre-empted: one that returns after 1.5s of a 1s timeout is a failure."""
    script = Script(time, "too late", duration=1.5)
    error = failure("sync", executor, "plain.timeout", script)
    assert isinstance(error, ResilienceError)
    assert isinstance(error.__cause__, AttemptTimeoutError)
    assert isinstance(error.__cause__, TimeoutError)
    assert error.classification.code == "TIMED_OUT"
    assert script.calls == 2
    assert time.sleeps == [0.25]


def test_an_async_attempt_is_cancelled_at_its_timeout(executor):
    """An awaited call that never completes is cancelled at its 1ms timeout, then retried once."""
    started: list[int] = []

    async def hang() -> None:
        started.append(1)
        await asyncio.Event().wait()

    with pytest.raises(ResilienceError) as info:
        asyncio.run(executor.arun("plain.hang", hang))
    assert isinstance(info.value.__cause__, AttemptTimeoutError)
    assert info.value.__cause__.timeout == 0.001
    assert info.value.classification.code == "TIMED_OUT"
    assert len(started) == 2


@pytest.mark.parametrize("shell", SHELLS)
def test_a_timeout_error_raised_by_the_function_is_its_own_failure(shell, executor, time):
    """A TimeoutError the function raises itself is passed on as is, not as an attempt timeout."""
    own = TimeoutError("upstream said so")
    error = failure(shell, executor, "plain.timeout", Script(time, own))
    assert isinstance(error, ResilienceError)
    assert error.__cause__ is own


# --------------------------------------------------------------------------- circuit breaker


@pytest.mark.parametrize("shell", SHELLS)
def test_breaker_opens_at_the_threshold_and_rejects_with_circuit_open(shell, executor, time, events):
    """Two successes, two 503s: 50% of 4 calls opens it; the next call never reaches the function."""
    for step in ("a", "b"):
        assert call(shell, executor, "guarded.call", Script(time, step)) == step
    for _ in range(2):
        failure(shell, executor, "guarded.call", Script(time, HTTPStatusError(503)))
    assert events[-3] == BreakerTransition("guarded.call", "closed", "open", "threshold_reached")
    rejected = Script(time, "never")
    error = failure(shell, executor, "guarded.call", rejected)
    assert rejected.calls == 0
    assert isinstance(error, ResilienceError)
    assert isinstance(error.__cause__, CircuitOpenError)
    assert error.__cause__.retry_in == 30.0
    assert (error.classification.code, error.classification.retryable) == ("CIRCUIT_OPEN", False)
    assert error.classification.message == "guarded.call is unavailable."
    assert error.reason == "CIRCUIT_OPEN"


@pytest.mark.parametrize("shell", SHELLS)
def test_a_rejection_is_never_retried(shell, executor, time):
    """Two 503 attempts open the breaker; the third attempt is rejected and not retried."""
    script = Script(time, HTTPStatusError(503))
    error = failure(shell, executor, "guarded.retry", script)
    assert isinstance(error, ResilienceError)
    assert script.calls == 2
    assert (error.attempts, error.reason) == (3, "CIRCUIT_OPEN")
    assert time.sleeps == [0.25, 0.5]


@pytest.mark.parametrize("shell", SHELLS)
def test_without_a_circuit_open_code_the_rejection_raises_circuit_open_error(shell, time, events):
    """An errors policy with no CIRCUIT_OPEN code: the rejection raises CircuitOpenError itself."""
    errors = ERRORS.replace(
        '    CIRCUIT_OPEN: {category: unavailable, status: 503, title: Circuit open, message: "{operation} is unavailable."}\n',
        "",
    ).replace(
        "    - {name: circuit, match: {exception: tierpolicy.engine.CircuitOpenError}, code: CIRCUIT_OPEN}\n",
        "",
    )
    policy_set = tierpolicy.load_files({"errors.yaml": errors, "resilience.yaml": RESILIENCE})
    executor = make(policy_set, time, events)
    failure(shell, executor, "guarded.retry", Script(time, HTTPStatusError(503)))
    error = failure(shell, executor, "guarded.retry", Script(time, "never"))
    assert type(error) is CircuitOpenError
    assert error.operation == "guarded.retry"
    assert str(error) == "the circuit breaker of guarded.retry is open; retry in 29.5s"


@pytest.mark.parametrize("shell", SHELLS)
def test_half_open_admits_the_permitted_probes_and_closes_on_success(shell, executor, time, events):
    """After wait_in_open, two probes succeed and the breaker closes; the state changes are events."""
    for step in ("a", "b", HTTPStatusError(503), HTTPStatusError(503)):
        with pytest.raises(ResilienceError) if isinstance(step, Exception) else contextlib.nullcontext():
            call(shell, executor, "guarded.call", Script(time, step))
    time.now += 30.0
    events.clear()
    assert call(shell, executor, "guarded.call", Script(time, "p1")) == "p1"
    assert call(shell, executor, "guarded.call", Script(time, "p2")) == "p2"
    transitions = [e for e in events if isinstance(e, BreakerTransition)]
    assert transitions == [
        BreakerTransition("guarded.call", "open", "half_open", "wait_elapsed"),
        BreakerTransition("guarded.call", "half_open", "closed", "probes_succeeded"),
    ]


@pytest.mark.parametrize("shell", SHELLS)
def test_a_failed_probe_reopens_the_breaker(shell, executor, time, events):
    """Half-open with one permit (guarded.retry): a failing probe opens it again."""
    failure(shell, executor, "guarded.retry", Script(time, HTTPStatusError(503)))
    time.now += 30.0
    events.clear()
    script = Script(time, HTTPStatusError(503))
    error = failure(shell, executor, "guarded.retry", script)
    assert script.calls == 1
    assert isinstance(error.__cause__, CircuitOpenError)
    assert [e for e in events if isinstance(e, BreakerTransition)] == [
        BreakerTransition("guarded.retry", "open", "half_open", "wait_elapsed"),
        BreakerTransition("guarded.retry", "half_open", "open", "probes_failed"),
    ]


def test_half_open_admits_exactly_the_permitted_probes_at_once(executor, time):
    """With its one probe in flight, a second call to a half-open breaker is rejected."""
    failure("sync", executor, "guarded.retry", Script(time, HTTPStatusError(503)))
    time.now += 30.0
    inner: list[BaseException] = []

    def probe() -> str:
        with pytest.raises(ResilienceError) as info:
            executor.run("guarded.retry", lambda: "second")
        inner.append(info.value)
        return "first"

    assert executor.run("guarded.retry", probe) == "first"
    assert isinstance(inner[0].__cause__, CircuitOpenError)


def test_a_cancelled_probe_returns_its_permit(executor, time):
    """A half-open probe cancelled mid-call gives its permit back: the next probe is admitted."""
    failure("sync", executor, "guarded.retry", Script(time, HTTPStatusError(503)))
    time.now += 30.0

    async def scenario() -> str:
        task = asyncio.create_task(executor.arun("guarded.retry", asyncio.Event().wait))
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return await executor.arun("guarded.retry", Script(time, "admitted").coro)

    assert asyncio.run(scenario()) == "admitted"


# --------------------------------------------------------------------------- bulkhead


def test_sync_bulkhead_rejects_beyond_max_concurrent(executor):
    """With max_concurrent 1 and max_wait 0: a call made while one runs is rejected as BulkheadFullError."""
    inner: list[BaseException] = []

    def outer() -> str:
        with pytest.raises(ResilienceError) as info:
            executor.run("narrow.call", lambda: "inner")
        inner.append(info.value)
        return "outer"

    assert executor.run("narrow.call", outer) == "outer"
    cause = inner[0].__cause__
    assert isinstance(cause, BulkheadFullError)
    assert (cause.max_concurrent, cause.waited) == (1, 0.0)
    assert inner[0].classification.code == "REJECTED"
    assert executor.run("narrow.call", lambda: "free again") == "free again"


def test_async_bulkhead_rejects_beyond_max_concurrent(executor):
    """An async call made while another task holds the only slot is rejected."""

    async def scenario() -> tuple[object, BaseException]:
        gate = asyncio.Event()

        async def holder() -> str:
            await gate.wait()
            return "held"

        task = asyncio.create_task(executor.arun("narrow.call", holder))
        await asyncio.sleep(0)
        with pytest.raises(ResilienceError) as info:
            await executor.arun("narrow.call", holder)
        gate.set()
        return await task, info.value

    held, error = asyncio.run(scenario())
    assert held == "held"
    assert isinstance(error.__cause__, BulkheadFullError)


# --------------------------------------------------------------------------- fallback


@pytest.mark.parametrize("shell", SHELLS)
def test_static_fallback_answers_after_retries_are_exhausted(shell, executor, time, events):
    """Both attempts fail; the static value answers, a fresh copy each time."""
    first = call(shell, executor, "fallback.static", Script(time, HTTPStatusError(503)))
    assert first == {"items": []}
    first["items"].append("mutated")  # type: ignore[index]
    assert call(shell, executor, "fallback.static", Script(time, HTTPStatusError(503))) == {"items": []}
    assert events[-1] == FallbackUsed("fallback.static", "static")


@pytest.mark.parametrize("shell", SHELLS)
def test_cached_fallback_answers_with_the_last_good_result_within_staleness(shell, executor, time, events):
    """A good result is kept; a failure 60s later answers with it, 61s later with the next step."""
    assert call(shell, executor, "fallback.cached", Script(time, "fresh")) == "fresh"
    time.now += 60.0
    assert call(shell, executor, "fallback.cached", Script(time, HTTPStatusError(503))) == "fresh"
    assert events[-1] == FallbackUsed("fallback.cached", "cached", age=60.0)
    time.now += 1.0
    assert call(shell, executor, "fallback.cached", Script(time, HTTPStatusError(503))) == "stale"
    assert events[-2:] == [
        FallbackFailed("fallback.cached", "cached", "the last good result is 61s old"),
        FallbackUsed("fallback.cached", "static"),
    ]


@pytest.mark.parametrize("shell", SHELLS)
def test_cached_fallback_without_a_result_fails_with_the_classified_error(shell, executor, time):
    """Nothing cached yet and no further step: the classified error is raised."""
    last = HTTPStatusError(503)
    error = failure(shell, executor, "fallback.cached_only", Script(time, last))
    assert isinstance(error, ResilienceError)
    assert error.__cause__ is last


def test_the_result_cache_is_injectable(policy_set, time, events):
    """A given cache serves cached fallbacks: here one pre-filled by another process."""
    cache = InMemoryResultCache()
    cache.put("fallback.cached", "from elsewhere", time.now - 10.0)
    executor = make(policy_set, time, events, cache=cache)
    assert executor.run("fallback.cached", Script(time, HTTPStatusError(503)).sync) == "from elsewhere"
    assert events[-1] == FallbackUsed("fallback.cached", "cached", age=10.0)


@pytest.mark.parametrize("shell", SHELLS)
def test_operation_fallback_runs_the_other_operation_with_the_same_arguments(shell, executor, time, events):
    """The backup operation's registered function answers, called with the original arguments."""
    backup = Script(time, "from backup")
    executor.register("backup.call", backup.sync if shell == "sync" else backup.coro)
    assert (
        call(shell, executor, "fallback.operation", Script(time, HTTPStatusError(503)), "q") == "from backup"
    )
    assert backup.args == [("q",)]
    assert events[-1] == FallbackUsed("fallback.operation", "operation", source="backup.call")


@pytest.mark.parametrize("shell", SHELLS)
def test_operation_fallback_that_fails_moves_the_chain_on(shell, executor, time, events):
    """A failing (or unregistered) backup operation is skipped; the static step answers."""
    assert call(shell, executor, "fallback.operation", Script(time, HTTPStatusError(503))) == "last-resort"
    assert events[-2] == FallbackFailed("fallback.operation", "operation", "backup.call: LookupError")
    executor.register("backup.call", Script(time, ValueError("down")).sync)
    assert call(shell, executor, "fallback.operation", Script(time, HTTPStatusError(503))) == "last-resort"
    assert events[-2] == FallbackFailed(
        "fallback.operation", "operation", "backup.call: tierpolicy.engine.ResilienceError"
    )


@pytest.mark.parametrize("shell", SHELLS)
def test_operation_fallback_cycles_are_cut(shell, executor, time, events):
    """cycle.a falls back to cycle.b, which would fall back to cycle.a: the loop is refused."""
    a, b = Script(time, HTTPStatusError(503)), Script(time, HTTPStatusError(429))
    executor.register("cycle.a", a.sync if shell == "sync" else a.coro)
    executor.register("cycle.b", b.sync if shell == "sync" else b.coro)
    error = failure(shell, executor, "cycle.a", a)
    assert isinstance(error, ResilienceError)
    assert error.classification.code == "UPSTREAM_UNAVAILABLE"
    assert (a.calls, b.calls) == (1, 1)
    refused = [e for e in events if isinstance(e, FallbackFailed)]
    assert refused[0] == FallbackFailed(
        "cycle.b", "operation", "cycle.a: tierpolicy.engine.FallbackCycleError"
    )


@pytest.mark.parametrize("shell", SHELLS)
def test_fail_step_raises_the_classified_error_from_the_last_exception(shell, executor, time):
    """An empty cache, then fail: ResilienceError carrying the classification, from the error."""
    last = ValueError("bad")
    error = failure(shell, executor, "fallback.fail", Script(time, last))
    assert isinstance(error, ResilienceError)
    assert error.__cause__ is last
    assert error.classification.code == "BAD_INPUT"
    assert str(error) == "fallback.fail failed with BAD_INPUT after 1 attempt(s) (NO_RETRY_POLICY)"


# --------------------------------------------------------------------------- events


EVENT_TABLE = [
    pytest.param(
        "plain.retry",
        [HTTPStatusError(503), "ok"],
        [
            AttemptStarted("plain.retry", 1, None),
            AttemptFailed("plain.retry", 1, "UPSTREAM_UNAVAILABLE", "unavailable", True, 0.0, HTTP_ERROR),
            RetryScheduled("plain.retry", 2, 0.25, "RETRY"),
            AttemptStarted("plain.retry", 2, None),
            AttemptSucceeded("plain.retry", 2, 0.0),
        ],
        id="retry-then-success",
    ),
    pytest.param(
        "fallback.static",
        [ValueError("bad")],
        [
            AttemptStarted("fallback.static", 1, None),
            AttemptFailed("fallback.static", 1, "BAD_INPUT", "invalid_request", False, 0.0, "ValueError"),
            GaveUp("fallback.static", 1, "BAD_INPUT", "NOT_RETRYABLE"),
            FallbackUsed("fallback.static", "static"),
        ],
        id="fallback",
    ),
    pytest.param(
        "plain.deadline",
        [HTTPStatusError(503)],
        [
            AttemptStarted("plain.deadline", 1, 2.0),
            AttemptFailed("plain.deadline", 1, "UPSTREAM_UNAVAILABLE", "unavailable", True, 0.0, HTTP_ERROR),
            RetryScheduled("plain.deadline", 2, 0.5, "RETRY"),
            AttemptStarted("plain.deadline", 2, 1.5),
            AttemptFailed("plain.deadline", 2, "UPSTREAM_UNAVAILABLE", "unavailable", True, 0.0, HTTP_ERROR),
            RetryScheduled("plain.deadline", 3, 1.0, "RETRY"),
            AttemptStarted("plain.deadline", 3, 0.5),
            AttemptFailed("plain.deadline", 3, "UPSTREAM_UNAVAILABLE", "unavailable", True, 0.0, HTTP_ERROR),
            GaveUp("plain.deadline", 3, "UPSTREAM_UNAVAILABLE", "DEADLINE"),
        ],
        id="deadline",
    ),
    pytest.param(
        "guarded.retry",
        [HTTPStatusError(503)],
        [
            AttemptStarted("guarded.retry", 1, None),
            AttemptFailed("guarded.retry", 1, "UPSTREAM_UNAVAILABLE", "unavailable", True, 0.0, HTTP_ERROR),
            RetryScheduled("guarded.retry", 2, 0.25, "RETRY"),
            AttemptStarted("guarded.retry", 2, None),
            BreakerTransition("guarded.retry", "closed", "open", "threshold_reached"),
            AttemptFailed("guarded.retry", 2, "UPSTREAM_UNAVAILABLE", "unavailable", True, 0.0, HTTP_ERROR),
            RetryScheduled("guarded.retry", 3, 0.5, "RETRY"),
            AttemptFailed(
                "guarded.retry",
                3,
                "CIRCUIT_OPEN",
                "unavailable",
                False,
                0.0,
                "tierpolicy.engine.CircuitOpenError",
            ),
            GaveUp("guarded.retry", 3, "CIRCUIT_OPEN", "CIRCUIT_OPEN"),
        ],
        id="breaker-trips",
    ),
]


@pytest.mark.parametrize("shell", SHELLS)
@pytest.mark.parametrize(("operation", "steps", "expected"), EVENT_TABLE)
def test_events_are_emitted_in_order_and_alike_in_both_shells(
    shell, operation, steps, expected, executor, time, events
):
    """The same scripted failures give the same event sequence, sync or async."""
    with contextlib.suppress(ResilienceError):
        call(shell, executor, operation, Script(time, *steps))
    assert events == expected


# --------------------------------------------------------------------------- the decorator and the plan


def test_the_decorator_picks_the_shell_by_the_function(executor, time):
    """A decorated coroutine function stays awaitable; a plain one stays plain; both retry."""
    sync_script = Script(time, HTTPStatusError(503), "sync ok")
    async_script = Script(time, HTTPStatusError(503), "async ok")

    @executor.resilient("plain.retry")
    def plain(x: int) -> object:
        """Docstring kept."""
        return sync_script.sync(x)

    @executor.resilient("plain.retry")
    async def awaited(x: int) -> object:
        return await async_script.coro(x)

    assert plain(1) == "sync ok"
    assert asyncio.run(awaited(2)) == "async ok"
    assert plain.__doc__ == "Docstring kept."
    assert (sync_script.args, async_script.args) == ([(1,), (1,)], [(2,), (2,)])


def test_the_plan_is_sans_io(executor):
    """Driving a plan by hand: it commands attempts and sleeps and never performs them."""
    plan = executor.plan("plain.retry")
    assert plan.start() == Attempt(1, None)
    assert plan.send(Failure(HTTPStatusError(503), 0.0)) == Sleep(0.25)
    assert plan.send(None) == Attempt(2, None)
    assert plan.send(Success("value", 0.0)) == Done("value")
    failing = executor.plan("plain.retry")
    failing.start()
    error = ValueError("bad")
    command = failing.send(Failure(error, 0.0))
    assert isinstance(command, Fail)
    assert command.cause is error
    assert isinstance(command.error, ResilienceError)


def test_no_errors_policy_classifies_everything_as_internal(time, events):
    """Without an Errors document, failures are INTERNAL and never retried."""
    policy_set = tierpolicy.load_files({"resilience.yaml": RESILIENCE})
    executor = make(policy_set, time, events)
    script = Script(time, HTTPStatusError(503))
    error = failure("sync", executor, "plain.retry", script)
    assert isinstance(error, ResilienceError)
    assert (error.classification.code, error.reason) == ("INTERNAL", "NOT_RETRYABLE")
    assert script.calls == 1


def test_executors_share_no_state(policy_set, time):
    """A breaker opened in one executor leaves another executor's breaker closed."""
    first, second = make(policy_set, time, []), make(policy_set, time, [])
    failure("sync", first, "guarded.retry", Script(time, HTTPStatusError(503)))
    assert second.run("guarded.retry", lambda: "closed here") == "closed here"


# --------------------------------------------------------------------------- concurrency


def test_concurrent_tasks_get_exactly_the_permitted_half_open_probes(executor, time):
    """Five tasks hit a half-open breaker with 2 permits: 2 calls run, 3 are rejected."""
    for step in ("a", "b", HTTPStatusError(503), HTTPStatusError(503)):
        with contextlib.suppress(ResilienceError):
            call("sync", executor, "guarded.call", Script(time, step))
    time.now += 30.0

    async def scenario() -> tuple[int, list[object]]:
        gate = asyncio.Event()
        running: list[int] = []

        async def probe() -> str:
            running.append(1)
            await gate.wait()
            return "probed"

        tasks = [asyncio.create_task(executor.arun("guarded.call", probe)) for _ in range(5)]
        for _ in range(3):
            await asyncio.sleep(0)
        admitted = len(running)
        gate.set()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        return admitted, [r if isinstance(r, str) else type(r.__cause__).__name__ for r in results]

    admitted, results = asyncio.run(scenario())
    assert admitted == 2
    assert sorted(results) == ["CircuitOpenError"] * 3 + ["probed"] * 2  # type: ignore[operator]


def test_concurrent_threads_get_exactly_the_permitted_half_open_probes(executor, time):
    """Five threads hit a half-open breaker with 2 permits: 2 calls run, 3 are rejected."""
    for step in ("a", "b", HTTPStatusError(503), HTTPStatusError(503)):
        with contextlib.suppress(ResilienceError):
            call("sync", executor, "guarded.call", Script(time, step))
    time.now += 30.0
    gate = threading.Event()
    done = threading.Condition()
    outcomes: list[str] = []

    def probe() -> str:
        assert gate.wait(timeout=10)
        return "probed"

    def worker() -> None:
        try:
            result = executor.run("guarded.call", probe)
        except ResilienceError as exc:
            result = type(exc.__cause__).__name__
        with done:
            outcomes.append(result)
            done.notify_all()

    threads = [threading.Thread(target=worker) for _ in range(5)]
    for thread in threads:
        thread.start()
    with done:  # the three rejected threads finish while the two probes wait at the gate
        assert done.wait_for(lambda: len(outcomes) == 3, timeout=10)
    gate.set()
    for thread in threads:
        thread.join(timeout=10)
    assert sorted(outcomes) == ["CircuitOpenError"] * 3 + ["probed"] * 2


# --------------------------------------------------------------------------- properties


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    max_attempts=st.integers(1, 8),
    initial_ms=st.integers(1, 2000),
    multiplier=st.sampled_from([1, 1.5, 2, 3]),
    jitter=st.sampled_from(["none", "full", "equal", "decorrelated"]),
    deadline_ms=st.integers(1, 20000),
    durations=st.lists(st.integers(0, 3000), min_size=8, max_size=8),
    draws=st.lists(st.floats(0, 0.999), min_size=8, max_size=8),
)
def test_sleeps_never_pass_the_deadline_and_attempts_never_pass_the_maximum(
    max_attempts, initial_ms, multiplier, jitter, deadline_ms, durations, draws
):
    """For any retry policy and attempt durations: every sleep ends before the deadline."""
    policy = f"""\
apiVersion: tierpolicy/v1
kind: Resilience
metadata: {{name: r}}
spec:
  operations:
    any.op:
      retry:
        max_attempts: {max_attempts}
        initial_delay: {initial_ms}ms
        multiplier: {multiplier}
        max_delay: 30s
        jitter: {jitter}
        deadline: {deadline_ms}ms
"""
    policy_set = tierpolicy.load_files({"errors.yaml": ERRORS, "resilience.yaml": policy})
    time = FakeTime()
    randoms = iter(draws)
    executor = Executor(
        tierpolicy.Engine(policy_set),
        clock=time.clock,
        sleep=time.sleep,
        random=lambda: next(randoms),
    )
    start = time.now
    calls = 0
    sleep_ends: list[float] = []
    plan = executor.plan("any.op")
    command = plan.start()
    while isinstance(command, (Attempt, Sleep)):
        if isinstance(command, Attempt):
            time.now += durations[calls] / 1000
            calls += 1
            command = plan.send(Failure(HTTPStatusError(503), durations[calls - 1] / 1000))
        else:
            time.now += command.seconds
            sleep_ends.append(time.now - start)
            command = plan.send(None)
    assert isinstance(command, Fail)
    assert 1 <= calls <= max_attempts
    assert all(end < deadline_ms / 1000 for end in sleep_ends)


# --------------------------------------------------------------------------- the first-attempt fast path

WAIT = "wait 30s"
"""A scenario step: the fake clock moves 30 s (past ``wait_in_open``) between two calls."""


def by_hand(executor: Executor, operation: str, script: Script) -> object:
    """One call made by driving ``executor.plan`` by hand: the sans-IO reference for the shells."""
    plan = executor.plan(operation)
    command = plan.start()
    while isinstance(command, (Attempt, Sleep)):
        if isinstance(command, Sleep):
            script.time.sleep(command.seconds)
            command = plan.send(None)
            continue
        started = script.time.now
        try:
            value = script.step()
        except Exception as exc:  # noqa: BLE001  the outcome is reported to the plan
            command = plan.send(Failure(exc, script.time.now - started))
        else:
            command = plan.send(Success(value, script.time.now - started))
    if isinstance(command, Fail):
        raise command.error from command.cause
    assert isinstance(command, Done)
    return command.value


def play(run, executor: Executor, time: FakeTime, operation: str, calls: list[object]) -> list[object]:
    """Make the calls in turn with ``run``; what each returned or raised, and the breaker's snapshot."""
    seen: list[object] = []
    for steps in calls:
        if steps == WAIT:
            time.now += 30.0
            continue
        script = Script(time, *steps, duration=0.01)
        try:
            seen.append(("value", run(executor, operation, script), script.calls))
        except ResilienceError as exc:
            seen.append(("error", exc.classification.code, exc.reason, exc.attempts, script.calls))
        except CircuitOpenError as exc:
            seen.append(("open", exc.retry_in, script.calls))
        snapshot = executor.breaker_store.snapshot(operation, time.now)
        seen.append((snapshot.state, snapshot.calls, snapshot.failures, snapshot.slow_calls))
    return seen


FAST_PATH_SCENARIOS = [
    pytest.param("guarded.call", [["a"], ["b"], ["c"]], id="breaker-successes"),
    pytest.param(
        "guarded.call",
        [
            ["a"],
            ["b"],
            [HTTPStatusError(503)],
            [HTTPStatusError(503)],
            ["never"],
            WAIT,
            ["p1"],
            ["p2"],
            ["c"],
        ],
        id="breaker-opens-rejects-first-attempt-then-closes",
    ),
    pytest.param(
        "guarded.retry",
        [[HTTPStatusError(503), "ok"], ["ok"], [HTTPStatusError(503)], ["never"], WAIT, ["probe"]],
        id="breaker-and-retry",
    ),
    pytest.param("plain.deadline", [["ok"], [HTTPStatusError(503), "ok"]], id="deadline"),
    pytest.param("plain.budget", [["ok"], [HTTPStatusError(503)], ["ok"]], id="budget"),
    pytest.param(
        "fallback.cached", [[ValueError("bad")], ["good"], [ValueError("bad")]], id="cached-fallback"
    ),
    pytest.param("fallback.static", [["ok"], [ValueError("bad")]], id="static-fallback"),
]


@pytest.mark.parametrize("shell", SHELLS)
@pytest.mark.parametrize(("operation", "calls"), FAST_PATH_SCENARIOS)
def test_the_shells_fast_path_matches_the_plan_driven_by_hand(shell, operation, calls, policy_set):
    """Results, errors, events and breaker state are those of the sans-IO plan, call by call."""
    reference_time, reference_events = FakeTime(), []
    reference = make(policy_set, reference_time, reference_events)
    expected = play(by_hand, reference, reference_time, operation, calls)

    time, events = FakeTime(), []
    executor = make(policy_set, time, events)
    seen = play(lambda ex, op, script: call(shell, ex, op, script), executor, time, operation, calls)

    assert seen == expected
    assert events == reference_events
    assert time.sleeps == reference_time.sleeps


@pytest.mark.parametrize("shell", SHELLS)
@pytest.mark.parametrize(
    "value",
    [
        None,
        (None, ValueError("not a failure"), 0.0, 0.0),
        Failure(ValueError("not a failure"), 0.0),
        Success("not an outcome", 0.0),
        Done("not a command"),
    ],
    ids=["none", "result-tuple", "failure", "success", "done"],
)
def test_a_value_shaped_like_an_outcome_is_returned_as_it_is(shell, value, executor, time, events):
    """The fast path never mistakes what the function returned for how the attempt went."""
    assert call(shell, executor, "guarded.retry", Script(time, value)) is value
    assert kinds(events) == ["AttemptStarted", "AttemptSucceeded"]


class Interrupt(BaseException):
    """Not an ``Exception``: like ``KeyboardInterrupt``, it is never classified as a failure."""


def test_an_interrupted_sync_first_attempt_returns_its_permit(executor, time):
    """A half-open probe interrupted mid-call gives its permit back: the next probe is admitted."""
    failure("sync", executor, "guarded.retry", Script(time, HTTPStatusError(503)))
    time.now += 30.0
    interrupted = Script(time, Interrupt())
    with pytest.raises(Interrupt):
        executor.run("guarded.retry", interrupted.sync)
    assert interrupted.calls == 1
    assert executor.run("guarded.retry", Script(time, "admitted").sync) == "admitted"
    assert executor.breaker_store.snapshot("guarded.retry", time.now).state == "closed"


class TickingTime(FakeTime):
    """A fake clock that moves 1 ms every time it is read."""

    def clock(self) -> float:
        """The current fake time, then a tick."""
        self.now += 0.001
        return self.now


@pytest.mark.parametrize("shell", SHELLS)
def test_the_deadline_is_measured_from_the_first_attempts_start(shell, policy_set):
    """The call's start and its first attempt's are one clock reading: attempt 1 gets the whole deadline."""
    time, events = TickingTime(), []
    executor = make(policy_set, time, events)
    assert call(shell, executor, "plain.deadline", Script(time, "ok")) == "ok"
    assert events[0] == AttemptStarted("plain.deadline", 1, 2.0)


def test_shipped_policy_classifies_a_full_bulkhead_as_bulkhead_full():
    """With the shipped policies, a call beyond a full bulkhead fails as BULKHEAD_FULL, not INTERNAL."""
    engine = tierpolicy.load(Path(__file__).resolve().parents[1] / "policies")
    shipped = Executor(engine)

    async def scenario() -> BaseException:
        gate = asyncio.Event()

        async def holder() -> str:
            await gate.wait()
            return "sent"

        tasks = [asyncio.create_task(shipped.arun("notifications.email", holder)) for _ in range(20)]
        await asyncio.sleep(0)
        with pytest.raises(ResilienceError) as info:
            await shipped.arun("notifications.email", holder)
        gate.set()
        assert await asyncio.gather(*tasks) == ["sent"] * 20
        return info.value

    error = asyncio.run(scenario())
    assert isinstance(error, ResilienceError)
    assert isinstance(error.__cause__, BulkheadFullError)
    assert (error.classification.code, error.classification.status) == ("BULKHEAD_FULL", 503)


# --------------------------------------------------------------------------- awaited and failing breaker stores


class LoggingStore:
    """A breaker store (in memory underneath) that logs which of its methods ran."""

    def __init__(self) -> None:
        self.inner = InMemoryBreakerStore()
        self.log: list[tuple[str, str]] = []

    def acquire(self, key, policy, now):
        """The blocking acquire (the sync shell's)."""
        self.log.append(("acquire", key))
        return self.inner.acquire(key, policy, now)

    def record(self, key, policy, permit, outcome, duration, now):
        """The blocking record (the sync shell's)."""
        self.log.append(("record", outcome))
        return self.inner.record(key, policy, permit, outcome, duration, now)

    def snapshot(self, key, now):
        """The blocking snapshot."""
        return self.inner.snapshot(key, now)


class AwaitedStore(LoggingStore):
    """An async breaker store (in memory underneath) that logs which of its methods ran."""

    async def aacquire(self, key, policy, now):
        """The awaited acquire: yields to the loop first, as a network store would."""
        await asyncio.sleep(0)
        self.log.append(("aacquire", key))
        return self.inner.acquire(key, policy, now)

    async def arecord(self, key, policy, permit, outcome, duration, now):
        """The awaited record."""
        await asyncio.sleep(0)
        self.log.append(("arecord", outcome))
        return self.inner.record(key, policy, permit, outcome, duration, now)

    async def asnapshot(self, key, now):
        """The awaited snapshot."""
        return self.inner.snapshot(key, now)


def test_an_async_breaker_store_is_recognised_once_and_the_in_memory_one_is_not(executor, policy_set, time):
    """The executor checks for the AsyncBreakerStore methods when it is made."""
    assert isinstance(AwaitedStore(), AsyncBreakerStore)
    assert not isinstance(InMemoryBreakerStore(), AsyncBreakerStore)
    assert executor._async_store is None
    awaited = make(policy_set, time, [], breaker_store=AwaitedStore())
    assert awaited._async_store is awaited.breaker_store
    assert awaited._operation("guarded.call").awaits
    assert not awaited._operation("plain.retry").awaits  # no breaker: nothing to await


def test_the_async_shell_awaits_an_async_store_and_the_sync_shell_calls_it(policy_set, time):
    """The async shell awaits aacquire and arecord, never the blocking methods; run calls those."""
    store = AwaitedStore()
    executor = make(policy_set, time, [], breaker_store=store)
    assert call("async", executor, "guarded.call", Script(time, "ok")) == "ok"
    with pytest.raises(ResilienceError):
        call("async", executor, "guarded.retry", Script(time, HTTPStatusError(503)))
    assert store.log == [
        ("aacquire", "guarded.call"),
        ("arecord", "success"),
        ("aacquire", "guarded.retry"),
        ("arecord", "failure"),
        ("aacquire", "guarded.retry"),
        ("arecord", "failure"),
        ("aacquire", "guarded.retry"),
    ]
    store.log.clear()
    assert call("sync", executor, "guarded.call", Script(time, "ok")) == "ok"
    assert store.log == [("acquire", "guarded.call"), ("record", "success")]


@pytest.mark.parametrize(("operation", "calls"), FAST_PATH_SCENARIOS)
def test_an_awaited_store_gives_the_results_events_and_state_of_the_plan(operation, calls, policy_set):
    """With an async store the async shell still matches the sans-IO plan driven by hand, call by call."""
    reference_time, reference_events = FakeTime(), []
    reference = make(policy_set, reference_time, reference_events)
    expected = play(by_hand, reference, reference_time, operation, calls)

    time, events = FakeTime(), []
    executor = make(policy_set, time, events, breaker_store=AwaitedStore())
    seen = play(lambda ex, op, script: call("async", ex, op, script), executor, time, operation, calls)

    assert seen == expected
    assert events == reference_events
    assert time.sleeps == reference_time.sleeps


@pytest.mark.parametrize(("operation", "steps", "expected"), EVENT_TABLE)
def test_an_awaited_store_emits_the_same_events(operation, steps, expected, policy_set, time, events):
    """The event sequences of the table, with the store's calls awaited."""
    executor = make(policy_set, time, events, breaker_store=AwaitedStore())
    with contextlib.suppress(ResilienceError):
        call("async", executor, operation, Script(time, *steps))
    assert events == expected


def test_an_awaited_store_gets_back_the_permit_of_a_cancelled_first_attempt(policy_set, time):
    """A half-open probe cancelled mid-call is handed back through arecord: the next probe is admitted."""
    store = AwaitedStore()
    executor = make(policy_set, time, [], breaker_store=store)
    failure("async", executor, "guarded.retry", Script(time, HTTPStatusError(503)))
    time.now += 30.0

    async def scenario() -> str:
        task = asyncio.create_task(executor.arun("guarded.retry", asyncio.Event().wait))
        for _ in range(3):  # the awaited acquire, then the attempt
            await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return await executor.arun("guarded.retry", Script(time, "admitted").coro)

    assert asyncio.run(scenario()) == "admitted"
    assert ("arecord", "ignored") in store.log


def test_an_awaited_store_gets_back_the_permit_of_a_cancelled_retry(policy_set, time):
    """A retry cancelled mid-call (the generator's path) hands its permit back once, as ignored."""
    store = AwaitedStore()
    executor = make(policy_set, time, [], breaker_store=store)
    attempts = Script(time, HTTPStatusError(503))

    async def flaky() -> object:
        if attempts.calls == 0:
            return attempts.step()
        await asyncio.Event().wait()
        return "never"

    async def scenario() -> None:
        task = asyncio.create_task(executor.arun("guarded.retry", flaky))
        for _ in range(10):
            await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(scenario())
    assert [entry for entry in store.log if entry[0] == "arecord"] == [
        ("arecord", "failure"),
        ("arecord", "ignored"),
    ]


class FailingStore:
    """A breaker store that is down: acquire and/or record raise StoreUnavailableError."""

    def __init__(self, *, acquire: bool = True, record: bool = True) -> None:
        self.inner = InMemoryBreakerStore()
        self.fail_acquire = acquire
        self.fail_record = record

    def _down(self) -> tierpolicy.StoreUnavailableError:
        return tierpolicy.StoreUnavailableError("Redis is unavailable", store="redis://test")

    def acquire(self, key, policy, now):
        """Down, or the in-memory answer."""
        if self.fail_acquire:
            raise self._down()
        return self.inner.acquire(key, policy, now)

    def record(self, key, policy, permit, outcome, duration, now):
        """Down, or the in-memory answer."""
        if self.fail_record:
            raise self._down()
        return self.inner.record(key, policy, permit, outcome, duration, now)

    def snapshot(self, key, now):
        """The in-memory snapshot."""
        return self.inner.snapshot(key, now)


class AsyncFailingStore(FailingStore):
    """The awaited twin of :class:`FailingStore`."""

    async def aacquire(self, key, policy, now):
        """As acquire."""
        return self.acquire(key, policy, now)

    async def arecord(self, key, policy, permit, outcome, duration, now):
        """As record."""
        return self.record(key, policy, permit, outcome, duration, now)

    async def asnapshot(self, key, now):
        """As snapshot."""
        return self.snapshot(key, now)


STORE_DOWN = ("tierpolicy.engine.StoreUnavailableError", "Redis is unavailable (redis://test)")


@pytest.mark.parametrize("store_type", [FailingStore, AsyncFailingStore])
@pytest.mark.parametrize("shell", SHELLS)
def test_a_breaker_store_that_is_down_lets_calls_through_and_says_so(
    shell, store_type, policy_set, time, events
):
    """Store down: every attempt runs as if the breaker were closed; each failed store call is an event."""
    executor = make(policy_set, time, events, breaker_store=store_type())
    assert call(shell, executor, "guarded.call", Script(time, "ok")) == "ok"
    assert events == [
        BreakerStoreFailed("guarded.call", "acquire", *STORE_DOWN),
        AttemptStarted("guarded.call", 1, None),
        AttemptSucceeded("guarded.call", 1, 0.0),
    ]
    events.clear()
    script = Script(time, HTTPStatusError(503))
    error = failure(shell, executor, "guarded.retry", script)
    assert (error.reason, script.calls) == ("ATTEMPTS_EXHAUSTED", 3)  # never rejected: no breaker state
    assert kinds(events).count("BreakerStoreFailed") == 3


@pytest.mark.parametrize("store_type", [FailingStore, AsyncFailingStore])
@pytest.mark.parametrize("shell", SHELLS)
def test_outcomes_a_breaker_store_cannot_take_are_dropped(shell, store_type, policy_set, time, events):
    """Record down: successes and failures are not counted, and the calls answer as usual."""
    executor = make(policy_set, time, events, breaker_store=store_type(acquire=False))
    assert call(shell, executor, "guarded.call", Script(time, "ok")) == "ok"
    assert events[-2:] == [
        BreakerStoreFailed("guarded.call", "record", *STORE_DOWN),
        AttemptSucceeded("guarded.call", 1, 0.0),
    ]
    for _ in range(3):
        failure(shell, executor, "guarded.retry", Script(time, HTTPStatusError(503)))
    assert executor.breaker_store.snapshot("guarded.retry", time.now).state == "closed"
    assert kinds(events).count("BreakerStoreFailed") == 1 + 9


def test_a_store_that_is_down_costs_nothing_without_a_listener(policy_set, time):
    """No on_event: a failing store is still passed over, and no event is built."""
    executor = Executor(tierpolicy.Engine(policy_set), clock=time.clock, breaker_store=FailingStore())
    assert executor.run("guarded.call", Script(time, "ok").sync) == "ok"


DEADLINE_BREAKER = """\
apiVersion: tierpolicy/v1
kind: Resilience
metadata: {name: resilience}
spec:
  operations:
    guarded.deadline:
      retry: {max_attempts: 3, initial_delay: 500ms, jitter: none, deadline: 2s}
      circuit_breaker:
        window: {type: count, size: 10}
        minimum_calls: 10
        wait_in_open: 30s
        permitted_calls_in_half_open: 1
"""


def test_an_awaited_store_bounds_attempts_by_the_deadline_as_the_plan_does(time, events):
    """Breaker and deadline: each attempt's timeout is the time left, with or without a listener."""
    policy_set = tierpolicy.load_files({"errors.yaml": ERRORS, "resilience.yaml": DEADLINE_BREAKER})
    executor = make(policy_set, time, events, breaker_store=AwaitedStore())
    script = Script(time, HTTPStatusError(503), "ok", duration=0.25)
    assert call("async", executor, "guarded.deadline", script) == "ok"
    assert [e.timeout for e in events if isinstance(e, AttemptStarted)] == [2.0, 1.25]
    quiet = Executor(
        tierpolicy.Engine(policy_set),
        clock=time.clock,
        async_sleep=time.async_sleep,
        breaker_store=AwaitedStore(),
    )
    assert asyncio.run(quiet.arun("guarded.deadline", Script(time, HTTPStatusError(503), "ok").coro)) == "ok"


@pytest.mark.parametrize("store_type", [LoggingStore, AwaitedStore])
def test_a_call_cancelled_between_attempts_hands_back_nothing(store_type, policy_set, time):
    """Cancelled while sleeping before a retry: its last permit was already reported, so nothing more is."""
    store = store_type()

    async def scenario() -> None:
        sleeping = asyncio.Event()

        async def sleep_forever(seconds: float) -> None:  # noqa: ARG001  the async_sleep signature
            sleeping.set()
            await asyncio.Event().wait()

        executor = Executor(
            tierpolicy.Engine(policy_set), clock=time.clock, async_sleep=sleep_forever, breaker_store=store
        )
        task = asyncio.create_task(executor.arun("guarded.retry", Script(time, HTTPStatusError(503)).coro))
        await sleeping.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(scenario())
    assert [entry for entry in store.log if "record" in entry[0]] == [
        ("arecord" if store_type is AwaitedStore else "record", "failure")
    ]
