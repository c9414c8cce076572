"""The Resilience kind: retry, circuit breaker, bulkhead, timeout and fallback per operation.

A ``Resilience`` document maps operation names or globs (``payments.*``,
``payments.capture``) to the policy that wraps calls of that operation. Loading turns
the documents into a :class:`ResilienceModel` of frozen :class:`OperationPolicy` values;
the executor asks :meth:`ResilienceModel.policy_for` for an operation's policy and
applies it in the fixed order fallback, retry, breaker, timeout, bulkhead, call.

Durations are CEL (Go) duration strings such as ``100ms``, ``2s`` or ``1m30s``; compiled
policies hold seconds as floats. See ``docs/resilience.md``.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import math
import re
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import Field, StrictBool, StrictInt, StrictStr, model_validator

from ._classification import CATEGORIES
from ._diagnostics import Code, did_you_mean
from ._documents import TIER_PATTERN, Description, SpecModel
from ._exceptions import ConditionError
from .cel import _values as cel_values

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    from ._compiling import CompileContext, ParsedDocument

Path_ = tuple[str | int, ...]

OPERATION_PATTERN = r"^[a-z*][a-z0-9_*]*(?:[.-][a-z0-9_*]+)*$"
"""Operation names are dotted lower-case names; ``*`` matches any run of characters."""
OPERATION_NAME = r"^[a-z][a-z0-9_]*(?:[.-][a-z0-9_]+)*$"
ERROR_CODE_PATTERN = r"^[A-Z][A-Z0-9_]*$"

DEFAULT_RECORD_CATEGORIES = frozenset({"transient", "timeout", "unavailable", "throttled", "internal"})
"""The error categories a breaker counts as failures unless ``record`` says otherwise:
the retryable ones (a dependency in trouble) and ``internal``."""

Jitter = Literal["none", "full", "equal", "decorrelated"]
WindowType = Literal["count", "time"]
Outcome = Literal["success", "failure", "ignored"]

DurationText = Annotated[
    StrictStr,
    Field(min_length=1, max_length=64, description="A duration such as 100ms, 2s or 1m30s."),
]
OperationPattern = Annotated[StrictStr, Field(pattern=OPERATION_PATTERN, max_length=128)]
OperationName = Annotated[StrictStr, Field(pattern=OPERATION_NAME, max_length=128)]
CategoryName = Annotated[StrictStr, Field(pattern=TIER_PATTERN, max_length=64)]
ErrorCode = Annotated[StrictStr, Field(pattern=ERROR_CODE_PATTERN, max_length=128)]
Percent = Annotated[float, Field(gt=0, le=100)]


# --------------------------------------------------------------------------- spec models


class TokenBucketBudgetSpec(SpecModel):
    """gRPC-style retry throttling (proposal A6): retries stop while tokens <= max/2."""

    kind: Literal["token_bucket"]
    max_tokens: Annotated[float, Field(gt=0, le=1000)]
    token_ratio: Annotated[float, Field(gt=0, le=1000)]


class PercentBudgetSpec(SpecModel):
    """Retries may be at most ``percent`` of the requests of the last ``window``.

    ``min_retries_per_second`` keeps a trickle of retries possible at low traffic.
    """

    kind: Literal["percent"]
    percent: Percent
    min_retries_per_second: Annotated[float, Field(ge=0, le=1_000_000)] = 0.0
    window: DurationText = "10s"


class RetrySpec(SpecModel):
    """How failed attempts of an operation are retried."""

    max_attempts: Annotated[StrictInt, Field(ge=1, le=100)] = 3
    initial_delay: DurationText = "100ms"
    multiplier: Annotated[float, Field(ge=1, le=100)] = 2.0
    max_delay: DurationText = "10s"
    jitter: Jitter = "full"
    deadline: DurationText | None = None
    categories: list[CategoryName] | None = Field(default=None, min_length=1)
    honor_retry_after: StrictBool = True
    max_retry_after: DurationText | None = None
    budget: Annotated[TokenBucketBudgetSpec | PercentBudgetSpec, Field(discriminator="kind")] | None = None


class WindowSpec(SpecModel):
    """The breaker's sliding window: the last ``size`` calls, or the calls of the last ``size``."""

    type: Literal["count", "time"] = "count"
    size: Annotated[StrictInt, Field(ge=1, le=10_000)] | DurationText = 100


class RecordSpec(SpecModel):
    """Which errors count as breaker failures: by category or by error code."""

    categories: list[CategoryName] = Field(default_factory=list)
    codes: list[ErrorCode] = Field(default_factory=list)


class IgnoreSpec(SpecModel):
    """Error codes that count as neither success nor failure."""

    codes: list[ErrorCode] = Field(default_factory=list)


class CircuitBreakerSpec(SpecModel):
    """A rate-based circuit breaker with resilience4j semantics."""

    window: WindowSpec = Field(default_factory=WindowSpec)
    failure_rate_threshold: Percent = 50.0
    slow_call_duration: DurationText | None = None
    slow_call_rate_threshold: Percent = 100.0
    minimum_calls: Annotated[StrictInt, Field(ge=1, le=10_000)] = 100
    wait_in_open: DurationText = "60s"
    wait_multiplier: Annotated[float, Field(ge=1, le=100)] = 1.0
    max_wait_in_open: DurationText | None = None
    permitted_calls_in_half_open: Annotated[StrictInt, Field(ge=1, le=1000)] = 10
    max_wait_in_half_open: DurationText | None = None
    record: RecordSpec | None = None
    ignore: IgnoreSpec = Field(default_factory=IgnoreSpec)


class BulkheadSpec(SpecModel):
    """At most ``max_concurrent`` calls at once; others wait up to ``max_wait``."""

    max_concurrent: Annotated[StrictInt, Field(ge=1, le=100_000)]
    max_wait: DurationText = "0s"


class StaticFallbackSpec(SpecModel):
    """Answer with a fixed value."""

    value: Any


class CachedFallbackSpec(SpecModel):
    """Answer with the last good result if it is at most ``max_staleness`` old."""

    max_staleness: DurationText


class FailFallbackSpec(SpecModel):
    """Fail with the classified error (the end of a chain)."""


class FallbackStepSpec(SpecModel):
    """One step of a fallback chain: exactly one of static, cached, operation and fail."""

    model_config = SpecModel.model_config | {
        "json_schema_extra": {
            "oneOf": [
                {"required": ["static"]},
                {"required": ["cached"]},
                {"required": ["operation"]},
                {"required": ["fail"]},
            ]
        }
    }

    static: StaticFallbackSpec | None = None
    cached: CachedFallbackSpec | None = None
    operation: OperationName | None = None
    fail: FailFallbackSpec | None = None

    @model_validator(mode="after")
    def _one_step(self) -> FallbackStepSpec:
        given = [x for x in (self.static, self.cached, self.operation, self.fail) if x is not None]
        if len(given) != 1:
            msg = "a fallback step is exactly one of 'static', 'cached', 'operation' and 'fail'"
            raise ValueError(msg)
        return self


class OperationSpec(SpecModel):
    """The resilience policy of one operation name or glob."""

    description: Description = ""
    idempotent: StrictBool = True
    timeout: DurationText | None = None
    retry: RetrySpec | None = None
    circuit_breaker: CircuitBreakerSpec | None = None
    bulkhead: BulkheadSpec | None = None
    fallback: list[FallbackStepSpec] = Field(default_factory=list, max_length=16)

    @model_validator(mode="after")
    def _terminal_last(self) -> OperationSpec:
        for step in self.fallback[:-1]:
            if step.static is not None or step.fail is not None:
                msg = "'static' and 'fail' always answer, so they must be the last fallback step"
                raise ValueError(msg)
        return self


class ResilienceSpec(SpecModel):
    """The Resilience kind: operation name or glob -> its resilience policy."""

    operations: dict[OperationPattern, OperationSpec] = Field(min_length=1)


# --------------------------------------------------------------------------- compiled


@dataclasses.dataclass(frozen=True, slots=True)
class BudgetPolicy:
    """A retry budget.

    Attributes:
        kind: ``token_bucket`` (gRPC A6 retry throttling) or ``percent``.
        max_tokens: Token bucket size; retries are allowed while tokens > max_tokens / 2.
        token_ratio: Tokens a success adds back (a failure takes one).
        percent: Retries allowed as a percentage of the requests in ``window``.
        min_retries_per_second: Retries always allowed per second of ``window``.
        window: The percent budget's window in seconds.
    """

    kind: Literal["token_bucket", "percent"]
    max_tokens: float = 0.0
    token_ratio: float = 0.0
    percent: float = 0.0
    min_retries_per_second: float = 0.0
    window: float = 10.0


@dataclasses.dataclass(frozen=True, slots=True)
class RetryPolicy:
    """A compiled retry policy; every duration is in seconds."""

    max_attempts: int
    initial_delay: float
    multiplier: float
    max_delay: float
    jitter: Jitter
    deadline: float | None
    categories: frozenset[str] | None
    honor_retry_after: bool
    max_retry_after: float | None
    budget: BudgetPolicy | None


@dataclasses.dataclass(frozen=True, slots=True)
class BreakerPolicy:
    """A compiled circuit breaker policy; every duration is in seconds.

    ``window_size`` is a number of calls (count window) or whole seconds (time window).
    ``minimum_calls`` is capped at the size of a count window, as resilience4j does.
    ``max_wait_in_half_open`` 0 means: wait until every probe has completed.
    """

    window_type: WindowType
    window_size: int
    failure_rate_threshold: float
    slow_call_duration: float | None
    slow_call_rate_threshold: float
    minimum_calls: int
    wait_in_open: float
    wait_multiplier: float
    max_wait_in_open: float
    permitted_calls_in_half_open: int
    max_wait_in_half_open: float
    record_categories: frozenset[str] = DEFAULT_RECORD_CATEGORIES
    record_codes: frozenset[str] = frozenset()
    ignore_codes: frozenset[str] = frozenset()

    def outcome_of_error(self, *, category: str | None, code: str | None) -> Outcome:
        """Say how an error counts: ``failure``, ``ignored``, or ``success``.

        As in resilience4j, an error that is neither recorded nor ignored counts as a
        success: the breaker guards the dependency's health, not the caller's input.
        """
        if code is not None and code in self.ignore_codes:
            return "ignored"
        if (code is not None and code in self.record_codes) or (
            category is not None and category in self.record_categories
        ):
            return "failure"
        return "success"

    def open_wait(self, openings: int) -> float:
        """How long the breaker stays open after its ``openings``-th consecutive opening."""
        # The exponent is bounded so that a long outage cannot overflow the float.
        wait = self.wait_in_open * self.wait_multiplier ** min(max(0, openings - 1), 64)
        return min(self.max_wait_in_open, wait)


@dataclasses.dataclass(frozen=True, slots=True)
class BulkheadPolicy:
    """At most ``max_concurrent`` calls at once; a call waits at most ``max_wait`` seconds."""

    max_concurrent: int
    max_wait: float


@dataclasses.dataclass(frozen=True, slots=True)
class FallbackStep:
    """One step of a fallback chain.

    Attributes:
        kind: ``static``, ``cached``, ``operation`` or ``fail``.
        value: The static value (use :meth:`static_value` for a private copy).
        max_staleness: For ``cached``: the oldest acceptable last good result, seconds.
        operation: For ``operation``: the operation to call instead.
    """

    kind: Literal["static", "cached", "operation", "fail"]
    value: Any = None
    max_staleness: float | None = None
    operation: str | None = None

    def static_value(self) -> object:
        """A deep copy of the static value, so callers never share mutable state."""
        return copy.deepcopy(self.value)


@dataclasses.dataclass(frozen=True, slots=True)
class OperationPolicy:
    """The compiled resilience policy of one operation pattern.

    Attributes:
        pattern: The operation name or glob as written.
        idempotent: Whether a failed attempt may be retried after it reached the server.
        timeout: Per-attempt timeout in seconds, if any.
        retry: The retry policy, or ``None`` (one attempt).
        breaker: The circuit breaker policy, or ``None``.
        bulkhead: The bulkhead policy, or ``None``.
        fallback: The fallback chain, tried in order.
        rule: ``resilience:<pattern>``, reported by decisions.
        source: Where the pattern is defined (``FILE:LINE:COL``).
        policy_version: The version of the policy set.
    """

    pattern: str
    idempotent: bool
    timeout: float | None
    retry: RetryPolicy | None
    breaker: BreakerPolicy | None
    bulkhead: BulkheadPolicy | None
    fallback: tuple[FallbackStep, ...]
    rule: str
    source: str
    policy_version: str = ""


# --------------------------------------------------------------------------- patterns


def is_glob(pattern: str) -> bool:
    """Whether ``pattern`` has a wildcard."""
    return "*" in pattern


def literal_characters(pattern: str) -> int:
    """The specificity of a pattern: its number of non-wildcard characters."""
    return len(pattern) - pattern.count("*")


def glob_regex(pattern: str) -> re.Pattern[str]:
    """Compile a glob: ``*`` matches any run of characters (dots included), all else literally."""
    return re.compile(
        "".join(".*" if part == "*" else re.escape(part) for part in re.split(r"(\*)", pattern))
    )


def globs_overlap(first: str, second: str) -> bool:
    """Whether some operation name matches both globs (``*`` only; decided exactly).

    A dynamic programme over both patterns: a ``*`` on either side may absorb the other
    side's next character (or its whole ``*``), or match nothing.
    """

    @functools.cache
    def meet(i: int, j: int) -> bool:
        if i == len(first) and j == len(second):
            return True
        if i < len(first) and first[i] == "*":
            if meet(i + 1, j):
                return True
            return j < len(second) and meet(i, j + 1)
        if j < len(second) and second[j] == "*":
            if meet(i, j + 1):
                return True
            return i < len(first) and meet(i + 1, j)
        if i < len(first) and j < len(second) and first[i] == second[j]:
            return meet(i + 1, j + 1)
        return False

    return meet(0, 0)


@dataclasses.dataclass(frozen=True, slots=True)
class ResilienceModel:
    """Every operation policy of a policy set, indexed for :meth:`policy_for`.

    Precedence: an exact name wins; otherwise the matching glob with the most literal
    (non-``*``) characters. Two globs with equally many literal characters that some name
    could match both are a load error (TP422), so the answer never depends on file order.
    """

    exact: Mapping[str, OperationPolicy]
    globs: tuple[tuple[re.Pattern[str], OperationPolicy], ...]
    """Globs, most specific first."""
    policies: tuple[OperationPolicy, ...]
    """Every policy in file order."""

    def policy_for(self, operation: str) -> OperationPolicy | None:
        """The policy of ``operation``, or ``None`` when no pattern matches it."""
        found = self.exact.get(operation)
        if found is not None:
            return found
        for regex, policy in self.globs:
            if regex.fullmatch(operation):
                return policy
        return None


# --------------------------------------------------------------------------- compiling


class _Durations:
    """Parses duration strings of one document, reporting bad ones where they are."""

    def __init__(self, c: CompileContext, item: ParsedDocument) -> None:
        self.c = c
        self.item = item
        self.ok = True

    def __call__(self, text: str, path: Path_, *, positive: bool = False) -> float:
        try:
            seconds = cel_values.parse_duration(text).total_seconds()
        except ConditionError:
            self._fail(path, f"{text!r} is not a duration", "write a duration such as 100ms, 2s or 1m30s")
            return 0.0
        if seconds < 0 or (positive and seconds == 0):
            self._fail(
                path, f"the duration {text!r} must be {'above' if positive else 'at least'} zero", None
            )
            return 0.0
        return seconds

    def optional(self, text: str | None, path: Path_, *, positive: bool = False) -> float | None:
        return None if text is None else self(text, path, positive=positive)

    def categories(self, names: list[str], path: Path_) -> frozenset[str]:
        """Check error category names against the Errors kind's fixed set."""
        for i, name in enumerate(names):
            if name not in CATEGORIES:
                hint = did_you_mean(name, CATEGORIES)
                known = f"categories: {', '.join(CATEGORIES)}"
                self._fail(
                    (*path, i), f"unknown error category {name!r}", f"{hint} {known}" if hint else known
                )
        return frozenset(names)

    def _fail(self, path: Path_, message: str, hint: str | None) -> None:
        self.ok = False
        self.c.out.add(self.item.doc.position_of(path), Code.INVALID_VALUE, message, hint=hint)


def compile_resilience(context: CompileContext, documents: list[ParsedDocument]) -> ResilienceModel:
    """Compile every Resilience document into one :class:`ResilienceModel`."""
    entries: list[tuple[OperationPolicy, ParsedDocument, Path_]] = []
    for item in documents:
        spec = item.spec
        assert isinstance(spec, ResilienceSpec)  # noqa: S101  the Resilience kind validates to ResilienceSpec
        for pattern, operation in spec.operations.items():
            path: Path_ = ("spec", "operations", pattern)
            policy = _compile_operation(context, item, path, pattern, operation)
            if policy is not None:
                entries.append((policy, item, path))
    _check_ambiguity(context, entries)
    exact = {p.pattern: p for p, _, _ in entries if not is_glob(p.pattern)}
    globs = sorted(
        (p for p, _, _ in entries if is_glob(p.pattern)), key=lambda p: -literal_characters(p.pattern)
    )
    return ResilienceModel(
        exact=exact,
        globs=tuple((glob_regex(p.pattern), p) for p in globs),
        policies=tuple(p for p, _, _ in entries),
    )


def _compile_operation(
    c: CompileContext, item: ParsedDocument, base: Path_, pattern: str, spec: OperationSpec
) -> OperationPolicy | None:
    durations = _Durations(c, item)
    timeout = durations.optional(spec.timeout, (*base, "timeout"), positive=True)
    retry = _compile_retry(durations, (*base, "retry"), spec.retry) if spec.retry is not None else None
    breaker = (
        _compile_breaker(durations, (*base, "circuit_breaker"), spec.circuit_breaker)
        if spec.circuit_breaker is not None
        else None
    )
    bulkhead = (
        BulkheadPolicy(
            spec.bulkhead.max_concurrent, durations(spec.bulkhead.max_wait, (*base, "bulkhead", "max_wait"))
        )
        if spec.bulkhead is not None
        else None
    )
    fallback: list[FallbackStep] = []
    for i, step in enumerate(spec.fallback):
        if step.static is not None:
            fallback.append(FallbackStep("static", value=step.static.value))
        elif step.cached is not None:
            staleness = durations(
                step.cached.max_staleness, (*base, "fallback", i, "cached", "max_staleness")
            )
            fallback.append(FallbackStep("cached", max_staleness=staleness))
        elif step.operation is not None:
            fallback.append(FallbackStep("operation", operation=step.operation))
        else:
            fallback.append(FallbackStep("fail"))
    if not durations.ok:
        return None
    if retry is not None and retry.deadline is not None:
        _check_deadline(c, item, (*base, "retry", "deadline"), retry, timeout)
    return OperationPolicy(
        pattern=pattern,
        idempotent=spec.idempotent,
        timeout=timeout,
        retry=retry,
        breaker=breaker,
        bulkhead=bulkhead,
        fallback=tuple(fallback),
        rule=f"resilience:{pattern}",
        source=c.source(item, base),
        policy_version=c.version,
    )


def _compile_retry(durations: _Durations, base: Path_, spec: RetrySpec) -> RetryPolicy:
    initial = durations(spec.initial_delay, (*base, "initial_delay"))
    cap = durations(spec.max_delay, (*base, "max_delay"))
    if durations.ok and cap < initial:
        durations._fail(  # noqa: SLF001  the same reporter, one more check
            (*base, "max_delay"),
            f"max_delay {spec.max_delay!r} is below initial_delay {spec.initial_delay!r}",
            "the cap must be at least the first delay",
        )
    budget: BudgetPolicy | None = None
    if isinstance(spec.budget, TokenBucketBudgetSpec):
        budget = BudgetPolicy(
            "token_bucket", max_tokens=spec.budget.max_tokens, token_ratio=spec.budget.token_ratio
        )
    elif isinstance(spec.budget, PercentBudgetSpec):
        budget = BudgetPolicy(
            "percent",
            percent=spec.budget.percent,
            min_retries_per_second=spec.budget.min_retries_per_second,
            window=durations(spec.budget.window, (*base, "budget", "window"), positive=True),
        )
    return RetryPolicy(
        max_attempts=spec.max_attempts,
        initial_delay=initial,
        multiplier=spec.multiplier,
        max_delay=cap,
        jitter=spec.jitter,
        deadline=durations.optional(spec.deadline, (*base, "deadline"), positive=True),
        categories=durations.categories(spec.categories, (*base, "categories"))
        if spec.categories is not None
        else None,
        honor_retry_after=spec.honor_retry_after,
        max_retry_after=durations.optional(spec.max_retry_after, (*base, "max_retry_after")),
        budget=budget,
    )


def _compile_breaker(durations: _Durations, base: Path_, spec: CircuitBreakerSpec) -> BreakerPolicy:
    size_path = (*base, "window", "size")
    size = spec.window.size
    if spec.window.type == "count":
        if not isinstance(size, int):
            durations._fail(size_path, "a count window's size is a number of calls", "e.g. size: 100")  # noqa: SLF001
            size = 1
    elif isinstance(size, int):
        durations._fail(size_path, "a time window's size is a duration", "e.g. size: 60s")  # noqa: SLF001
        size = 1
    else:
        seconds = durations(size, size_path, positive=True)
        if durations.ok and seconds != int(seconds):
            durations._fail(size_path, "a time window's size is a whole number of seconds", "e.g. 60s or 2m")  # noqa: SLF001
        size = max(1, math.ceil(seconds))
    wait = durations(spec.wait_in_open, (*base, "wait_in_open"), positive=True)
    max_wait = durations.optional(spec.max_wait_in_open, (*base, "max_wait_in_open"), positive=True)
    record = spec.record
    minimum = spec.minimum_calls
    if spec.window.type == "count":
        minimum = min(minimum, size)
    return BreakerPolicy(
        window_type=spec.window.type,
        window_size=size,
        failure_rate_threshold=spec.failure_rate_threshold,
        slow_call_duration=durations.optional(
            spec.slow_call_duration, (*base, "slow_call_duration"), positive=True
        ),
        slow_call_rate_threshold=spec.slow_call_rate_threshold,
        minimum_calls=minimum,
        wait_in_open=wait,
        wait_multiplier=spec.wait_multiplier,
        max_wait_in_open=max(wait, max_wait) if max_wait is not None else math.inf,
        permitted_calls_in_half_open=spec.permitted_calls_in_half_open,
        max_wait_in_half_open=durations.optional(spec.max_wait_in_half_open, (*base, "max_wait_in_half_open"))
        or 0.0,
        record_categories=(
            durations.categories(record.categories, (*base, "record", "categories"))
            if record is not None
            else DEFAULT_RECORD_CATEGORIES
        ),
        record_codes=frozenset(record.codes) if record is not None else frozenset(),
        ignore_codes=frozenset(spec.ignore.codes),
    )


def worst_case_delay(policy: RetryPolicy, failed_attempt: int) -> float:
    """The longest backoff after attempt ``failed_attempt`` fails (before Retry-After)."""
    if policy.jitter == "decorrelated":
        return min(policy.max_delay, policy.initial_delay * 3.0**failed_attempt)
    return min(policy.max_delay, policy.initial_delay * policy.multiplier ** (failed_attempt - 1))


def best_case_delay(policy: RetryPolicy, failed_attempt: int) -> float:
    """The shortest backoff after attempt ``failed_attempt`` fails."""
    if policy.jitter == "full":
        return 0.0
    if policy.jitter == "decorrelated":
        return min(policy.max_delay, policy.initial_delay)
    exponential = min(policy.max_delay, policy.initial_delay * policy.multiplier ** (failed_attempt - 1))
    return exponential / 2 if policy.jitter == "equal" else exponential


def worst_case_duration(policy: RetryPolicy, timeout: float | None) -> float:
    """Every attempt running to its timeout, separated by the longest backoffs."""
    attempts = policy.max_attempts * (timeout or 0.0)
    return attempts + sum(worst_case_delay(policy, n) for n in range(1, policy.max_attempts))


def first_unreachable_attempt(policy: RetryPolicy) -> int | None:
    """The first attempt that can never start within the deadline, if any.

    Even when every earlier attempt fails instantly and every backoff is the shortest
    possible, the sleeps before this attempt end at or past the deadline, and a sleep
    that ends past the deadline is never scheduled.
    """
    if policy.deadline is None:
        return None
    elapsed = 0.0
    for attempt in range(2, policy.max_attempts + 1):
        elapsed += best_case_delay(policy, attempt - 1)
        if elapsed >= policy.deadline:
            return attempt
    return None


def _check_deadline(
    c: CompileContext, item: ParsedDocument, path: Path_, policy: RetryPolicy, timeout: float | None
) -> None:
    deadline = policy.deadline
    assert deadline is not None  # noqa: S101  only called with a deadline
    unreachable = first_unreachable_attempt(policy)
    position = item.doc.position_of(path)
    if unreachable is not None:
        c.out.add(
            position,
            Code.RETRY_ATTEMPTS_UNREACHABLE,
            f"{_attempt_range(unreachable, policy.max_attempts)} can never run: even the shortest"
            f" backoffs before attempt {unreachable} use up the {_seconds(deadline)} deadline",
            hint=f"lower max_attempts to {unreachable - 1}, shorten the delays, or raise the deadline",
            severity="warning",
        )
        return
    worst = worst_case_duration(policy, timeout)
    if worst > deadline:
        c.out.add(
            position,
            Code.RETRY_EXCEEDS_DEADLINE,
            f"in the worst case the {policy.max_attempts} attempts and their backoffs take"
            f" {_seconds(worst)}, more than the {_seconds(deadline)} deadline; later attempts"
            " will be given up",
            hint="raise the deadline, or lower max_attempts, timeout or max_delay",
            severity="warning",
        )


def _attempt_range(first: int, last: int) -> str:
    return f"attempt {first}" if first == last else f"attempts {first} to {last}"


def _seconds(value: float) -> str:
    return f"{value:g}s"


def _check_ambiguity(
    c: CompileContext, entries: Iterable[tuple[OperationPolicy, ParsedDocument, Path_]]
) -> None:
    seen: list[tuple[OperationPolicy, ParsedDocument, Path_]] = []
    for policy, item, path in entries:
        for other, other_item, other_path in seen:
            same = policy.pattern == other.pattern
            if not same and not (
                is_glob(policy.pattern)
                and is_glob(other.pattern)
                and literal_characters(policy.pattern) == literal_characters(other.pattern)
                and globs_overlap(policy.pattern, other.pattern)
            ):
                continue
            where = other_item.doc.key_position_of(other_path)
            message = (
                f"operation {policy.pattern!r} is defined twice"
                if same
                else f"operation patterns {policy.pattern!r} and {other.pattern!r} are equally specific"
                " and can match the same operation name"
            )
            c.out.add(
                item.doc.key_position_of(path),
                Code.AMBIGUOUS_OPERATION_PATTERN,
                message,
                hint=f"the other is at {where}; "
                + ("keep one" if same else "make one more specific, or name the operation exactly"),
            )
            break
        seen.append((policy, item, path))
