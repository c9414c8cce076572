"""Every error of the service as RFC 9457 problem details, built from the errors policy.

The service never answers an error with anything but ``application/problem+json``:
validation errors, unknown routes, wrong methods, refused rate limits and unexpected
exceptions alike. Each problem is classified by the active policy set's ``Errors``
rules (the service's own errors carry their code as ``reason`` in the
``seller.marketplace`` domain; routing errors carry their HTTP status), so support sees
the same stable codes here as everywhere else. The request id is in the body and in the
``X-Request-ID`` header; exception text and stack traces never are.
"""

from __future__ import annotations

import http
import logging
from typing import TYPE_CHECKING, Any

from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import BaseRoute, Match, Route

from tierpolicy.adapters.fastapi import PROBLEM_MEDIA_TYPE, ProblemException
from tierpolicy.engine._errorinfo import ErrorInfo
from tierpolicy.engine._exceptions import NoErrorsPolicyError, TierpolicyError

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator, Mapping

    from fastapi import FastAPI, Request

    from tierpolicy.engine._engine import Engine

logger = logging.getLogger("tierpolicy.service")

SERVICE_DOMAIN = "seller.marketplace"
"""The ``domain`` of errors the service raises itself (see ``policies/errors.yaml``)."""


class Problem(BaseModel):
    """An RFC 9457 problem as the service answers it (``application/problem+json``)."""

    model_config = ConfigDict(extra="allow")

    type: str = Field(description="A URI naming the error code (the errors policy's type_base + the code).")
    title: str = Field(description="A short summary of the error code.")
    status: int = Field(description="The HTTP status.")
    detail: str = Field(description="What went wrong, for the caller; never exception text.")
    instance: str | None = Field(default=None, description="The path of the request.")
    code: str = Field(description="The stable error code (NOT_FOUND, RATE_LIMITED ...).")
    retryable: bool | None = Field(default=None, description="Whether retrying the same request may succeed.")
    request_id: str = Field(description="The request's id, also in the X-Request-ID header.")


_DESCRIPTIONS = {
    400: "The body is not UTF-8 or not JSON (MALFORMED_REQUEST).",
    401: "No bearer token, or one the service refuses (AUTHENTICATION_REQUIRED, AUTHENTICATION_EXPIRED).",
    403: "The token's role may not do this (FORBIDDEN).",
    404: "No such route, seller, override or version (NOT_FOUND, SELLER_NOT_FOUND).",
    405: "The route does not take this method (METHOD_NOT_ALLOWED).",
    409: "A conflict with what is stored (CONFLICT).",
    413: "The body is larger than MAX_BODY_BYTES (PAYLOAD_TOO_LARGE).",
    422: "The request does not validate; `errors` says what and where (VALIDATION_FAILED).",
    429: "A rate limit refused the request (RATE_LIMITED), with Retry-After.",
    500: "Anything unexpected (INTERNAL); the detail never carries exception text.",
    503: "A store the request needs cannot be reached.",
}

PROBLEM_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {
        "model": Problem,
        "description": description,
        "content": {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}},
    }
    for status, description in _DESCRIPTIONS.items()
}
"""Every problem a route may answer, for the OpenAPI schema."""


def semantic_refusal(why: str) -> dict[int | str, dict[str, Any]]:
    """A route's 422 that also covers requests the schema accepts but the active policy set refuses.

    The schema cannot enumerate what the active policy set or the clock allows (its
    tiers, metric names, override targets, a bundle that loads), since that changes at
    run time, so such a request is schema-valid and still answered 422 ``VALIDATION_FAILED``.

    Args:
        why: What the route refuses beyond the schema, for the 422's description.
    """
    return {422: {**PROBLEM_RESPONSES[422], "description": f"{_DESCRIPTIONS[422]} Also when {why}."}}


class ServiceError(TierpolicyError):
    """An error the service answers with a problem: its code is the ``reason``.

    Args:
        code: The error code (``SELLER_NOT_FOUND``, ``VALIDATION_FAILED`` ...).
        detail: What went wrong, for the caller (safe to show).
        status: The HTTP status, for codes the errors policy matches by status.
        extra: Extension members of the problem (``errors``, ``location`` ...).
        headers: Response headers to add.
    """

    def __init__(
        self,
        code: str,
        detail: str | None = None,
        *,
        status: int | None = None,
        extra: Mapping[str, object] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(detail or code)
        self.code = code
        self.detail = detail
        self.status = status
        self.extra = dict(extra or {})
        self.headers = dict(headers or {})


def request_id(request: Request) -> str:
    """The request's id (set by the request-id middleware)."""
    value = request.scope.get("state", {}).get("request_id")
    return value if isinstance(value, str) else ""


def counted_headers(request: Request) -> Mapping[str, str] | None:
    """The rate-limit headers the service's limits left for this request's answer, if they counted it."""
    headers: Mapping[str, str] | None = getattr(request.state, "answer_headers", None)
    return headers


def build_problem(
    engine: Engine,
    *,
    instance: str,
    rid: str,
    reason: str | None = None,
    status: int | None = None,
    detail: str | None = None,
) -> dict[str, object]:
    """The problem for an error, classified by ``engine``'s errors policy."""
    info = ErrorInfo(
        types=("tierpolicy.service.ServiceError",),
        status=status,
        reason=reason,
        domain=SERVICE_DOMAIN if reason is not None else None,
    )
    try:
        classification = engine.classify(info)
    except NoErrorsPolicyError:
        # A policy set without an Errors document still answers problems, plainly.
        code = status or 500
        problem: dict[str, object] = {
            "type": "about:blank",
            "title": http.HTTPStatus(code).phrase,
            "status": code,
            "detail": detail or http.HTTPStatus(code).description,
            "instance": instance,
            "code": reason or http.HTTPStatus(code).name,
            "request_id": rid,
        }
        return problem
    problem = classification.to_problem(instance=instance, request_id=rid, detail=detail)
    if status is not None and classification.status != status:
        # The policy classified a routing status under a code of another status (e.g. a
        # 405 under the catch-all): the HTTP status of the answer stays the true one.
        problem["status"] = status
    return problem


def problem_response(
    request: Request, problem: Mapping[str, object], headers: Mapping[str, str] | None = None
) -> JSONResponse:
    """An ``application/problem+json`` response carrying ``problem``.

    The rate limits' headers, when the request was counted before it failed (a 401, a
    404 ...), are on it too: a refused caller spends from its limits like any other.
    """
    status = problem.get("status")
    counted = counted_headers(request) or {}
    return JSONResponse(
        dict(problem),
        status_code=status if isinstance(status, int) else 500,
        media_type=PROBLEM_MEDIA_TYPE,
        headers={**counted, **(headers or {}), "X-Request-ID": request_id(request)},
    )


def _engine(request: Request) -> Engine:
    engine: Engine = request.app.state.holder.engine
    return engine


async def _service_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ServiceError)  # noqa: S101  registered for ServiceError only
    problem = build_problem(
        _engine(request),
        instance=request.url.path,
        rid=request_id(request),
        reason=exc.code,
        status=exc.status,
        detail=exc.detail,
    )
    problem.update(exc.extra)
    return problem_response(request, problem, exc.headers)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)  # noqa: S101  registered for HTTPException only
    # Starlette's default detail is the status phrase: the policy's own message is better.
    detail = exc.detail if exc.detail != http.HTTPStatus(exc.status_code).phrase else None
    problem = build_problem(
        _engine(request),
        instance=request.url.path,
        rid=request_id(request),
        status=exc.status_code,
        detail=detail,
    )
    headers = dict(exc.headers or {})
    if exc.status_code == http.HTTPStatus.METHOD_NOT_ALLOWED:
        headers["Allow"] = _allowed_methods(request) or headers.get("Allow", "")
    return problem_response(request, problem, headers)


def _allowed_methods(request: Request) -> str:
    """Every method some route takes at this path (Starlette's Allow names one route's only)."""
    methods: set[str] = set()
    for route in flat_routes(request.app.router.routes):
        if isinstance(route, Route) and route.methods and route.matches(request.scope)[0] is not Match.NONE:
            methods |= route.methods
    return ", ".join(sorted(methods))


def flat_routes(routes: Iterable[BaseRoute]) -> Iterator[BaseRoute]:
    """Every route, those of included routers too (each with its full path)."""
    # Recent FastAPI wraps included routers; their routes carry the full path already.
    for route in routes:
        inner = getattr(route, "original_router", None)
        if inner is not None:
            yield from flat_routes(inner.routes)
        else:
            yield route


def _malformed(request: Request, error: Mapping[str, Any], body: object) -> dict[str, object]:
    loc = error.get("loc", ())
    where = ""
    if isinstance(body, str) and len(loc) > 1 and isinstance(loc[1], int):
        offset = loc[1]
        line = body.count("\n", 0, offset) + 1
        column = offset - (body.rfind("\n", 0, offset) + 1) + 1
        where = f" at line {line} column {column}"
    reason = error.get("ctx", {}).get("error") or "invalid JSON"
    return build_problem(
        _engine(request),
        instance=request.url.path,
        rid=request_id(request),
        reason="MALFORMED_REQUEST",
        status=400,
        detail=f"the body is not JSON: {reason}{where}",
    )


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)  # noqa: S101  registered for RequestValidationError only
    broken = next((e for e in exc.errors() if e.get("type") == "json_invalid"), None)
    if broken is not None:
        # A body that is not JSON is a malformed request (400), as on the evaluate route,
        # not a validation failure; say where it breaks as a line and column.
        return problem_response(request, _malformed(request, broken, exc.body))
    errors = [
        {
            "location": "/".join(str(part) for part in error.get("loc", ())),
            "message": str(error.get("msg", "")),
        }
        for error in exc.errors()
    ]
    first = errors[0] if errors else {"location": "", "message": "invalid request"}
    problem = build_problem(
        _engine(request),
        instance=request.url.path,
        rid=request_id(request),
        reason="VALIDATION_FAILED",
        status=422,
        detail=f"{first['location']}: {first['message']}" if first["location"] else first["message"],
    )
    problem["errors"] = errors
    return problem_response(request, problem)


async def _problem_exception(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ProblemException)  # noqa: S101  registered for ProblemException only
    # Re-classified by the errors policy so a 429 carries the registry's RATE_LIMITED
    # code and type; the adapter's extension members (limit, window...) are kept.
    detail = exc.problem.get("detail")
    problem = build_problem(
        _engine(request),
        instance=request.url.path,
        rid=request_id(request),
        status=exc.status_code,
        detail=detail if isinstance(detail, str) else None,
    )
    for member, value in exc.problem.items():
        problem.setdefault(member, value)
    return problem_response(request, problem, exc.headers)


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    logger.error("unexpected error answering %s %s", request.method, request.url.path, exc_info=exc)
    problem = build_problem(_engine(request), instance=request.url.path, rid=request_id(request), status=500)
    return problem_response(request, problem)


def install(app: FastAPI) -> None:
    """Answer every error of ``app`` with a problem, and say only that in its OpenAPI document."""
    app.add_exception_handler(ServiceError, _service_error)
    app.add_exception_handler(ProblemException, _problem_exception)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(Exception, _unexpected)
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            _problem_media_only(generate())  # generate() keeps what it made in app.openapi_schema
        return app.openapi_schema  # type: ignore[return-value]  # set by generate()

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented way to customise the document


def _problem_media_only(document: dict[str, Any]) -> None:
    """Drop ``application/json`` from responses documented as problems.

    FastAPI lists ``application/json`` beside the declared media type for a response
    with a ``model``; the service never answers an error with it.
    """
    for operations in document.get("paths", {}).values():
        for operation in operations.values():
            for response in operation.get("responses", {}).values() if isinstance(operation, dict) else ():
                content = response.get("content", {})
                if PROBLEM_MEDIA_TYPE in content:
                    content.pop("application/json", None)
