"""What the event and cache tests share: the service on a real uvicorn server, WebSocket clients, sellers.

:func:`served` runs an application on uvicorn in a thread of this process (lifespan and
all, on a port of its own), so that a test can run two replicas side by side and talk to
them over real HTTP and WebSocket connections (the ``websockets`` client, with
timeouts, so that a missing event fails the test instead of hanging it).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import socket
import threading
import time
from typing import TYPE_CHECKING, Any

import httpx
import pytest
import uvicorn
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from servicesupport import auth, token
from tierpolicy.service import PREFIX

if TYPE_CHECKING:
    from collections.abc import Iterator

    from fastapi import FastAPI

WAIT = 10.0
"""Seconds to wait for something that should happen at once (generous: CI machines are slow)."""

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
ADMIN, SERVICE = auth("admin", "ana"), auth("service", "tier-job")


def seller_auth(seller_id: str) -> dict[str, str]:
    """A seller token's header for ``seller_id``."""
    return auth("seller", f"user-of-{seller_id}", seller_id)


def grant(target: str = "support.dedicated_manager", days: int = 7) -> dict[str, object]:
    """An override body that turns a feature on for ``days``."""
    expires = dt.datetime.now(dt.UTC) + dt.timedelta(days=days)
    return {
        "kind": "feature",
        "target": target,
        "value": True,
        "reason": "pilot",
        "expires_at": expires.isoformat(),
    }


@contextlib.contextmanager
def served(app: FastAPI) -> Iterator[httpx.Client]:
    """``app`` on a uvicorn server in a thread; yields an HTTP client of it (``client.base_url``).

    The server is stopped, and its thread joined, when the block ends.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        app, log_config=None, lifespan="on", ws="websockets-sansio", timeout_graceful_shutdown=5
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name=f"uvicorn-{port}")
    thread.start()
    try:
        deadline = time.monotonic() + WAIT
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                pytest.fail(f"uvicorn did not start on port {port}")
            time.sleep(0.01)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=WAIT) as client:
            yield client
    finally:
        server.should_exit = True
        thread.join(3 * WAIT)
        sock.close()
        assert not thread.is_alive(), "uvicorn did not stop"


def ws_url(client: httpx.Client, query: str = "") -> str:
    """The event WebSocket's URL on ``client``'s server."""
    base = str(client.base_url).replace("http://", "ws://").rstrip("/")
    return f"{base}{PREFIX}/ws" + (f"?{query}" if query else "")


def events_of(
    client: httpx.Client, headers: dict[str, str] | None = None, query: str = ""
) -> contextlib.AbstractContextManager[ClientConnection]:
    """A WebSocket connection to the event stream (close it with ``with``)."""
    return connect(
        ws_url(client, query), additional_headers=headers or {}, open_timeout=WAIT, close_timeout=WAIT
    )


def as_seller(seller_id: str) -> dict[str, str]:
    """Headers of a seller's WebSocket."""
    return {"Authorization": f"Bearer {token('seller', f'user-of-{seller_id}', seller_id)}"}


def next_event(
    ws: ClientConnection, *, skip: tuple[str, ...] = ("ping",), wait: float = WAIT
) -> dict[str, Any]:
    """The next event (skipping ``skip`` types); fails the test when none comes in ``wait`` seconds."""
    deadline = time.monotonic() + wait
    while True:
        try:
            event = json.loads(ws.recv(timeout=max(0.0, deadline - time.monotonic())))
        except TimeoutError:
            pytest.fail(f"no event in {wait} s")
        if event["type"] not in skip:
            return event


def closing(ws: ClientConnection, wait: float = WAIT) -> tuple[int | None, str, list[dict[str, Any]]]:
    """Read until the server closes: its close code and reason, and the frames that came first."""
    frames: list[dict[str, Any]] = []
    deadline = time.monotonic() + wait
    while True:
        try:
            frames.append(json.loads(ws.recv(timeout=max(0.0, deadline - time.monotonic()))))
        except TimeoutError:
            pytest.fail(f"the server did not close the connection in {wait} s")
        except ConnectionClosed as closed:
            close = closed.rcvd
            return (close.code if close else None), (close.reason if close else ""), frames


def put_seller(client: httpx.Client, seller_id: str, tier: str = "bronze") -> httpx.Response:
    """Create or replace a seller (as an admin)."""
    response = client.put(
        f"{PREFIX}/sellers/{seller_id}", json={"tier": tier, "attributes": ATTRIBUTES}, headers=ADMIN
    )
    assert response.status_code == 200, response.text
    return response
