"""The service's own rate limits: the policy set's ``RateLimits`` on every API route.

Every route under ``/api/marketplace/seller`` is checked before its roles are, so that
callers without a valid token are limited too (per address: credential stuffing is
what those limits are for). The context the limits see:

* ``request.role``: ``seller``, ``admin``, ``service``, or ``anonymous`` when the
  request carries no valid token; ``request.principal``: ``<role>:<subject>`` (or
  ``anonymous``); ``request.client_ip`` (behind ``TRUSTED_PROXIES`` only),
  ``request.route`` (the route template) and ``request.method``;
* ``seller.id`` and ``seller.tier`` for seller tokens, the tier as stored (an unknown
  seller gets the lowest tier's rates).

Limits choose the callers they apply to with ``when`` (the shipped set limits seller
tokens per seller and tier, service and admin tokens per principal, and sellers and
anonymous callers per address). A route that no limit of the policy set matches gets
the default: ``RATE_LIMIT_MAX_REQUESTS`` per minute per client address, counted in the
same store under the limit name ``tierpolicy-default``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastapi import Request, Response  # noqa: TC002  FastAPI reads the dependency's annotations at run time

from tierpolicy.adapters.fastapi import (
    RateLimit,
    RateLimitExceeded,
    TrustedProxies,
    client_address,
    route_template,
)
from tierpolicy.engine._loader import load_files
from tierpolicy.engine._ratelimiter import RateLimiter

from ._auth import authenticator_of
from ._problems import ServiceError

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from starlette.requests import HTTPConnection

    from tierpolicy.engine._policyset import PolicySet
    from tierpolicy.engine._ratelimit_store import RateLimitStore
    from tierpolicy.engine._ratelimiter import RateLimitResult

    from ._auth import Principal
    from ._metrics import Metrics

    TierLookup = Callable[[str], Awaitable[str | None]]

DEFAULT_LIMIT = "tierpolicy-default"
"""The name the default per-client limit counts under."""

_DEFAULT_POLICY = """\
apiVersion: tierpolicy/v1
kind: Context
metadata: {{name: service-default-context}}
spec:
  attributes:
    request: {{client_ip: string}}
---
apiVersion: tierpolicy/v1
kind: RateLimits
metadata: {{name: service-default}}
spec:
  limits:
    - name: {name}
      description: RATE_LIMIT_MAX_REQUESTS per client on routes no rate-limit policy names.
      match: {{routes: ["/*"]}}
      key: request.client_ip
      windows: [{{rate: {rate}/minute}}]
      on_store_error: local
"""


def default_limits(per_minute: int) -> PolicySet:
    """The default limit as a policy set: ``per_minute`` requests per minute per client address."""
    return load_files(
        {"default.yaml": _DEFAULT_POLICY.format(name=DEFAULT_LIMIT, rate=per_minute)},
        root="settings:RATE_LIMIT_MAX_REQUESTS",
    )


class ServiceRateLimits:
    """The router dependency applying the service's rate limits (see the module docstring).

    Args:
        limiter: The limiter over the served policy set (it follows reloads).
        store: The store the default limit counts in (the limiter's own).
        per_minute: ``RATE_LIMIT_MAX_REQUESTS``.
        trusted_proxies: The proxies whose forwarding headers are believed.
        tier_of: The stored tier of a seller id (``None`` for an unknown seller, or a
            store that cannot answer: the lowest tier's rates apply, and the route
            reports the store's failure).
        metrics: Where denials are counted.
    """

    def __init__(
        self,
        limiter: RateLimiter,
        *,
        store: RateLimitStore,
        per_minute: int,
        trusted_proxies: TrustedProxies,
        tier_of: TierLookup,
        metrics: Metrics,
    ) -> None:
        self.limiter = limiter
        self.default = RateLimiter(
            default_limits(per_minute),
            store,
            replicas=limiter.replicas,
            retry_interval=limiter.retry_interval,
        )
        self._tier_of = tier_of
        self._metrics = metrics
        self._trusted = trusted_proxies
        self._policy = RateLimit(limiter, context=self.context, trusted_proxies=trusted_proxies)
        self._fallback = RateLimit(self.default, context=self.context, trusted_proxies=trusted_proxies)

    async def __call__(self, request: Request, response: Response) -> None:
        """Check the request against the limits of its route, or the default; a problem if refused.

        Raises:
            RateLimitExceeded: 429 (or 503 for a ``fail_closed`` limit whose store is down).
        """
        route = route_template(request)
        check = self._policy if self.limiter.limits_for(route=route) else self._fallback
        try:
            await check(request, response)
        except RateLimitExceeded as exc:
            self._count_denials(exc.result)
            raise
        # The routes answer with responses of their own (see envelope()), to which
        # FastAPI does not copy the headers dependencies set: envelope() adds these.
        request.state.answer_headers = response.headers  # what RateLimit set from result.headers()

    async def context(self, request: Request) -> dict[str, object]:
        """The caller's part of the rate-limit context: role, principal and, for sellers, the seller."""
        try:
            principal = authenticator_of(request).authenticate(request.headers.getlist("authorization"))
        except ServiceError:
            # The route's own dependency answers the 401; here the caller is only anonymous.
            return await self._facts(None)
        request.state.principal = principal
        return await self._facts(principal)

    async def check_connection(
        self, connection: HTTPConnection, principal: Principal | None
    ) -> RateLimitResult:
        """Check a WebSocket handshake (``principal``: who it authenticated as, ``None`` if refused).

        The limits of the WebSocket's route apply as to any request (method ``GET``), so
        opening connections in a loop is limited like calling routes in one.

        Raises:
            ConditionError: A limit's ``when`` or key could not be computed.
        """
        route = route_template(connection)
        limiter = self.limiter if self.limiter.limits_for(route=route) else self.default
        context = await self._facts(principal)
        context["request"] = {
            **context["request"],  # type: ignore[dict-item]  # _facts always gives a mapping here
            "client_ip": client_address(connection, self._trusted),
            "route": route,
            "method": "GET",
        }
        result = await limiter.acheck(context, route=route)
        self._count_denials(result)
        return result

    def _count_denials(self, result: RateLimitResult) -> None:
        for decision in result.decisions:
            if not decision.allowed:
                self._metrics.rate_limit_denials.labels(
                    limit=decision.limit, fallback=decision.fallback or "none"
                ).inc()

    async def _facts(self, principal: Principal | None) -> dict[str, object]:
        if principal is None:
            return {"request": {"role": "anonymous", "principal": "anonymous"}}
        facts: dict[str, object] = {
            "request": {"role": principal.role, "principal": f"{principal.role}:{principal.subject}"}
        }
        if principal.seller_id is not None:
            seller: dict[str, object] = {"id": principal.seller_id}
            tier = await self._tier_of(principal.seller_id)
            if tier is not None:
                seller["tier"] = tier
            facts["seller"] = seller
        return facts
