"""The FastAPI route dependency that enforces the rate limits of a policy set.

``RateLimit(limiter, ...)`` is used as ``Depends(rate_limit)``. Per request it builds the
context (``request.client_ip`` from :func:`client_address`, ``request.route`` from the
matched route's template, ``request.method``, plus what the application's ``context``
callable returns), awaits :meth:`RateLimiter.acheck`, and then either sets the
``RateLimit-Policy`` and ``RateLimit`` headers on the response or raises a
:class:`ProblemException` rendered as ``application/problem+json``:

* a limit denies: 429 with ``Retry-After`` (:class:`RateLimitExceeded`);
* the store is down and a ``fail_closed`` limit refuses: 503 with ``Retry-After`` (also
  :class:`RateLimitExceeded`): nobody exceeded anything, the service cannot check, and
  error budgets and alerts count 5xx, not 429;
* a limit's key cannot be computed from the context (``ConditionError``): 500
  (:class:`RateLimitKeyError`). The context is built by the server, so a missing
  ``seller.id`` is a wiring or policy bug the client cannot fix, and it must show up in
  server-error monitoring; the request is refused, never let through unlimited.

This module does not use ``from __future__ import annotations``: FastAPI reads the
annotations of :meth:`RateLimit.__call__` at run time to inject ``Request`` and
``Response``.
"""

import inspect
import logging
import math
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Final

from fastapi import Request, Response
from starlette.requests import HTTPConnection

from tierpolicy.engine._exceptions import ConditionError, StoreError
from tierpolicy.engine._gcra import RateLimitDecision
from tierpolicy.engine._ratelimiter import RateLimiter, RateLimitResult
from tierpolicy.engine._ratelimits import MAX_QUOTA

from ._client import ProxySpec, TrustedProxies, client_address
from ._problem import DEFAULT_TYPE_BASE, ProblemException

logger = logging.getLogger("tierpolicy.ratelimit")

ContextProvider = Callable[[Request], Mapping[str, object] | Awaitable[Mapping[str, object]]]
"""Returns the application's part of the context for a request (sync or async)."""

_PERIODS: Final = {1: "second", 60: "minute", 3600: "hour", 86400: "day"}
_UNITS: Final = ((86400, "days"), (3600, "hours"), (60, "minutes"))


class RateLimitExceeded(ProblemException):
    """A request refused by a rate limit: 429, or 503 when a ``fail_closed`` limit's store is down.

    Attributes:
        result: The limiter's answer (every decision, the deciding one, the headers).
    """

    def __init__(
        self, problem: Mapping[str, object], *, headers: Mapping[str, str], result: RateLimitResult
    ) -> None:
        super().__init__(problem, headers=headers)
        self.result = result


class RateLimitKeyError(ProblemException):
    """A rate limit could not be applied because its key failed for the request's context (500)."""


def route_template(request: HTTPConnection) -> str:
    """The template of the route that matched ``request``, e.g. ``/api/sellers/{seller_id}``.

    Router prefixes and the paths of mounted sub-applications are included; the
    server's own ``root_path`` (a prefix a proxy strips) is not, so the template is the
    same wherever the application is deployed. Without a matched route (a dependency
    run outside routing), the request's path.
    """
    scope = request.scope
    template: object = None
    fastapi_scope = scope.get("fastapi")
    if isinstance(fastapi_scope, Mapping):
        # FastAPI >= 0.16x keeps an included route's own path on scope["route"] and the
        # path with every router prefix on this (private) context; older versions copy
        # routes with the prefixes applied, so scope["route"] has the full template.
        template = getattr(fastapi_scope.get("effective_route_context"), "path_format", None)
    if not isinstance(template, str) or not template:  # a WebSocket route's context has no path
        route = scope.get("route")
        template = getattr(route, "path_format", None) or getattr(route, "path", None)
    if not isinstance(template, str):
        return request.url.path
    root_path = scope.get("root_path") or ""
    app_root_path = scope.get("app_root_path")
    # Starlette's Mount appends its path to root_path and keeps the server's in app_root_path.
    if isinstance(app_root_path, str) and root_path.startswith(app_root_path):
        return root_path[len(app_root_path) :] + template
    return template


class RateLimit:
    """A route dependency that checks the route's rate limits: ``Depends(RateLimit(limiter))``.

    Use it in a route's (or router's, or app's) ``dependencies=[Depends(rate_limit)]``,
    or as a parameter, ``result: Annotated[RateLimitResult, Depends(rate_limit)]``, to
    read the limiter's answer. Install :func:`install_problem_handler` on the app so
    refusals are ``application/problem+json``. One instance may serve many routes.

    Args:
        limiter: The limiter (its policies and store).
        context: Returns the application's part of the context for a request, e.g.
            ``{"seller": {"id": ..., "tier": ...}}`` from its authentication; sync or
            async. Its ``request`` mapping, if any, is merged into the adapter's
            (``client_ip``, ``route``, ``method``) and wins on conflicts. It may raise
            ``HTTPException`` (say 401); a sync callable runs on the event loop, so it
            must not block.
        route: The route the limits are matched against (default: the matched route's
            template, see :func:`route_template`).
        operation: An operation name, for limits matching operations as well.
        cost: Units each request spends, instead of each limit's own cost.
        trusted_proxies: The proxies whose forwarding headers are believed (a
            :class:`TrustedProxies` or its entries); none by default.
        status_code: The status of a request a limit denies.
        unavailable_status_code: The status of a request refused because a
            ``fail_closed`` limit's store is unavailable.
        type_base: The start of the problem ``type`` URIs (``<base>rate-limited``,
            ``<base>rate-limit-unavailable``, ``<base>rate-limit-key-error``).

    Raises:
        ValueError: A trusted proxy entry is invalid, a status is not 4xx/5xx, or the
            cost is not a whole number from 0 to 1,000,000,000.
    """

    def __init__(
        self,
        limiter: RateLimiter,
        *,
        context: ContextProvider | None = None,
        route: str | None = None,
        operation: str | None = None,
        cost: int | None = None,
        trusted_proxies: TrustedProxies | Iterable[ProxySpec] = (),
        status_code: int = 429,
        unavailable_status_code: int = 503,
        type_base: str = DEFAULT_TYPE_BASE,
    ) -> None:
        for name, code in (
            ("status_code", status_code),
            ("unavailable_status_code", unavailable_status_code),
        ):
            if type(code) is not int or not 400 <= code <= 599:
                msg = f"{name} must be an HTTP error status (400 to 599), not {code!r}"
                raise ValueError(msg)
        if cost is not None and (type(cost) is not int or not 0 <= cost <= MAX_QUOTA):
            msg = f"cost must be a whole number from 0 to {MAX_QUOTA:,}, not {cost!r}"
            raise ValueError(msg)
        self.limiter = limiter
        self.context = context
        self.route = route
        self.operation = operation
        self.cost = cost
        self.trusted_proxies = (
            trusted_proxies
            if isinstance(trusted_proxies, TrustedProxies)
            else TrustedProxies(trusted_proxies)
        )
        self.status_code = status_code
        self.unavailable_status_code = unavailable_status_code
        self.type_base = type_base

    def __repr__(self) -> str:
        return f"RateLimit(route={self.route!r}, operation={self.operation!r}, trusted_proxies={self.trusted_proxies!r})"

    async def __call__(self, request: Request, response: Response) -> RateLimitResult:
        """Check the request; set the headers on ``response`` or raise a problem.

        Raises:
            RateLimitExceeded: A limit denies the request (429), or a ``fail_closed``
                limit's store is unavailable (503).
            RateLimitKeyError: A limit's key could not be computed from the context.
            ProblemException: A store error escaped the limiter (503; a safety net).
            TypeError: The ``context`` callable returned something that is not a mapping.
        """
        route = self.route if self.route is not None else route_template(request)
        context = await self.build_context(request, route)
        try:
            result = await self.limiter.acheck(context, route=route, operation=self.operation, cost=self.cost)
        except ConditionError as exc:
            logger.error("rate limits of route %s not applied, the key failed: %s", route, exc)  # noqa: TRY400  the cause is the message; no traceback needed
            raise RateLimitKeyError(self._key_problem(request)) from exc
        except StoreError as exc:  # the limiter applies on_store_error modes; this is only a safety net
            logger.error("rate limits of route %s not applied, the store failed: %s", route, exc)  # noqa: TRY400  as above
            wait = str(max(1, math.ceil(self.limiter.retry_interval)))
            raise ProblemException(self._store_problem(request), headers={"Retry-After": wait}) from exc
        headers = result.headers()
        if not result.allowed:
            raise RateLimitExceeded(
                self._denied_problem(request, result, headers), headers=headers, result=result
            )
        response.headers.update(headers)
        return result

    async def build_context(self, request: Request, route: str) -> dict[str, object]:
        """The evaluation context of ``request``: the ``request`` facts merged with the application's.

        Raises:
            TypeError: The ``context`` callable returned something that is not a mapping,
                or a ``request`` member that is not a mapping.
        """
        facts: dict[str, object] = {
            "client_ip": client_address(request, self.trusted_proxies),
            "route": route,
            "method": request.method,
        }
        if self.context is None:
            return {"request": facts}
        given = self.context(request)
        extra: object = await given if inspect.isawaitable(given) else given
        if not isinstance(extra, Mapping):
            msg = f"the rate-limit context callable must return a mapping, not {type(extra).__name__}"
            raise TypeError(msg)
        context = dict(extra)
        own = context.get("request")
        if own is not None:
            if not isinstance(own, Mapping):
                msg = f"the context's 'request' must be a mapping, not {type(own).__name__}"
                raise TypeError(msg)
            facts.update(own)
        context["request"] = facts
        return context

    # ------------------------------------------------------------------ problems

    def _denied_problem(
        self, request: Request, result: RateLimitResult, headers: Mapping[str, str]
    ) -> dict[str, object]:
        deciding = result.deciding
        assert deciding is not None  # noqa: S101  a denied result has a denying decision
        retry_after = int(headers.get("Retry-After", "1"))
        denied = [d for d in result.decisions if not d.allowed]
        if all(d.fallback == "fail_closed" for d in denied):
            return {
                "type": f"{self.type_base}rate-limit-unavailable",
                "title": "Rate limit unavailable",
                "status": self.unavailable_status_code,
                "detail": (
                    f"Rate limit {deciding.limit!r} cannot be checked right now, so the request was "
                    f"refused. Retry in {_seconds(retry_after)}."
                ),
                "instance": request.url.path,
                "code": "RATE_LIMIT_UNAVAILABLE",
                "retryable": True,
                "limit": deciding.limit,
                "retry_after": retry_after,
            }
        return {
            "type": f"{self.type_base}rate-limited",
            "title": "Too many requests",
            "status": self.status_code,
            "detail": f"{_describe(deciding)} Retry in {_seconds(retry_after)}.",
            "instance": request.url.path,
            "code": "RATE_LIMITED",
            "retryable": True,
            "limit": deciding.limit,
            "window": deciding.window.name,
            "retry_after": retry_after,
        }

    def _key_problem(self, request: Request) -> dict[str, object]:
        return {
            "type": f"{self.type_base}rate-limit-key-error",
            "title": "Rate limit could not be applied",
            "status": 500,
            "detail": "The rate limits of this route could not be applied to this request.",
            "instance": request.url.path,
            "code": "RATE_LIMIT_KEY_ERROR",
            "retryable": False,
        }

    def _store_problem(self, request: Request) -> dict[str, object]:
        return {
            "type": f"{self.type_base}rate-limit-unavailable",
            "title": "Rate limit unavailable",
            "status": self.unavailable_status_code,
            "detail": "The rate limits of this route cannot be checked right now.",
            "instance": request.url.path,
            "code": "RATE_LIMIT_UNAVAILABLE",
            "retryable": True,
        }


def _describe(decision: RateLimitDecision) -> str:
    window = decision.window
    requests = "1 request" if window.quota == 1 else f"{window.quota} requests"
    named = "" if window.name == decision.limit else f" (window {window.name!r})"
    return f"Rate limit {decision.limit!r} allows {requests} {_per(window.period)}{named}."


def _per(period: int) -> str:
    name = _PERIODS.get(period)
    if name is not None:
        return f"per {name}"
    for size, unit in _UNITS:
        if period % size == 0:
            return f"per {period // size} {unit}"
    return f"per {period} seconds"


def _seconds(value: int) -> str:
    return "1 second" if value == 1 else f"{value} seconds"
