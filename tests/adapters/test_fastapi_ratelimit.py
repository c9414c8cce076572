"""The FastAPI rate-limit dependency: headers, 429 problems, tiers, routes, proxies, outages, Redis."""

# No `from __future__ import annotations`: FastAPI resolves endpoint annotations at run time,
# and string annotations naming a local dependency (Depends(rate_limit)) would not resolve.

import asyncio
import logging
import random
from typing import Annotated

import httpx
import pytest
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request, Response
from fastapi.responses import PlainTextResponse

import tierpolicy
from redisserver import TIMEOUTS
from tierpolicy.adapters.fastapi import (
    PROBLEM_MEDIA_TYPE,
    ProblemException,
    RateLimit,
    RateLimitExceeded,
    TrustedProxies,
    install_problem_handler,
    problem_exception_handler,
    route_template,
)
from tierpolicy.adapters.fastapi._ratelimit import _per
from tierpolicy.adapters.redis import RedisRateLimitStore
from tierpolicy.engine._exceptions import StoreError, StoreUnavailableError
from tierpolicy.engine._ratelimit_store import InMemoryRateLimitStore

HEAD = """\
apiVersion: tierpolicy/v1
kind: Context
metadata: {name: ctx}
spec:
  attributes:
    request: {client_ip: string, route: string, method: string, channel: string}
---
apiVersion: tierpolicy/v1
kind: Tiers
metadata: {name: t}
spec:
  tiers: [{name: bronze}, {name: silver}, {name: gold}]
---
apiVersion: tierpolicy/v1
kind: RateLimits
metadata: {name: rl}
spec:
  limits:
"""

PER_ADDRESS = """\
    - name: per-address
      match: {routes: ["/ping"]}
      key: request.client_ip
      windows: [{name: hourly, rate: 3/hour}, {name: burst, rate: 5/minute}]
"""


class FakeClock:
    """A clock that moves only when told to."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        """The current fake time in seconds."""
        return self.now


def policies(body: str) -> tierpolicy.PolicySet:
    """A policy set whose RateLimits document has the limits in ``body``."""
    return tierpolicy.load_files({"rl.yaml": HEAD + body}, root="t")


def limiter(body: str, store=None) -> tierpolicy.RateLimiter:
    """A limiter over ``body`` with a pinned clock (and an in-memory store on it unless given one)."""
    clock = FakeClock()
    return tierpolicy.RateLimiter(
        policies(body), store if store is not None else InMemoryRateLimitStore(clock=clock), clock=clock
    )


def app_with(rate_limit: RateLimit, *paths: str, handler: bool = True) -> FastAPI:
    """An app whose routes all depend on ``rate_limit`` and answer "ok"."""
    app = FastAPI()
    if handler:
        install_problem_handler(app)

    async def ok() -> str:
        return "ok"

    for path in paths:
        app.add_api_route(path, ok, dependencies=[Depends(rate_limit)])
    return app


async def send(app, paths, *, headers=None, peer="203.0.113.7", method="GET") -> list[httpx.Response]:
    """Send one request per path in order, from ``peer``."""
    transport = httpx.ASGITransport(app=app, client=(peer, 4711))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        return [await client.request(method, path, headers=headers) for path in paths]


def get(app, *paths, **options) -> list[httpx.Response]:
    """:func:`send` from sync tests."""
    return asyncio.run(send(app, paths, **options))


# --------------------------------------------------------------------------- allow and deny


def test_allowed_requests_carry_draft_10_headers():
    """An allowed request gets RateLimit-Policy for every window and RateLimit for the deciding one."""
    app = app_with(RateLimit(limiter(PER_ADDRESS)), "/ping")
    first, second = get(app, "/ping", "/ping")
    assert first.status_code == 200
    assert first.headers["RateLimit-Policy"] == '"hourly";q=3;w=3600, "burst";q=5;w=60'
    assert first.headers["RateLimit"] == '"hourly";r=2;t=1200'
    assert second.headers["RateLimit"] == '"hourly";r=1;t=2400'
    assert "Retry-After" not in first.headers


def test_the_request_past_the_limit_gets_a_429_problem():
    """Past the limit: 429, Retry-After, the rate-limit headers and an application/problem+json body."""
    app = app_with(RateLimit(limiter(PER_ADDRESS)), "/ping")
    *allowed, denied = get(app, "/ping", "/ping", "/ping", "/ping")
    assert [r.status_code for r in allowed] == [200, 200, 200]
    assert denied.status_code == 429
    assert denied.headers["content-type"] == PROBLEM_MEDIA_TYPE
    assert denied.headers["Retry-After"] == "1200"
    assert denied.headers["RateLimit"] == '"hourly";r=0;t=3600'
    assert denied.headers["RateLimit-Policy"] == '"hourly";q=3;w=3600, "burst";q=5;w=60'
    assert denied.json() == {
        "type": "urn:tierpolicy:error:rate-limited",
        "title": "Too many requests",
        "status": 429,
        "detail": "Rate limit 'per-address' allows 3 requests per hour (window 'hourly'). Retry in 1200 seconds.",
        "instance": "/ping",
        "code": "RATE_LIMITED",
        "retryable": True,
        "limit": "per-address",
        "window": "hourly",
        "retry_after": 1200,
    }


def test_status_and_problem_type_are_configurable():
    """status_code and type_base change the refusal's status and problem type."""
    body = PER_ADDRESS.replace("3/hour", "1/day")
    rate_limit = RateLimit(limiter(body), status_code=503, type_base="https://errors.example/")
    _, denied = get(app_with(rate_limit, "/ping"), "/ping", "/ping")
    assert denied.status_code == 503
    assert denied.json()["type"] == "https://errors.example/rate-limited"
    assert denied.json()["detail"].startswith("Rate limit 'per-address' allows 1 request per day (window")


def test_without_the_problem_handler_status_and_headers_are_still_right():
    """An app that did not install the handler still answers 429 with Retry-After (FastAPI's JSON shape)."""
    app = app_with(RateLimit(limiter(PER_ADDRESS)), "/ping", handler=False)
    denied = get(app, "/ping", "/ping", "/ping", "/ping")[-1]
    assert denied.status_code == 429
    assert denied.headers["Retry-After"] == "1200"
    assert denied.headers["content-type"] == "application/json"
    assert denied.json()["detail"]["code"] == "RATE_LIMITED"


def test_the_refusal_is_a_rate_limit_exceeded_with_the_result():
    """The raised exception carries the problem and the limiter's result for custom handlers."""
    app = app_with(RateLimit(limiter(PER_ADDRESS)), "/ping", handler=False)
    seen: list[RateLimitExceeded] = []

    async def handler(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RateLimitExceeded)
        seen.append(exc)
        return await problem_exception_handler(request, exc)

    app.add_exception_handler(RateLimitExceeded, handler)
    get(app, "/ping", "/ping", "/ping", "/ping")
    (exc,) = seen
    assert not exc.result.allowed
    assert exc.problem["status"] == exc.status_code == 429
    assert exc.headers is not None
    assert exc.headers["Retry-After"] == "1200"


def test_routes_without_matching_limits_get_no_headers():
    """A route no limit matches passes with no rate-limit headers."""
    app = app_with(RateLimit(limiter(PER_ADDRESS)), "/other")
    (response,) = get(app, "/other")
    assert response.status_code == 200
    assert "RateLimit" not in response.headers


def test_the_result_can_be_injected_into_the_endpoint():
    """Depending on the instance as a parameter hands the endpoint the RateLimitResult."""
    rate_limit = RateLimit(limiter(PER_ADDRESS))
    app = FastAPI()

    @app.get("/ping")
    async def ping(result: Annotated[tierpolicy.RateLimitResult, Depends(rate_limit)]) -> dict[str, object]:
        assert result.deciding is not None
        return {"allowed": result.allowed, "remaining": result.deciding.remaining}

    assert [r.json() for r in get(app, "/ping", "/ping")] == [
        {"allowed": True, "remaining": 2},
        {"allowed": True, "remaining": 1},
    ]


def test_an_endpoint_returning_its_own_response_copies_the_headers_itself():
    """FastAPI drops headers set on the injected Response when the endpoint returns one; result.headers() restores them."""
    rate_limit = RateLimit(limiter(PER_ADDRESS))
    app = FastAPI()

    @app.get("/ping")
    async def ping(result: Annotated[tierpolicy.RateLimitResult, Depends(rate_limit)]) -> PlainTextResponse:
        return PlainTextResponse("ok", headers=result.headers())

    (response,) = get(app, "/ping")
    assert response.headers["RateLimit"] == '"hourly";r=2;t=1200'


def test_one_instance_on_app_and_route_checks_once():
    """FastAPI caches a dependency per request, so the same instance at two levels spends once."""
    rate_limit = RateLimit(limiter(PER_ADDRESS))
    app = FastAPI(dependencies=[Depends(rate_limit)])

    @app.get("/ping", dependencies=[Depends(rate_limit)])
    async def ping() -> str:
        return "ok"

    (response,) = get(app, "/ping")
    assert response.headers["RateLimit"] == '"hourly";r=2;t=1200'


# --------------------------------------------------------------------------- context: tiers, routes


PER_SELLER = """\
    - name: per-seller
      match: {routes: ["/api/*"]}
      key: seller.id
      windows: [{rate: {bronze: 1/hour, gold: 3/hour}}]
"""


def seller_from_headers(request: Request) -> dict[str, object]:
    """The application's authentication, simplified: the seller from test headers."""
    seller_id = request.headers.get("x-seller")
    if seller_id is None:
        return {}
    return {"seller": {"id": seller_id, "tier": request.headers.get("x-tier", "bronze")}}


def test_per_tier_rates_come_from_the_context():
    """The context callable's seller tier chooses the rate: bronze gets 1/hour, silver inherits it, gold 3/hour."""
    app = app_with(RateLimit(limiter(PER_SELLER), context=seller_from_headers), "/api/listings")
    bronze = get(app, "/api/listings", "/api/listings", headers={"x-seller": "s-1", "x-tier": "bronze"})
    silver = get(app, "/api/listings", "/api/listings", headers={"x-seller": "s-2", "x-tier": "silver"})
    gold = get(app, *["/api/listings"] * 4, headers={"x-seller": "s-3", "x-tier": "gold"})
    assert [r.status_code for r in bronze] == [200, 429]
    assert [r.status_code for r in silver] == [200, 429]
    assert [r.status_code for r in gold] == [200, 200, 200, 429]
    assert bronze[0].headers["RateLimit-Policy"] == '"per-seller";q=1;w=3600'
    assert gold[0].headers["RateLimit-Policy"] == '"per-seller";q=3;w=3600'


def test_an_async_context_callable_is_awaited_and_its_request_facts_merged():
    """An async context callable works; its request members join (and override) the adapter's."""
    body = """\
    - name: per-channel
      match: {routes: ["/ping"]}
      key: request.channel + ":" + request.client_ip + ":" + request.method
      windows: [{rate: 1/hour}]
"""

    async def context(request: Request) -> dict[str, object]:
        await asyncio.sleep(0)
        return {"request": {"channel": request.headers["x-channel"]}}

    app = app_with(RateLimit(limiter(body), context=context), "/ping")
    web = get(app, "/ping", "/ping", headers={"x-channel": "web"})
    api = get(app, "/ping", headers={"x-channel": "api"})
    assert [r.status_code for r in web + api] == [200, 429, 200]

    async def spoof(request: Request) -> dict[str, object]:  # noqa: ARG001  a context callable's signature
        return {"request": {"channel": "web", "client_ip": "192.0.2.1"}}

    app = app_with(RateLimit(limiter(body), context=spoof), "/ping")
    assert [r.status_code for r in get(app, "/ping", peer="198.51.100.1") + get(app, "/ping")] == [200, 429]


@pytest.mark.parametrize(
    ("context", "message"),
    [
        (lambda request: ["seller"], "must return a mapping, not list"),  # noqa: ARG005  a context callable's signature
        (lambda request: {"request": "web"}, "'request' must be a mapping, not str"),  # noqa: ARG005  as above
    ],
)
def test_a_context_callable_returning_the_wrong_shape_is_a_programming_error(context, message):
    """A context that is not a mapping raises TypeError (a bug in the app, not a request problem)."""
    app = app_with(RateLimit(limiter(PER_ADDRESS), context=context), "/ping")
    with pytest.raises(TypeError, match=message):
        get(app, "/ping")


def test_the_context_callable_may_refuse_the_request_itself():
    """An HTTPException from the context callable (say 401) is the response; no limit is spent."""

    def authenticate(request: Request) -> dict[str, object]:
        if "x-seller" not in request.headers:
            raise HTTPException(401, "sign in first")
        return seller_from_headers(request)

    app = app_with(RateLimit(limiter(PER_SELLER), context=authenticate), "/api/x")
    responses = get(app, "/api/x") + get(app, "/api/x", headers={"x-seller": "s-1"})
    assert [r.status_code for r in responses] == [401, 200]


def test_a_key_that_cannot_be_computed_is_a_500_problem(caplog):
    """A per-seller limit without a seller in the context: 500 problem+json, logged, never a traceback."""
    app = app_with(RateLimit(limiter(PER_SELLER), context=seller_from_headers), "/api/listings")
    with caplog.at_level(logging.ERROR, logger="tierpolicy.ratelimit"):
        (response,) = get(app, "/api/listings")
    assert response.status_code == 500
    assert response.headers["content-type"] == PROBLEM_MEDIA_TYPE
    assert "Retry-After" not in response.headers
    assert response.json() == {
        "type": "urn:tierpolicy:error:rate-limit-key-error",
        "title": "Rate limit could not be applied",
        "status": 500,
        "detail": "The rate limits of this route could not be applied to this request.",
        "instance": "/api/listings",
        "code": "RATE_LIMIT_KEY_ERROR",
        "retryable": False,
    }
    assert "rate limits of route /api/listings not applied, the key failed" in caplog.text


def test_a_key_falling_back_to_the_address_covers_anonymous_callers():
    """The documented key `has(seller.id) ? seller.id : request.client_ip` limits signed-in and anonymous callers."""
    body = PER_SELLER.replace("key: seller.id", 'key: "has(seller.id) ? seller.id : request.client_ip"')

    def context(request: Request) -> dict[str, object]:
        return seller_from_headers(request) or {"seller": {}}  # has() needs the object, not its field

    app = app_with(RateLimit(limiter(body), context=context), "/api/listings")
    anonymous = get(app, "/api/listings", "/api/listings")
    signed_in = get(app, "/api/listings", headers={"x-seller": "s-1"})
    assert [r.status_code for r in anonymous + signed_in] == [200, 429, 200]


ROUTE = """\
    - name: listings
      match: {routes: ["/sellers/{seller_id}/listings", "/api/v1/shops/{shop}/items/{item_id}", "/mounted/sub/{x}"]}
      key: request.client_ip + " " + request.route
      windows: [{rate: 2/hour}]
"""


def test_the_route_template_is_the_route_whatever_the_ids():
    """Limits match the route template, so /sellers/a and /sellers/b share one counter."""
    app = app_with(RateLimit(limiter(ROUTE)), "/sellers/{seller_id}/listings")
    responses = get(app, "/sellers/a/listings", "/sellers/b/listings", "/sellers/c/listings")
    assert [r.status_code for r in responses] == [200, 200, 429]


def test_router_prefixes_and_mounts_are_part_of_the_template():
    """Included routers' prefixes (with parameters) and mounted sub-apps' paths are in the template."""
    rate_limit = RateLimit(limiter(ROUTE))
    shops = APIRouter(prefix="/shops/{shop}")

    @shops.get("/items/{item_id}", dependencies=[Depends(rate_limit)])
    async def item(shop: str, item_id: str) -> str:
        return shop + item_id

    v1 = APIRouter(prefix="/v1")
    v1.include_router(shops)
    app = FastAPI()
    install_problem_handler(app)
    app.include_router(v1, prefix="/api")
    app.mount("/mounted", app_with(rate_limit, "/sub/{x}"))
    items = get(app, "/api/v1/shops/a/items/1", "/api/v1/shops/b/items/2", "/api/v1/shops/c/items/3")
    mounted = get(app, "/mounted/sub/1", "/mounted/sub/2", "/mounted/sub/3")
    assert [r.status_code for r in items + mounted] == [200, 200, 429, 200, 200, 429]


def test_a_websocket_routes_template_includes_its_router_prefix():
    """A WebSocket route of an included router has its full template (FastAPI leaves its context's path empty)."""
    import warnings  # noqa: PLC0415  only this test

    from fastapi import WebSocket  # noqa: PLC0415  as above
    from starlette.exceptions import StarletteDeprecationWarning  # noqa: PLC0415  as above

    with warnings.catch_warnings():
        # Starlette's test client prefers httpx2; the project depends on httpx, which it still drives.
        warnings.filterwarnings("ignore", "Using `httpx`", StarletteDeprecationWarning)
        from starlette.testclient import TestClient  # noqa: PLC0415  as above

    seen: list[str] = []
    router = APIRouter(prefix="/api/{shop}")

    @router.websocket("/ws")
    async def ws(websocket: WebSocket) -> None:
        seen.append(route_template(websocket))
        await websocket.accept()
        await websocket.close()

    app = FastAPI()
    app.include_router(router)
    with TestClient(app) as client, client.websocket_connect("/api/a/ws"):
        pass
    assert seen == ["/api/{shop}/ws"]


@pytest.mark.parametrize(
    ("scope", "expected"),
    [
        ({}, "/raw/path"),
        ({"route": object()}, "/raw/path"),
        ({"root_path": "/proxy"}, "/raw/path"),
        ({"fastapi": {"effective_route_context": None}}, "/raw/path"),
    ],
)
def test_without_a_matched_route_the_template_is_the_path(scope, expected):
    """A request that matched no route (a dependency run outside routing) uses its path."""
    request = Request({"type": "http", "method": "GET", "path": "/raw/path", "headers": [], **scope})
    assert route_template(request) == expected


def test_a_server_root_path_is_not_part_of_the_template():
    """The prefix a proxy strips (the server's root_path) does not change which limits match."""
    rate_limit = RateLimit(limiter(ROUTE))
    app = app_with(rate_limit, "/sellers/{seller_id}/listings")

    async def run() -> list[int]:
        transport = httpx.ASGITransport(app=app, root_path="/edge")
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            paths = ["/edge/sellers/a/listings", "/edge/sellers/b/listings", "/edge/sellers/c/listings"]
            return [(await client.get(p)).status_code for p in paths]

    assert asyncio.run(run()) == [200, 200, 429]


def test_an_explicit_route_operation_and_cost_are_used():
    """route=, operation= and cost= go to the limiter: two units a request against a 4/hour operation limit."""
    body = """\
    - name: uploads
      match: {operations: ["listing.*"], routes: ["/bulk"]}
      key: request.client_ip
      windows: [{rate: 4/hour}]
"""
    by_operation = RateLimit(limiter(body), route="/not-limited", operation="listing.upload", cost=2)
    by_route = RateLimit(limiter(body), route="/bulk")
    assert [r.status_code for r in get(app_with(by_operation, "/a"), "/a", "/a", "/a")] == [200, 200, 429]
    statuses = [
        r.status_code for r in get(app_with(by_route, "/b/{x}"), "/b/1", "/b/2", "/b/3", "/b/4", "/b/5")
    ]
    assert statuses == [200, 200, 200, 200, 429]


# --------------------------------------------------------------------------- client addresses


def test_spoofed_forwarded_for_from_an_untrusted_client_mints_no_identities():
    """A client sending random X-Forwarded-For values keeps being limited as its own address."""
    rng = random.Random(7)
    rate_limit = RateLimit(limiter(PER_ADDRESS), trusted_proxies=["10.0.0.0/8"])
    app = app_with(rate_limit, "/ping")

    async def run() -> list[int]:
        transport = httpx.ASGITransport(app=app, client=("198.51.100.4", 4711))
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            statuses = []
            for _ in range(6):
                forged = ", ".join(f"{rng.randrange(1, 224)}.{rng.randrange(256)}.0.1" for _ in range(2))
                headers = {"x-forwarded-for": forged, "forwarded": f"for={forged.split(',')[0]}"}
                statuses.append((await client.get("/ping", headers=headers)).status_code)
            return statuses

    assert asyncio.run(run()) == [200, 200, 200, 429, 429, 429]


def test_clients_behind_a_trusted_proxy_chain_are_told_apart_right_to_left():
    """Behind trusted proxies each client has its own counter; what it prepends itself does not matter."""
    rate_limit = RateLimit(limiter(PER_ADDRESS), trusted_proxies=TrustedProxies(["10.0.0.0/8"]))
    app = app_with(rate_limit, "/ping")
    alice = [
        {"x-forwarded-for": f"{forged}, 203.0.113.7, 10.1.1.1"}
        for forged in ("1.1.1.1", "2.2.2.2", "3.3.3.3")
    ]

    async def run() -> list[str]:
        transport = httpx.ASGITransport(app=app, client=("10.0.0.1", 4711))
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            seen = [(await client.get("/ping", headers=h)).headers["RateLimit"] for h in alice]
            bob = await client.get("/ping", headers={"x-forwarded-for": "198.51.100.9, 10.1.1.1"})
            last = await client.get("/ping", headers=alice[0])
            return [*seen, bob.headers["RateLimit"], str(last.status_code)]

    assert asyncio.run(run()) == [
        '"hourly";r=2;t=1200',
        '"hourly";r=1;t=2400',
        '"hourly";r=0;t=3600',
        '"hourly";r=2;t=1200',
        "429",
    ]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"trusted_proxies": ["10.0.0.0/33"]}, "'10.0.0.0/33' is not an IP address"),
        ({"trusted_proxies": ["10.0.0.0/8", "proxy.local"]}, "'proxy.local' is not an IP address"),
        ({"trusted_proxies": ["0.0.0.0/0"]}, "trusts every address"),
        ({"status_code": 200}, "status_code must be an HTTP error status"),
        ({"unavailable_status_code": "503"}, "unavailable_status_code must be an HTTP error status"),
        ({"cost": -1}, "cost must be a whole number"),
        ({"cost": True}, "cost must be a whole number"),
    ],
)
def test_bad_configuration_is_rejected_at_construction(options, message):
    """Bad trusted proxies, statuses or costs fail when the dependency is built, not per request."""
    with pytest.raises(ValueError, match=message):
        RateLimit(limiter(PER_ADDRESS), **options)


def test_the_dependency_describes_itself():
    """The repr names the route, operation and trusted proxies."""
    rate_limit = RateLimit(limiter(PER_ADDRESS), operation="x.y", trusted_proxies=["10.0.0.1"])
    assert repr(rate_limit) == (
        "RateLimit(route=None, operation='x.y', "
        "trusted_proxies=TrustedProxies(['10.0.0.1/32'], header='x-forwarded-for'))"
    )


# --------------------------------------------------------------------------- shadow, async, outages


def test_shadow_limits_count_but_never_refuse():
    """A shadow limit past its rate still lets every request through, without Retry-After."""
    body = PER_ADDRESS.replace("    - name: per-address\n", "    - name: per-address\n      shadow: true\n")
    responses = get(app_with(RateLimit(limiter(body)), "/ping"), *["/ping"] * 5)
    assert [r.status_code for r in responses] == [200] * 5
    assert all("Retry-After" not in r.headers for r in responses)


class GatedStore:
    """A store whose async hits wait until two are in flight; its sync API must never be used."""

    name = "gated://"

    def __init__(self) -> None:
        self.inner = InMemoryRateLimitStore()
        self.in_flight = 0
        self.most_in_flight = 0
        self.both = asyncio.Event()

    def hit_many(self, hits):  # noqa: ARG002  the store interface
        """The blocking API: calling it from the event loop is the bug this test catches."""
        raise AssertionError("the sync store was called from the event loop")

    refund_many = hit_many

    async def ahit_many(self, hits):
        """Wait until another request is in flight too, then hit."""
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        if self.in_flight == 2:
            self.both.set()
        await self.both.wait()
        self.in_flight -= 1
        return self.inner.hit_many(hits)

    async def arefund_many(self, hits):
        """Refund inline."""
        self.inner.refund_many(hits)


def test_the_dependency_awaits_the_store_without_blocking_the_loop():
    """Two requests are inside the store at once: each awaits it instead of blocking the event loop."""
    store = GatedStore()
    app = app_with(RateLimit(tierpolicy.RateLimiter(policies(PER_ADDRESS), store)), "/ping")

    async def run() -> list[int]:
        first, second = send(app, ["/ping"]), send(app, ["/ping"], peer="198.51.100.4")
        # The guard only turns a deadlock (a blocking dependency) into a failure; it times nothing.
        done = await asyncio.wait_for(asyncio.gather(first, second), timeout=60)
        return [r.status_code for responses in done for r in responses]

    assert asyncio.run(run()) == [200, 200]
    assert store.most_in_flight == 2


class DownStore:
    """A store that is always unreachable."""

    name = "down://"

    def hit_many(self, hits):  # noqa: ARG002  the store interface
        """Unreachable."""
        raise StoreUnavailableError("connection refused", store=self.name)

    refund_many = hit_many

    async def ahit_many(self, hits):  # noqa: ARG002  the store interface
        """Unreachable."""
        raise StoreUnavailableError("connection refused", store=self.name)

    arefund_many = ahit_many


MODES = """\
    - name: open
      match: {routes: ["/open"]}
      key: request.client_ip
      windows: [{rate: 1/hour}]
      on_store_error: fail_open
    - name: closed
      match: {routes: ["/closed"]}
      key: request.client_ip
      windows: [{rate: 1/hour}]
      on_store_error: fail_closed
    - name: shadow-closed
      match: {routes: ["/shadow"]}
      key: request.client_ip
      windows: [{rate: 1/hour}]
      on_store_error: fail_closed
      shadow: true
"""


def test_a_store_outage_lets_fail_open_through_and_refuses_fail_closed_with_503():
    """Store down: fail_open allows, fail_closed answers 503 + Retry-After (an outage, not the caller's fault)."""
    app = app_with(RateLimit(limiter(MODES, store=DownStore())), "/open", "/closed", "/shadow")
    opened, closed, shadow = get(app, "/open", "/closed", "/shadow")
    assert opened.status_code == 200
    assert shadow.status_code == 200
    assert closed.status_code == 503
    assert closed.headers["content-type"] == PROBLEM_MEDIA_TYPE
    assert closed.headers["Retry-After"] == "1"
    assert closed.json() == {
        "type": "urn:tierpolicy:error:rate-limit-unavailable",
        "title": "Rate limit unavailable",
        "status": 503,
        "detail": "Rate limit 'closed' cannot be checked right now, so the request was refused. Retry in 1 second.",
        "instance": "/closed",
        "code": "RATE_LIMIT_UNAVAILABLE",
        "retryable": True,
        "limit": "closed",
        "retry_after": 1,
    }


def test_a_store_outage_status_is_configurable():
    """unavailable_status_code=429 makes fail_closed refusals look like any other denial."""
    rate_limit = RateLimit(limiter(MODES, store=DownStore()), unavailable_status_code=429)
    (closed,) = get(app_with(rate_limit, "/closed"), "/closed")
    assert closed.status_code == 429
    assert closed.json()["code"] == "RATE_LIMIT_UNAVAILABLE"


class BrokenLimiter(tierpolicy.RateLimiter):
    """A limiter whose store error escapes (the safety net's case)."""

    async def acheck(self, context, **options):  # noqa: ARG002  RateLimiter.acheck's signature
        """Fail as no limiter should."""
        raise StoreError("boom", store="broken://")


def test_a_store_error_escaping_the_limiter_is_a_503_problem(caplog):
    """Should a store error ever escape the limiter, the answer is a 503 problem with Retry-After."""
    rate_limit = RateLimit(BrokenLimiter(policies(PER_ADDRESS), retry_interval=2.5))
    with caplog.at_level(logging.ERROR, logger="tierpolicy.ratelimit"):
        (response,) = get(app_with(rate_limit, "/ping"), "/ping")
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "3"
    assert response.json()["code"] == "RATE_LIMIT_UNAVAILABLE"
    assert "the store failed: boom (broken://)" in caplog.text


# --------------------------------------------------------------------------- problems


def test_a_problem_needs_an_integer_status():
    """ProblemException refuses a problem whose status is not an int."""
    with pytest.raises(TypeError, match="status must be an int, not '429'"):
        ProblemException({"type": "about:blank", "title": "x", "status": "429", "detail": "x"})


def test_the_problem_handler_refuses_other_exceptions():
    """Registered for the wrong class, the handler says so instead of answering garbage."""
    request = Request({"type": "http", "method": "GET", "path": "/", "headers": []})
    with pytest.raises(TypeError, match="handles ProblemException, not ValueError"):
        asyncio.run(problem_exception_handler(request, ValueError("x")))


@pytest.mark.parametrize(
    ("period", "text"),
    [
        (1, "per second"),
        (60, "per minute"),
        (3600, "per hour"),
        (86400, "per day"),
        (10, "per 10 seconds"),
        (90, "per 90 seconds"),
        (180, "per 3 minutes"),
        (7200, "per 2 hours"),
        (172800, "per 2 days"),
    ],
)
def test_periods_are_described_in_words(period, text):
    """Problem details say a window's period the way a rate is written."""
    assert _per(period) == text


# --------------------------------------------------------------------------- real Redis


@pytest.mark.redis
def test_the_same_route_against_real_redis(redis_server, redis_prefix):
    """With the Redis store, allowed requests carry the headers and the fourth gets the 429 problem."""

    async def run() -> list[httpx.Response]:
        store = RedisRateLimitStore.from_url(redis_server.url, prefix=redis_prefix, **TIMEOUTS)
        try:
            app = app_with(RateLimit(tierpolicy.RateLimiter(policies(PER_ADDRESS), store)), "/ping")
            return await send(app, ["/ping"] * 4)
        finally:
            await store.aclose()

    *allowed, denied = asyncio.run(run())
    assert [r.status_code for r in allowed] == [200, 200, 200]
    assert allowed[0].headers["RateLimit-Policy"] == '"hourly";q=3;w=3600, "burst";q=5;w=60'
    assert allowed[2].headers["RateLimit"].startswith('"hourly";r=0;t=')
    assert denied.status_code == 429
    assert denied.headers["content-type"] == PROBLEM_MEDIA_TYPE
    assert int(denied.headers["Retry-After"]) >= 1
    assert denied.json()["limit"] == "per-address"


@pytest.mark.redis
def test_with_redis_stopped_fail_open_passes_and_fail_closed_refuses(own_redis_server, redis_prefix):
    """Redis down: the fail_open route answers 200, the fail_closed route 503 with Retry-After."""
    own_redis_server.stop()

    async def run() -> list[httpx.Response]:
        store = RedisRateLimitStore.from_url(own_redis_server.url, prefix=redis_prefix, **TIMEOUTS)
        try:
            app = app_with(RateLimit(tierpolicy.RateLimiter(policies(MODES), store)), "/open", "/closed")
            return await send(app, ["/open", "/closed", "/open", "/closed"])
        finally:
            await store.aclose()

    responses = asyncio.run(run())
    assert [r.status_code for r in responses] == [200, 503, 200, 503]
    assert all(r.headers["Retry-After"] == "1" for r in responses[1::2])
    assert responses[1].json()["code"] == "RATE_LIMIT_UNAVAILABLE"
