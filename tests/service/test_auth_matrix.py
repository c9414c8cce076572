"""The auth matrix: every route of the seller service x every kind of caller, from one table.

``ROUTES`` lists every route under the service prefix with a valid body and what each
role may do there (``SOCKETS`` the same for WebSocket routes); the tests below generate
one case per route and caller. The app is seeded with two sellers (each with metrics and
an override) and two stored policy versions, so an allowed call reaches its handler and
answers 2xx, and a refused one is told apart by its status and problem code alone (see
docs/auth.md). An allowed call gets a fresh app of its own; the refused ones share one,
which each checks it left unchanged (no audit entry). A route added to the app without a
row fails ``test_every_route_of_the_app_has_an_auth_decision``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import re
import time
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Literal, get_args
from urllib.parse import urlencode

import pytest
from fastapi.routing import APIRoute
from starlette.exceptions import StarletteDeprecationWarning
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocketDisconnect

import tierpolicy
from servicesupport import SECRET, calls
from tierpolicy.service import PREFIX, Settings, create_app, mint_token

with warnings.catch_warnings():
    # Starlette's test client prefers httpx2; the project depends on httpx, which it still drives.
    warnings.filterwarnings(
        "ignore", "Using `httpx` with `starlette.testclient`", StarletteDeprecationWarning
    )
    from starlette.testclient import TestClient, WebSocketTestSession

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator

    import httpx
    from fastapi import FastAPI
    from starlette.routing import BaseRoute

    from tierpolicy.adapters.sqlalchemy import AuditEntry, Database

ROOT = Path(__file__).resolve().parents[2]
OTHER_SECRET = "a-key-the-service-does-not-know-0123456789"  # noqa: S105  a test key
OWN, OTHER, MISSING = "s-own", "s-other", "s-missing"
ATTRIBUTES = {
    "verified": True,
    "country": "DE",
    "joined_at": "2024-03-14T09:30:00Z",
    "categories": ["home", "garden"],
    "kyc_level": 2,
    "business_type": "business",
}
GOLD_METRICS = {
    "orders_60d": 412,
    "revenue_60d": 38750.0,
    "rating": 4.85,
    "ratings_count": 1290,
    "claim_rate": 0.004,
    "late_shipment_rate": 0.021,
    "cancellation_rate": 0.006,
}
# The matrix makes a few calls per seller and address; the shipped limits with every rate
# raised keep a 429 from ever standing in for an authorization answer, while the rate
# limits (and the context they need) stay wired exactly as shipped.
SHIPPED = {path.name: path.read_text() for path in sorted((ROOT / "policies").glob("*.yaml"))}
GENEROUS_LIMITS, RAISED = re.subn(
    r"\b\d+/(\d*(?:s|second|minute|m|hour|h|day|d))\b", r"1000000/\1", SHIPPED["ratelimits.yaml"]
)
assert RAISED, "policies/ratelimits.yaml names no rate to raise"
V1 = {**SHIPPED, "ratelimits.yaml": GENEROUS_LIMITS}
V2 = {**V1, "tiers.yaml": V1["tiers.yaml"] + "\n# v2: the same policies, another version\n"}
V3 = {**V1, "tiers.yaml": V1["tiers.yaml"] + "\n# v3: uploaded by the matrix\n"}
EVALUATE_BODY = {
    **json.loads((ROOT / "examples" / "eval-request.json").read_text()),
    "queries": [
        {"id": "promote", "kind": "feature", "name": "listing.promoted"},
        {"id": "listings", "kind": "limit", "name": "active_listings"},
    ],
}


def in_a_week() -> str:
    """An override expiry a week from now (the store refuses expiries in the past)."""
    return (dt.datetime.now(dt.UTC) + dt.timedelta(days=7)).isoformat()


# ----------------------------------------------------------------------------- the table

Expect = Literal["ok", "forbidden", "hidden"]
"""What a valid token gets: the handler's 2xx, 403 FORBIDDEN, or the 404 a missing seller gets."""
OK: Expect = "ok"
FORBIDDEN: Expect = "forbidden"
HIDDEN: Expect = "hidden"


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Route:
    """One row of the matrix: a route, a valid call of it, and what each valid token gets.

    Callers whose token is missing or refused (anonymous, malformed, expired, wrong
    audience, another key) get 401 on every row. Placeholders are filled from the
    seeded world by ``FILLS``.
    """

    method: str
    path: str
    status: int
    seller_own: Expect
    seller_other: Expect
    admin: Expect
    service: Expect
    body: Callable[[str], object] | None = None
    audit: str | None = None
    """The audit action an allowed call writes, with the caller's ``sub`` as the actor."""


ROUTES: tuple[Route, ...] = (
    Route(
        method="POST", path="/policy/evaluate", status=200,
        seller_own=FORBIDDEN, seller_other=FORBIDDEN, admin=OK, service=OK,
        body=lambda _seller: EVALUATE_BODY,
    ),
    Route(
        method="PUT", path="/sellers/{seller_id}", status=200,
        seller_own=FORBIDDEN, seller_other=FORBIDDEN, admin=OK, service=FORBIDDEN,
        body=lambda _seller: {"tier": "silver", "attributes": ATTRIBUTES}, audit="seller.upsert",
    ),
    Route(
        method="GET", path="/sellers/{seller_id}", status=200,
        seller_own=OK, seller_other=HIDDEN, admin=OK, service=OK,
    ),
    Route(
        method="GET", path="/sellers/{seller_id}/entitlements", status=200,
        seller_own=OK, seller_other=HIDDEN, admin=OK, service=OK,
    ),
    Route(
        method="GET", path="/sellers/{seller_id}/tier", status=200,
        seller_own=OK, seller_other=HIDDEN, admin=OK, service=OK,
    ),
    Route(
        method="POST", path="/sellers/{seller_id}/metrics", status=201,
        seller_own=FORBIDDEN, seller_other=FORBIDDEN, admin=OK, service=OK,
        body=lambda _seller: {"metrics": {**GOLD_METRICS, "orders_60d": 500}}, audit="metrics.record",
    ),
    Route(
        method="POST", path="/tiers/reevaluate", status=200,
        seller_own=FORBIDDEN, seller_other=FORBIDDEN, admin=OK, service=OK,
        body=lambda seller: {"seller_ids": [seller]}, audit="tier.change",
    ),
    Route(
        method="GET", path="/sellers/{seller_id}/overrides", status=200,
        seller_own=OK, seller_other=HIDDEN, admin=OK, service=OK,
    ),
    Route(
        method="POST", path="/sellers/{seller_id}/overrides", status=201,
        seller_own=FORBIDDEN, seller_other=FORBIDDEN, admin=OK, service=FORBIDDEN,
        body=lambda _seller: {
            "kind": "feature", "target": "analytics.export", "value": True,
            "reason": "auth matrix", "expires_at": in_a_week(),
        },
        audit="override.create",
    ),
    Route(
        method="DELETE", path="/sellers/{seller_id}/overrides/{override_id}", status=200,
        seller_own=FORBIDDEN, seller_other=FORBIDDEN, admin=OK, service=FORBIDDEN,
        audit="override.delete",
    ),
    Route(
        method="GET", path="/policy/versions", status=200,
        seller_own=FORBIDDEN, seller_other=FORBIDDEN, admin=OK, service=OK,
    ),
    Route(
        method="GET", path="/policy/versions/{version}", status=200,
        seller_own=FORBIDDEN, seller_other=FORBIDDEN, admin=OK, service=OK,
    ),
    Route(
        method="POST", path="/policy/versions", status=201,
        seller_own=FORBIDDEN, seller_other=FORBIDDEN, admin=OK, service=FORBIDDEN,
        body=lambda _seller: {"files": V3, "activate": False}, audit="policy.add",
    ),
    Route(
        method="POST", path="/policy/versions/{version}/activate", status=200,
        seller_own=FORBIDDEN, seller_other=FORBIDDEN, admin=OK, service=FORBIDDEN,
        audit="policy.activate",
    ),
    Route(
        method="POST", path="/policy/versions/rollback", status=200,
        seller_own=FORBIDDEN, seller_other=FORBIDDEN, admin=OK, service=FORBIDDEN,
        audit="policy.rollback",
    ),
    Route(
        method="GET", path="/errors", status=200,
        seller_own=OK, seller_other=OK, admin=OK, service=OK,
    ),
)  # fmt: skip

PUBLIC = (
    "/health/live",
    "/health/ready",
    "/metrics",
    "/openapi.json",
    "/docs",
    "/docs/oauth2-redirect",
    "/redoc",
)
"""The routes outside the prefix: every one answers without a token."""

Caller = Literal[
    "anonymous",
    "malformed",
    "expired",
    "wrong-audience",
    "other-key",
    "seller-own",
    "seller-other",
    "admin",
    "service",
]
CALLERS: tuple[Caller, ...] = get_args(Caller)
SUBJECTS: dict[Caller, str] = {
    "seller-own": "user-of-s-own",
    "seller-other": "user-of-s-own",
    "admin": "staff-ana",
    "service": "svc-tier-job",
}
# Unusable tokens: the admin role, so only the token's own fault can refuse them.
REFUSED: dict[Caller, tuple[str, str]] = {
    "anonymous": ("AUTHENTICATION_REQUIRED", 'Bearer realm="tierpolicy"'),
    "malformed": ("AUTHENTICATION_REQUIRED", 'Bearer realm="tierpolicy", error="invalid_token"'),
    "expired": ("AUTHENTICATION_EXPIRED", 'Bearer realm="tierpolicy", error="invalid_token"'),
    "wrong-audience": ("AUTHENTICATION_REQUIRED", 'Bearer realm="tierpolicy", error="invalid_token"'),
    "other-key": ("AUTHENTICATION_REQUIRED", 'Bearer realm="tierpolicy", error="invalid_token"'),
}


def expectation(route: Route | Socket, caller: Caller) -> Expect | Literal["unauthenticated"]:
    """What ``caller`` gets on ``route`` according to the table."""
    if caller in REFUSED:
        return "unauthenticated"
    column = caller.replace("-", "_")
    value: Expect = getattr(route, column)
    return value


def admitted_roles(route: Route) -> list[str]:
    """The roles ``route`` admits, by the table, in the order a 403 names them."""
    roles = {"admin": route.admin, "seller": route.seller_own, "service": route.service}
    return sorted(role for role, expect in roles.items() if expect == OK)


def bearer(caller: Caller) -> str | None:
    """The token ``caller`` sends (``None``: no Authorization header)."""
    now = dt.datetime.now(dt.UTC)
    match caller:
        case "anonymous":
            return None
        case "malformed":
            return "not.a.jwt"
        case "expired":
            return mint_token(
                SECRET, role="admin", subject="staff-ana", ttl=60, clock=lambda: now - dt.timedelta(hours=2)
            )
        case "wrong-audience":
            return mint_token(SECRET, role="admin", subject="staff-ana", audience="another-service")
        case "other-key":
            return mint_token(OTHER_SECRET, role="admin", subject="staff-ana")
        case "seller-own" | "seller-other":
            return mint_token(SECRET, role="seller", subject=SUBJECTS[caller], seller_id=OWN)
        case "admin" | "service":
            return mint_token(SECRET, role=caller, subject=SUBJECTS[caller])
    raise AssertionError(caller)  # pragma: no cover  the match is exhaustive


def headers_of(token: str | None) -> dict[str, str]:
    """The Authorization header carrying ``token``, if any."""
    return {} if token is None else {"Authorization": f"Bearer {token}"}


# ----------------------------------------------------------------------------- the seeded world


@dataclasses.dataclass(frozen=True, slots=True)
class World:
    """An app with two sellers, an override each, and two stored versions (the second active)."""

    app: FastAPI
    overrides: dict[str, int]
    versions: tuple[str, str]

    @property
    def database(self) -> Database:
        """The app's store."""
        database: Database = self.app.state.database
        return database

    def path(self, route: Route, seller: str) -> str:
        """``route``'s path with its placeholders filled for ``seller``."""
        return PREFIX + route.path.format_map({name: fill(self, seller) for name, fill in FILLS.items()})


FILLS: dict[str, Callable[[World, str], object]] = {
    "seller_id": lambda _world, seller: seller,
    "override_id": lambda world, seller: world.overrides.get(seller, 1),
    # The older version: activating it changes what is served.
    "version": lambda world, _seller: world.versions[0],
}
"""How each placeholder of a path template is filled: the target seller, its override, a stored version."""


@pytest.fixture(scope="module")
def policy_set() -> tierpolicy.PolicySet:
    """The marketplace policies with generous rate limits (version V1)."""
    return tierpolicy.load_files(V1, root="matrix")


@pytest.fixture(scope="module")
def v2() -> tierpolicy.PolicySet:
    """The second stored version."""
    return tierpolicy.load_files(V2, root="matrix-v2")


def build_world(policy_set: tierpolicy.PolicySet, v2: tierpolicy.PolicySet, database_url: str) -> World:
    """A new app on ``database_url``, seeded without audit entries so each test sees only its own."""
    settings = Settings(
        database_url=database_url,
        jwt_secret=SECRET,  # type: ignore[arg-type]  # pydantic converts it
        redis_url=None,
        migrate_on_startup="always",
        rate_limit_max_requests=1_000_000,
    )
    app = create_app(settings, engine=tierpolicy.Engine(policy_set))
    database: Database = app.state.database
    expires = dt.datetime.now(dt.UTC) + dt.timedelta(days=7)
    overrides = {}
    for seller in (OWN, OTHER):
        database.upsert_seller(seller, tier="bronze", attributes=ATTRIBUTES)
        database.record_metrics(seller, GOLD_METRICS)
        overrides[seller] = database.create_override(
            seller,
            kind="feature",
            target="support.dedicated_manager",
            value=True,
            reason="seeded",
            author="seed",
            expires_at=expires,
        ).id
    for files, compiled in ((V1, policy_set), (V2, v2)):
        database.add_policy_version(
            version=compiled.version, digest=compiled.digest, files=files, author="seed"
        )
        database.activate_policy_version(compiled.version)
    return World(app, overrides, (policy_set.version, v2.version))


@pytest.fixture
def world(policy_set: tierpolicy.PolicySet, v2: tierpolicy.PolicySet) -> Iterator[World]:
    """A fresh seeded app on an in-memory SQLite store of this test's own."""
    world = build_world(policy_set, v2, "sqlite://")
    yield world
    world.database.close()


@pytest.fixture(scope="module")
def shared_world(policy_set: tierpolicy.PolicySet, v2: tierpolicy.PolicySet) -> Iterator[World]:
    """One seeded app for every call the table refuses: a refusal must leave it as it found it."""
    world = build_world(policy_set, v2, "sqlite://")
    yield world
    world.database.close()


def strip(problem: dict[str, object]) -> dict[str, object]:
    """A problem without what differs between any two requests."""
    return {key: value for key, value in problem.items() if key not in ("instance", "request_id")}


def request_of(
    world: World, route: Route, seller: str, headers: dict[str, str]
) -> tuple[str, str, dict[str, object]]:
    """The call of ``route`` for ``seller`` with ``headers``, in the form ``calls`` takes."""
    options: dict[str, object] = {"headers": headers}
    if route.body is not None:
        options["json"] = route.body(seller)
    return (route.method, world.path(route, seller), options)


def assert_problem(response: httpx.Response, status: int, code: str) -> dict[str, object]:
    """``response`` is an ``application/problem+json`` problem with ``status`` and ``code``."""
    assert (response.status_code, response.headers["content-type"]) == (status, "application/problem+json")
    problem: dict[str, object] = response.json()
    assert (problem["status"], problem["code"]) == (status, code)
    return problem


def case_id(route: Route) -> str:
    """A readable test id for ``route``."""
    return f"{route.method} {route.path}"


# ----------------------------------------------------------------------------- the matrix


@pytest.mark.parametrize("caller", CALLERS)
@pytest.mark.parametrize("route", ROUTES, ids=case_id)
def test_each_caller_gets_what_the_table_says(
    request: pytest.FixtureRequest, route: Route, caller: Caller
) -> None:
    """Every route answers every caller exactly as its row says: 2xx, 401, 403 or the missing-seller 404."""
    token = bearer(caller)
    seller = OTHER if caller == "seller-other" else OWN
    expected = expectation(route, caller)
    # An allowed call may change the world; the refused ones share one (checked below to stay unchanged).
    world: World = request.getfixturevalue("world" if expected == OK else "shared_world")
    audited = world.database.list_audit()
    [answer] = calls(world.app, request_of(world, route, seller, headers_of(token)))
    if token is not None:
        assert token not in answer.text
        assert token not in json.dumps(dict(answer.headers))
    if expected == "ok":
        assert answer.status_code == route.status, answer.text
        assert answer.headers["content-type"] == "application/json"
        assert "data" in answer.json()
        if route.audit is not None:
            entries = world.database.list_audit(actor=SUBJECTS[caller], action=route.audit)
            assert [e.request_id for e in entries] == [answer.headers["x-request-id"]]
        else:
            assert world.database.list_audit() == []
        return
    if expected == "unauthenticated":
        code, challenge = REFUSED[caller]
        assert_problem(answer, 401, code)
        assert answer.headers["www-authenticate"].startswith(challenge)
        if caller == "anonymous":
            assert answer.headers["www-authenticate"] == challenge
    elif expected == "forbidden":
        problem = assert_problem(answer, 403, "FORBIDDEN")
        assert answer.headers["www-authenticate"].startswith(
            'Bearer realm="tierpolicy", error="insufficient_scope"'
        )
        assert problem["detail"] == f"this needs the {' or '.join(admitted_roles(route))} role"
    else:
        assert_problem(answer, 404, "SELLER_NOT_FOUND")
        assert "www-authenticate" not in answer.headers
        # What a seller that does not exist looks like to someone allowed to ask.
        [missing] = calls(world.app, request_of(world, route, MISSING, headers_of(bearer("admin"))))
        assert_problem(missing, 404, "SELLER_NOT_FOUND")
        assert strip(answer.json()) == strip(missing.json())
    # Whatever refused the call, it changed nothing an admin would have to account for.
    assert world.database.list_audit() == audited


@pytest.mark.parametrize("route", [r for r in ROUTES if r.body is not None], ids=case_id)
def test_authentication_is_decided_before_the_body_is_validated(world: World, route: Route) -> None:
    """Without a token 401, with a seller token 403, even for a body that would not validate: the role decides first."""
    answer, refused = calls(
        world.app,
        (route.method, world.path(route, OWN), {"json": {"unexpected": [1]}}),
        (
            route.method,
            world.path(route, OWN),
            {"json": {"unexpected": [1]}, "headers": headers_of(bearer("seller-own"))},
        ),
    )
    assert_problem(answer, 401, "AUTHENTICATION_REQUIRED")
    assert route.seller_own == FORBIDDEN  # every route with a body is a write or the evaluate endpoint
    assert_problem(refused, 403, "FORBIDDEN")


# ----------------------------------------------------------------------------- completeness


def served_routes(routes: Iterable[BaseRoute]) -> Iterator[BaseRoute]:
    """Every route of the app, with the routes of included routers flattened out."""
    for route in routes:
        # Recent FastAPI wraps an included router; its routes carry their full path already.
        inner = getattr(route, "original_router", None)
        if inner is not None:
            yield from served_routes(inner.routes)
        else:
            yield route


def test_every_route_of_the_app_has_an_auth_decision(world: World) -> None:
    """Every HTTP and WebSocket route under the prefix is a row of a table, and every row is a route."""
    served: set[tuple[str, str]] = set()
    for route in served_routes(world.app.routes):
        # The template without convertors ({version:policy_version} is {version}).
        path = getattr(route, "path_format", "")
        if not path.startswith(PREFIX):
            continue
        if isinstance(route, APIRoute):
            served |= {(method, path.removeprefix(PREFIX)) for method in route.methods}
        elif isinstance(route, WebSocketRoute):
            served.add(("WEBSOCKET", path.removeprefix(PREFIX)))
        else:  # pragma: no cover  only fails when a new kind of route appears
            pytest.fail(f"{path} is neither an API nor a WebSocket route: give it a row in ROUTES")
    tabled = {(route.method, route.path) for route in ROUTES} | {
        ("WEBSOCKET", socket.path) for socket in SOCKETS
    }
    assert served - tabled == set(), "routes without an auth decision: add them to ROUTES or SOCKETS"
    assert tabled - served == set(), "rows that the app does not serve"
    assert len(tabled) == len(ROUTES) + len(SOCKETS)


def test_every_route_outside_the_prefix_is_public_and_answers_without_a_token(world: World) -> None:
    """Health, metrics and the OpenAPI routes answer 200 without a token; nothing else lives outside the prefix."""
    outside = sorted(
        path
        for route in served_routes(world.app.routes)
        if not (path := getattr(route, "path", "")).startswith(PREFIX)
    )
    assert outside == sorted(PUBLIC)
    answers = calls(world.app, *[("GET", path, {}) for path in PUBLIC])
    assert {path: answer.status_code for path, answer in zip(PUBLIC, answers, strict=True)} == dict.fromkeys(
        PUBLIC, 200
    )


# ----------------------------------------------------------------------------- the audit log

ADMIN_WRITES = [route for route in ROUTES if route.admin == OK and route.audit is not None]


def part(record: Mapping[str, object] | None, *path: str) -> object:
    """``record[path[0]][path[1]]...``, or ``None`` when the record is ``None`` (nothing before or after)."""
    value: object = record
    for key in path:
        if value is None:
            return None
        assert isinstance(value, Mapping)
        value = value[key]
    return value


AUDITED: dict[str, tuple[Callable[[World, AuditEntry], str], tuple[str, ...]]] = {
    "seller.upsert": (lambda _world, _entry: f"seller:{OWN}", ("tier",)),
    "metrics.record": (lambda _world, _entry: f"seller:{OWN}", ("metrics", "orders_60d")),
    "tier.change": (lambda _world, _entry: f"seller:{OWN}", ("tier",)),
    "override.create": (lambda _world, entry: f"override:{part(entry.after, 'id')}", ("target",)),
    "override.delete": (lambda world, _entry: f"override:{world.overrides[OWN]}", ("target",)),
    "policy.add": (lambda _world, entry: f"policy:{part(entry.after, 'version')}", ("version",)),
    "policy.activate": (lambda world, _entry: f"policy:{world.versions[0]}", ("active_version",)),
    "policy.rollback": (lambda world, _entry: f"policy:{world.versions[0]}", ("active_version",)),
}
"""Per audit action: its target, and the path to the part of before and after that tells the change."""


@pytest.mark.parametrize("route", ADMIN_WRITES, ids=case_id)
def test_every_admin_write_is_in_the_audit_log(
    policy_set: tierpolicy.PolicySet, v2: tierpolicy.PolicySet, database_url: str, route: Route
) -> None:
    """An admin's write leaves one audit entry: the token's subject, the action, the request id, before and after."""
    world = build_world(policy_set, v2, database_url)
    older, newer = world.versions
    expected = {
        "seller.upsert": ("bronze", "silver"),
        "metrics.record": (412, 500),
        "tier.change": ("bronze", "gold"),
        "override.create": (None, "analytics.export"),
        "override.delete": ("support.dedicated_manager", None),
        "policy.add": (None, tierpolicy.load_files(V3, root="v3").version),
        "policy.activate": (newer, older),
        "policy.rollback": (newer, older),
    }
    try:
        [answer] = calls(world.app, request_of(world, route, OWN, headers_of(bearer("admin"))))
        assert answer.status_code == route.status, answer.text
        entries = world.database.list_audit()
        assert [(e.actor, e.action) for e in entries] == [("staff-ana", route.audit)]
        [entry] = entries
        assert entry.request_id == answer.headers["x-request-id"]
        target, path = AUDITED[entry.action]
        changed = (part(entry.before, *path), part(entry.after, *path))
        assert (entry.target, changed) == (target(world, entry), expected[entry.action])
    finally:
        world.database.close()


# ----------------------------------------------------------------------------- WebSocket routes


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Socket:
    """One WebSocket row: what each valid token gets when it follows the target seller's events.

    Refused tokens get the 401 of ``REFUSED``; every refusal is an ``error`` frame and close 1008.
    """

    path: str
    seller_own: Expect
    seller_other: Expect
    admin: Expect
    service: Expect


SOCKETS: tuple[Socket, ...] = (
    # A seller asking for another seller's events is refused without a lookup, so a 403
    # says nothing about whether that seller exists.
    Socket(path="/ws", seller_own=OK, seller_other=FORBIDDEN, admin=OK, service=OK),
)


def leave(world: World, connection: WebSocketTestSession) -> None:
    """Close an admitted connection as a client does, and wait until the service has let it go."""
    connection.close(1000)
    # Leaving the test client's context while the endpoint still runs cancels it mid-cleanup.
    deadline = time.monotonic() + 10
    while world.app.state.events.connections and time.monotonic() < deadline:
        time.sleep(0.005)
    assert world.app.state.events.connections == 0


@pytest.mark.parametrize("transport", ["header", "access_token"])
@pytest.mark.parametrize("caller", CALLERS)
@pytest.mark.parametrize("socket", SOCKETS, ids=lambda socket: f"WEBSOCKET {socket.path}")
def test_each_caller_gets_what_the_table_says_on_the_websocket(
    world: World, socket: Socket, caller: Caller, transport: str
) -> None:
    """A WebSocket admits the callers its row admits (they hear pings) and refuses the others with an error frame and 1008."""
    token = bearer(caller)
    params = {"seller_id": OTHER if caller == "seller-other" else OWN}
    headers: dict[str, str] = {}
    if token is not None and transport == "header":
        headers = headers_of(token)
    elif token is not None:
        params["access_token"] = token
    expected = expectation(socket, caller)
    world.app.state.events.keepalive = 0.05  # an admitted connection hears a ping at once
    with (
        TestClient(world.app) as client,
        client.websocket_connect(f"{PREFIX}{socket.path}?{urlencode(params)}", headers=headers) as connection,
    ):
        message = connection.receive_json()
        if expected == OK:
            assert message["type"] == "ping"
            leave(world, connection)
            return
        status, code = {
            "unauthenticated": (401, REFUSED[caller][0] if caller in REFUSED else ""),
            FORBIDDEN: (403, "FORBIDDEN"),
            HIDDEN: (404, "SELLER_NOT_FOUND"),
        }[expected]
        assert (message["type"], message["status"], message["code"]) == ("error", status, code)
        if token is not None:
            assert token not in json.dumps(message)
        with pytest.raises(WebSocketDisconnect) as closed:
            connection.receive_json()
        assert closed.value.code == 1008


def test_a_seller_on_the_websocket_hears_only_its_own_sellers_events(world: World) -> None:
    """A seller's connection without a filter gets its own seller's events and never another seller's."""
    admin = headers_of(bearer("admin"))
    with (
        TestClient(world.app) as client,
        client.websocket_connect(f"{PREFIX}/ws", headers=headers_of(bearer("seller-own"))) as connection,
    ):
        for seller in (OTHER, OWN):
            answer = client.put(f"{PREFIX}/sellers/{seller}", json={"tier": "silver"}, headers=admin)
            assert answer.status_code == 200, answer.text
        event = connection.receive_json()
        leave(world, connection)
    assert (event["type"], event["seller_id"]) == ("seller.updated", OWN)
