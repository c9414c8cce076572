"""The seller service: a FastAPI application over the engine.

:func:`create_app` builds it from :class:`Settings`. At startup it loads the policy
set into a :class:`~tierpolicy.PolicyHolder` (swapped atomically on reload) and builds
the rate limiter over the configured store. Routes live under
``/api/marketplace/seller``; health under ``/health``. Successful answers are
enveloped as ``{"data": ..., "meta": {"request_id": ..., "policy_version": ...}}``;
errors are problems (:mod:`._problems`).
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import os
import random
import re
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException as StarletteHTTPException

from tierpolicy.adapters import rate_limit_store
from tierpolicy.adapters.fastapi import TrustedProxies
from tierpolicy.adapters.redis import EventChannel, PolicyChannel, RedisBreakerStore
from tierpolicy.adapters.sqlalchemy import Database
from tierpolicy.engine._engine import Engine, PolicyHolder, load
from tierpolicy.engine._exceptions import StoreError
from tierpolicy.engine._loader import load_files
from tierpolicy.engine._ratelimiter import RateLimiter

from . import _events, _policies, _problems, _responses, _sellers
from ._auth import Authenticator
from ._cache import SellerCache
from ._evaluate import EvaluateEndpoint, EvaluateLane
from ._events import EventBus
from ._limits import ServiceRateLimits
from ._metrics import CONTENT_TYPE, Metrics, MetricsMiddleware
from ._problems import PROBLEM_RESPONSES
from ._sentry import init_sentry
from ._settings import Settings

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
    from pathlib import Path

    Scope = MutableMapping[str, Any]
    Message = MutableMapping[str, Any]
    Receive = Callable[[], Awaitable[Message]]
    Send = Callable[[Message], Awaitable[None]]
    ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

logger = logging.getLogger("tierpolicy.service")

PREFIX = "/api/marketplace/seller"
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")


def _random_ids() -> Callable[[], str]:
    """Request ids: 128 random bits as 32 hex digits, from a generator seeded by the OS once.

    Ids must be unique, not unguessable (they are echoed to the caller), and
    ``uuid.uuid4`` asks the OS for random bytes on every request, a system call that cost
    3 % of the evaluate endpoint's CPU.
    """
    bits = random.Random(os.urandom(32)).getrandbits  # noqa: S311  unique, not secret
    return lambda: f"{bits(128):032x}"


class RequestIdMiddleware:
    """Gives every request an id (the caller's ``X-Request-ID`` if well-formed) and echoes it.

    Args:
        app: The application.
        new_id: Makes the id of a request that brings none (default: 32 random hex digits).
    """

    def __init__(self, app: ASGIApp, new_id: Callable[[], str] | None = None) -> None:
        self.app = app
        self.new_id = new_id or _random_ids()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Run the request with its id in ``scope["state"]`` and in the response headers."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = next((v.decode("latin-1") for k, v in scope.get("headers", ()) if k == b"x-request-id"), "")
        rid = given if _REQUEST_ID.fullmatch(given) else self.new_id()
        scope.setdefault("state", {})["request_id"] = rid

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message)["X-Request-ID"] = rid
            await send(message)

        await self.app(scope, receive, send_with_id)


class BodyLimitMiddleware:
    """Refuses request bodies over ``limit`` bytes on every route, declared or streamed.

    The refusal is raised from ``receive`` as a 413 ``HTTPException``, so it reaches the
    problem handlers and a route that never reads its body is not affected. FastAPI
    parses a route's JSON body before its dependencies run, so without this an
    unauthenticated caller could make the service parse any size of body.
    """

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Run the request with a ``receive`` that counts the body."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        too_large = f"the body is larger than {self.limit:,} bytes"
        declared = next((v for k, v in scope.get("headers", ()) if k == b"content-length"), b"")
        if declared.isdigit() and int(declared) > self.limit:

            async def refuse() -> Message:
                raise StarletteHTTPException(413, too_large)

            await self.app(scope, refuse, send)
            return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise StarletteHTTPException(413, too_large)
            return message

        await self.app(scope, counted, send)


def _health_router() -> APIRouter:
    router = APIRouter(
        tags=["health"],
        # Only /health/ready answers 503: it declares that itself.
        responses={500: PROBLEM_RESPONSES[500]},
    )

    @router.get(
        "/metrics",
        summary="Prometheus metrics",
        response_class=Response,
        responses={
            200: {"content": {CONTENT_TYPE: {"schema": {"type": "string"}}}, "description": "The metrics."}
        },
    )
    async def metrics(request: Request) -> Response:
        state = request.app.state
        if state.breakers is not None:
            await state.metrics.refresh_breakers(state.breakers)
        return Response(state.metrics.render(), media_type=CONTENT_TYPE)

    @router.get(
        "/health/live",
        summary="The process is up",
        response_model=None,
        responses=_responses.success(_responses.LIVE, "The process runs."),
    )
    async def live() -> dict[str, str]:
        return {"status": "live"}

    @router.get(
        "/health/ready",
        summary="Policies are loaded and every store answers",
        responses={
            **_responses.success(
                _responses.READY, "Ready: the policy set is loaded and every store answers."
            ),
            503: {"model": _responses.NOT_READY, "description": "Not ready: `checks` says what is not."},
        },
    )
    async def ready(request: Request) -> JSONResponse:
        checks: dict[str, dict[str, object]] = {}
        holder: PolicyHolder = request.app.state.holder
        checks["policy"] = {"ok": True, "version": holder.engine.version}
        failed = request.app.state.reloader.failed
        if failed is not None:
            # Still serving (so still ready), but the version activated did not load here.
            checks["policy"]["reload_failed"] = failed
        database: Database = request.app.state.database
        try:
            await run_in_threadpool(database.ping)
        except StoreError as exc:
            checks["database"] = {"ok": False, "error": type(exc).__name__}
        else:
            checks["database"] = {"ok": True}
        limiter: RateLimiter = request.app.state.limiter
        store = limiter.store
        ping = getattr(store, "aping", None)
        if ping is not None:
            try:
                await ping()
            except StoreError as exc:
                checks["redis"] = {"ok": False, "error": type(exc).__name__}
            else:
                checks["redis"] = {"ok": True}
        ok = all(bool(c["ok"]) for c in checks.values())
        return JSONResponse(
            {"status": "ready" if ok else "not ready", "checks": checks}, status_code=200 if ok else 503
        )

    return router


def create_app(
    settings: Settings | None = None,
    *,
    engine: Engine | None = None,
    load_policies: Callable[[Path], Engine] = load,
) -> FastAPI:
    """Build the seller service.

    At startup it serves the store's active policy version, or, when none was ever
    activated, the policy directory.

    Args:
        settings: The settings (default: read from the environment).
        engine: Serve this engine instead (tests, embedding).
        load_policies: Loads the policy directory when the store has no active version
            (``tierpolicy serve`` passes one that prints every diagnostic).

    Raises:
        PolicyLoadError: The policy directory does not load (the message lists every problem).
    """
    settings = settings or Settings()
    init_sentry(settings)
    database = Database.from_url(settings.database_url)
    if settings.migrate_on_startup == "always" or (
        settings.migrate_on_startup == "auto" and settings.database_url.startswith("sqlite")
    ):
        database.migrate()
    if engine is None:
        engine = _initial_engine(settings, database, load_policies)
    holder = PolicyHolder(engine)
    store = rate_limit_store(settings.redis_url or "memory://")
    limiter = RateLimiter(holder, store)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        logger.info("serving policy version %s", holder.engine.version)
        await app.state.events.start()
        channel = app.state.channel
        subscription = None
        if channel is not None:
            # Every replica follows activations made anywhere: the database is the truth,
            # the channel only says when to look.
            subscription = channel.subscribe(
                lambda _version: app.state.reloader.reload(), known=holder.engine.version
            )
        yield
        await app.state.events.stop()  # closes the WebSocket connections (1001)
        if subscription is not None:
            subscription.close()
            channel.close()
        await app.state.limiter.store.aclose()
        app.state.limiter.store.close()
        if app.state.breakers is not None:
            await app.state.breakers.aclose()
            app.state.breakers.close()
        app.state.database.close()

    app = FastAPI(
        title="tierpolicy seller service",
        version="1",
        description="Policy evaluation and the seller API of the marketplace. Every error is application/problem+json.",
        lifespan=lifespan,
        **_telemetry_options(),
    )
    app.state.settings = settings
    app.state.database = database
    app.state.authenticator = Authenticator.from_settings(settings)
    app.state.channel = PolicyChannel.from_url(settings.redis_url) if settings.redis_url else None
    # The breakers every backend shares through Redis, whose states /metrics reports.
    app.state.breakers = RedisBreakerStore.from_url(settings.redis_url) if settings.redis_url else None
    app.state.holder = holder
    app.state.limiter = limiter
    app.state.metrics = metrics = Metrics()
    metrics.serving(holder.engine.version)
    app.state.events = events = EventBus(
        EventChannel.from_url(settings.redis_url) if settings.redis_url else None,
        policy_version=holder.engine.version,
    )
    app.state.cache = cache = SellerCache(database, ttl=settings.seller_cache_ttl)
    events.add_listener(cache.apply)

    def serving(version: str) -> None:
        metrics.serving(version)
        events.policy_served(version)  # this replica's clients hear what it now serves

    app.state.reloader = _policies.Reloader(holder, database, serving, metrics.reload_failures.inc)
    _problems.install(app)
    limits = ServiceRateLimits(
        limiter,
        store=store,
        per_minute=settings.rate_limit_max_requests,
        trusted_proxies=TrustedProxies(settings.proxies),
        tier_of=cache.tier_of,
        metrics=metrics,
    )
    app.state.rate_limits = limits
    evaluate = EvaluateEndpoint(limits)
    evaluate_router = evaluate.router(PREFIX)
    # Innermost, so requests it answers are still counted, bounded and given an id.
    app.add_middleware(
        EvaluateLane,
        endpoint=evaluate,
        route=evaluate_router.routes[0],
        exception_handlers=app.exception_handlers,
    )
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    app.add_middleware(BodyLimitMiddleware, limit=settings.max_body_bytes)
    app.add_middleware(RequestIdMiddleware)
    limited = [Depends(limits)]
    app.include_router(evaluate_router)  # the endpoint applies the limits itself
    app.include_router(_sellers.router(), dependencies=limited)
    app.include_router(_policies.router(), dependencies=limited)
    app.include_router(_health_router())
    app.include_router(_events.router())
    return app


# OpenTelemetry's global providers before anything configures them (what FastAPI's own check tests).
_UNSET_PROVIDERS = frozenset(
    {
        ("opentelemetry.trace", "ProxyTracerProvider"),
        ("opentelemetry.metrics._internal", "_ProxyMeterProvider"),
        ("opentelemetry._logs._internal", "ProxyLoggerProvider"),
    }
)


def _telemetry_options() -> dict[str, Any]:
    """FastAPI's native OpenTelemetry switched off when nothing configured OpenTelemetry at startup.

    Recent FastAPI asks OpenTelemetry on every request whether a provider has been set
    since (5 % of the evaluate route's CPU in the load benchmark). A provider is set
    before the application is built by the SDK's setup code or ``opentelemetry-instrument``;
    with one set, or with a FastAPI without native telemetry, nothing changes.
    """
    if "telemetry" not in inspect.signature(FastAPI.__init__).parameters:
        return {}
    try:
        from opentelemetry import _logs, metrics, trace  # noqa: PLC0415  FastAPI's own dependency
    except ImportError:  # pragma: no cover - FastAPI with telemetry requires it
        return {}
    providers = (trace.get_tracer_provider(), metrics.get_meter_provider(), _logs.get_logger_provider())
    if any((type(p).__module__, type(p).__name__) not in _UNSET_PROVIDERS for p in providers):
        return {}
    return {"telemetry": {"tracing": False, "metrics": False, "logs": False}}


def _initial_engine(
    settings: Settings, database: Database, load_policies: Callable[[Path], Engine]
) -> Engine:
    """The active policy version of the store, or the policy directory when there is none."""
    active = database.active_policy_version()
    if active is None:
        return load_policies(settings.policy_dir)
    if settings.policy_dir.exists():
        # Someone who edited the directory and restarted would otherwise wonder why
        # nothing changed: the store is the truth once a version was activated.
        logger.warning(
            "serving the store's active policy version %s, not %s (a directory is served only "
            "while the store has no active version: upload and activate it to serve it)",
            active.version,
            settings.policy_dir,
        )
    return Engine(load_files(dict(active.files), root=f"store:{active.version}"))
