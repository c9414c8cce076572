"""The evaluate endpoint, and the lane that answers it ahead of FastAPI's router.

``POST /api/marketplace/seller/policy/evaluate`` is the service's hot path: services
call it on every request they serve. FastAPI's routing and dependency resolution cost
about as much as the evaluation itself (see docs/benchmarks.md, "Seller service"), so
the endpoint's steps are plain calls in :meth:`EvaluateEndpoint.respond`, in the order
the other routes' dependencies take them: the service's rate limits, then the bearer
token and its role, then the body.

:class:`EvaluateLane`, the innermost middleware of the application, sends that exact
method and path to :meth:`~EvaluateEndpoint.respond` and renders its errors with the
application's own exception handlers, so the answers are the ones the router would
give. The route is still declared on the application, with the same handler: that
declaration is what the OpenAPI document describes, and what any other method or path
variant (a trailing slash, say) reaches through the router.
"""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING, Any, cast

from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from tierpolicy.engine._evaluation import RequestIn, evaluate
from tierpolicy.engine._exceptions import InvalidRequestError

from . import _responses
from ._auth import authenticated, role_gate
from ._envelope import envelope, inlined, read_json
from ._problems import PROBLEM_RESPONSES, ServiceError, semantic_refusal

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Mapping, MutableMapping

    from starlette.routing import BaseRoute

    from tierpolicy.engine._engine import Engine

    from ._limits import ServiceRateLimits

    Scope = MutableMapping[str, Any]
    Message = MutableMapping[str, Any]
    Receive = Callable[[], Awaitable[Message]]
    Send = Callable[[Message], Awaitable[None]]
    ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
    Handler = Callable[[Request, Any], Response | Awaitable[Response]]

_REQUEST_SCHEMA = inlined(RequestIn.model_json_schema())
"""The evaluation request's schema, for the OpenAPI document."""


class EvaluateEndpoint:
    """``POST .../policy/evaluate``: the request and answer of ``tierpolicy eval``, enveloped.

    Args:
        limits: The service's rate limits (checked first, as on every API route).
    """

    def __init__(self, limits: ServiceRateLimits) -> None:
        self._limits = limits
        self._gate = role_gate("service", "admin")

    async def respond(self, request: Request) -> Response:
        """Answer one evaluation request.

        Raises:
            RateLimitExceeded: A rate limit refused the request (429, or 503).
            ServiceError: 401 or 403 (the token), 400 (not JSON) or 422 (not an
                evaluation request).
        """
        # The limits leave their headers on this response, which envelope() copies to the
        # answer; without a body it must not claim one (as FastAPI makes it for dependencies).
        headers_only = Response()
        del headers_only.headers["content-length"]
        await self._limits(request, headers_only)
        self._gate(await authenticated(request))
        payload = await read_json(request)
        engine: Engine = request.app.state.holder.engine
        try:
            answer = evaluate(engine, payload)
        except InvalidRequestError as exc:
            raise ServiceError(
                "VALIDATION_FAILED",
                str(exc),
                status=422,
                extra={"errors": [{"location": exc.location, "message": str(exc)}]},
            ) from None
        request.app.state.metrics.count_answer(answer)
        return envelope(request, answer)

    def router(self, prefix: str) -> APIRouter:
        """The route's declaration (for OpenAPI, and for what the lane does not take)."""
        router = APIRouter(prefix=prefix, tags=["policy"], responses=PROBLEM_RESPONSES)
        router.add_api_route(
            "/policy/evaluate",
            self.respond,
            methods=["POST"],
            name="evaluate_route",  # the operationId clients were generated with
            summary="Evaluate queries against the active policy set",
            description=(
                "The request and answer of `tierpolicy eval` (see docs/evaluation.md): results in "
                "request order, each with its decision or its own error. Needs the service or "
                "admin role."
            ),
            openapi_extra={
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": _REQUEST_SCHEMA}},
                },
                # What Depends(authenticated) would declare: respond() checks the token itself.
                "security": [{"bearer": []}],
            },
            response_model=None,
            responses={
                **_responses.success(_responses.EVALUATION, "The answer of `tierpolicy eval`, enveloped."),
                **semantic_refusal(
                    "a context value does not parse as the type the policies declare, or an override "
                    "starts at or after its expiry"
                ),
            },
        )
        return router


class EvaluateLane:
    """Middleware answering the evaluate route without the router (see the module docstring).

    Args:
        app: The rest of the application.
        endpoint: The evaluate endpoint.
        route: The route's declaration: it becomes ``scope["route"]``, as the router
            would set it, for the metrics and the rate limits' route template.
        exception_handlers: The application's handlers by exception class or status
            (``app.exception_handlers``); read at each error, so handlers added after
            the middleware apply.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        endpoint: EvaluateEndpoint,
        route: BaseRoute,
        exception_handlers: Mapping[Any, Handler],
    ) -> None:
        self.app = app
        self._endpoint = endpoint
        self._route = route
        self._path: str = getattr(route, "path", "")
        self._handlers = exception_handlers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer the evaluate route here; pass anything else on."""
        if scope["type"] != "http" or scope["method"] != "POST" or _route_path(scope) != self._path:
            await self.app(scope, receive, send)
            return
        scope["route"] = self._route
        request = Request(scope, receive, send)
        try:
            response = await self._endpoint.respond(request)
        except Exception as exc:
            handler = self._handler(exc)
            if handler is None:
                # The application's error middleware answers (500) and logs it, as for any route.
                raise
            if inspect.iscoroutinefunction(handler):
                response = await handler(request, exc)
            else:  # as Starlette runs a sync handler
                response = await run_in_threadpool(
                    cast("Callable[[Request, Any], Response]", handler), request, exc
                )
        await response(scope, receive, send)

    def _handler(self, exc: Exception) -> Handler | None:
        """The handler Starlette's exception middleware would pick (``Exception``'s is not its to use)."""
        if isinstance(exc, StarletteHTTPException) and exc.status_code in self._handlers:
            return self._handlers[exc.status_code]
        for cls in type(exc).__mro__:
            if cls is Exception:
                return None
            if cls in self._handlers:
                return self._handlers[cls]
        return None


def _route_path(scope: Scope) -> str:
    """The path the router matches: without the ``root_path`` a proxy mounts the service under.

    Starlette's rule (``starlette._utils.get_route_path``, private, hence restated).
    """
    path: str = scope["path"]
    root_path: str = scope.get("root_path", "")
    if not root_path or not path.startswith(root_path):
        return path
    if path == root_path:
        return ""
    return path[len(root_path) :] if path[len(root_path)] == "/" else path
