"""The Errors kind: the error-code registry, classification rules and their decisions.

An ``Errors`` document declares a registry of stable error codes and an ordered list of
rules that map an error (an exception or an :class:`ErrorInfo`) to one code. The first
rule that matches wins; the last rule must be a catch-all. Rules are indexed by the
exception names and HTTP statuses they require, so classifying an error only tests the
rules that could match it, in rule order. See ``docs/errors.md``.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import string
from typing import TYPE_CHECKING, Annotated, Final, Literal, cast

from pydantic import Field, StrictBool, StrictInt, StrictStr, field_validator

from ._compiling import EXPRESSION_CODES, expression_position
from ._decisions import TraceStep
from ._diagnostics import Code, did_you_mean
from ._documents import Description, Expression, Name, SpecModel
from ._exceptions import ConditionError, ExpressionError
from .cel import DOUBLE, DYN, INT, STRING, ListType, MapType, ObjectType, Program, compile_expression
from .cel._values import Regex, compile_regex

if TYPE_CHECKING:
    from collections.abc import Mapping

    from ._compiling import CompileContext, ParsedDocument
    from ._errorinfo import ErrorInfo

Path_ = tuple[str | int, ...]

# --------------------------------------------------------------------------- spec models

CATEGORIES: Final = (
    "transient",
    "throttled",
    "timeout",
    "invalid_request",
    "unauthenticated",
    "forbidden",
    "not_found",
    "conflict",
    "failed_precondition",
    "unavailable",
    "internal",
)
"""The fixed set of error categories (see ``docs/errors.md`` for what each means)."""

Category = Literal[
    "transient",
    "throttled",
    "timeout",
    "invalid_request",
    "unauthenticated",
    "forbidden",
    "not_found",
    "conflict",
    "failed_precondition",
    "unavailable",
    "internal",
]
Severity = Literal["debug", "info", "warning", "error", "critical"]
Escalation = Literal["none", "alert", "page"]

SAFE_PLACEHOLDERS: Final = ("code", "operation", "retry_after", "status")
"""The only placeholders a message template may use: none of them carries exception text."""
DEFAULT_TYPE_BASE: Final = "urn:tierpolicy:error:"

CODE_PATTERN = r"^[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)*$"
QUALIFIED_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*$"
GLOB_PATTERN = r"^[A-Za-z0-9_.*?/:-]+$"
URI_PATTERN = r"^[A-Za-z][A-Za-z0-9+.-]*:[^\s]+$"
RANGE_PATTERN = r"^[1-5]xx$"

ErrorCodeName = Annotated[StrictStr, Field(pattern=CODE_PATTERN, max_length=64)]
QualifiedName = Annotated[StrictStr, Field(pattern=QUALIFIED_NAME_PATTERN, max_length=512)]
Glob = Annotated[StrictStr, Field(pattern=GLOB_PATTERN, max_length=256)]
Uri = Annotated[StrictStr, Field(pattern=URI_PATTERN, max_length=2000)]
HttpStatus = Annotated[StrictInt, Field(ge=100, le=599)]
StatusRange = Annotated[StrictStr, Field(pattern=RANGE_PATTERN)]
StatusValue = HttpStatus | StatusRange


def template_fields(template: str) -> list[tuple[str, str | None]]:
    """Split a message template into ``(literal, placeholder)`` parts.

    Raises:
        ValueError: The template is malformed, uses a placeholder outside
            :data:`SAFE_PLACEHOLDERS`, or a conversion or format spec.
    """
    parts: list[tuple[str, str | None]] = []
    for literal, field, spec, conversion in string.Formatter().parse(template):
        if field is not None:
            if field not in SAFE_PLACEHOLDERS:
                allowed = ", ".join(f"{{{name}}}" for name in SAFE_PLACEHOLDERS)
                msg = f"unknown placeholder {{{field}}}; messages may use only {allowed}"
                raise ValueError(msg)
            if spec or conversion:
                msg = f"placeholder {{{field}}} takes no format spec or conversion"
                raise ValueError(msg)
        parts.append((literal, field))
    return parts


class ErrorCodeSpec(SpecModel):
    """One entry of the error-code registry."""

    category: Category
    status: HttpStatus
    retryable: StrictBool = False
    severity: Severity = "error"
    title: Annotated[StrictStr, Field(min_length=1, max_length=200)]
    message: Annotated[StrictStr, Field(min_length=1, max_length=2000)]
    type: Uri | None = None
    escalation: Escalation = "none"
    expose_detail: StrictBool = False
    never_executed: StrictBool = False
    description: Description = ""

    @field_validator("message")
    @classmethod
    def _safe_template(cls, value: str) -> str:
        try:
            template_fields(value)
        except ValueError as exc:
            if "placeholder" in str(exc):
                raise
            msg = f"the message template is malformed ({exc}); write a literal brace as {{{{ or }}}}"
            raise ValueError(msg) from None
        return value


class ErrorMatchSpec(SpecModel):
    """What a rule requires of an error; every constraint given must hold."""

    exception: QualifiedName | Annotated[list[QualifiedName], Field(min_length=1, max_length=64)] | None = (
        None
    )
    status: StatusValue | Annotated[list[StatusValue], Field(min_length=1, max_length=64)] | None = None
    reason: Annotated[StrictStr, Field(min_length=1, max_length=256)] | None = None
    domain: Annotated[StrictStr, Field(min_length=1, max_length=256)] | None = None
    message: Annotated[StrictStr, Field(min_length=1, max_length=1000)] | None = None
    operation: Glob | None = None
    when: Expression | None = None

    @property
    def is_empty(self) -> bool:
        """Whether the rule matches every error (a catch-all)."""
        return all(
            v is None
            for v in (
                self.exception,
                self.status,
                self.reason,
                self.domain,
                self.message,
                self.operation,
                self.when,
            )
        )


class ErrorRuleSpec(SpecModel):
    """One classification rule: a match and the code it gives."""

    name: Name
    description: Description = ""
    match: ErrorMatchSpec = Field(default_factory=ErrorMatchSpec)
    code: ErrorCodeName


class ErrorsSpec(SpecModel):
    """The Errors kind: the error-code registry and the ordered classification rules."""

    type_base: Uri = DEFAULT_TYPE_BASE
    codes: Annotated[dict[ErrorCodeName, ErrorCodeSpec], Field(min_length=1, max_length=1000)]
    rules: Annotated[list[ErrorRuleSpec], Field(min_length=1, max_length=1000)]


# --------------------------------------------------------------------------- the CEL environment

ERROR_OBJECT: Final = ObjectType(
    "error",
    {
        "types": ListType(STRING),
        "status": INT,
        "reason": STRING,
        "domain": STRING,
        "message": STRING,
        "operation": STRING,
        "retry_after": DOUBLE,
        "attributes": MapType(STRING, DYN),
    },
)
"""What a rule's ``when`` condition reads: ``error.status``, ``error.attributes`` and so on.

Fields the error does not have (no status, no reason) are absent: test them with
``has(error.status)``; reading an absent field makes the condition not match.
"""
ERROR_ENVIRONMENT: Final = {"error": ERROR_OBJECT}


def error_activation(info: ErrorInfo) -> dict[str, object]:
    """The CEL activation of ``info``: ``{"error": {...}}`` without absent fields."""
    optional = {
        "status": info.status,
        "reason": info.reason,
        "domain": info.domain,
        "operation": info.operation,
        "retry_after": info.retry_after,
    }
    error: dict[str, object] = {k: v for k, v in optional.items() if v is not None}
    error["types"] = list(info.types)
    error["message"] = info.message
    error["attributes"] = dict(info.attributes)
    return {"error": error}


# --------------------------------------------------------------------------- decisions


@dataclasses.dataclass(frozen=True, slots=True)
class Classification:
    """What an error is, by the registry: the answer of :meth:`Engine.classify`.

    Attributes:
        code: The stable error code, e.g. ``RATE_LIMITED``.
        category: One of :data:`CATEGORIES`.
        status: The HTTP status to answer with.
        retryable: Whether trying again may succeed.
        severity: ``debug``, ``info``, ``warning``, ``error`` or ``critical``.
        escalation: ``none``, ``alert`` or ``page``.
        title: The short, fixed summary of the code.
        message: The user-safe message, rendered from the registry's template.
        type: The problem type URI.
        never_executed: Whether the error proves the request never reached the server.
        rule: The rule that decided, ``error-rule:<name>``.
        source: Where that rule is, ``FILE:LINE:COL``.
        policy_version: The version of the policy set that decided.
        retry_after: The server's Retry-After hint in seconds, if the error carried one.
        detail: The error's own text, only when the registry entry sets
            ``expose_detail``; otherwise ``None``.
        trace: The rules tried, when a trace was requested.
    """

    code: str
    category: str
    status: int
    retryable: bool
    severity: str
    escalation: str
    title: str
    message: str
    type: str
    never_executed: bool
    rule: str
    source: str
    policy_version: str
    retry_after: float | None = None
    detail: str | None = None
    trace: tuple[TraceStep, ...] = ()

    def to_json(self) -> dict[str, object]:
        """Return the JSON form used by ``tierpolicy eval`` and the HTTP API."""
        return {
            "code": self.code,
            "category": self.category,
            "status": self.status,
            "retryable": self.retryable,
            "severity": self.severity,
            "escalation": self.escalation,
            "title": self.title,
            "message": self.message,
            "type": self.type,
            "never_executed": self.never_executed,
            "retry_after": self.retry_after,
            "detail": self.detail,
            "rule": self.rule,
            "source": self.source,
            "policy_version": self.policy_version,
            "trace": [step.to_json() for step in self.trace],
        }

    def to_problem(
        self, *, instance: str | None = None, request_id: str | None = None, detail: str | None = None
    ) -> dict[str, object]:
        """Render as RFC 9457 problem details (``application/problem+json``).

        ``detail`` is, in order: the ``detail`` given here, the error's own text when
        the registry entry sets ``expose_detail``, and otherwise the user-safe message.
        The error's text is never included otherwise. ``instance`` and ``request_id``
        appear only when given; ``code`` and ``retryable`` are extension members.
        """
        problem: dict[str, object] = {
            "type": self.type,
            "title": self.title,
            "status": self.status,
            "detail": detail if detail is not None else (self.detail or self.message),
        }
        if instance is not None:
            problem["instance"] = instance
        problem["code"] = self.code
        problem["retryable"] = self.retryable
        if request_id is not None:
            problem["request_id"] = request_id
        return problem


class _UnfrozenClassification:
    """Classification's slot layout without the frozen ``__setattr__``: a value under construction.

    :func:`new_classification` fills one in with plain slot stores and then makes it a
    :class:`Classification` by assigning ``__class__`` (allowed: the layouts are identical).
    """

    __slots__ = Classification.__slots__  # the dataclass makes them

    code: str
    category: str
    status: int
    retryable: bool
    severity: str
    escalation: str
    title: str
    message: str
    type: str
    never_executed: bool
    rule: str
    source: str
    policy_version: str
    retry_after: float | None
    detail: str | None
    trace: tuple[TraceStep, ...]


def _retyping_works() -> bool:
    """Whether this interpreter allows :func:`new_classification`'s ``__class__`` assignment."""
    try:
        probe = _UnfrozenClassification()
        probe.__class__ = Classification  # type: ignore[assignment]
    except TypeError:  # pragma: no cover  CPython allows it; another runtime might not
        return False
    return True


_RETYPING_WORKS: Final = _retyping_works()


def new_classification(
    code: str,
    category: str,
    status: int,
    retryable: bool,  # noqa: FBT001  positional like the dataclass fields
    severity: str,
    escalation: str,
    title: str,
    message: str,
    type: str,  # noqa: A002  the field's name
    never_executed: bool,  # noqa: FBT001  positional like the dataclass fields
    rule: str,
    source: str,
    policy_version: str,
    retry_after: float | None,
    detail: str | None,
    trace: tuple[TraceStep, ...],
) -> Classification:
    """Build a Classification from checked values, as ``Classification(...)`` would, faster.

    The frozen dataclass ``__init__`` sets each of the 16 fields through
    ``object.__setattr__`` (about 1.8 us); filling an :class:`_UnfrozenClassification`
    and retyping it gives an equal, hash-equal, equally frozen value in a fraction of that.
    """
    if not _RETYPING_WORKS:  # pragma: no cover  see _retyping_works
        return Classification(
            code,
            category,
            status,
            retryable,
            severity,
            escalation,
            title,
            message,
            type,
            never_executed,
            rule,
            source,
            policy_version,
            retry_after,
            detail,
            trace,
        )
    value = _UnfrozenClassification()
    value.code = code
    value.category = category
    value.status = status
    value.retryable = retryable
    value.severity = severity
    value.escalation = escalation
    value.title = title
    value.message = message
    value.type = type
    value.never_executed = never_executed
    value.rule = rule
    value.source = source
    value.policy_version = policy_version
    value.retry_after = retry_after
    value.detail = detail
    value.trace = trace
    value.__class__ = Classification  # type: ignore[assignment]  # same slots: see _UnfrozenClassification
    return cast("Classification", value)


# --------------------------------------------------------------------------- compiled model


@dataclasses.dataclass(frozen=True, slots=True)
class CompiledCode:
    """A registry entry, ready to render.

    ``template`` is the message as ``(literal, placeholder)`` parts. At construction it is
    also precompiled for :meth:`render`: ``{code}`` and ``{status}`` (fixed per entry) are
    substituted into the literals, leaving a head and ``(placeholder, literal)`` pairs for
    ``{operation}`` and ``{retry_after}`` only; no policy text is ever given to
    ``str.format``.
    """

    code: str
    category: str
    status: int
    retryable: bool
    severity: str
    escalation: str
    title: str
    template: tuple[tuple[str, str | None], ...]
    type: str
    expose_detail: bool
    never_executed: bool
    _head: str = dataclasses.field(init=False, repr=False, compare=False)
    _rest: tuple[tuple[bool, str], ...] = dataclasses.field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        fixed = {"code": self.code, "status": str(self.status)}
        head = ""
        rest: list[tuple[bool, str]] = []
        for literal, field in self.template:
            if rest:
                rest[-1] = (rest[-1][0], rest[-1][1] + literal)
            else:
                head += literal
            if field is None:
                continue
            text = fixed.get(field)
            if text is not None:
                if rest:
                    rest[-1] = (rest[-1][0], rest[-1][1] + text)
                else:
                    head += text
            else:
                rest.append((field == "retry_after", ""))
        object.__setattr__(self, "_head", head)
        object.__setattr__(self, "_rest", tuple(rest))

    @property
    def static_message(self) -> str | None:
        """The message when its template has no placeholder, else ``None``."""
        if any(field is not None for _, field in self.template):
            return None
        return "".join(literal for literal, _ in self.template)

    def render(self, info: ErrorInfo) -> str:
        """Render the message template for ``info`` from the safe placeholders only."""
        retry_after = info.retry_after
        # The hint is put in words even when the template does not use it, as it always
        # was: a hint that is not a finite number raises here, whatever the template.
        seconds = "a moment" if retry_after is None else _seconds_words(retry_after)
        rest = self._rest
        if not rest:
            return self._head
        operation = info.operation or "the operation"
        out = self._head
        for is_retry_after, literal in rest:
            out += (seconds if is_retry_after else operation) + literal
        return out


@functools.lru_cache(maxsize=1024)
def _memo_seconds_text(seconds: float) -> str:
    return _seconds_text(seconds)  # raises for NaN or infinity: exceptions are never cached


def _seconds_words(seconds: float) -> str:
    """:func:`_seconds_text` of a hint, memoised (a pure function of the hint)."""
    try:
        return _memo_seconds_text(seconds)
    except TypeError:  # an unhashable hint: let _seconds_text raise as it always has
        return _seconds_text(seconds)


def _seconds_text(seconds: float | None) -> str:
    if seconds is None:
        return "a moment"
    whole = max(1, math.ceil(seconds))
    return "1 second" if whole == 1 else f"{whole} seconds"


@dataclasses.dataclass(frozen=True, slots=True)
class CompiledErrorRule:
    """A classification rule with its constraints compiled."""

    index: int
    name: str
    rule: str
    source: str
    entry: CompiledCode
    exceptions: frozenset[str] | None
    statuses: frozenset[int] | None
    reason: str | None
    domain: str | None
    message: Regex | None
    message_source: str | None
    operation: Regex | None
    operation_glob: str | None
    when: Program | None
    static: Classification | None

    @property
    def catch_all(self) -> bool:
        """Whether the rule has no constraint at all."""
        return (
            self.exceptions is None
            and self.statuses is None
            and self.reason is None
            and self.domain is None
            and self.message is None
            and self.operation is None
            and self.when is None
        )

    def matches_static(self, info: ErrorInfo) -> bool:
        """Whether ``info`` meets the rule's exception, status, reason, domain and operation."""
        return not (
            (self.exceptions is not None and self.exceptions.isdisjoint(info.types))
            or (self.statuses is not None and info.status not in self.statuses)
            or (self.reason is not None and info.reason != self.reason)
            or (self.domain is not None and info.domain != self.domain)
            or (
                self.operation is not None
                and (info.operation is None or self.operation.search(info.operation) is None)
            )
        )

    def matches_dynamic(self, info: ErrorInfo) -> bool:
        """Whether ``info`` meets the rule's message pattern and condition."""
        if self.message is not None and self.message.search(info.message) is None:
            return False
        if self.when is not None:
            try:
                return self.when.evaluate(error_activation(info)) is True
            except ConditionError:
                return False
        return True

    @property
    def dynamic(self) -> bool:
        """Whether the rule reads the message or has a condition (not memoisable)."""
        return self.message is not None or self.when is not None

    def matches(self, info: ErrorInfo) -> bool:
        """Whether ``info`` meets every constraint of this rule."""
        return self.matches_static(info) and self.matches_dynamic(info)

    def explain(self, info: ErrorInfo) -> str | None:
        """``None`` when ``info`` matches, else which constraint failed and why."""
        if self.exceptions is not None and self.exceptions.isdisjoint(info.types):
            return "exception type not matched"
        if self.statuses is not None and info.status not in self.statuses:
            return f"status {info.status} not matched"
        if self.reason is not None and info.reason != self.reason:
            return f"reason {info.reason!r} is not {self.reason!r}"
        if self.domain is not None and info.domain != self.domain:
            return f"domain {info.domain!r} is not {self.domain!r}"
        if self.operation is not None and (
            info.operation is None or self.operation.search(info.operation) is None
        ):
            return f"operation {info.operation!r} does not match {self.operation_glob!r}"
        if self.message is not None and self.message.search(info.message) is None:
            return f"message does not match {self.message_source!r}"
        if self.when is not None:
            try:
                result = self.when.evaluate(error_activation(info))
            except ConditionError as exc:
                return f"condition failed: {exc}"
            if result is not True:
                return "condition is false"
        return None


class ErrorModel:
    """The compiled Errors kind: the registry and the indexed rules.

    Rules are indexed by the exception names they require, else by the statuses they
    require, else by the reason they require; the rest (constraining none of these) are
    candidates for every error. Classifying merges the index entries of the error's
    types, status and reason in rule order, keeps the rules whose exception, status,
    reason, domain and operation constraints hold, and memoises that list per
    ``(types, status, reason, domain, operation)`` in a bounded dictionary; only message
    patterns and conditions are tested per call. A decision whose message has a
    placeholder, or that carries a Retry-After hint, is built once per ``(rule,
    operation, hint)`` and kept in a second bounded dictionary (not for entries that
    expose the error's own text, nor for a hint that is not a positive float); equal
    inputs then get the same decision object, as placeholder-free decisions always did.
    The model is otherwise immutable.

    Attributes:
        codes: Code -> registry entry, in policy order.
        rules: The rules, in policy order.
        policy_version: The version decisions report.
    """

    MEMO_SIZE: Final = 4096

    __slots__ = (
        "_by_exception",
        "_by_reason",
        "_by_status",
        "_decisions",
        "_memo",
        "_unconstrained",
        "codes",
        "policy_version",
        "rules",
    )

    def __init__(
        self, codes: Mapping[str, CompiledCode], rules: tuple[CompiledErrorRule, ...], policy_version: str
    ) -> None:
        self.codes = dict(codes)
        self.rules = rules
        self.policy_version = policy_version
        by_exception: dict[str, list[CompiledErrorRule]] = {}
        by_status: dict[int, list[CompiledErrorRule]] = {}
        by_reason: dict[str, list[CompiledErrorRule]] = {}
        unconstrained: list[CompiledErrorRule] = []
        for rule in rules:
            if rule.exceptions is not None:
                for name in rule.exceptions:
                    by_exception.setdefault(name, []).append(rule)
            elif rule.statuses is not None:
                for status in rule.statuses:
                    by_status.setdefault(status, []).append(rule)
            elif rule.reason is not None:
                by_reason.setdefault(rule.reason, []).append(rule)
            else:
                unconstrained.append(rule)
        self._by_exception = {k: tuple(v) for k, v in by_exception.items()}
        self._by_status = {k: tuple(v) for k, v in by_status.items()}
        self._by_reason = {k: tuple(v) for k, v in by_reason.items()}
        self._unconstrained = tuple(unconstrained)
        self._memo: dict[tuple[object, ...], tuple[CompiledErrorRule, ...]] = {}
        self._decisions: dict[tuple[int, str | None, float | None], Classification] = {}

    def candidates(self, info: ErrorInfo) -> tuple[CompiledErrorRule, ...]:
        """The rules that may match ``info``, in rule order.

        These are the rules whose exception, status, reason, domain and operation
        constraints ``info`` meets; message patterns and conditions are not tested.
        """
        key = (info.types, info.status, info.reason, info.domain, info.operation)
        found = self._memo.get(key)
        if found is not None:
            return found
        found = tuple(rule for rule in self._indexed(info) if rule.matches_static(info))
        if len(self._memo) >= self.MEMO_SIZE:
            self._memo.clear()
        self._memo[key] = found
        return found

    def classify(self, info: ErrorInfo, *, trace: bool = False) -> Classification:
        """Classify ``info``: the first matching rule, tested through the index."""
        if trace:
            return self._traced(info)
        for rule in self.candidates(info):
            if not rule.dynamic or rule.matches_dynamic(info):
                retry_after = info.retry_after
                static = rule.static
                if static is not None and retry_after is None:
                    return static
                if rule.entry.expose_detail or not (
                    retry_after is None or (type(retry_after) is float and retry_after > 0.0)
                ):
                    # The error's own text is part of the decision, or the hint is a
                    # zero (-0.0 equals 0.0 but reads differently), an int, NaN or odd.
                    return self._decide(rule, info, ())
                key = (id(rule), info.operation, retry_after)
                found = self._decisions.get(key)
                if found is None:
                    found = self._decide(rule, info, ())
                    if len(self._decisions) >= self.MEMO_SIZE:
                        self._decisions.clear()
                    self._decisions[key] = found
                return found
        return self._no_match(info)  # pragma: no cover  the catch-all always matches

    def scan(self, info: ErrorInfo) -> Classification:
        """Classify by testing every rule in order: the reference the index must agree with."""
        for rule in self.rules:
            if rule.matches(info):
                return self._decide(rule, info, ())
        return self._no_match(info)  # pragma: no cover  the catch-all always matches

    def _traced(self, info: ErrorInfo) -> Classification:
        # The trace explains every rule the index would consider, passing or not.
        steps: list[TraceStep] = []
        for rule in self._indexed(info):
            why = rule.explain(info)
            if why is None:
                steps.append(TraceStep("rule", "decide", f"matched: code {rule.entry.code}", rule.rule))
                return self._decide(rule, info, tuple(steps))
            steps.append(TraceStep("rule", "fail", why, rule.rule))
        return self._no_match(info)  # pragma: no cover  the catch-all always matches

    def _indexed(self, info: ErrorInfo) -> list[CompiledErrorRule]:
        merged: dict[int, CompiledErrorRule] = {rule.index: rule for rule in self._unconstrained}
        for name in info.types:
            merged.update((rule.index, rule) for rule in self._by_exception.get(name, ()))
        if info.status is not None:
            merged.update((rule.index, rule) for rule in self._by_status.get(info.status, ()))
        if info.reason is not None:
            merged.update((rule.index, rule) for rule in self._by_reason.get(info.reason, ()))
        return [merged[i] for i in sorted(merged)]

    def _decide(
        self, rule: CompiledErrorRule, info: ErrorInfo, steps: tuple[TraceStep, ...]
    ) -> Classification:
        entry = rule.entry
        return new_classification(
            entry.code,
            entry.category,
            entry.status,
            entry.retryable,
            entry.severity,
            entry.escalation,
            entry.title,
            entry.render(info),
            entry.type,
            entry.never_executed,
            rule.rule,
            rule.source,
            self.policy_version,
            info.retry_after,
            (info.message or None) if entry.expose_detail else None,
            steps,
        )

    def _no_match(self, info: ErrorInfo) -> Classification:  # pragma: no cover  see classify
        msg = f"no classification rule matched {info.types[:1]}; the policy set lacks a catch-all"
        raise AssertionError(msg)


# --------------------------------------------------------------------------- compiling


@dataclasses.dataclass(frozen=True, slots=True)
class _RuleFacts:
    """What shadowing analysis compares: the constraints of one rule as written."""

    index: int
    name: str
    exceptions: frozenset[str] | None
    statuses: frozenset[int] | None
    reason: str | None
    domain: str | None
    message: str | None
    operation: str | None
    operation_regex: Regex | None
    when: str | None

    def covers(self, other: _RuleFacts) -> bool:
        """Whether every error ``other`` matches is provably matched by this rule too."""
        if self.exceptions is not None and (
            other.exceptions is None or not other.exceptions <= self.exceptions
        ):
            return False
        if self.statuses is not None and (other.statuses is None or not other.statuses <= self.statuses):
            return False
        for mine, theirs in (
            (self.reason, other.reason),
            (self.domain, other.domain),
            (self.message, other.message),
            (self.when, other.when),
        ):
            if mine is not None and mine != theirs:
                return False
        if self.operation is not None and self.operation_regex is not None:
            if other.operation is None:
                return False
            if self.operation == other.operation or set(self.operation) == {"*"}:
                return True
            literal = not any(ch in other.operation for ch in "*?")
            return literal and self.operation_regex.search(other.operation) is not None
        return True


def expand_statuses(value: object) -> frozenset[int]:
    """The statuses a rule's ``status`` names: exact codes and ``4xx``-style ranges."""
    items = value if isinstance(value, list) else [value]
    found: set[int] = set()
    for item in items:
        if isinstance(item, int):
            found.add(item)
        else:
            first = int(str(item)[0]) * 100
            found.update(range(first, first + 100))
    return frozenset(found)


def glob_regex(glob: str) -> str:
    """An anchored RE2 pattern for an operation glob (``*`` any run, ``?`` one character)."""
    body = "".join(".*" if ch == "*" else "." if ch == "?" else _escape(ch) for ch in glob)
    return f"^{body}$"


def _escape(ch: str) -> str:
    return ch if ch.isalnum() or ch == "_" else "\\" + ch


def kebab(code: str) -> str:
    """``RATE_LIMITED`` -> ``rate-limited``."""
    return code.lower().replace("_", "-")


def compile_errors(c: CompileContext, documents: list[ParsedDocument]) -> ErrorModel | None:
    """Compile the set's Errors document (the loader reports any extra ones)."""
    item = documents[0]
    spec = item.spec
    assert isinstance(spec, ErrorsSpec)  # noqa: S101  the Errors kind validates to ErrorsSpec
    codes: dict[str, CompiledCode] = {}
    for name, entry in spec.codes.items():
        codes[name] = CompiledCode(
            code=name,
            category=entry.category,
            status=entry.status,
            retryable=entry.retryable,
            severity=entry.severity,
            escalation=entry.escalation,
            title=entry.title,
            template=tuple(template_fields(entry.message)),
            type=entry.type or f"{spec.type_base}{kebab(name)}",
            expose_detail=entry.expose_detail,
            never_executed=entry.never_executed,
        )
    rules: list[CompiledErrorRule] = []
    facts: list[_RuleFacts] = []
    names: dict[str, int] = {}
    used: set[str] = set()
    ok = True
    for i, rule in enumerate(spec.rules):
        compiled = _compile_rule(c, item, i, rule, codes, names)
        names.setdefault(rule.name, i)
        used.add(rule.code)
        if compiled is None:
            ok = False
            continue
        rules.append(compiled[0])
        facts.append(compiled[1])
    catch_alls = [i for i, rule in enumerate(spec.rules) if rule.match.is_empty]
    last = len(spec.rules) - 1
    if not catch_alls:
        c.out.add(
            item.doc.key_position_of(("spec", "rules")),
            Code.MISSING_CATCH_ALL,
            "the rules have no catch-all: some errors would match no rule",
            hint="end the rules with one whose match is empty, e.g. {name: internal, code: INTERNAL}",
        )
        ok = False
    elif catch_alls[0] != last:
        first = catch_alls[0]
        c.out.add(
            item.doc.position_of(("spec", "rules", first, "name")),
            Code.MISSING_CATCH_ALL,
            f"catch-all rule {spec.rules[first].name!r} is not the last rule: the"
            f" {last - first} rule(s) after it can never match",
            hint="move the catch-all to the end of the rules",
        )
        ok = False
    if ok:
        _report_shadowed(c, item, facts)
    unknown = used - set(spec.codes)
    for name in spec.codes:
        if name not in used and not unknown:
            c.out.add(
                item.doc.key_position_of(("spec", "codes", name)),
                Code.UNUSED_ERROR_CODE,
                f"no rule gives error code {name!r}",
                hint="add a rule that classifies errors as this code (e.g. by reason and domain), or remove it",
                severity="info",
            )
    return ErrorModel(codes, tuple(rules), c.version)


def _compile_rule(
    c: CompileContext,
    item: ParsedDocument,
    i: int,
    rule: ErrorRuleSpec,
    codes: Mapping[str, CompiledCode],
    names: Mapping[str, int],
) -> tuple[CompiledErrorRule, _RuleFacts] | None:
    base: Path_ = ("spec", "rules", i)
    ok = True
    if rule.name in names:
        c.out.add(
            item.doc.position_of((*base, "name")),
            Code.DUPLICATE_NAME,
            f"a rule named {rule.name!r} already exists",
            hint=f"first defined at {item.doc.position_of(('spec', 'rules', names[rule.name], 'name'))}",
        )
        ok = False
    entry = codes.get(rule.code)
    if entry is None:
        c.out.add(
            item.doc.position_of((*base, "code")),
            Code.UNKNOWN_ERROR_CODE,
            f"unknown error code {rule.code!r}: it is not in 'codes'",
            hint=did_you_mean(rule.code, codes) or "every code a rule gives must be declared under 'codes'",
        )
        ok = False
    match = rule.match
    message = None
    if match.message is not None:
        try:
            message = compile_regex(match.message)
        except ValueError as exc:
            c.out.add(
                item.doc.position_of((*base, "match", "message")),
                Code.INVALID_REGEX,
                f"invalid regular expression {match.message!r}: {exc}",
                hint="patterns use RE2 syntax (no backreferences or lookaround)",
            )
            ok = False
    operation = compile_regex(glob_regex(match.operation)) if match.operation is not None else None
    when = None
    if match.when is not None:
        when = _condition(c, item, (*base, "match", "when"), match.when)
        ok = ok and when is not None
    if not ok or entry is None:
        return None
    exceptions = None
    if match.exception is not None:
        exceptions = frozenset(match.exception if isinstance(match.exception, list) else [match.exception])
    statuses = expand_statuses(match.status) if match.status is not None else None
    label = f"error-rule:{rule.name}"
    source = c.source(item, base)
    static = None
    if entry.static_message is not None and not entry.expose_detail:
        static = Classification(
            code=entry.code,
            category=entry.category,
            status=entry.status,
            retryable=entry.retryable,
            severity=entry.severity,
            escalation=entry.escalation,
            title=entry.title,
            message=entry.static_message,
            type=entry.type,
            never_executed=entry.never_executed,
            rule=label,
            source=source,
            policy_version=c.version,
        )
    compiled = CompiledErrorRule(
        index=i,
        name=rule.name,
        rule=label,
        source=source,
        entry=entry,
        exceptions=exceptions,
        statuses=statuses,
        reason=match.reason,
        domain=match.domain,
        message=message,
        message_source=match.message,
        operation=operation,
        operation_glob=match.operation,
        when=when,
        static=static,
    )
    facts = _RuleFacts(
        i,
        rule.name,
        exceptions,
        statuses,
        match.reason,
        match.domain,
        match.message,
        match.operation,
        operation,
        match.when,
    )
    return compiled, facts


def _condition(c: CompileContext, item: ParsedDocument, path: Path_, text: str) -> Program | None:
    try:
        return compile_expression(text, ERROR_ENVIRONMENT)
    except ExpressionError as exc:
        position = expression_position(item.doc.position_of(path), item.lines, exc.offset)
        code = EXPRESSION_CODES.get(exc.reason, Code.EXPRESSION_SYNTAX)
        c.out.add(position, code, f"in condition {text!r}: {exc.message}", hint=exc.hint)
        return None


def _report_shadowed(c: CompileContext, item: ParsedDocument, facts: list[_RuleFacts]) -> None:
    for k, later in enumerate(facts):
        for earlier in facts[:k]:
            if earlier.covers(later):
                c.out.add(
                    item.doc.position_of(("spec", "rules", later.index, "name")),
                    Code.RULE_SHADOWED,
                    f"rule {later.name!r} can never match: rule {earlier.name!r} before it matches every"
                    " error it would",
                    hint=f"rule {earlier.name!r} is at"
                    f" {item.doc.position_of(('spec', 'rules', earlier.index, 'name'))}; move this rule above"
                    " it or narrow that one",
                    severity="warning",
                )
                break
