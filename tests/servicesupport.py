"""What the service tests share: an app on an in-memory store, tokens, and one-loop requests."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import httpx

from tierpolicy.service import Settings, create_app, mint_token

if TYPE_CHECKING:
    from fastapi import FastAPI

    import tierpolicy

SECRET = "test-secret-of-at-least-thirty-two-bytes!"  # noqa: S105  a test-only key


def app_for(engine: tierpolicy.Engine | None = None, **settings: object) -> FastAPI:
    """The service over ``engine`` on an in-memory SQLite store, with the test secret."""
    values: dict[str, object] = {"database_url": "sqlite://", "jwt_secret": SECRET, **settings}
    return create_app(Settings(**values), engine=engine)  # type: ignore[arg-type]


def token(role: str = "service", subject: str = "test", seller_id: str | None = None) -> str:
    """A valid HS256 token for the test secret."""
    return mint_token(SECRET, role=role, subject=subject, seller_id=seller_id, audience="tierpolicy")


def auth(role: str = "service", subject: str = "test", seller_id: str | None = None) -> dict[str, str]:
    """An Authorization header for ``role``."""
    return {"Authorization": f"Bearer {token(role, subject, seller_id)}"}


def call(app: FastAPI, method: str, path: str, **kwargs: object) -> httpx.Response:
    """One request to ``app`` in-process (server errors come back as responses, as on a real server)."""
    [response] = calls(app, (method, path, kwargs))
    return response


def calls(app: FastAPI, *requests: tuple[str, str, dict[str, object]]) -> list[httpx.Response]:
    """Several requests to ``app`` in one event loop, in order."""

    async def go() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://service") as client:
            return [await client.request(m, p, **kw) for m, p, kw in requests]  # type: ignore[arg-type]

    return asyncio.run(go())
