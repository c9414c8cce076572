"""The service's own rate limits: the policy set's RateLimits on every API route, and the default."""

from __future__ import annotations

from pathlib import Path

import pytest

import tierpolicy
from servicesupport import app_for, auth, call, calls
from tierpolicy.service import PREFIX

ROOT = Path(__file__).resolve().parents[2]
LIMITS = """\
apiVersion: tierpolicy/v1
kind: RateLimits
metadata: {name: test-limits}
spec:
  limits:
    - name: per-seller
      match: {routes: ["/api/marketplace/seller/sellers/*"]}
      when: request.role == "seller"
      key: seller.id
      windows: [{rate: {bronze: 2/hour, gold: 4/hour}}]
    - name: per-principal
      match: {routes: ["/api/marketplace/seller/sellers/*", "/api/marketplace/seller/policy/*"]}
      when: request.role == "service" || request.role == "admin"
      key: request.principal
      windows: [{rate: 3/hour}]
    - name: per-address
      match: {routes: ["/api/marketplace/seller/sellers/*", "/api/marketplace/seller/policy/*"]}
      when: request.role == "anonymous"
      key: request.client_ip
      windows: [{rate: 2/hour}]
"""
ADMIN = auth("admin", "ana")


def engine_with(limits: str = LIMITS) -> tierpolicy.Engine:
    """The shipped policy set with its rate limits replaced by ``limits``."""
    files = {p.name: p.read_text() for p in (ROOT / "policies").glob("*.yaml") if p.name != "ratelimits.yaml"}
    return tierpolicy.Engine(tierpolicy.load_files({**files, "ratelimits.yaml": limits}, root="t"))


def statuses(responses: list) -> list[int]:
    """The status of each response."""
    return [r.status_code for r in responses]


def test_a_seller_is_limited_per_seller_at_its_stored_tier():
    """Seller tokens count per seller, at the rate of the tier the store holds (gold 4, bronze 2)."""
    app = app_for(engine_with())
    gold, bronze = auth("seller", "u1", "s-gold"), auth("seller", "u2", "s-bronze")
    seed = [
        ("PUT", f"{PREFIX}/sellers/s-gold", {"json": {"tier": "gold"}, "headers": ADMIN}),
        ("PUT", f"{PREFIX}/sellers/s-bronze", {"json": {"tier": "bronze"}, "headers": ADMIN}),
    ]
    reads = [("GET", f"{PREFIX}/sellers/s-gold", {"headers": gold}) for _ in range(5)]
    reads += [("GET", f"{PREFIX}/sellers/s-bronze", {"headers": bronze}) for _ in range(3)]
    answers = calls(app, *seed, *reads)
    assert statuses(answers[:2]) == [200, 200]
    assert statuses(answers[2:]) == [200, 200, 200, 200, 429, 200, 200, 429]
    denied = answers[6]
    assert denied.headers["content-type"] == "application/problem+json"
    body = denied.json()
    assert (body["code"], body["limit"], body["status"]) == ("RATE_LIMITED", "per-seller", 429)
    assert int(denied.headers["Retry-After"]) > 0
    assert denied.headers["RateLimit"].startswith('"per-seller";r=0;')


def test_an_unknown_seller_gets_the_lowest_tier_rates():
    """A seller token whose seller is not stored counts at the lowest tier's rate (and is then refused as unknown)."""
    app = app_for(engine_with())
    token = auth("seller", "u", "s-ghost")
    answers = calls(app, *[("GET", f"{PREFIX}/sellers/s-ghost", {"headers": token}) for _ in range(3)])
    assert statuses(answers) == [404, 404, 429]


def test_service_and_admin_tokens_count_per_principal():
    """Each service or admin principal has its own counter; a seller's counter is not theirs."""
    app = app_for(engine_with())
    one, two = auth("service", "checkout"), auth("service", "search")
    answers = calls(
        app,
        *[("GET", f"{PREFIX}/policy/versions", {"headers": one}) for _ in range(4)],
        ("GET", f"{PREFIX}/policy/versions", {"headers": two}),
    )
    assert statuses(answers) == [200, 200, 200, 429, 200]
    assert answers[3].json()["limit"] == "per-principal"


def test_callers_without_a_valid_token_are_limited_per_address_before_the_401():
    """Anonymous and bad-token requests are counted per address: past the limit they get 429, not 401."""
    app = app_for(engine_with())
    bad = {"Authorization": "Bearer not-a-token"}
    answers = calls(
        app,
        ("GET", f"{PREFIX}/policy/versions", {}),
        ("GET", f"{PREFIX}/policy/versions", {"headers": bad}),
        ("GET", f"{PREFIX}/policy/versions", {}),
        ("GET", f"{PREFIX}/policy/versions", {"headers": ADMIN}),
    )
    assert statuses(answers) == [401, 401, 429, 200]
    assert answers[2].json()["limit"] == "per-address"
    # A refused caller spent from its limit: its 401 says how much is left, as a 200 would.
    assert answers[0].headers["RateLimit-Policy"] == answers[1].headers["RateLimit-Policy"]
    assert answers[0].headers["RateLimit-Policy"].startswith('"per-address";q=2;')
    assert answers[0].headers["RateLimit"].startswith('"per-address";r=1;')
    assert answers[1].headers["RateLimit"].startswith('"per-address";r=0;')


def test_problems_after_the_limits_carry_their_headers_on_every_route():
    """A 401 on the evaluate route and a 404 on a seller route carry RateLimit headers beside the problem."""
    app = app_for(engine_with())
    unauthenticated, missing = calls(
        app,
        ("POST", f"{PREFIX}/policy/evaluate", {"content": b"{}"}),
        ("GET", f"{PREFIX}/sellers/nobody", {"headers": ADMIN}),
    )
    assert unauthenticated.status_code == 401
    assert unauthenticated.headers["content-type"] == "application/problem+json"
    assert "RateLimit" in unauthenticated.headers
    assert missing.status_code == 404
    assert missing.headers["RateLimit-Policy"].startswith('"per-principal"')


def test_allowed_answers_carry_the_draft_headers():
    """A request a limit admits gets RateLimit-Policy and RateLimit headers naming that limit."""
    response = call(app_for(engine_with()), "GET", f"{PREFIX}/policy/versions", headers=ADMIN)
    assert response.status_code == 200
    assert response.headers["RateLimit-Policy"] == '"per-principal";q=3;w=3600'
    assert response.headers["RateLimit"].startswith('"per-principal";r=2;t=')


def test_routes_no_limit_names_get_the_default_per_client():
    """A route no limit matches is limited to RATE_LIMIT_MAX_REQUESTS per minute per client address."""
    app = app_for(engine_with(), rate_limit_max_requests=2)
    answers = calls(app, *[("GET", f"{PREFIX}/errors", {"headers": ADMIN}) for _ in range(3)])
    assert statuses(answers) == [200, 200, 429]
    assert answers[0].headers["RateLimit-Policy"] == '"tierpolicy-default";q=2;w=60'
    assert answers[2].json()["limit"] == "tierpolicy-default"


def test_health_and_metrics_are_not_limited():
    """Probes and scrapes are never rate limited, whatever the default."""
    app = app_for(engine_with(), rate_limit_max_requests=1)
    answers = calls(
        app, *[("GET", path, {}) for path in ("/health/live", "/health/live", "/metrics", "/metrics")]
    )
    assert statuses(answers) == [200, 200, 200, 200]
    assert "RateLimit" not in answers[0].headers


def test_denials_are_counted_in_the_metrics():
    """Every refusal is counted by limit in tierpolicy_rate_limit_denials_total."""
    app = app_for(engine_with())
    answers = calls(
        app,
        *[("GET", f"{PREFIX}/policy/versions", {"headers": ADMIN}) for _ in range(5)],
        ("GET", "/metrics", {}),
    )
    assert statuses(answers[:5]) == [200, 200, 200, 429, 429]
    assert 'tierpolicy_rate_limit_denials_total{fallback="none",limit="per-principal"} 2.0' in answers[5].text


def test_the_shipped_limits_apply_by_role():
    """With policies/, a service token is limited by service-api and a seller token by seller-api and its address."""
    app = app_for(tierpolicy.load(ROOT / "policies"))
    service, seller = auth("service", "checkout"), auth("seller", "u", "s-1")
    answers = calls(
        app,
        ("PUT", f"{PREFIX}/sellers/s-1", {"json": {"tier": "gold"}, "headers": ADMIN}),
        ("GET", f"{PREFIX}/errors", {"headers": service}),
        ("GET", f"{PREFIX}/sellers/s-1", {"headers": seller}),
    )
    assert statuses(answers) == [200, 200, 200]
    assert answers[1].headers["RateLimit-Policy"] == '"service-api";q=120000;w=60'
    assert answers[2].headers["RateLimit-Policy"] == (
        '"seller-api-minute";q=600;w=60, "seller-api-burst";q=40;w=1, "seller-api-by-address";q=6000;w=60'
    )


@pytest.mark.redis
def test_limits_count_in_redis_when_it_is_configured(redis_server, redis_prefix):
    """With REDIS_URL two applications (replicas) share one counter."""
    one = app_for(engine_with(), redis_url=redis_server.url)
    two = app_for(engine_with(), redis_url=redis_server.url)
    token = auth("admin", f"admin-{redis_prefix}")
    first = calls(one, *[("GET", f"{PREFIX}/policy/versions", {"headers": token}) for _ in range(2)])
    second = calls(two, *[("GET", f"{PREFIX}/policy/versions", {"headers": token}) for _ in range(2)])
    assert statuses(first + second) == [200, 200, 200, 429]


WS_LIMITS = """\
apiVersion: tierpolicy/v1
kind: RateLimits
metadata: {name: ws-limits}
spec:
  limits:
    - name: connections
      match: {routes: ["/api/marketplace/seller/ws"]}
      when: request.role != "anonymous"
      key: request.principal
      windows: [{rate: 2/hour}]
    - name: anonymous-connections
      match: {routes: ["/api/marketplace/seller/ws"]}
      when: request.role == "anonymous"
      key: request.client_ip
      windows: [{rate: 1/hour}]
"""


def test_websocket_handshakes_are_rate_limited_and_refused_with_1013(tmp_path):
    """Opening the event WebSocket counts like a request: past the limit it closes 1013 RATE_LIMITED."""
    from eventsupport import closing, events_of, next_event, served  # noqa: PLC0415  needs uvicorn and websockets

    app = app_for(engine_with(WS_LIMITS), database_url=f"sqlite:///{tmp_path / 'store.db'}")
    app.state.events.keepalive = 0.05
    with served(app) as http:
        for _ in range(2):
            with events_of(http, ADMIN) as ws:
                assert next_event(ws, skip=())["type"] == "ping"
        with events_of(http, ADMIN) as ws:
            code, reason, [frame] = closing(ws)
        assert (code, frame["code"], frame["status"]) == (1013, "RATE_LIMITED", 429)
        assert reason.startswith("RATE_LIMITED: rate limit 'connections'")
        with events_of(http) as ws:  # no token: refused (1008), and counted per address
            assert closing(ws)[0] == 1008
        with events_of(http) as ws:
            assert closing(ws)[0] == 1013
        metrics = http.get("/metrics").text
    assert 'tierpolicy_rate_limit_denials_total{fallback="none",limit="connections"} 1.0' in metrics
