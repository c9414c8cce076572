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
import json
import logging
import re
import uuid
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import MutableHeaders

from tierpolicy.adapters import rate_limit_store
from tierpolicy.adapters.redis import PolicyChannel
from tierpolicy.adapters.sqlalchemy import Database
from tierpolicy.engine._engine import Engine, PolicyHolder, load
from tierpolicy.engine._evaluation import RequestIn, evaluate
from tierpolicy.engine._exceptions import InvalidRequestError, StoreError
from tierpolicy.engine._loader import load_files
from tierpolicy.engine._ratelimiter import RateLimiter

from . import _policies, _problems, _sellers
from ._auth import Authenticator, require_roles
from ._metrics import CONTENT_TYPE, Metrics, MetricsMiddleware
from ._problems import PROBLEM_RESPONSES, ServiceError, request_id
from ._settings import Settings

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping

    Scope = MutableMapping[str, Any]
    Message = MutableMapping[str, Any]
    Receive = Callable[[], Awaitable[Message]]
    Send = Callable[[Message], Awaitable[None]]
    ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

logger = logging.getLogger("tierpolicy.service")

PREFIX = "/api/marketplace/seller"
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")


class RequestIdMiddleware:
    """Gives every request an id (the caller's ``X-Request-ID`` if well-formed) and echoes it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Run the request with its id in ``scope["state"]`` and in the response headers."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = next((v.decode("latin-1") for k, v in scope.get("headers", ()) if k == b"x-request-id"), "")
        rid = given if _REQUEST_ID.fullmatch(given) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = rid

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message)["X-Request-ID"] = rid
            await send(message)

        await self.app(scope, receive, send_with_id)


def envelope(request: Request, data: object) -> dict[str, object]:
    """``{"data": data, "meta": {"request_id": ..., "policy_version": ...}}``."""
    engine: Engine = request.app.state.holder.engine
    return {"data": data, "meta": {"request_id": request_id(request), "policy_version": engine.version}}


async def read_json(request: Request, limit: int) -> object:
    """The request body as JSON, refusing bodies over ``limit`` bytes and bodies that are not JSON.

    Raises:
        ServiceError: ``PAYLOAD_TOO_LARGE`` (413) or ``MALFORMED_REQUEST`` (400), naming
            where the JSON breaks.
    """
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise ServiceError("PAYLOAD_TOO_LARGE", f"the body is larger than {limit:,} bytes", status=413)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise ServiceError("PAYLOAD_TOO_LARGE", f"the body is larger than {limit:,} bytes", status=413)
    try:
        # Decoded here: json.loads(bytes) would guess UTF-16 or UTF-32 from a byte order mark.
        return json.loads(body.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ServiceError(
            "MALFORMED_REQUEST", f"the body is not UTF-8 (byte {exc.start})", status=400
        ) from None
    except RecursionError:
        raise ServiceError("MALFORMED_REQUEST", "the JSON body is nested too deeply", status=400) from None
    except json.JSONDecodeError as exc:
        raise ServiceError(
            "MALFORMED_REQUEST",
            f"the body is not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}",
            status=400,
        ) from None


def _inlined(schema: dict[str, Any]) -> dict[str, Any]:
    """A JSON Schema with its ``$defs`` references inlined (OpenAPI cannot see ``#/$defs``)."""
    defs = schema.pop("$defs", {})

    def resolve(node: object) -> object:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                return resolve(defs[ref.removeprefix("#/$defs/")])
            return {key: resolve(value) for key, value in node.items()}
        if isinstance(node, list):
            return [resolve(item) for item in node]
        return node

    resolved = resolve(schema)
    assert isinstance(resolved, dict)  # noqa: S101  a dict in, a dict out
    return resolved


_REQUEST_SCHEMA = _inlined(RequestIn.model_json_schema())
"""The evaluation request's schema, for the OpenAPI document."""


def _policy_router() -> APIRouter:
    router = APIRouter(prefix=PREFIX, tags=["policy"], responses=PROBLEM_RESPONSES)

    @router.post(
        "/policy/evaluate",
        dependencies=[Depends(require_roles("service", "admin"))],
        summary="Evaluate queries against the active policy set",
        description=(
            "The request and answer of `tierpolicy eval` (see docs/evaluation.md): results in "
            "request order, each with its decision or its own error."
        ),
        openapi_extra={
            "requestBody": {"required": True, "content": {"application/json": {"schema": _REQUEST_SCHEMA}}}
        },
    )
    async def evaluate_route(request: Request) -> dict[str, object]:
        payload = await read_json(request, request.app.state.settings.max_body_bytes)
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

    return router


def _health_router() -> APIRouter:
    router = APIRouter(
        tags=["health"], responses={503: {"description": "Not ready: `checks` says what is not."}}
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
        return Response(request.app.state.metrics.render(), media_type=CONTENT_TYPE)

    @router.get("/health/live", summary="The process is up")
    async def live() -> dict[str, str]:
        return {"status": "live"}

    @router.get("/health/ready", summary="Policies are loaded and every store answers")
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


def create_app(settings: Settings | None = None, *, engine: Engine | None = None) -> FastAPI:
    """Build the seller service.

    Args:
        settings: The settings (default: read from the environment).
        engine: Serve this engine instead of loading ``settings.policy_dir`` (tests, embedding).

    Raises:
        PolicyLoadError: The policy directory does not load (the message lists every problem).
    """
    settings = settings or Settings()
    database = Database.from_url(settings.database_url)
    if settings.migrate_on_startup == "always" or (
        settings.migrate_on_startup == "auto" and settings.database_url.startswith("sqlite")
    ):
        database.migrate()
    if engine is None:
        engine = _initial_engine(settings, database)
    holder = PolicyHolder(engine)
    store = rate_limit_store(settings.redis_url or "memory://")
    limiter = RateLimiter(holder, store)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        logger.info("serving policy version %s", holder.engine.version)
        channel = app.state.channel
        subscription = None
        if channel is not None:
            # Every replica follows activations made anywhere: the database is the truth,
            # the channel only says when to look.
            subscription = channel.subscribe(
                lambda _version: app.state.reloader.reload(), known=holder.engine.version
            )
        yield
        if subscription is not None:
            subscription.close()
            channel.close()
        await app.state.limiter.store.aclose()
        app.state.limiter.store.close()
        app.state.database.close()

    app = FastAPI(
        title="tierpolicy seller service",
        version="1",
        description="Policy evaluation and the seller API of the marketplace. Every error is application/problem+json.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.database = database
    app.state.authenticator = Authenticator.from_settings(settings)
    app.state.channel = PolicyChannel.from_url(settings.redis_url) if settings.redis_url else None
    app.state.holder = holder
    app.state.limiter = limiter
    app.state.metrics = metrics = Metrics()
    metrics.serving(holder.engine.version)
    app.state.reloader = _policies.Reloader(holder, database, metrics.serving, metrics.reload_failures.inc)
    _problems.install(app)
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    app.add_middleware(RequestIdMiddleware)
    app.include_router(_policy_router())
    app.include_router(_sellers.router())
    app.include_router(_policies.router())
    app.include_router(_health_router())
    return app


def _initial_engine(settings: Settings, database: Database) -> Engine:
    """The active policy version of the store, or the policy directory when there is none."""
    active = database.active_policy_version()
    if active is None:
        return load(settings.policy_dir)
    return Engine(load_files(dict(active.files), root=f"store:{active.version}"))
