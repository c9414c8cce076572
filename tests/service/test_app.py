"""The seller service application: evaluation, envelopes, request ids, problems and health."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

import tierpolicy
from servicesupport import app_for, auth, call
from support import SMALL_SET
from tierpolicy.service import PREFIX, ServiceError, Settings

ROOT = Path(__file__).resolve().parents[2]
POLICIES = ROOT / "policies"
EXAMPLE = ROOT / "examples" / "eval-request.json"


@pytest.fixture(scope="module")
def marketplace() -> tierpolicy.Engine:
    """The shipped marketplace policies."""
    return tierpolicy.load(POLICIES)


def assert_problem(response: httpx.Response, status: int, code: str) -> dict[str, object]:
    """The response is a problem of ``status`` and ``code`` that carries the request id."""
    assert response.status_code == status
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert (problem["status"], problem["code"]) == (status, code)
    assert problem["request_id"] == response.headers["x-request-id"] != ""
    assert {"type", "title", "detail", "instance"} <= set(problem)
    return problem


# --------------------------------------------------------------------------- evaluation


def test_evaluate_answers_exactly_as_tierpolicy_eval(marketplace):
    """The evaluate endpoint's data is byte for byte what `tierpolicy eval` prints for the same request."""
    response = call(
        app_for(marketplace),
        "POST",
        f"{PREFIX}/policy/evaluate",
        headers=auth(),
        content=EXAMPLE.read_bytes(),
    )
    assert response.status_code == 200
    body = response.json()
    cli = subprocess.run(  # noqa: S603  this interpreter, fixed arguments
        [
            sys.executable,
            "-m",
            "tierpolicy.cli",
            "eval",
            "--policies",
            str(POLICIES),
            "--input",
            str(EXAMPLE),
        ],
        capture_output=True,
        check=True,
        text=True,
    )
    assert body["data"] == json.loads(cli.stdout)
    assert body["meta"] == {
        "request_id": response.headers["x-request-id"],
        "policy_version": marketplace.version,
    }


def test_results_keep_request_order_and_per_query_errors(marketplace):
    """A misspelt feature is an error in its own result; the other results are answered."""
    request = {
        "context": {"seller": {"id": "s-1", "tier": "gold"}},
        "queries": [
            {"kind": "feature", "name": "analytics.advnced"},
            {"kind": "limit", "name": "active_listings"},
        ],
    }
    data = call(
        app_for(marketplace), "POST", f"{PREFIX}/policy/evaluate", headers=auth(), json=request
    ).json()["data"]
    assert [r["status"] for r in data["results"]] == ["error", "ok"]
    assert data["results"][0]["error"]["type"] == "UNKNOWN_FEATURE"


def test_an_invalid_request_is_a_validation_problem_naming_where(marketplace):
    """A request without queries is a 422 VALIDATION_FAILED problem whose errors name the member."""
    response = call(
        app_for(marketplace), "POST", f"{PREFIX}/policy/evaluate", headers=auth(), json={"context": {}}
    )
    problem = assert_problem(response, 422, "VALIDATION_FAILED")
    assert problem["errors"][0]["location"] == "queries"
    assert "queries" in str(problem["detail"])


@pytest.mark.parametrize(
    ("body", "where"),
    [
        (b"{bad", "line 1 column 2"),
        (b"\xff\xfe{}", "not UTF-8"),
        (b"", "not JSON"),
        (b"[" * 100_000, "nested too deeply"),
    ],
)
def test_a_body_that_is_not_json_is_a_malformed_request(marketplace, body, where):
    """Bytes that are not JSON get a 400 MALFORMED_REQUEST problem saying where."""
    response = call(app_for(marketplace), "POST", f"{PREFIX}/policy/evaluate", headers=auth(), content=body)
    problem = assert_problem(response, 400, "MALFORMED_REQUEST")
    assert where in str(problem["detail"])


def test_a_body_that_is_not_json_is_malformed_on_every_route(marketplace):
    """Routes whose body FastAPI parses answer broken JSON as the evaluate route does: 400, saying where."""
    response = call(
        app_for(marketplace),
        "PUT",
        f"{PREFIX}/sellers/s-1",
        headers={**auth("admin"), "Content-Type": "application/json"},
        content=b'{"tier": "gold",\n "attributes": {oops}}',
    )
    problem = assert_problem(response, 400, "MALFORMED_REQUEST")
    assert (
        problem["detail"]
        == "the body is not JSON: Expecting property name enclosed in double quotes at line 2 column 17"
    )


def test_a_body_over_the_limit_is_refused_declared_or_streamed(marketplace):
    """Bodies larger than MAX_BODY_BYTES are 413 whether Content-Length says so or not."""
    app = app_for(marketplace, max_body_bytes=1024)
    big = b"[" + b"1," * 2000 + b"1]"
    assert_problem(
        call(app, "POST", f"{PREFIX}/policy/evaluate", headers=auth(), content=big), 413, "PAYLOAD_TOO_LARGE"
    )

    async def chunks():
        for _ in range(10):
            yield b" " * 200

    assert_problem(
        call(app, "POST", f"{PREFIX}/policy/evaluate", headers=auth(), content=chunks()),
        413,
        "PAYLOAD_TOO_LARGE",
    )


def test_every_route_refuses_big_bodies_before_parsing_them(marketplace):
    """Routes whose body FastAPI validates refuse oversized bodies too, even from callers without a token."""
    app = app_for(marketplace, max_body_bytes=1024)
    big = {"tier": "gold", "attributes": {"note": "x" * 5000}}
    for headers in (auth("admin"), {}):
        assert_problem(
            call(app, "PUT", f"{PREFIX}/sellers/s-1", headers=headers, json=big), 413, "PAYLOAD_TOO_LARGE"
        )
    small = call(app, "PUT", f"{PREFIX}/sellers/s-1", headers=auth("admin"), json={"tier": "gold"})
    assert small.status_code == 200


# --------------------------------------------------------------------------- ids and problems


def test_a_well_formed_request_id_is_kept_and_a_bad_one_replaced(marketplace):
    """X-Request-ID from the caller is echoed when well-formed; otherwise the service makes one."""
    app = app_for(marketplace)
    kept = call(app, "GET", "/health/live", headers={"X-Request-ID": "abc-123"})
    assert kept.headers["x-request-id"] == "abc-123"
    replaced = call(app, "GET", "/health/live", headers={"X-Request-ID": "bad id\twith spaces"})
    assert replaced.headers["x-request-id"] != "bad id\twith spaces"
    assert len(replaced.headers["x-request-id"]) == 32


def test_unknown_routes_and_wrong_methods_are_problems(marketplace):
    """404 is NOT_FOUND, 405 is METHOD_NOT_ALLOWED with its Allow header: both from the errors policy."""
    app = app_for(marketplace)
    missing = assert_problem(call(app, "GET", "/nope"), 404, "NOT_FOUND")
    assert missing["type"] == "https://docs.marketplace.example/errors/not-found"
    wrong = call(app, "GET", f"{PREFIX}/policy/evaluate")
    assert_problem(wrong, 405, "METHOD_NOT_ALLOWED")
    assert wrong.headers["allow"] == "POST"


def test_unexpected_errors_are_problems_without_exception_text(marketplace, caplog):
    """An exception in a route is a 500 INTERNAL problem; its text is logged, never sent."""
    app = app_for(marketplace)

    @app.get("/boom")
    async def boom() -> None:
        msg = "secret database password in a message"
        raise RuntimeError(msg)

    response = call(app, "GET", "/boom")
    problem = assert_problem(response, 500, "INTERNAL")
    assert "secret" not in response.text
    assert problem["retryable"] is False
    assert "secret database password" in caplog.text


def test_service_errors_carry_their_code_and_extension_members(marketplace):
    """A ServiceError becomes the problem of its code, with its extra members and headers."""
    app = app_for(marketplace)

    @app.get("/gone-seller")
    async def gone() -> None:
        raise ServiceError(
            "SELLER_NOT_FOUND", "no seller s-9", extra={"seller_id": "s-9"}, headers={"X-Hint": "1"}
        )

    response = call(app, "GET", "/gone-seller")
    problem = assert_problem(response, 404, "SELLER_NOT_FOUND")
    assert (problem["detail"], problem["seller_id"], response.headers["x-hint"]) == (
        "no seller s-9",
        "s-9",
        "1",
    )


def test_a_policy_set_without_errors_still_answers_problems():
    """Without an Errors document the service still answers plain problems."""
    engine = tierpolicy.Engine(tierpolicy.load_files({"p.yaml": SMALL_SET}, root="small"))
    problem = assert_problem(call(app_for(engine), "GET", "/nope"), 404, "NOT_FOUND")
    assert problem["type"] == "about:blank"


# --------------------------------------------------------------------------- health and schema


def test_health_live_and_ready_on_embedded_defaults(marketplace):
    """Live always answers; ready reports the policy version (no Redis to check in memory)."""
    app = app_for(marketplace)
    assert call(app, "GET", "/health/live").json() == {"status": "live"}
    ready = call(app, "GET", "/health/ready")
    assert ready.status_code == 200
    assert ready.json()["checks"] == {
        "policy": {"ok": True, "version": marketplace.version},
        "database": {"ok": True},
    }


def test_ready_fails_when_the_database_is_unreachable(marketplace):
    """A database that does not answer makes readiness 503, naming the database."""
    app = app_for(marketplace, database_url="postgresql://nobody@127.0.0.1:1/none")
    down = call(app, "GET", "/health/ready")
    assert down.status_code == 503
    assert down.json()["checks"]["database"] == {"ok": False, "error": "StoreUnavailableError"}


def test_ready_fails_when_redis_is_down(marketplace, own_redis_server):
    """With REDIS_URL set, readiness checks Redis: 200 while it answers, 503 once it is stopped."""
    app = app_for(marketplace, redis_url=own_redis_server.url)

    async def go() -> tuple[httpx.Response, httpx.Response]:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://service") as client:
            up = await client.get("/health/ready")
            own_redis_server.stop()
            down = await client.get("/health/ready")
        await app.state.limiter.store.aclose()
        return up, down

    up, down = asyncio.run(go())
    assert (up.status_code, up.json()["checks"]["redis"]) == (200, {"ok": True})
    assert down.status_code == 503
    assert down.json()["checks"]["redis"] == {"ok": False, "error": "StoreUnavailableError"}


def test_openapi_documents_the_routes(marketplace):
    """The OpenAPI schema lists the evaluate and health routes."""
    schema = call(app_for(marketplace), "GET", "/openapi.json").json()
    assert {f"{PREFIX}/policy/evaluate", "/health/live", "/health/ready"} <= set(schema["paths"])


def test_settings_come_from_the_environment(monkeypatch):
    """DATABASE_URL, REDIS_URL, POLICY_DIR and friends are read from the environment."""
    monkeypatch.setenv("DATABASE_URL", "postgresql://db/tp")
    monkeypatch.setenv("REDIS_URL", "redis://cache:6379/1")
    monkeypatch.setenv("POLICY_DIR", "/srv/policies")
    monkeypatch.setenv("LOG_LEVEL", "WARNING")
    monkeypatch.setenv("TRUSTED_PROXIES", "10.0.0.0/8, 192.168.1.1")
    settings = Settings()
    assert (settings.database_url, settings.redis_url, settings.policy_dir) == (
        "postgresql://db/tp",
        "redis://cache:6379/1",
        Path("/srv/policies"),
    )
    assert settings.log_level == "warning"
    assert settings.proxies == ["10.0.0.0/8", "192.168.1.1"]


def test_bad_settings_are_rejected_with_the_variable_named(monkeypatch):
    """A malformed setting is a validation error naming it."""
    monkeypatch.setenv("PORT", "eighty")
    with pytest.raises(ValueError, match="port"):
        Settings()


def test_request_validation_errors_list_every_problem(marketplace):
    """FastAPI's own validation failures are VALIDATION_FAILED problems with every location."""
    app = app_for(marketplace)

    @app.get("/typed")
    async def typed(page: int, size: int) -> dict[str, int]:
        return {"page": page, "size": size}

    problem = assert_problem(call(app, "GET", "/typed?page=x"), 422, "VALIDATION_FAILED")
    assert [e["location"] for e in problem["errors"]] == ["query/page", "query/size"]
    assert str(problem["detail"]).startswith("query/page:")


def test_problem_exceptions_are_reclassified_by_the_errors_policy(marketplace):
    """A ProblemException (the rate-limit dependency's) gets the registry's code and keeps its extensions."""
    from tierpolicy.adapters.fastapi import ProblemException  # noqa: PLC0415  only this test

    app = app_for(marketplace)

    @app.get("/limited")
    async def limited() -> None:
        problem = {"type": "urn:x", "title": "t", "status": 429, "detail": "slow down", "limit": "api"}
        raise ProblemException(problem, headers={"Retry-After": "3"})

    response = call(app, "GET", "/limited")
    problem = assert_problem(response, 429, "RATE_LIMITED")
    assert (problem["detail"], problem["limit"], response.headers["retry-after"]) == ("slow down", "api", "3")


def test_the_lifespan_closes_the_stores(marketplace, redis_server):
    """Starting and stopping the application runs its lifespan, which closes the rate-limit store."""
    app = app_for(marketplace, redis_url=redis_server.url)
    store = app.state.limiter.store
    closed: list[str] = []
    original_aclose = store.aclose

    async def aclose() -> None:
        closed.append("async")
        await original_aclose()

    store.aclose = aclose
    store.close = lambda: closed.append("sync")

    async def run() -> None:
        async with app.router.lifespan_context(app):
            await store.aping()

    asyncio.run(run())
    assert closed == ["async", "sync"]


def test_non_http_scopes_pass_the_request_id_middleware_untouched():
    """Lifespan and websocket scopes go through the request-id middleware unchanged."""
    from tierpolicy.service import RequestIdMiddleware  # noqa: PLC0415  only this test

    seen = []

    async def inner(scope, _receive, _send) -> None:
        seen.append(scope)

    asyncio.run(RequestIdMiddleware(inner)({"type": "lifespan"}, None, None))
    assert seen == [{"type": "lifespan"}]


def test_made_request_ids_are_distinct_hex_and_the_maker_is_injectable():
    """Ids the service makes are 32 hex digits, never repeated; a maker passed in is used instead."""
    from tierpolicy.service import RequestIdMiddleware  # noqa: PLC0415  only this test

    async def ok(_scope, _receive, send) -> None:
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    def ids_of(middleware: RequestIdMiddleware, n: int) -> list[str]:
        headers: list[str] = []

        async def send(message) -> None:
            if message["type"] == "http.response.start":
                headers.extend(v.decode() for k, v in message["headers"] if k == b"x-request-id")

        async def go() -> None:
            for _ in range(n):
                await middleware({"type": "http", "headers": []}, None, send)

        asyncio.run(go())
        return headers

    made = ids_of(RequestIdMiddleware(ok), 2000)
    assert len(set(made)) == 2000
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in made)
    assert ids_of(RequestIdMiddleware(ok, new_id=lambda: "fixed"), 2) == ["fixed", "fixed"]


def test_fastapis_opentelemetry_is_off_unless_something_configured_it(monkeypatch):
    """With no OpenTelemetry provider set at startup FastAPI's per-request check is off; a set provider keeps it on."""
    from opentelemetry import trace  # noqa: PLC0415  only this test

    from tierpolicy.service._app import _telemetry_options  # noqa: PLC0415  only this test

    assert _telemetry_options() == {"telemetry": {"tracing": False, "metrics": False, "logs": False}}
    assert app_for()._telemetry["tracing"] is False

    class SdkProvider:
        """Stands for a provider an SDK or opentelemetry-instrument set."""

    monkeypatch.setattr(trace, "get_tracer_provider", SdkProvider)
    assert _telemetry_options() == {}
    assert app_for()._telemetry["tracing"] is True
