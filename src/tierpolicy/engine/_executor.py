"""The resilience executor: runs calls under their operation's retry, breaker and fallback.

One implementation of the logic serves sync and async code. :class:`CallPlan` is a
sans-IO state machine: it owns one call's state (attempt number, the decorrelated-jitter
previous delay, start time, breaker permits) and answers each outcome with the next
command (:class:`Attempt`, :class:`Sleep`, :class:`UseFallback`, :class:`Done`,
:class:`Fail`). The two shells, :meth:`Executor.run` and :meth:`Executor.arun`, only
perform those commands: call or await the function, ``sleep`` or ``await async_sleep``.

The composition order is fixed::

    fallback ⟶ retry ⟶ circuit breaker ⟶ timeout ⟶ bulkhead ⟶ call

so a fallback answers only once retries are exhausted, every attempt asks the breaker
for a permit, the per-attempt timeout also bounds the wait for a bulkhead slot, and the
bulkhead bounds only the call itself. See ``docs/executor.md``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import inspect
import random as _random
import threading
import time
import weakref
from typing import TYPE_CHECKING, Any, Final, ParamSpec, Protocol, TypeVar, cast

from ._breaker import InMemoryBreakerStore, Permit
from ._classification import Classification, ErrorModel
from ._errorinfo import ErrorInfo, exception_names, public_name
from ._exceptions import (
    AttemptTimeoutError,
    BulkheadFullError,
    CallRejectedError,
    CircuitOpenError,
    FallbackCycleError,
    ResilienceError,
)
from ._resilience import OperationPolicy
from ._retry import RetryBudget, decide_retry

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Generator, Mapping

    from ._breaker import BreakerStore, Transition
    from ._engine import Engine
    from ._resilience import BreakerPolicy, BulkheadPolicy, FallbackStep, ResilienceModel
    from ._resilience import Outcome as BreakerOutcome

T = TypeVar("T")
P = ParamSpec("P")

CIRCUIT_OPEN: Final = "CIRCUIT_OPEN"
"""The registry code a breaker rejection is classified as, when the errors policy has it."""


# --------------------------------------------------------------------------- commands and outcomes


@dataclasses.dataclass(frozen=True, slots=True)
class Attempt:
    """Command: make attempt ``number`` (1-based), bounded by ``timeout`` seconds if set."""

    number: int
    timeout: float | None


@dataclasses.dataclass(frozen=True, slots=True)
class Sleep:
    """Command: wait ``seconds`` before the next attempt."""

    seconds: float


@dataclasses.dataclass(frozen=True, slots=True)
class UseFallback:
    """Command: run ``step.operation`` through the executor and report how it went."""

    step: FallbackStep
    operation: str


@dataclasses.dataclass(frozen=True, slots=True)
class Done:
    """Command: the call is over; return ``value``."""

    value: object


@dataclasses.dataclass(frozen=True, slots=True)
class Fail:
    """Command: the call is over; raise ``error`` from ``cause``."""

    error: BaseException
    cause: BaseException | None


Command = Attempt | Sleep | UseFallback | Done | Fail


@dataclasses.dataclass(frozen=True, slots=True)
class Success:
    """Outcome: the attempt (or fallback operation) returned ``value`` after ``duration`` s."""

    value: object
    duration: float


@dataclasses.dataclass(frozen=True, slots=True)
class Failure:
    """Outcome: the attempt (or fallback operation) raised ``exception`` after ``duration`` s."""

    exception: Exception
    duration: float


Outcome = Success | Failure


# --------------------------------------------------------------------------- events


@dataclasses.dataclass(frozen=True, slots=True)
class AttemptStarted:
    """An attempt is about to call the function."""

    operation: str
    attempt: int
    timeout: float | None


@dataclasses.dataclass(frozen=True, slots=True)
class AttemptSucceeded:
    """An attempt returned."""

    operation: str
    attempt: int
    duration: float


@dataclasses.dataclass(frozen=True, slots=True)
class AttemptFailed:
    """An attempt failed (or was rejected by the breaker), classified as ``code``."""

    operation: str
    attempt: int
    code: str
    category: str
    retryable: bool
    duration: float
    error: str
    """The qualified name of the exception's class."""


@dataclasses.dataclass(frozen=True, slots=True)
class RetryScheduled:
    """Attempt ``attempt`` will start after ``delay`` seconds."""

    operation: str
    attempt: int
    delay: float
    reason: str


@dataclasses.dataclass(frozen=True, slots=True)
class BreakerTransition:
    """The operation's circuit breaker changed state."""

    operation: str
    from_state: str
    """``closed``, ``open`` or ``half_open``."""
    to_state: str
    reason: str
    """``threshold_reached``, ``wait_elapsed``, ``probes_failed``, ``probes_succeeded``
    or ``half_open_timeout``."""


@dataclasses.dataclass(frozen=True, slots=True)
class FallbackUsed:
    """A fallback step answered instead of the operation."""

    operation: str
    step: str
    """``static``, ``cached`` or ``operation``."""
    source: str | None = None
    """For ``operation``: the operation that answered."""
    age: float | None = None
    """For ``cached``: how old the cached result is, in seconds."""


@dataclasses.dataclass(frozen=True, slots=True)
class FallbackFailed:
    """A fallback step could not answer; the chain goes on with the next step."""

    operation: str
    step: str
    reason: str


@dataclasses.dataclass(frozen=True, slots=True)
class GaveUp:
    """No further attempt will be made; the fallback chain (if any) comes next."""

    operation: str
    attempts: int
    code: str
    reason: str


Event = (
    AttemptStarted
    | AttemptSucceeded
    | AttemptFailed
    | RetryScheduled
    | BreakerTransition
    | FallbackUsed
    | FallbackFailed
    | GaveUp
)


# --------------------------------------------------------------------------- last-good cache


class ResultCache(Protocol):
    """Where the last good result of each operation is kept, for ``cached`` fallbacks."""

    def get(self, operation: str) -> tuple[object, float] | None:
        """The last good result of ``operation`` and when (clock seconds) it was stored."""
        ...

    def put(self, operation: str, value: object, now: float) -> None:
        """Store ``value`` as the last good result of ``operation`` at ``now``."""
        ...


class InMemoryResultCache:
    """A thread-safe, per-executor last-good-result cache: one entry per operation."""

    def __init__(self) -> None:
        self._entries: dict[str, tuple[object, float]] = {}
        self._lock = threading.Lock()

    def get(self, operation: str) -> tuple[object, float] | None:
        """The last good result of ``operation`` and when it was stored."""
        with self._lock:
            return self._entries.get(operation)

    def put(self, operation: str, value: object, now: float) -> None:
        """Store ``value`` as the last good result of ``operation``."""
        with self._lock:
            self._entries[operation] = (value, now)


# --------------------------------------------------------------------------- the sans-IO core


def _qualified(exc: BaseException) -> str:
    return public_name(type(exc))


@dataclasses.dataclass(slots=True)
class _Operation:
    """The runtime state an executor keeps for one operation name."""

    name: str
    policy: OperationPolicy
    deadline: float | None
    budget: RetryBudget | None
    caches: bool
    """Whether a ``cached`` fallback step needs the last good result kept."""
    slot: threading.BoundedSemaphore | None
    """The sync bulkhead."""


class CallPlan:
    """The sans-IO state machine of one call; fresh per call, never shared.

    Drive it with :meth:`start` and then :meth:`send` the outcome of each command
    (``None`` after :class:`Sleep`) until it answers :class:`Done` or :class:`Fail`;
    :meth:`close` it if the call is abandoned (a held breaker permit is handed back).
    """

    __slots__ = ("_steps", "operation", "policy")

    def __init__(self, executor: Executor, operation: _Operation) -> None:
        self.operation = operation.name
        self.policy = operation.policy
        self._steps = _plan(executor, operation)

    def start(self) -> Command:
        """The first command."""
        return next(self._steps)

    def send(self, outcome: Outcome | None) -> Command:
        """Report the outcome of the last command; returns the next one."""
        return self._steps.send(outcome)

    def close(self) -> None:
        """Abandon the call; a breaker permit still held is returned as ``ignored``."""
        self._steps.close()


def _plan(ex: Executor, op: _Operation) -> Generator[Command, Outcome | None, None]:
    """One call, as a generator of commands that is sent each command's outcome."""
    operation, policy, deadline, budget = op.name, op.policy, op.deadline, op.budget
    breaker = policy.breaker
    clock = ex.clock
    emit = ex.listener
    start = clock()
    if budget is not None:
        budget.record_request()
    attempt = 0
    previous_delay: float | None = None
    last_exc: Exception
    last_class: Classification | None
    reason: str
    while True:
        attempt += 1
        permit: Permit | None = None
        timeout = policy.timeout
        if breaker is not None or deadline is not None:
            now = clock()
            if breaker is not None:
                got = ex.breaker_store.acquire(operation, breaker, now)
                if got.transitions:
                    ex.transitions(operation, got.transitions)
                if not isinstance(got, Permit):
                    retry_in = None if got.retry_at is None else max(0.0, got.retry_at - now)
                    last_exc = CircuitOpenError(operation, retry_in=retry_in)
                    last_class = ex.circuit_open(last_exc, operation)
                    if emit is not None:
                        emit(
                            AttemptFailed(
                                operation,
                                attempt,
                                last_class.code if last_class else CIRCUIT_OPEN,
                                last_class.category if last_class else "unavailable",
                                False,  # noqa: FBT003  positional field of a frozen event
                                0.0,
                                _qualified(last_exc),
                            )
                        )
                    reason = CIRCUIT_OPEN
                    break
                permit = got
            if deadline is not None:
                remaining = max(0.0, deadline - (now - start))
                timeout = remaining if timeout is None else min(timeout, remaining)
        if emit is not None:
            emit(AttemptStarted(operation, attempt, timeout))
        try:
            outcome = yield Attempt(attempt, timeout)
        except GeneratorExit:
            if permit is not None and breaker is not None:
                ex.record(operation, breaker, permit, "ignored", 0.0)
            raise
        if type(outcome) is Success:
            if permit is not None and breaker is not None:
                ex.record(operation, breaker, permit, "success", outcome.duration)
            if budget is not None:
                budget.record_success()
            if op.caches:
                ex.cache.put(operation, outcome.value, clock())
            if emit is not None:
                emit(AttemptSucceeded(operation, attempt, outcome.duration))
            yield Done(outcome.value)
            return
        assert isinstance(outcome, Failure)  # noqa: S101  the shell reports an outcome
        last_exc = outcome.exception
        last_class = ex.classify(last_exc, operation)
        if permit is not None and breaker is not None:
            counted = breaker.outcome_of_error(category=last_class.category, code=last_class.code)
            ex.record(operation, breaker, permit, counted, outcome.duration)
        if budget is not None:
            budget.record_failure()
        if emit is not None:
            emit(
                AttemptFailed(
                    operation,
                    attempt,
                    last_class.code,
                    last_class.category,
                    last_class.retryable,
                    outcome.duration,
                    _qualified(last_exc),
                )
            )
        decision = decide_retry(
            policy,
            retryable=last_class.retryable,
            category=last_class.category,
            never_executed=last_class.never_executed or isinstance(last_exc, CallRejectedError),
            failed_attempt=attempt,
            elapsed=clock() - start,
            previous_delay=previous_delay,
            retry_after=last_class.retry_after,
            random=ex,
            budget=budget,
        )
        if not decision.retry:
            reason = decision.reason.value
            break
        if emit is not None:
            emit(RetryScheduled(operation, attempt + 1, decision.delay, decision.reason.value))
        previous_delay = decision.delay
        yield Sleep(decision.delay)
    if emit is not None:
        emit(GaveUp(operation, attempt, last_class.code if last_class else CIRCUIT_OPEN, reason))
    # ---------------------------------------------------------------- the fallback chain
    for step in policy.fallback:
        if step.kind == "static":
            if emit is not None:
                emit(FallbackUsed(operation, "static"))
            yield Done(step.static_value())
            return
        if step.kind == "cached":
            entry = ex.cache.get(operation)
            if entry is not None:
                age = clock() - entry[1]
                if step.max_staleness is None or age <= step.max_staleness:
                    if emit is not None:
                        emit(FallbackUsed(operation, "cached", age=age))
                    yield Done(entry[0])
                    return
                why = f"the last good result is {age:g}s old"
            else:
                why = "no good result yet"
            if emit is not None:
                emit(FallbackFailed(operation, "cached", why))
            continue
        if step.kind == "operation":
            target = step.operation
            assert target is not None  # noqa: S101  compiled operation steps name one
            result = yield UseFallback(step, target)
            if isinstance(result, Success):
                if emit is not None:
                    emit(FallbackUsed(operation, "operation", source=target))
                yield Done(result.value)
                return
            assert isinstance(result, Failure)  # noqa: S101  the shell reports an outcome
            if emit is not None:
                emit(FallbackFailed(operation, "operation", f"{target}: {_qualified(result.exception)}"))
            continue
        break  # "fail": the end of the chain
    if last_class is None:
        yield Fail(last_exc, None)
        return
    yield Fail(ResilienceError(operation, last_class, attempts=attempt, reason=reason), last_exc)


# --------------------------------------------------------------------------- bulkheads


class _AsyncBulkheads:
    """The asyncio semaphores of one event loop, by (operation, size)."""

    def __init__(self) -> None:
        self.semaphores: dict[tuple[str, int], asyncio.Semaphore] = {}


# --------------------------------------------------------------------------- the executor

_ROOT: Final[tuple[str, ...]] = ()


class Executor:
    """Runs calls under their operation's resilience policy; sync, async and as a decorator.

    The executor holds the runtime state its policies need: breaker state (in
    ``breaker_store``), retry budgets, bulkhead slots and the last good results, each
    per operation. Nothing is global: two executors share nothing. Every call gets a
    fresh :class:`CallPlan`.

    Args:
        engine: The engine whose policy set gives the Errors and Resilience models.
        clock: Monotonic seconds; injectable for tests.
        sleep: Blocking sleep of the sync shell.
        async_sleep: Awaitable sleep of the async shell.
        random: Returns a float in [0, 1) for jitter.
        breaker_store: Where breaker state lives (default: in memory, per executor).
        cache: Where last good results live (default: in memory, per executor).
        handlers: Operation -> function, for ``operation`` fallback steps.
        on_event: Called with each event, synchronously, in order.
    """

    def __init__(
        self,
        engine: Engine,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], object] = time.sleep,
        async_sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
        random: Callable[[], float] | None = None,
        breaker_store: BreakerStore | None = None,
        cache: ResultCache | None = None,
        handlers: Mapping[str, Callable[..., Any]] | None = None,
        on_event: Callable[[Event], object] | None = None,
    ) -> None:
        self.engine = engine
        model = engine.policy_set.model("Resilience")
        self._resilience = cast("ResilienceModel | None", model)
        errors = engine.policy_set.model("Errors")
        self._errors = errors if isinstance(errors, ErrorModel) else None
        self.clock = clock
        self._sleep = sleep
        self._async_sleep = async_sleep
        self._random = random if random is not None else _random.Random().random  # noqa: S311  jitter, not crypto
        self.breaker_store: BreakerStore = (
            breaker_store if breaker_store is not None else InMemoryBreakerStore()
        )
        self.cache: ResultCache = cache if cache is not None else InMemoryResultCache()
        self._handlers: dict[str, Callable[..., Any]] = dict(handlers or {})
        self.listener = on_event
        self._lock = threading.Lock()
        self._operations: dict[str, _Operation] = {}
        self._async_bulkheads: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _AsyncBulkheads] = (
            weakref.WeakKeyDictionary()
        )

    # ------------------------------------------------------------------ public API

    def policy_for(self, operation: str) -> OperationPolicy:
        """The resilience policy of ``operation``.

        An operation no pattern matches gets one plain attempt: no retry, breaker,
        timeout, bulkhead or fallback (its errors are still classified).
        """
        return self._operation(operation).policy

    def plan(self, operation: str) -> CallPlan:
        """A fresh sans-IO plan for one call of ``operation`` (what the shells drive)."""
        return CallPlan(self, self._operation(operation))

    def register(self, operation: str, fn: Callable[..., Any]) -> None:
        """Make ``fn`` the function ``operation`` fallback steps call for ``operation``."""
        with self._lock:
            self._handlers[operation] = fn

    def run(self, operation: str, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Call ``fn(*args, **kwargs)`` as ``operation``, under its policy.

        Raises:
            ResilienceError: The call failed for good (from the last error).
            CircuitOpenError: The breaker rejected the call, nothing fell back, and the
                errors policy has no ``CIRCUIT_OPEN`` code.
        """
        return cast("T", self._run(operation, fn, args, kwargs, _ROOT))

    async def arun(
        self, operation: str, fn: Callable[P, Awaitable[T]], /, *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """Await ``fn(*args, **kwargs)`` as ``operation``, under its policy.

        ``fn`` is normally a coroutine function; a plain function is called on the loop
        (and its result awaited if it is awaitable).

        Raises:
            ResilienceError: The call failed for good (from the last error).
            CircuitOpenError: As for :meth:`run`.
        """
        return cast("T", await self._arun(operation, fn, args, kwargs, _ROOT))

    def resilient(self, operation: str) -> Callable[[Callable[P, T]], Callable[P, T]]:
        """Decorate a sync or async function so every call runs as ``operation``.

        The function is also registered as ``operation``'s handler, so other
        operations' ``operation`` fallback steps can call it.
        """

        def decorate(fn: Callable[P, T]) -> Callable[P, T]:
            self.register(operation, fn)
            if inspect.iscoroutinefunction(fn):

                @functools.wraps(fn)
                async def async_wrapper(*args: P.args, **kwargs: P.kwargs) -> object:
                    return await self._arun(operation, fn, args, kwargs, _ROOT)

                return cast("Callable[P, T]", async_wrapper)

            @functools.wraps(fn)
            def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
                return cast("T", self._run(operation, fn, args, kwargs, _ROOT))

            return wrapper

        return decorate

    # ------------------------------------------------------------------ services the plan uses

    def random(self) -> float:
        """A float in [0, 1) from the injected source (the plan's randomness)."""
        return self._random()

    def emit(self, event: Event) -> None:
        """Hand ``event`` to ``on_event``."""
        if self.listener is not None:
            self.listener(event)

    def classify(self, exc: Exception, operation: str) -> Classification:
        """Classify ``exc`` by the errors policy (internal and not retryable without one)."""
        if self._errors is None:
            return _unclassified(operation, self.engine.version)
        return self.engine.classify(exc, operation=operation)

    def circuit_open(self, exc: CircuitOpenError, operation: str) -> Classification | None:
        """The registry's ``CIRCUIT_OPEN`` entry for a rejection, never retryable; or ``None``."""
        errors = self._errors
        if errors is None:
            return None
        entry = errors.codes.get(CIRCUIT_OPEN)
        if entry is None:
            return None
        info = ErrorInfo(types=exception_names(type(exc)), operation=operation, retry_after=exc.retry_in)
        return Classification(
            code=entry.code,
            category=entry.category,
            status=entry.status,
            retryable=False,
            severity=entry.severity,
            escalation=entry.escalation,
            title=entry.title,
            message=entry.render(info),
            type=entry.type,
            never_executed=True,
            rule="executor:circuit-open",
            source="",
            policy_version=errors.policy_version,
            retry_after=exc.retry_in,
        )

    def _operation(self, name: str) -> _Operation:
        """The runtime state of operation ``name``, made on first use.

        State is kept per operation name for the executor's life: use names from code
        (``search.query``), never from request data.
        """
        found = self._operations.get(name)
        if found is not None:
            return found
        with self._lock:
            found = self._operations.get(name)
            if found is not None:
                return found
            policy = self._resilience.policy_for(name) if self._resilience is not None else None
            if policy is None:
                policy = _plain_policy(name, self.engine.version)
            retry = policy.retry
            budget = (
                RetryBudget(retry.budget, clock=self.clock)
                if retry is not None and retry.budget is not None
                else None
            )
            bulkhead = policy.bulkhead
            found = _Operation(
                name=name,
                policy=policy,
                deadline=retry.deadline if retry is not None else None,
                budget=budget,
                caches=any(step.kind == "cached" for step in policy.fallback),
                slot=threading.BoundedSemaphore(bulkhead.max_concurrent) if bulkhead is not None else None,
            )
            self._operations[name] = found
            return found

    def record(
        self, operation: str, breaker: BreakerPolicy, permit: Permit, outcome: BreakerOutcome, duration: float
    ) -> None:
        """Report an attempt's outcome to the breaker store and emit its transitions."""
        changes = self.breaker_store.record(operation, breaker, permit, outcome, duration, self.clock())
        self.transitions(operation, changes)

    def transitions(self, operation: str, changes: tuple[Transition, ...]) -> None:
        """Emit a :class:`BreakerTransition` for each state change the store reported."""
        if self.listener is None:
            return
        for change in changes:
            self.emit(
                BreakerTransition(operation, change.from_state.value, change.to_state.value, change.reason)
            )

    # ------------------------------------------------------------------ the sync shell

    def _run(
        self,
        operation: str,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: Mapping[str, Any],
        chain: tuple[str, ...],
    ) -> object:
        op = self._operation(operation)
        plan = _plan(self, op)
        try:
            command = next(plan)
            while True:
                if isinstance(command, Attempt):
                    command = plan.send(self._attempt(op, command.timeout, fn, args, kwargs))
                elif isinstance(command, Sleep):
                    self._sleep(command.seconds)
                    command = plan.send(None)
                elif isinstance(command, UseFallback):
                    command = plan.send(self._fallback(operation, command.operation, args, kwargs, chain))
                else:
                    break
        except BaseException:
            plan.close()  # hands back a breaker permit held by an interrupted attempt
            raise
        if isinstance(command, Done):
            return command.value
        raise command.error from command.cause

    def _attempt(
        self,
        op: _Operation,
        timeout: float | None,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: Mapping[str, Any],
    ) -> Outcome:
        clock = self.clock
        started = clock()
        slot = op.slot
        if slot is not None:
            bulkhead = cast("BulkheadPolicy", op.policy.bulkhead)
            wait = bulkhead.max_wait if timeout is None else min(bulkhead.max_wait, timeout)
            # Real-time wait: a blocked thread cannot be woken by a fake clock.
            if not (slot.acquire(blocking=False) or (wait > 0 and slot.acquire(timeout=wait))):
                error = BulkheadFullError(op.name, max_concurrent=bulkhead.max_concurrent, waited=wait)
                return Failure(error, clock() - started)
        try:
            value = fn(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001  every failure is classified by the plan
            return Failure(exc, clock() - started)
        finally:
            if slot is not None:
                slot.release()
        duration = clock() - started
        if timeout is not None and duration > timeout:
            return Failure(AttemptTimeoutError(op.name, timeout), duration)
        return Success(value, duration)

    def _fallback(
        self,
        operation: str,
        target: str,
        args: tuple[Any, ...],
        kwargs: Mapping[str, Any],
        chain: tuple[str, ...],
    ) -> Outcome:
        started = self.clock()
        handler = self._handler(operation, target, chain)
        if isinstance(handler, Failure):
            return handler
        if inspect.iscoroutinefunction(handler):
            error = TypeError(f"the fallback operation {target} is async; call {operation} with arun()")
            return Failure(error, 0.0)
        try:
            value = self._run(target, handler, args, kwargs, (*chain, operation))
        except Exception as exc:  # noqa: BLE001  a failed fallback moves the chain on
            return Failure(exc, self.clock() - started)
        return Success(value, self.clock() - started)

    def _handler(self, operation: str, target: str, chain: tuple[str, ...]) -> Callable[..., Any] | Failure:
        if target == operation or target in chain:
            cycle = " -> ".join((*chain, operation, target))
            return Failure(FallbackCycleError(operation, f"fallback cycle {cycle}"), 0.0)
        handler = self._handlers.get(target)
        if handler is None:
            return Failure(
                LookupError(f"no function is registered for fallback operation {target}"),
                0.0,
            )
        return handler

    # ------------------------------------------------------------------ the async shell

    async def _arun(
        self,
        operation: str,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: Mapping[str, Any],
        chain: tuple[str, ...],
    ) -> object:
        op = self._operation(operation)
        plan = _plan(self, op)
        try:
            command = next(plan)
            while True:
                if isinstance(command, Attempt):
                    command = plan.send(await self._aattempt(op, command.timeout, fn, args, kwargs))
                elif isinstance(command, Sleep):
                    await self._async_sleep(command.seconds)
                    command = plan.send(None)
                elif isinstance(command, UseFallback):
                    command = plan.send(
                        await self._afallback(operation, command.operation, args, kwargs, chain)
                    )
                else:
                    break
        except BaseException:
            plan.close()  # hands back a breaker permit held by a cancelled attempt
            raise
        if isinstance(command, Done):
            return command.value
        raise command.error from command.cause

    async def _aattempt(
        self,
        op: _Operation,
        limit: float | None,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: Mapping[str, Any],
    ) -> Outcome:
        clock = self.clock
        started = clock()
        bulkhead = op.policy.bulkhead
        if limit is None and bulkhead is None:
            try:
                value = fn(*args, **kwargs)
                if inspect.isawaitable(value):
                    value = await value
            except Exception as exc:  # noqa: BLE001  every failure is classified by the plan
                return Failure(exc, clock() - started)
            return Success(value, clock() - started)
        try:
            async with asyncio.timeout(limit) as scope:
                return await self._aguarded(op.name, bulkhead, limit, fn, args, kwargs, started)
        except TimeoutError as exc:
            if scope.expired():
                return Failure(AttemptTimeoutError(op.name, cast("float", limit)), clock() - started)
            return Failure(exc, clock() - started)

    async def _aguarded(
        self,
        operation: str,
        bulkhead: BulkheadPolicy | None,
        limit: float | None,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: Mapping[str, Any],
        started: float,
    ) -> Outcome:
        clock = self.clock
        slot = None
        if bulkhead is not None:
            slot = self._async_slot(operation, bulkhead)
            wait = bulkhead.max_wait if limit is None else min(bulkhead.max_wait, limit)
            if slot.locked():
                acquired = False
                if wait > 0:
                    try:
                        async with asyncio.timeout(wait):
                            await slot.acquire()
                        acquired = True
                    except TimeoutError:
                        acquired = False
                if not acquired:
                    error = BulkheadFullError(operation, max_concurrent=bulkhead.max_concurrent, waited=wait)
                    return Failure(error, clock() - started)
            else:
                await slot.acquire()
        try:
            value = fn(*args, **kwargs)
            if inspect.isawaitable(value):
                value = await value
        except TimeoutError:
            raise  # the attempt's own timeout, or the function's: _aattempt tells them apart
        except Exception as exc:  # noqa: BLE001  every failure is classified by the plan
            return Failure(exc, clock() - started)
        finally:
            if slot is not None:
                slot.release()
        return Success(value, clock() - started)

    def _async_slot(self, operation: str, bulkhead: BulkheadPolicy) -> asyncio.Semaphore:
        loop = asyncio.get_running_loop()
        with self._lock:
            per_loop = self._async_bulkheads.get(loop)
            if per_loop is None:
                per_loop = self._async_bulkheads[loop] = _AsyncBulkheads()
            key = (operation, bulkhead.max_concurrent)
            slot = per_loop.semaphores.get(key)
            if slot is None:
                slot = per_loop.semaphores[key] = asyncio.Semaphore(bulkhead.max_concurrent)
        return slot

    async def _afallback(
        self,
        operation: str,
        target: str,
        args: tuple[Any, ...],
        kwargs: Mapping[str, Any],
        chain: tuple[str, ...],
    ) -> Outcome:
        started = self.clock()
        handler = self._handler(operation, target, chain)
        if isinstance(handler, Failure):
            return handler
        try:
            value = await self._arun(target, handler, args, kwargs, (*chain, operation))
        except Exception as exc:  # noqa: BLE001  a failed fallback moves the chain on
            return Failure(exc, self.clock() - started)
        return Success(value, self.clock() - started)


def _plain_policy(operation: str, version: str) -> OperationPolicy:
    """The policy of an operation no pattern matches: one plain attempt."""
    return OperationPolicy(
        pattern=operation,
        idempotent=True,
        timeout=None,
        retry=None,
        breaker=None,
        bulkhead=None,
        fallback=(),
        rule="executor:no-policy",
        source="",
        policy_version=version,
    )


def _unclassified(operation: str, version: str) -> Classification:
    """The classification used when the policy set has no Errors document."""
    return Classification(
        code="INTERNAL",
        category="internal",
        status=500,
        retryable=False,
        severity="error",
        escalation="none",
        title="Internal error",
        message=f"{operation} failed",
        type="about:blank",
        never_executed=False,
        rule="executor:no-errors-policy",
        source="",
        policy_version=version,
    )
