"""The resilience executor: runs calls under their operation's retry, breaker and fallback.

One implementation of the logic serves sync and async code. :class:`CallPlan` is a
sans-IO state machine: it owns one call's state (attempt number, the decorrelated-jitter
previous delay, start time, breaker permits) and answers each outcome with the next
command (:class:`Attempt`, :class:`Sleep`, :class:`UseFallback`, :class:`Done`,
:class:`Fail`). The two shells, :meth:`Executor.run` and :meth:`Executor.arun`, only
perform those commands: call or await the function, ``sleep`` or ``await async_sleep``.
The plan's logic lives in the steps of one per-call object (:class:`_Call`) that the
generator turns into commands; for a first attempt that succeeds, the common case, the
shells call the same steps without the generator, and start it only if that attempt
fails or the breaker refuses it.

The steps call the breaker store themselves, except in the async shell when the store
can be awaited (an :class:`AsyncBreakerStore`, such as the Redis one): the shell then
awaits it between the same steps (:class:`_AwaitingCall`), so a network store never
blocks the event loop. A store that fails lets the attempt through as if the breaker
were closed (:meth:`Executor.store_failed`).

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
import types
import weakref
from typing import TYPE_CHECKING, Any, Final, ParamSpec, Protocol, TypeVar, cast

from ._breaker import AsyncBreakerStore, InMemoryBreakerStore, Permit
from ._classification import Classification, ErrorModel
from ._errorinfo import ErrorInfo, exception_names, public_name
from ._exceptions import (
    AttemptTimeoutError,
    BulkheadFullError,
    CallRejectedError,
    CircuitOpenError,
    FallbackCycleError,
    ResilienceError,
    StoreError,
)
from ._resilience import OperationPolicy
from ._retry import RetryBudget, decide_retry

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Generator, Mapping

    from ._breaker import BreakerStore, Rejection, Transition
    from ._engine import Engine
    from ._resilience import BreakerPolicy, BulkheadPolicy, FallbackStep, ResilienceModel
    from ._resilience import Outcome as BreakerOutcome

T = TypeVar("T")
P = ParamSpec("P")

_Coroutine: Final = types.CoroutineType
"""Tested by identity before ``inspect.isawaitable``, which is twice as slow."""

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

_Result = tuple[object, Exception | None, float, float]
"""How the shells' attempts report, building no object but a tuple: ``(value, None,
started, ended)`` for a success, ``(None, exception, started, ended)`` for a failure
(clock readings: the duration is ``ended - started``)."""


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
class BreakerStoreFailed:
    """The breaker store could not answer; the attempt went ahead as if the breaker were closed.

    ``step`` is ``acquire`` (the attempt ran without a permit) or ``record`` (its
    outcome was not counted). ``error`` is the qualified name of the store's exception
    (``tierpolicy.engine.StoreUnavailableError`` when Redis is down) and ``message`` its text.
    """

    operation: str
    step: str
    error: str
    message: str


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
    | BreakerStoreFailed
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
    breaker: BreakerPolicy | None
    """``policy.breaker``, read once here rather than on every attempt."""
    timeout: float | None
    """``policy.timeout``."""
    guarded: bool
    """Whether an attempt needs the clock before it starts (a breaker or a deadline)."""
    awaits: bool = False
    """Whether the async shell awaits the breaker store (a breaker, and an :class:`AsyncBreakerStore`)."""


class _Call:
    """One call's state and its steps: the single implementation of the executor's logic.

    The steps are plain methods so that both drivers run the same code: the generator
    of commands (:func:`_steps`, behind :class:`CallPlan` and the shells' slow path) and
    the shells' fast path, which makes the first attempt without a generator or any
    command or outcome object and starts the generator only if that attempt fails or
    the breaker rejects it. The state is what the generator kept in its locals: the
    call's start, the attempt number, the decorrelated-jitter previous delay, the
    breaker permit in hand and the last classified error.

    Breaker store calls are made by the steps themselves (:meth:`begin`,
    :meth:`succeeded`, :meth:`failed`, :meth:`abandon`), except for an
    :class:`_AwaitingCall`, whose shell awaits them around the same steps.
    """

    awaits = False
    """Whether the shell, not the steps, calls the breaker store (see :class:`_AwaitingCall`)."""

    __slots__ = (
        "attempt",
        "emit",
        "ex",
        "last_class",
        "last_exc",
        "op",
        "permit",
        "previous_delay",
        "reason",
        "start",
        "timeout",
    )
    # Set before they are read: by begin (timeout, and all three on a rejection) or failed.
    last_class: Classification | None
    last_exc: Exception
    reason: str
    timeout: float | None

    def __init__(self, ex: Executor, op: _Operation) -> None:
        self.ex = ex
        self.op = op
        self.emit = ex.listener
        self.start = ex.clock()
        if op.budget is not None:
            op.budget.record_request()
        self.attempt = 0
        self.previous_delay: float | None = None
        self.permit: Permit | None = None

    def begin(self) -> bool:
        """Start the next attempt: ``True`` with ``timeout`` set, ``False`` if the breaker refused it.

        A refusal is that attempt's classified failure (``reason`` ``CIRCUIT_OPEN``): the
        call gives up (:func:`_give_up`). A breaker store that fails does not refuse: the
        attempt goes ahead without a permit (:meth:`Executor.store_failed`).
        """
        # The store's answer is handled here as in admit(), inline: one call fewer on the hot path.
        op = self.op
        self.attempt = attempt = self.attempt + 1
        timeout = op.timeout
        if op.guarded:
            ex = self.ex
            # The first attempt starts when the call does: one clock read serves both.
            now = self.start if attempt == 1 else ex.clock()
            breaker = op.breaker
            if breaker is not None:
                try:
                    got = ex.breaker_store.acquire(op.name, breaker, now)
                except StoreError as exc:
                    ex.store_failed(op.name, "acquire", exc)
                    self.permit = None
                else:
                    if got.transitions:
                        ex.transitions(op.name, got.transitions)
                    if not isinstance(got, Permit):
                        self._rejected(got.retry_at, now)
                        return False
                    self.permit = got
            deadline = op.deadline
            if deadline is not None:
                remaining = max(0.0, deadline - (now - self.start))
                timeout = remaining if timeout is None else min(timeout, remaining)
        self.timeout = timeout
        if self.emit is not None:
            self.emit(AttemptStarted(op.name, attempt, timeout))
        return True

    def next_attempt(self) -> float:
        """Count the next attempt of an awaiting call: the clock reading to ask its breaker at.

        The shell then asks the store and hands the answer to :meth:`admit`, which is
        what :meth:`begin` does for a call whose steps call the store themselves.
        """
        self.attempt = attempt = self.attempt + 1
        return self.start if attempt == 1 else self.ex.clock()

    def admit(self, got: Permit | Rejection | None, now: float) -> bool:
        """Start attempt ``attempt`` of an awaiting call, given the breaker's answer at ``now``.

        ``got`` is ``None`` when the store failed: the attempt goes ahead without a
        permit. Returns :meth:`begin`'s answer; this is the second half of
        :meth:`begin`, which inlines it.
        """
        op = self.op
        if got is not None:
            if got.transitions:
                self.ex.transitions(op.name, got.transitions)
            if not isinstance(got, Permit):
                self._rejected(got.retry_at, now)
                return False
        self.permit = got
        timeout = op.timeout
        deadline = op.deadline
        if deadline is not None:
            remaining = max(0.0, deadline - (now - self.start))
            timeout = remaining if timeout is None else min(timeout, remaining)
        self.timeout = timeout
        if self.emit is not None:
            self.emit(AttemptStarted(op.name, self.attempt, timeout))
        return True

    def take_permit(self) -> Permit | None:
        """The permit in hand, which the caller now reports to the store; none is left."""
        permit, self.permit = self.permit, None
        return permit

    def _rejected(self, retry_at: float | None, now: float) -> None:
        operation = self.op.name
        retry_in = None if retry_at is None else max(0.0, retry_at - now)
        self.last_exc = exc = CircuitOpenError(operation, retry_in=retry_in)
        self.last_class = last_class = self.ex.circuit_open(exc, operation)
        if self.emit is not None:
            self.emit(
                AttemptFailed(
                    operation,
                    self.attempt,
                    last_class.code if last_class else CIRCUIT_OPEN,
                    last_class.category if last_class else "unavailable",
                    False,  # noqa: FBT003  positional field of a frozen event
                    0.0,
                    _qualified(exc),
                )
            )
        self.reason = CIRCUIT_OPEN

    def succeeded(self, value: object, duration: float, ended: float | None = None) -> None:
        """The attempt returned ``value`` after ``duration`` s: the call answers ``value``.

        ``ended``: the clock reading that ended the attempt, if the caller has it (the
        breaker records the outcome at that time; otherwise the clock is read).
        """
        op = self.op
        ex = self.ex
        permit = self.permit
        breaker = op.breaker
        if permit is not None and breaker is not None:
            now = ex.clock() if ended is None else ended
            try:
                changes = ex.breaker_store.record(op.name, breaker, permit, "success", duration, now)
            except StoreError as exc:
                ex.store_failed(op.name, "record", exc)
            else:
                if changes:
                    ex.transitions(op.name, changes)
        if op.budget is not None:
            op.budget.record_success()
        if op.caches:
            ex.cache.put(op.name, value, ex.clock())
        if self.emit is not None:
            self.emit(AttemptSucceeded(op.name, self.attempt, duration))

    def failed(self, exc: Exception, duration: float) -> float | None:
        """The attempt raised ``exc``: the backoff before the next attempt, or ``None`` to give up."""
        last_class = self.classified(exc)
        permit = self.permit
        breaker = self.op.breaker
        if permit is not None and breaker is not None:
            counted = breaker.outcome_of_error(category=last_class.category, code=last_class.code)
            self.ex.record(self.op.name, breaker, permit, counted, duration)
        return self.retry_delay(last_class, duration)

    def classified(self, exc: Exception) -> Classification:
        """The first part of :meth:`failed`: classify the attempt's ``exc`` and keep it."""
        self.last_exc = exc
        self.last_class = last_class = self.ex.classify(exc, self.op.name)
        return last_class

    def retry_delay(self, last_class: Classification, duration: float) -> float | None:
        """The rest of :meth:`failed`, once the breaker has the outcome: emit the failure, decide on a retry."""
        op = self.op
        ex = self.ex
        operation = op.name
        exc = self.last_exc
        budget = op.budget
        if budget is not None:
            budget.record_failure()
        emit = self.emit
        if emit is not None:
            emit(
                AttemptFailed(
                    operation,
                    self.attempt,
                    last_class.code,
                    last_class.category,
                    last_class.retryable,
                    duration,
                    _qualified(exc),
                )
            )
        decision = decide_retry(
            op.policy,
            retryable=last_class.retryable,
            category=last_class.category,
            never_executed=last_class.never_executed or isinstance(exc, CallRejectedError),
            failed_attempt=self.attempt,
            elapsed=ex.clock() - self.start,
            previous_delay=self.previous_delay,
            retry_after=last_class.retry_after,
            random=ex,
            budget=budget,
        )
        if not decision.retry:
            self.reason = decision.reason.value
            return None
        if emit is not None:
            emit(RetryScheduled(operation, self.attempt + 1, decision.delay, decision.reason.value))
        self.previous_delay = decision.delay
        return decision.delay

    def abandon(self) -> None:
        """The attempt in flight was interrupted: hand its breaker permit back as ``ignored``."""
        permit = self.permit
        breaker = self.op.breaker
        if permit is not None and breaker is not None:
            self.ex.record(self.op.name, breaker, permit, "ignored", 0.0)


class _AwaitingCall(_Call):
    """A call of the async shell whose breaker store is awaited (an :class:`AsyncBreakerStore`).

    Its steps are :class:`_Call`'s, but they never call the store: the shell asks for
    the permit (:meth:`next_attempt`, then :meth:`admit` with the store's answer) and
    reports each outcome (taking the permit with :meth:`take_permit`, so that
    :meth:`succeeded` and :meth:`failed` find none to report). On the generator's path,
    :func:`_steps` yields :class:`_Acquire` and :class:`_Record` for the shell to await.
    """

    __slots__ = ()
    awaits = True


class _Acquire:
    """Store command of an awaiting call: ask the breaker for a permit at ``now``.

    The shell puts the store's answer in ``answer`` (``None`` if the store failed) and
    sends ``None``. Mutable, unlike the public commands, so that the generator's send
    type stays :data:`Outcome` ``| None``.
    """

    __slots__ = ("answer", "now")

    def __init__(self, now: float) -> None:
        self.now = now
        self.answer: Permit | Rejection | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class _Record:
    """Store command of an awaiting call: report how the attempt under ``permit`` went.

    The shell reads the clock for it (as :meth:`Executor.record` does), emits the
    transitions and sends ``None``.
    """

    permit: Permit
    outcome: BreakerOutcome
    duration: float


if TYPE_CHECKING:
    _Plan = Generator[Command | _Acquire | _Record, Outcome | None, None]
    """The generator of one call's commands (and, for an awaiting call, its store commands)."""


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
    # A plain _Call calls the store itself: its plan yields no store commands.
    return cast("Generator[Command, Outcome | None, None]", _steps(_Call(ex, op), None))


def _steps(call: _Call, outcome: Outcome | None) -> _Plan:
    """The rest of ``call`` as commands; ``outcome`` is that of an attempt already made, if any.

    With ``outcome`` ``None`` the next command is the next attempt; otherwise the
    attempt ``call.attempt`` was made (by a shell's fast path) and this is how it went.
    An awaiting call's store calls are commands too, at the points where a plain
    call's steps make them, so both emit the same events in the same order.
    """
    awaits = call.awaits
    while True:
        if outcome is None:
            if awaits:
                now = call.next_attempt()
                ask = _Acquire(now)
                yield ask
                admitted = call.admit(ask.answer, now)
            else:
                admitted = call.begin()
            if not admitted:
                break
            try:
                outcome = yield Attempt(call.attempt, call.timeout)
            except GeneratorExit:
                if not awaits:  # an awaiting call's shell hands the permit back itself
                    call.abandon()
                raise
        if type(outcome) is Success:
            if awaits:
                yield from _recorded(call, "success", outcome.duration)
            call.succeeded(outcome.value, outcome.duration)
            yield Done(outcome.value)
            return
        assert isinstance(outcome, Failure)  # noqa: S101  the shell reports an outcome
        if awaits:
            last_class = call.classified(outcome.exception)
            breaker = cast("BreakerPolicy", call.op.breaker)
            counted = breaker.outcome_of_error(category=last_class.category, code=last_class.code)
            yield from _recorded(call, counted, outcome.duration)
            delay = call.retry_delay(last_class, outcome.duration)
        else:
            delay = call.failed(outcome.exception, outcome.duration)
        if delay is None:
            break
        outcome = None
        yield Sleep(delay)
    yield from _give_up(call)


def _recorded(call: _Call, outcome: BreakerOutcome, duration: float) -> _Plan:
    """An awaiting call's report of its attempt to the breaker, if it holds a permit."""
    permit = call.take_permit()
    if permit is not None:
        yield _Record(permit, outcome, duration)


def _give_up(call: _Call) -> _Plan:
    """No further attempt: the fallback chain, then :class:`Fail` if nothing answered."""
    op, ex, emit = call.op, call.ex, call.emit
    operation, last_class, reason = op.name, call.last_class, call.reason
    clock = ex.clock
    if emit is not None:
        emit(GaveUp(operation, call.attempt, last_class.code if last_class else CIRCUIT_OPEN, reason))
    for step in op.policy.fallback:
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
        yield Fail(call.last_exc, None)
        return
    yield Fail(ResilienceError(operation, last_class, attempts=call.attempt, reason=reason), call.last_exc)


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
        breaker_store: Where breaker state lives (default: in memory, per executor). If
            it also has the :class:`AsyncBreakerStore` methods, the async shell awaits
            them; if it raises :class:`StoreError`, calls go ahead unguarded.
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
        # Checked once here: the async shell of an operation with a breaker awaits a
        # store that can be awaited; the in-memory store is called as it is.
        self._async_store: AsyncBreakerStore | None = (
            self.breaker_store if isinstance(self.breaker_store, AsyncBreakerStore) else None
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
        # Returns fn's T unchecked: cast() would cost a call on every call.
        return self._run(operation, fn, args, kwargs, _ROOT)  # type: ignore[return-value]

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
        return await self._arun(operation, fn, args, kwargs, _ROOT)  # type: ignore[return-value]

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
                return self._run(operation, fn, args, kwargs, _ROOT)  # type: ignore[return-value]

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
                breaker=policy.breaker,
                timeout=policy.timeout,
                guarded=policy.breaker is not None or (retry is not None and retry.deadline is not None),
                awaits=policy.breaker is not None and self._async_store is not None,
            )
            self._operations[name] = found
            return found

    def record(
        self, operation: str, breaker: BreakerPolicy, permit: Permit, outcome: BreakerOutcome, duration: float
    ) -> None:
        """Report an attempt's outcome to the breaker store and emit its transitions."""
        try:
            changes = self.breaker_store.record(operation, breaker, permit, outcome, duration, self.clock())
        except StoreError as exc:
            self.store_failed(operation, "record", exc)
            return
        self.transitions(operation, changes)

    def store_failed(self, operation: str, step: str, exc: StoreError) -> None:
        """The breaker store raised ``exc`` at ``step`` (``acquire`` or ``record``): emit it, go on.

        A breaker exists so that a failing dependency does not take its callers down;
        a failing breaker store must not either. So the attempt goes ahead as if the
        breaker were closed (without a permit, so nothing is recorded for it), and an
        outcome the store could not take is dropped.
        """
        if self.listener is not None:
            self.emit(BreakerStoreFailed(operation, step, _qualified(exc), str(exc)))

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
        op = self._operations.get(operation) or self._operation(operation)
        call = _Call(self, op)
        # The fast path: the first attempt without the generator; the same steps.
        if not call.begin():
            return self._drive(_give_up(call), op, fn, args, kwargs, chain)
        try:
            value, exc, started, ended = self._attempt(op, call.timeout, fn, args, kwargs)
        except BaseException:
            call.abandon()  # hands back the breaker permit of an interrupted attempt
            raise
        if exc is None:
            call.succeeded(value, ended - started, ended)
            return value
        return self._drive(_steps(call, Failure(exc, ended - started)), op, fn, args, kwargs, chain)

    def _drive(
        self,
        plan: _Plan,
        op: _Operation,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: Mapping[str, Any],
        chain: tuple[str, ...],
    ) -> object:
        """Perform the commands of ``plan`` until it is done (the slow path of :meth:`_run`)."""
        try:
            command = next(plan)
            while True:
                if isinstance(command, Attempt):
                    value, exc, started, ended = self._attempt(op, command.timeout, fn, args, kwargs)
                    outcome = (
                        Success(value, ended - started) if exc is None else Failure(exc, ended - started)
                    )
                    command = plan.send(outcome)
                elif isinstance(command, Sleep):
                    self._sleep(command.seconds)
                    command = plan.send(None)
                elif isinstance(command, UseFallback):
                    command = plan.send(self._fallback(op.name, command.operation, args, kwargs, chain))
                else:
                    break
        except BaseException:
            plan.close()  # hands back a breaker permit held by an interrupted attempt
            raise
        if isinstance(command, Done):
            return command.value
        assert isinstance(command, Fail)  # noqa: S101  a plain call's plan yields no store commands
        raise command.error from command.cause

    def _attempt(
        self,
        op: _Operation,
        timeout: float | None,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: Mapping[str, Any],
    ) -> _Result:
        clock = self.clock
        started = clock()
        slot = op.slot
        if slot is not None:
            bulkhead = cast("BulkheadPolicy", op.policy.bulkhead)
            wait = bulkhead.max_wait if timeout is None else min(bulkhead.max_wait, timeout)
            # Real-time wait: a blocked thread cannot be woken by a fake clock.
            if not (slot.acquire(blocking=False) or (wait > 0 and slot.acquire(timeout=wait))):
                error = BulkheadFullError(op.name, max_concurrent=bulkhead.max_concurrent, waited=wait)
                return None, error, started, clock()
        try:
            value = fn(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001  every failure is classified by the plan
            return None, exc, started, clock()
        finally:
            if slot is not None:
                slot.release()
        ended = clock()
        if timeout is not None and ended - started > timeout:
            return None, AttemptTimeoutError(op.name, timeout), started, ended
        return value, None, started, ended

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
        op = self._operations.get(operation) or self._operation(operation)
        if op.awaits:
            return await self._arun_awaiting(op, fn, args, kwargs, chain)
        call = _Call(self, op)
        # The fast path, as in _run.
        if not call.begin():
            return await self._adrive(_give_up(call), op, fn, args, kwargs, chain)
        try:
            if call.timeout is None and op.policy.bulkhead is None:
                # A plain attempt, made here: no timer, no slot, no coroutine of its own.
                clock = self.clock
                started = clock()
                exc: Exception | None = None
                try:
                    value = fn(*args, **kwargs)
                    if type(value) is _Coroutine or inspect.isawaitable(value):
                        value = await value
                except Exception as error:  # noqa: BLE001  every failure is classified by the plan
                    value, exc = None, error
                ended = clock()
            else:
                value, exc, started, ended = await self._aattempt(op, call.timeout, fn, args, kwargs)
        except BaseException:
            call.abandon()  # hands back the breaker permit of a cancelled attempt
            raise
        if exc is None:
            call.succeeded(value, ended - started, ended)
            return value
        return await self._adrive(_steps(call, Failure(exc, ended - started)), op, fn, args, kwargs, chain)

    async def _adrive(
        self,
        plan: _Plan,
        op: _Operation,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: Mapping[str, Any],
        chain: tuple[str, ...],
        awaiting: _Call | None = None,
    ) -> object:
        """Perform the commands of ``plan`` until it is done (the slow path of :meth:`_arun`).

        ``awaiting``: the call, if it is an awaiting one (its plan yields store commands).
        """
        try:
            command = next(plan)
            while True:
                if isinstance(command, Attempt):
                    value, exc, started, ended = await self._aattempt(op, command.timeout, fn, args, kwargs)
                    outcome = (
                        Success(value, ended - started) if exc is None else Failure(exc, ended - started)
                    )
                    command = plan.send(outcome)
                elif isinstance(command, Sleep):
                    await self._async_sleep(command.seconds)
                    command = plan.send(None)
                elif isinstance(command, UseFallback):
                    command = plan.send(
                        await self._afallback(op.name, command.operation, args, kwargs, chain)
                    )
                elif isinstance(command, _Acquire):
                    command.answer = await self._aacquire(op, command.now)
                    command = plan.send(None)
                elif isinstance(command, _Record):
                    await self._arecord(op, command.permit, command.outcome, command.duration, None)
                    command = plan.send(None)
                else:
                    break
        except BaseException:
            plan.close()  # hands back a breaker permit held by a cancelled attempt
            if awaiting is not None:
                await self._aabandon(op, awaiting)  # ... which an awaiting call's shell does
            raise
        if isinstance(command, Done):
            return command.value
        assert isinstance(command, Fail)  # noqa: S101  the loop ends at Done or Fail
        raise command.error from command.cause

    async def _arun_awaiting(
        self,
        op: _Operation,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: Mapping[str, Any],
        chain: tuple[str, ...],
    ) -> object:
        """:meth:`_arun` for an operation whose breaker store is awaited: the same steps, in the same order.

        Only the store calls differ: the shell awaits them between the steps (see
        :class:`_AwaitingCall`) rather than the steps making them.
        """
        call = _AwaitingCall(self, op)
        now = call.next_attempt()
        if not call.admit(await self._aacquire(op, now), now):
            return await self._adrive(_give_up(call), op, fn, args, kwargs, chain, call)
        try:
            value, exc, started, ended = await self._aattempt(op, call.timeout, fn, args, kwargs)
        except BaseException:
            await self._aabandon(op, call)  # hands back the breaker permit of a cancelled attempt
            raise
        if exc is None:
            permit = call.take_permit()
            if permit is not None:
                await self._arecord(op, permit, "success", ended - started, ended)
            call.succeeded(value, ended - started, ended)
            return value
        plan = _steps(call, Failure(exc, ended - started))
        return await self._adrive(plan, op, fn, args, kwargs, chain, call)

    async def _aacquire(self, op: _Operation, now: float) -> Permit | Rejection | None:
        """Await the store's permit for an attempt of ``op`` (``None`` if the store failed)."""
        store = cast("AsyncBreakerStore", self._async_store)
        try:
            return await store.aacquire(op.name, cast("BreakerPolicy", op.breaker), now)
        except StoreError as exc:
            self.store_failed(op.name, "acquire", exc)
            return None

    async def _arecord(
        self, op: _Operation, permit: Permit, outcome: BreakerOutcome, duration: float, at: float | None
    ) -> None:
        """Await the store's record of an attempt's outcome and emit its transitions."""
        store = cast("AsyncBreakerStore", self._async_store)
        now = self.clock() if at is None else at
        try:
            changes = await store.arecord(
                op.name, cast("BreakerPolicy", op.breaker), permit, outcome, duration, now
            )
        except StoreError as exc:
            self.store_failed(op.name, "record", exc)
            return
        self.transitions(op.name, changes)

    async def _aabandon(self, op: _Operation, call: _Call) -> None:
        """Hand back, as ``ignored``, the permit of an awaiting call's interrupted attempt (if any)."""
        permit = call.take_permit()
        if permit is not None:
            await self._arecord(op, permit, "ignored", 0.0, None)

    async def _aattempt(
        self,
        op: _Operation,
        limit: float | None,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: Mapping[str, Any],
    ) -> _Result:
        # A first attempt with neither a timeout nor a bulkhead is made inline by _arun;
        # here, with no limit, asyncio.timeout(None) never expires (later attempts only).
        clock = self.clock
        started = clock()
        bulkhead = op.policy.bulkhead
        try:
            async with asyncio.timeout(limit) as scope:
                return await self._aguarded(op.name, bulkhead, limit, fn, args, kwargs, started)
        except TimeoutError as exc:
            if scope.expired():
                return None, AttemptTimeoutError(op.name, cast("float", limit)), started, clock()
            return None, exc, started, clock()

    async def _aguarded(
        self,
        operation: str,
        bulkhead: BulkheadPolicy | None,
        limit: float | None,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: Mapping[str, Any],
        started: float,
    ) -> _Result:
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
                    return None, error, started, clock()
            else:
                await slot.acquire()
        try:
            value = fn(*args, **kwargs)
            if type(value) is _Coroutine or inspect.isawaitable(value):
                value = await value
        except TimeoutError:
            raise  # the attempt's own timeout, or the function's: _aattempt tells them apart
        except Exception as exc:  # noqa: BLE001  every failure is classified by the plan
            return None, exc, started, clock()
        finally:
            if slot is not None:
                slot.release()
        return value, None, started, clock()

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
