"""The typed HTTP client of the seller service: answers, problems as exceptions, sync and async."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest
import uvicorn

import tierpolicy
from servicesupport import app_for, auth, calls, token
from tierpolicy.client import AsyncServiceClient, ServiceClient

if TYPE_CHECKING:
    from collections.abc import Iterator

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = json.loads((ROOT / "examples" / "eval-request.json").read_text())
ATTRIBUTES = {"verified": True, "kyc_level": 2, "joined_at": "2024-03-14T09:30:00Z"}


@pytest.fixture(scope="module")
def service_url() -> Iterator[str]:
    """The service, served by uvicorn in a thread on a free port, with seller s-1 stored."""
    app = app_for(tierpolicy.load(ROOT / "policies"))
    calls(
        app,
        (
            "PUT",
            "/api/marketplace/seller/sellers/s-1",
            {"json": {"tier": "gold", "attributes": ATTRIBUTES}, "headers": auth("admin")},
        ),
    )
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    assert server.started, "uvicorn did not start"
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


def test_evaluate_entitlements_and_tier_return_the_envelopes_data(service_url):
    """The sync client returns the data of each answer, as the service computed it."""
    with ServiceClient(service_url, token=token("service")) as client:
        answer = client.evaluate(EXAMPLE)
        entitlements = client.entitlements("s-1")
        tier = client.tier("s-1")
    assert len(answer["results"]) == 7
    assert answer["results"][0]["decision"]["feature"] == "listing.promoted"
    assert entitlements["tier"] == "gold"
    assert tier["qualification"]["current_tier"] == "gold"


def test_problems_become_the_librarys_exceptions(service_url):
    """401, 403, 404 and 422 problems are raised as typed exceptions carrying the problem."""
    with (
        ServiceClient(service_url) as anonymous,
        pytest.raises(tierpolicy.AuthenticationFailedError) as no_token,
    ):
        anonymous.evaluate(EXAMPLE)
    assert (no_token.value.status, no_token.value.code) == (401, "AUTHENTICATION_REQUIRED")
    assert no_token.value.request_id
    with ServiceClient(service_url, token=token("seller", "u", "s-1")) as seller:
        with pytest.raises(tierpolicy.PermissionDeniedError):
            seller.evaluate(EXAMPLE)
        with pytest.raises(tierpolicy.ProblemNotFoundError) as other:
            seller.tier("s-2")
        assert other.value.code == "SELLER_NOT_FOUND"
        assert isinstance(other.value, LookupError)
    with (
        ServiceClient(service_url, token=token("service")) as service,
        pytest.raises(tierpolicy.ServiceProblemError) as bad,
    ):
        service.evaluate({"context": {}})
    assert (bad.value.status, bad.value.code) == (422, "VALIDATION_FAILED")
    assert bad.value.problem["errors"][0]["location"] == "queries"


def test_an_unreachable_service_is_service_unavailable():
    """A refused connection raises ServiceUnavailableError (also a ConnectionError) from httpx's error."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with (
        ServiceClient(f"http://127.0.0.1:{port}", timeout=2) as client,
        pytest.raises(tierpolicy.ServiceUnavailableError) as caught,
    ):
        client.evaluate(EXAMPLE)
    assert isinstance(caught.value, ConnectionError)
    assert isinstance(caught.value.__cause__, httpx.ConnectError)


def test_the_async_client_speaks_to_the_app_in_process():
    """The asyncio client gives the same answers, here over an in-process ASGI transport."""
    app = app_for(tierpolicy.load(ROOT / "policies"))

    async def run() -> tuple[dict[str, object], int]:
        transport = httpx.ASGITransport(app=app)
        async with AsyncServiceClient(
            "http://service", token=token("service"), transport=transport
        ) as client:
            answer = await client.evaluate(EXAMPLE)
            try:
                await client.entitlements("nobody")
            except tierpolicy.ProblemNotFoundError as exc:
                return answer, exc.status
        return answer, 0

    answer, status = asyncio.run(run())
    assert len(answer["results"]) == 7
    assert status == 404


def test_retry_after_and_odd_answers_are_read_carefully():
    """A 429's Retry-After is kept; a 2xx that is not an envelope, or a body that is not JSON, is a ServiceProblemError."""

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("evaluate"):
            return httpx.Response(
                429,
                json={"status": 429, "code": "RATE_LIMITED", "detail": "slow"},
                headers={"Retry-After": "7"},
            )
        if "entitlements" in request.url.path:
            return httpx.Response(200, json={"unexpected": True})
        return httpx.Response(502, content=b"<html>bad gateway</html>")

    with ServiceClient("http://svc", transport=httpx.MockTransport(handler)) as client:
        with pytest.raises(tierpolicy.RateLimitedError) as limited:
            client.evaluate({})
        assert limited.value.retry_after == 7.0
        with pytest.raises(tierpolicy.ServiceProblemError, match="not a tierpolicy envelope"):
            client.entitlements("s-1")
        with pytest.raises(tierpolicy.ServiceUnavailableError) as gateway:
            client.tier("s-1")
        assert gateway.value.status == 502


def test_bad_arguments_are_refused_before_sending():
    """A URL without a scheme, or an empty seller id, is a ValueError."""
    with pytest.raises(ValueError, match="http:// or https://"):
        ServiceClient("policy.internal:8000")
    with (
        ServiceClient("http://svc", transport=httpx.MockTransport(lambda _: httpx.Response(500))) as client,
        pytest.raises(ValueError, match="seller id"),
    ):
        client.tier("")


def test_seller_ids_are_escaped_in_paths():
    """A seller id with a slash cannot reach another route."""
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.raw_path.decode())
        return httpx.Response(200, json={"data": {}, "meta": {}})

    with ServiceClient("http://svc", transport=httpx.MockTransport(handler)) as client:
        client.tier("a/../b")
    assert seen == ["/api/marketplace/seller/sellers/a%2F..%2Fb/tier"]
