"""The evaluate endpoint and the lane that answers it ahead of FastAPI's router."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
import pytest
from starlette._utils import get_route_path

import tierpolicy
from servicesupport import app_for, auth, call, calls
from tierpolicy.service import PREFIX
from tierpolicy.service._evaluate import EvaluateLane, _route_path

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = (ROOT / "examples" / "eval-request.json").read_bytes()
EVALUATE = f"{PREFIX}/policy/evaluate"


@pytest.fixture(scope="module")
def marketplace() -> tierpolicy.Engine:
    """The shipped marketplace policies."""
    return tierpolicy.load(ROOT / "policies")


def without_lane(app):  # type: ignore[no-untyped-def]
    """``app`` with the lane taken out, so the router answers the evaluate route (before any request)."""
    app.user_middleware = [m for m in app.user_middleware if m.cls is not EvaluateLane]
    return app


REQUESTS = {
    "ok": {"content": EXAMPLE, "headers": auth()},
    "as admin": {"content": EXAMPLE, "headers": auth("admin")},
    "no token": {"content": EXAMPLE, "headers": {}},
    "bad token": {"content": EXAMPLE, "headers": {"Authorization": "Bearer x.y.z"}},
    "seller token": {"content": EXAMPLE, "headers": auth("seller", seller_id="s-1")},
    "not JSON": {"content": b'{"queries": [}', "headers": auth()},
    "NaN": {"content": b'{"queries": [], "context": {"x": NaN}}', "headers": auth()},
    "not a request": {"content": b'{"queries": 3}', "headers": auth()},
    "bad timestamp": {"content": b'{"queries": [], "context": {}, "now": "yesterday"}', "headers": auth()},
    "too large": {"content": b" " * 2_000_000, "headers": auth()},
}


@pytest.mark.parametrize("name", list(REQUESTS))
def test_the_lane_answers_exactly_as_the_router_would(marketplace, name):
    """Status, body and headers are the same with the lane as through FastAPI's router and dependencies."""
    request = REQUESTS[name]
    headers = {**request["headers"], "X-Request-ID": "same-id", "Content-Type": "application/json"}
    answers = [
        call(app, "POST", EVALUATE, content=request["content"], headers=headers)
        for app in (app_for(marketplace), without_lane(app_for(marketplace)))
    ]
    lane, routed = answers
    assert lane.status_code == routed.status_code
    assert lane.content == routed.content
    skip = {"date", "ratelimit"}  # the time, and the seconds left in the window, may move on
    assert {k: v for k, v in lane.headers.items() if k not in skip} == {
        k: v for k, v in routed.headers.items() if k not in skip
    }
    assert ("ratelimit" in lane.headers) == ("ratelimit" in routed.headers)


def test_an_answer_has_one_content_length_and_it_is_the_bodys(marketplace):
    """The rate limits' headers reach the answer without a stray Content-Length (servers refuse a mismatch)."""
    response = call(app_for(marketplace), "POST", EVALUATE, content=EXAMPLE, headers=auth())
    assert response.status_code == 200
    assert response.headers.get_list("content-length") == [str(len(response.content))]
    assert response.headers["ratelimit-policy"].startswith('"service-api"')
    assert response.headers["ratelimit"].startswith('"service-api";r=')


def test_the_lane_takes_only_post_on_the_exact_path(marketplace):
    """Other methods and a trailing slash reach the router: 405 with Allow, and a redirect."""
    app = app_for(marketplace)
    wrong_method, slash = calls(
        app,
        ("GET", EVALUATE, {"headers": auth()}),
        ("POST", f"{EVALUATE}/", {"content": EXAMPLE, "headers": auth()}),
    )
    assert wrong_method.status_code == 405
    assert wrong_method.headers["allow"] == "POST"
    assert slash.status_code == 307
    assert slash.headers["location"].endswith(EVALUATE)


def test_the_lane_serves_under_a_root_path(marketplace):
    """Behind a proxy that mounts the service under a prefix, the lane still answers (and counts the route's template)."""
    app = app_for(marketplace)

    async def go() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app, root_path="/proxy")
        async with httpx.AsyncClient(transport=transport, base_url="http://service") as client:
            return [
                await client.post(f"/proxy{EVALUATE}", content=EXAMPLE, headers=auth()),
                await client.get("/proxy/metrics"),
            ]

    answer, scraped = asyncio.run(go())
    assert answer.status_code == 200
    assert len(answer.json()["data"]["results"]) == len(json.loads(EXAMPLE)["queries"])
    assert f'route="{EVALUATE}",status="200"' in scraped.text


@pytest.mark.parametrize(
    ("path", "root_path"),
    [
        ("/api/x", ""),
        ("/proxy/api/x", "/proxy"),
        ("/proxy", "/proxy"),
        ("/proxyapi/x", "/proxy"),
        ("/other/api/x", "/proxy"),
    ],
)
def test_route_path_is_starlettes(path, root_path):
    """The lane matches the path the router matches (Starlette's rule for root_path)."""
    scope = {"path": path, "root_path": root_path}
    assert _route_path(scope) == get_route_path(scope)


def test_an_unexpected_error_is_a_500_problem_without_its_text(marketplace, monkeypatch, caplog):
    """An exception the application has no handler for is answered by its error middleware and logged."""

    def broken(*_: object, **__: object) -> None:
        msg = "secret text of a bug"
        raise RuntimeError(msg)

    monkeypatch.setattr("tierpolicy.service._evaluate.evaluate", broken)
    response = call(app_for(marketplace), "POST", EVALUATE, content=EXAMPLE, headers=auth())
    assert response.status_code == 500
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == "INTERNAL"
    assert "secret" not in response.text
    assert "secret text of a bug" in caplog.text


class _TeapotError(Exception):
    """An application's own exception, with a handler of its own."""


def test_the_applications_own_handlers_answer_the_lanes_errors(marketplace, monkeypatch):
    """Handlers added to the application, sync ones too, render the lane's errors as the router's would."""

    def teapot(*_: object, **__: object) -> None:
        raise _TeapotError

    def sync_handler(_request: object, _exc: Exception) -> httpx.Response:
        from starlette.responses import PlainTextResponse  # noqa: PLC0415

        return PlainTextResponse("short and stout", status_code=418)

    monkeypatch.setattr("tierpolicy.service._evaluate.evaluate", teapot)
    app = app_for(marketplace)
    app.add_exception_handler(_TeapotError, sync_handler)  # type: ignore[arg-type]
    response = call(app, "POST", EVALUATE, content=EXAMPLE, headers=auth())
    assert (response.status_code, response.text) == (418, "short and stout")


def test_a_status_handler_answers_the_lanes_http_errors(marketplace):
    """A handler registered for a status (not a class) answers an HTTPException of that status."""
    from starlette.responses import PlainTextResponse  # noqa: PLC0415

    async def too_large(_request: object, _exc: Exception) -> PlainTextResponse:
        return PlainTextResponse("too big, by the status handler", status_code=413)

    app = app_for(marketplace, max_body_bytes=1024)
    app.add_exception_handler(413, too_large)
    response = call(app, "POST", EVALUATE, content=b" " * 2048, headers=auth())
    assert (response.status_code, response.text) == (413, "too big, by the status handler")
