"""The service's Prometheus metrics: own registry, route templates, decisions, versions, breakers."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

import tierpolicy
from servicesupport import app_for, auth, calls
from support import count_breaker
from tierpolicy.adapters.redis import RedisBreakerStore
from tierpolicy.engine._breaker import Permit
from tierpolicy.service import PREFIX
from tierpolicy.service._metrics import Metrics

ROOT = Path(__file__).resolve().parents[2]


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a Prometheus text exposition, by name and sorted labels."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


@pytest.fixture(scope="module")
def engine() -> tierpolicy.Engine:
    """The shipped policies."""
    return tierpolicy.load(ROOT / "policies")


def test_metrics_count_requests_by_route_template_and_decisions_by_outcome(engine):
    """Requests are labelled by route template (unmatched paths share one label); decisions by kind and outcome."""
    app = app_for(engine)
    body = (ROOT / "examples" / "eval-request.json").read_bytes()
    *_, scraped = calls(
        app,
        ("POST", f"{PREFIX}/policy/evaluate", {"content": body, "headers": auth()}),
        ("GET", "/no/such/path/123", {}),
        ("GET", "/no/such/path/456", {}),
        ("GET", "/metrics", {}),
    )
    assert scraped.headers["content-type"].startswith("text/plain")
    found = samples(scraped.text)
    evaluate = (("method", "POST"), ("route", f"{PREFIX}/policy/evaluate"), ("status", "200"))
    assert found["tierpolicy_http_requests_total", evaluate] == 1
    assert (
        found[
            "tierpolicy_http_requests_total", (("method", "GET"), ("route", "<unmatched>"), ("status", "404"))
        ]
        == 2
    )
    assert found["tierpolicy_decisions_total", (("kind", "feature"), ("outcome", "allow"))] == 2
    assert found["tierpolicy_decisions_total", (("kind", "feature"), ("outcome", "error"))] == 1
    assert found["tierpolicy_decisions_total", (("kind", "tier"), ("outcome", "keep"))] == 1
    assert found["tierpolicy_policy_version_info", (("version", engine.version),)] == 1
    assert (
        found[
            "tierpolicy_http_request_duration_seconds_count",
            (("method", "POST"), ("route", f"{PREFIX}/policy/evaluate")),
        ]
        == 1
    )


def test_each_application_has_its_own_registry(engine):
    """Two applications in one process never share counts."""
    first, second = app_for(engine), app_for(engine)
    calls(first, ("GET", "/health/live", {}))
    [scraped] = calls(second, ("GET", "/metrics", {}))
    assert (
        "tierpolicy_http_requests_total",
        (("method", "GET"), ("route", "/health/live"), ("status", "200")),
    ) not in samples(scraped.text)


def test_version_breaker_and_reload_metrics_move_as_told():
    """Serving a new version replaces the old label; a breaker has exactly one state at 1; reload failures count."""
    metrics = Metrics()
    metrics.serving("aaaa")
    metrics.serving("bbbb")
    metrics.breaker("payments.capture", "open")
    metrics.reload_failures.inc()
    metrics.rate_limit_denials.labels(limit="seller-api", fallback="none").inc()
    found = samples(metrics.render().decode())
    assert ("tierpolicy_policy_version_info", (("version", "aaaa"),)) not in found
    assert found["tierpolicy_policy_version_info", (("version", "bbbb"),)] == 1
    states = {labels[1][1]: v for (name, labels), v in found.items() if name == "tierpolicy_breaker_state"}
    assert states == {"closed": 0, "open": 1, "half_open": 0}
    assert found["tierpolicy_policy_reload_failures_total", ()] == 1
    assert found["tierpolicy_rate_limit_denials_total", (("fallback", "none"), ("limit", "seller-api"))] == 1


def test_answers_without_results_or_with_odd_results_are_ignored():
    """Counting tolerates answers that carry no list of results, and results that are not objects."""
    metrics = Metrics()
    metrics.count_answer({"results": None})
    metrics.count_answer({"results": ["x", {"kind": "limit", "status": "ok", "decision": {"value": 3}}]})
    found = samples(metrics.render().decode())
    assert found["tierpolicy_decisions_total", (("kind", "limit"), ("outcome", "ok"))] == 1


def test_the_docs_routes_are_counted_under_their_own_paths(engine):
    """/openapi.json and /docs (plain Starlette routes) get their path as the label, not <unmatched>."""
    *_, scraped = calls(
        app_for(engine),
        ("GET", "/openapi.json", {}),
        ("GET", "/docs", {}),
        ("GET", "/docs/nope", {}),
        ("GET", "/metrics", {}),
    )
    found = samples(scraped.text)
    for path in ("/openapi.json", "/docs"):
        assert (
            found["tierpolicy_http_requests_total", (("method", "GET"), ("route", path), ("status", "200"))]
            == 1
        )
    unmatched = (("method", "GET"), ("route", "<unmatched>"), ("status", "404"))
    assert found["tierpolicy_http_requests_total", unmatched] == 1


OPENS_AFTER_TWO = count_breaker(2, wait_in_open=60.0, max_wait_in_open=60.0)


def breaker_states(text: str) -> dict[str, str]:
    """The state at 1 of each breaker in a scrape."""
    return {
        dict(labels)["operation"]: dict(labels)["state"]
        for (name, labels), value in samples(text).items()
        if name == "tierpolicy_breaker_state" and value == 1
    }


@pytest.mark.redis
def test_breaker_states_are_read_from_the_shared_store_at_each_scrape(engine, own_redis_server):
    """With REDIS_URL, each scrape reports the breakers backends share in Redis; a reset one vanishes; Redis down: none, still 200."""
    app = app_for(engine, redis_url=own_redis_server.url)
    backend = RedisBreakerStore.from_url(own_redis_server.url)  # a backend's store: the default prefix

    async def record(operation: str, outcome: str) -> None:
        now = time.monotonic()
        permit = await backend.aacquire(operation, OPENS_AFTER_TWO, now)
        assert isinstance(permit, Permit)
        await backend.arecord(operation, OPENS_AFTER_TWO, permit, outcome, 0.01, now)

    async def go() -> list[httpx.Response]:
        scrapes = []
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
            async with httpx.AsyncClient(transport=transport, base_url="http://service") as client:
                scrapes.append(await client.get("/metrics"))
                await record("payments.capture", "failure")
                await record("payments.capture", "failure")
                await record("search.listings", "success")
                scrapes.append(await client.get("/metrics"))
                await backend.areset("payments.capture")
                scrapes.append(await client.get("/metrics"))
                await backend.aclose()
                own_redis_server.stop()
                scrapes.append(await client.get("/metrics"))
        return scrapes

    before, opened, after_reset, redis_down = asyncio.run(go())
    backend.close()
    assert breaker_states(before.text) == {}
    assert breaker_states(opened.text) == {"payments.capture": "open", "search.listings": "closed"}
    assert (
        samples(opened.text)[
            "tierpolicy_breaker_state", (("operation", "payments.capture"), ("state", "closed"))
        ]
        == 0
    )
    assert breaker_states(after_reset.text) == {"search.listings": "closed"}
    assert redis_down.status_code == 200
    assert breaker_states(redis_down.text) == {}


def test_without_redis_no_breaker_is_reported(engine):
    """On embedded defaults breakers live in the processes that run them: the metric has no samples."""
    [scraped] = calls(app_for(engine), ("GET", "/metrics", {}))
    assert breaker_states(scraped.text) == {}
    assert "# TYPE tierpolicy_breaker_state gauge" in scraped.text
