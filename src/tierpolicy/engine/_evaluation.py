"""The evaluation request and answer shared by ``tierpolicy eval`` and the HTTP API.

A request holds one context and a list of queries; the answer holds one result per
query, in request order. A query that cannot be answered (an unknown name, a context
that lacks what that query needs) fails on its own with a typed error and never fails
the others. A request that is malformed as a whole (not a JSON object, unknown fields,
a context value that does not parse as the type the schema declares, such as a bad
timestamp) is rejected as a whole with :class:`InvalidRequestError`, since no answer
built from it could be trusted. See ``docs/evaluation.md`` for the format.
"""

from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr, ValidationError

from ._context import parse_duration, parse_timestamp
from ._errorinfo import MAX_RETRY_AFTER, ErrorInfo
from ._exceptions import (
    EvaluationError,
    InvalidContextError,
    InvalidRequestError,
    NoErrorsPolicyError,
    UnknownNameError,
)
from ._overrides import Override
from ._validation import describe

if TYPE_CHECKING:
    import datetime as dt
    from collections.abc import Mapping

    from ._engine import Engine
    from ._retryplan import RetryPlan

MAX_QUERIES = 1_000
MAX_ATTEMPT = 1_000_000
"""The largest failed-attempt number a retry query may give."""
MAX_SECONDS = MAX_RETRY_AFTER
"""The largest ``elapsed`` or ``previous_delay`` a retry query may give (366 days)."""


Timestamp = Annotated[StrictStr, Field(json_schema_extra={"format": "date-time"})]
"""An RFC 3339 timestamp: a string in JSON, parsed by :func:`parse_timestamp` (the schema says so)."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


def value_by_kind(limit_value: dict[str, Any]) -> dict[str, Any]:
    """The JSON Schema rule that an override's ``value`` fits its ``kind`` (as :class:`Override` checks).

    Args:
        limit_value: The schema of a limit override's value.
    """
    return {
        "anyOf": [
            {
                "properties": {"kind": {"const": "feature"}, "value": {"type": "boolean"}},
                "required": ["value"],
            },
            {"properties": {"kind": {"const": "limit"}, "value": limit_value}},
            {"properties": {"kind": {"const": "tier"}, "value": {"type": "null"}}},
        ]
    }


class OverrideIn(_Strict):
    """A runtime override in a request (JSON)."""

    model_config = ConfigDict(
        json_schema_extra=value_by_kind(
            {"anyOf": [{"type": "integer", "minimum": 0}, {"const": "unlimited"}, {"type": "null"}]}
        )
    )
    seller_id: Annotated[StrictStr, Field(min_length=1)]
    kind: Literal["feature", "limit", "tier"]
    target: Annotated[StrictStr, Field(min_length=1)]
    value: StrictBool | Annotated[StrictInt, Field(ge=0)] | Literal["unlimited"] | None = None
    reason: Annotated[StrictStr, Field(min_length=1)]
    expires_at: Timestamp
    starts_at: Timestamp | None = None
    author: StrictStr = ""
    id: StrictStr | StrictInt | None = None


class RequestIn(_Strict):
    """The top level of an evaluation request."""

    context: dict[str, Any]
    queries: Annotated[list[Any], Field(max_length=MAX_QUERIES)]
    now: Timestamp | None = None
    overrides: list[OverrideIn] = Field(default_factory=list)
    trace: StrictBool = False


class QueryIn(_Strict):
    """One query."""

    kind: Literal["feature", "limit", "tier", "entitlements", "classify", "retry"]
    name: StrictStr | None = None
    error: dict[str, Any] | None = None
    operation: Annotated[StrictStr, Field(min_length=1, max_length=256)] | None = None
    # retry queries; checked by _retry_plan, which names the member when one is malformed
    attempt: Any = None
    elapsed: Any = None
    previous_delay: Any = None
    id: StrictStr | StrictInt | None = None
    trace: StrictBool | None = None


def _location(loc: tuple[int | str, ...]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _request_error(exc: ValidationError, prefix: str = "") -> InvalidRequestError:
    first = exc.errors()[0]
    where = _location((*((prefix,) if prefix else ()), *first["loc"]))
    kind = first["type"]
    if kind == "extra_forbidden":
        return InvalidRequestError("unknown field", location=where)
    if kind == "missing":
        return InvalidRequestError("required field is missing", location=where)
    message = first["msg"].rstrip(".")
    return InvalidRequestError(f"{message}; found {describe(first.get('input'))}", location=where)


def parse_request(payload: object) -> tuple[RequestIn, dt.datetime | None, tuple[Override, ...]]:
    """Validate the top level of a request.

    Raises:
        InvalidRequestError: Naming where the request is malformed.
    """
    if not isinstance(payload, dict):
        raise InvalidRequestError(f"the request must be a JSON object; found {describe(payload)}")
    try:
        request = RequestIn.model_validate(payload)
    except ValidationError as exc:
        raise _request_error(exc) from None
    now = None
    if request.now is not None:
        try:
            now = parse_timestamp(request.now, "now")
        except ValueError as exc:
            raise InvalidRequestError(str(exc)) from None
    overrides = []
    for i, raw in enumerate(request.overrides):
        where = f"overrides[{i}]"
        try:
            overrides.append(
                Override(
                    seller_id=raw.seller_id,
                    kind=raw.kind,
                    target=raw.target,
                    value=None if raw.value == "unlimited" else raw.value,
                    reason=raw.reason,
                    expires_at=parse_timestamp(raw.expires_at, f"{where}.expires_at"),
                    starts_at=(
                        None
                        if raw.starts_at is None  # "" is a malformed time, not an absent one
                        else parse_timestamp(raw.starts_at, f"{where}.starts_at")
                    ),
                    author=raw.author,
                    rule=f"override:{raw.id if raw.id is not None else f'request[{i}]'}",
                    source="request",
                )
            )
        except ValueError as exc:
            raise InvalidRequestError(str(exc), location=where if where not in str(exc) else "") from None
    return request, now, tuple(overrides)


def evaluate(engine: Engine, payload: object, *, now: dt.datetime | None = None) -> dict[str, object]:
    """Answer an evaluation request.

    Args:
        engine: The engine to ask.
        payload: The decoded JSON request.
        now: The evaluation time when the request gives none (default: the engine's clock).

    Returns:
        ``{"policy_version": ..., "results": [...]}``, one result per query in order.

    Raises:
        InvalidRequestError: The request as a whole is malformed (not per query).
    """
    request, request_now, overrides = parse_request(payload)
    when = request_now or now or engine._clock()  # noqa: SLF001  the engine's own clock
    try:
        context = engine.coerce(request.context)
    except ValueError as exc:
        raise InvalidRequestError(str(exc), location="context") from None
    results = [
        _answer(engine, query, i, context, when, overrides, request.trace)
        for i, query in enumerate(request.queries)
    ]
    return {"policy_version": engine.version, "results": results}


def _answer(
    engine: Engine,
    raw: object,
    index: int,
    context: Mapping[str, object],
    now: dt.datetime,
    overrides: tuple[Override, ...],
    trace_all: bool,  # noqa: FBT001
) -> dict[str, object]:
    base: dict[str, object] = {"index": index}
    try:
        if not isinstance(raw, dict):
            raise InvalidRequestError(f"a query must be a JSON object; found {describe(raw)}")
        if isinstance(raw.get("id"), (str, int)) and not isinstance(raw.get("id"), bool):
            base["id"] = raw["id"]
        try:
            query = QueryIn.model_validate(raw)
        except ValidationError as exc:
            raise _request_error(exc) from None
        base["kind"] = query.kind
        trace = trace_all if query.trace is None else query.trace
        if query.kind in {"feature", "limit"}:
            if query.name is None:
                raise InvalidRequestError(f"a {query.kind} query needs 'name'", location="name")
            base["name"] = query.name
            if query.kind == "feature":
                decision: Any = engine.check(query.name, context, now=now, overrides=overrides, trace=trace)
            else:
                decision = engine.limit(query.name, context, now=now, overrides=overrides, trace=trace)
        elif query.kind == "classify":
            if query.error is None:
                raise InvalidRequestError("a classify query needs 'error'", location="error")
            info = ErrorInfo.from_json(query.error)
            decision = engine.classify(info, operation=query.operation, trace=trace)
        elif query.kind == "retry":
            decision = _retry_plan(engine, query, trace=trace)
        elif query.kind == "tier":
            decision = engine.qualify(context, now=now, overrides=overrides, trace=trace)
        else:
            decision = engine.entitlements(context, now=now, overrides=overrides, trace=trace)
        return {**base, "status": "ok", "decision": decision.to_json()}
    except EvaluationError as exc:
        return {**base, "status": "error", "error": error_json(exc)}


def _retry_plan(engine: Engine, query: QueryIn, *, trace: bool) -> RetryPlan:
    """Answer a ``retry`` query: check its members, naming the malformed one, then plan."""
    if query.error is None:
        raise InvalidRequestError("a retry query needs 'error'", location="error")
    info = ErrorInfo.from_json(query.error)
    operation = query.operation or info.operation
    if operation is None:
        raise InvalidRequestError(
            "a retry query needs 'operation' (or 'error.operation'): the operation whose attempt failed",
            location="operation",
        )
    attempt = query.attempt
    if attempt is None:
        raise InvalidRequestError(
            "a retry query needs 'attempt': the number of the attempt that failed, 1 for the first call",
            location="attempt",
        )
    if isinstance(attempt, bool) or not isinstance(attempt, int) or not 1 <= attempt <= MAX_ATTEMPT:
        raise InvalidRequestError(
            f"expected a whole number from 1 to {MAX_ATTEMPT:,} (the attempt that failed); "
            f"found {describe(attempt)}",
            location="attempt",
        )
    elapsed = 0.0 if query.elapsed is None else _seconds(query.elapsed, "elapsed")
    previous = None if query.previous_delay is None else _seconds(query.previous_delay, "previous_delay")
    return engine.retry_plan(
        operation, info, attempt=attempt, elapsed=elapsed, previous_delay=previous, trace=trace
    )


def _seconds(value: object, member: str) -> float:
    """A number of seconds, or a duration such as ``"1.5s"`` or ``"250ms"``, as seconds >= 0."""
    expected = 'expected seconds >= 0 (a number such as 1.5, or a duration such as "1.5s" or "250ms"), at most 366 days'
    if isinstance(value, str):
        try:
            seconds = parse_duration(value, member).total_seconds()
        except ValueError:
            raise InvalidRequestError(f"{expected}; found {describe(value)}", location=member) from None
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    else:
        raise InvalidRequestError(f"{expected}; found {describe(value)}", location=member)
    if not math.isfinite(seconds) or not 0 <= seconds <= MAX_SECONDS:
        raise InvalidRequestError(f"{expected}; found {describe(value)}", location=member)
    return seconds


def error_json(exc: EvaluationError) -> dict[str, object]:
    """Render an evaluation error as the ``error`` member of a result."""
    if isinstance(exc, UnknownNameError):
        return {
            "type": f"UNKNOWN_{exc.kind.upper()}",
            "message": str(exc),
            "name": exc.name,
            "suggestions": list(exc.suggestions),
        }
    if isinstance(exc, InvalidContextError):
        return {"type": "INVALID_CONTEXT", "message": str(exc)}
    if isinstance(exc, NoErrorsPolicyError):
        return {"type": "NO_ERRORS_POLICY", "message": str(exc)}
    if isinstance(exc, InvalidRequestError):
        return {"type": "INVALID_QUERY", "message": str(exc), "location": exc.location}
    return {"type": "EVALUATION_ERROR", "message": str(exc)}


def dumps(answer: Mapping[str, object]) -> str:
    """Serialise an answer deterministically (sorted keys are not used: order is meaningful)."""
    return json.dumps(answer, ensure_ascii=False, indent=2)
