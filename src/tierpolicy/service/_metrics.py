"""Prometheus metrics of the service, in a registry of its own (no global state).

Every application built by :func:`~tierpolicy.service.create_app` has its own
:class:`Metrics`, so two applications in one process (tests, an embedding) never mix
their numbers. ``GET /metrics`` renders them in the Prometheus text format.

Names (all prefixed ``tierpolicy_``):

* ``http_requests_total{route, method, status}`` and
  ``http_request_duration_seconds{route, method}`` (a histogram), by route template so
  ids in paths never become labels;
* ``decisions_total{kind, outcome}``: every answer of the evaluate endpoint (``kind``
  feature, limit, tier, entitlements, classify, retry; ``outcome`` the decision's
  outcome, ``error`` for a per-query error);
* ``rate_limit_denials_total{limit, fallback}``: requests a rate limit refused;
* ``breaker_state{operation, state}``: 1 for the state each circuit breaker shared in
  Redis is in, read from the breaker store at each scrape (:meth:`Metrics.refresh_breakers`);
  no samples without Redis, where breakers live in the processes that run them;
* ``policy_version_info{version}``: 1 for the active policy version;
* ``policy_reload_failures_total``: policy versions a replica could not load.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any, Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from starlette.routing import Route

from tierpolicy.engine._breaker import BreakerState
from tierpolicy.engine._exceptions import StoreError

from ._problems import flat_routes as _flat

_Metric = Counter | Gauge | Histogram

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Mapping, MutableMapping

    Scope = MutableMapping[str, Any]
    Message = MutableMapping[str, Any]
    Receive = Callable[[], Awaitable[Message]]
    Send = Callable[[Message], Awaitable[None]]
    ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

    from tierpolicy.engine._breaker import BreakerSnapshot

logger = logging.getLogger("tierpolicy.service")

CONTENT_TYPE = CONTENT_TYPE_LATEST
_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
_BREAKER_STATES = tuple(state.value for state in BreakerState)
MAX_BREAKERS = 1000
"""Breakers a scrape reports at most (one read each)."""


class SharedBreakers(Protocol):
    """What :meth:`Metrics.refresh_breakers` reads: a shared breaker store (the Redis one)."""

    async def abreakers(self, limit: int = ...) -> list[str]:
        """The keys of the breakers the store holds."""
        ...

    async def asnapshot(self, key: str, now: float) -> BreakerSnapshot:
        """Breaker ``key`` now."""
        ...


class Metrics:
    """The service's metrics, in their own registry.

    Attributes:
        registry: The Prometheus registry holding every metric below.
    """

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}
        self.requests = Counter(
            "tierpolicy_http_requests_total",
            "HTTP requests answered, by route template, method and status.",
            ("route", "method", "status"),
            registry=self.registry,
        )
        self.latency = Histogram(
            "tierpolicy_http_request_duration_seconds",
            "Time to answer an HTTP request, by route template and method.",
            ("route", "method"),
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.decisions = Counter(
            "tierpolicy_decisions_total",
            "Decisions answered by the evaluate endpoint, by query kind and outcome.",
            ("kind", "outcome"),
            registry=self.registry,
        )
        self.rate_limit_denials = Counter(
            "tierpolicy_rate_limit_denials_total",
            "Requests a rate limit refused, by limit and the failure mode that decided (none: the store).",
            ("limit", "fallback"),
            registry=self.registry,
        )
        self.breaker_state = Gauge(
            "tierpolicy_breaker_state",
            "1 for the state each circuit breaker is in.",
            ("operation", "state"),
            registry=self.registry,
        )
        self.policy_version = Gauge(
            "tierpolicy_policy_version_info",
            "1 for the policy version this replica serves.",
            ("version",),
            registry=self.registry,
        )
        self.reload_failures = Counter(
            "tierpolicy_policy_reload_failures_total",
            "Policy versions this replica could not load (it kept serving the previous one).",
            registry=self.registry,
        )

    def serving(self, version: str) -> None:
        """Record that ``version`` is the active policy version (and no other)."""
        self.policy_version.clear()
        self.policy_version.labels(version=version).set(1)

    def breaker(self, operation: str, state: str) -> None:
        """Record the state a breaker moved to."""
        for known in _BREAKER_STATES:
            self.breaker_state.labels(operation=operation, state=known).set(1 if known == state else 0)

    async def refresh_breakers(self, store: SharedBreakers) -> None:
        """Set ``breaker_state`` to the breakers ``store`` holds now (at most :data:`MAX_BREAKERS`).

        A breaker that is gone (reset, or expired at rest) loses its samples. When the
        store cannot answer, no breaker is reported rather than stale states, and a
        warning is logged.
        """
        try:
            names = await store.abreakers(limit=MAX_BREAKERS)
            now = time.monotonic()
            states = [(name, (await store.asnapshot(name, now)).state.value) for name in names]
        except StoreError as exc:
            logger.warning("breaker states not reported: the breaker store failed: %s", exc)
            states = []
        self.breaker_state.clear()
        for name, state in states:
            self.breaker(name, state)

    def count_answer(self, answer: Mapping[str, object]) -> None:
        """Count every result of an evaluation answer by kind and outcome."""
        results = answer.get("results")
        if not isinstance(results, list):
            return
        for result in results:
            if not isinstance(result, dict):
                continue
            kind = str(result.get("kind", "unknown"))
            decision = result.get("decision")
            if result.get("status") != "ok" or not isinstance(decision, dict):
                outcome = "error"
            else:
                outcome = str(
                    decision.get("outcome")
                    or decision.get("action")
                    or ("retry" if decision.get("retry") else None)
                    or decision.get("reason")
                    or "ok"
                )
            self.child(self.decisions, kind, outcome).inc()

    def child(self, metric: _Metric, *values: str) -> Any:  # noqa: ANN401  prometheus_client's children are untyped
        """``metric.labels(*values)``, remembered: ``labels`` validates and locks on every call."""
        key = (id(metric), values)
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = metric.labels(*values)
        return found

    def render(self) -> bytes:
        """The metrics in the Prometheus text format."""
        return generate_latest(self.registry)


class MetricsMiddleware:
    """Counts and times every HTTP request by the template of the route that answered it."""

    def __init__(
        self, app: ASGIApp, metrics: Metrics, clock: Callable[[], float] = time.perf_counter
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.clock = clock
        self._templates: dict[object, str] | None = None

    def _template_of(self, scope: Scope) -> str:
        """The template of a plain Starlette route (``/docs``, ``/openapi.json``), by its endpoint.

        The router names the route it chose in ``scope["route"]`` only for FastAPI's own
        routes; Starlette's leave their endpoint. Unmatched paths share one label: raw
        paths would make the label set unbounded.
        """
        if self._templates is None:
            router = getattr(scope.get("app"), "router", None)
            self._templates = {
                route.endpoint: route.path_format
                for route in _flat(getattr(router, "routes", ()))
                if isinstance(route, Route)
            }
        return self._templates.get(scope.get("endpoint"), "<unmatched>")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer the request, then record its route, method, status and duration."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = self.clock()
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = scope.get("route")
            template = getattr(route, "path_format", None) or getattr(route, "path", None)
            if template is None:
                template = self._template_of(scope)
            method = str(scope.get("method", ""))
            metrics = self.metrics
            metrics.child(metrics.requests, template, method, str(status)).inc()
            metrics.child(metrics.latency, template, method).observe(self.clock() - started)
