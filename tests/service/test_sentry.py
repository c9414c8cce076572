"""Error reporting to Sentry: unexpected errors reach the DSN's server, bad settings are refused."""

from __future__ import annotations

import gzip
import http.server
import threading
from typing import TYPE_CHECKING

import pytest
import sentry_sdk

from servicesupport import app_for, call
from tierpolicy.service import AuthSetupError

if TYPE_CHECKING:
    from collections.abc import Iterator


class Collector(http.server.BaseHTTPRequestHandler):
    """Keeps every envelope posted to it, as Sentry's ingest would."""

    received: list[bytes]

    def do_POST(self) -> None:
        """Store the (possibly gzipped) body and answer 200."""
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        self.server.received.append(body)  # type: ignore[attr-defined]
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        """Quiet."""


@pytest.fixture
def ingest() -> Iterator[http.server.HTTPServer]:
    """A local HTTP server standing in for Sentry, on a free port."""
    server = http.server.HTTPServer(("127.0.0.1", 0), Collector)
    server.received = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    sentry_sdk.get_client().close()
    sentry_sdk.init()  # no DSN: reporting off again for the rest of the process


def test_an_unexpected_error_is_reported_without_its_text_in_the_answer(ingest):
    """A route that raises answers a 500 problem, and the exception reaches Sentry with its traceback."""
    dsn = f"http://public@127.0.0.1:{ingest.server_address[1]}/1"
    app = app_for(sentry_dsn=dsn)

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("the secret detail")

    response = call(app, "GET", "/boom")
    assert response.status_code == 500
    assert "secret detail" not in response.text
    sentry_sdk.flush(timeout=5)
    envelopes = b"".join(ingest.received)  # type: ignore[attr-defined]
    assert b"RuntimeError" in envelopes
    assert b"the secret detail" in envelopes


def test_without_a_dsn_nothing_is_reported(ingest):
    """With SENTRY_DSN unset, errors are answered and logged but nothing is sent anywhere."""
    app = app_for()

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("quiet")

    assert call(app, "GET", "/boom").status_code == 500
    sentry_sdk.flush(timeout=1)
    assert ingest.received == []  # type: ignore[attr-defined]


def test_a_malformed_dsn_is_a_bad_setting():
    """A DSN Sentry cannot parse stops the service at startup, naming SENTRY_DSN."""
    with pytest.raises(AuthSetupError, match="SENTRY_DSN"):
        app_for(sentry_dsn="not a dsn")
