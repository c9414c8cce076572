"""The executor against a real flaky HTTP server on the loopback interface, sync and async.

The server answers from a schedule of statuses; requests go through the standard
library's ``urllib.request`` (sync) and the same client in a worker thread (async).
Backoff sleeps and the clock are fake, so nothing here waits on real time; a "slow"
answer moves the fake clock forward instead of sleeping.
"""

from __future__ import annotations

import asyncio
import http.server
import threading
import urllib.error
import urllib.request
from typing import TYPE_CHECKING

import pytest

import tierpolicy
from tierpolicy.engine._executor import (
    BreakerTransition,
    Executor,
    FallbackUsed,
    ResilienceError,
)

if TYPE_CHECKING:
    from collections.abc import Iterator

POLICIES = """\
apiVersion: tierpolicy/v1
kind: Errors
metadata: {name: errors}
spec:
  codes:
    UPSTREAM_UNAVAILABLE: {category: unavailable, status: 503, retryable: true, title: Unavailable, message: "Try later."}
    TIMED_OUT: {category: timeout, status: 504, retryable: true, title: Timed out, message: "Timed out."}
    CIRCUIT_OPEN: {category: unavailable, status: 503, title: Circuit open, message: "{operation} is unavailable."}
    INTERNAL: {category: internal, status: 500, title: Internal, message: "Something went wrong."}
  rules:
    - {name: unavailable, match: {status: 503}, code: UPSTREAM_UNAVAILABLE}
    - {name: timeout, match: {exception: TimeoutError}, code: TIMED_OUT}
    - {name: circuit, match: {exception: tierpolicy.engine.CircuitOpenError}, code: CIRCUIT_OPEN}
    - {name: internal, code: INTERNAL}
---
apiVersion: tierpolicy/v1
kind: Resilience
metadata: {name: resilience}
spec:
  operations:
    catalog.get:
      retry: {max_attempts: 3, initial_delay: 250ms, multiplier: 2, jitter: none, deadline: 10s}
    search.query:
      retry: {max_attempts: 3, initial_delay: 250ms, jitter: none}
      circuit_breaker:
        window: {type: count, size: 4}
        minimum_calls: 4
        failure_rate_threshold: 50
        wait_in_open: 30s
        permitted_calls_in_half_open: 1
      fallback: [{cached: {max_staleness: 60s}}, {static: {value: degraded}}]
    payments.capture:
      idempotent: false
      retry: {max_attempts: 3, initial_delay: 250ms, jitter: none}
    shipping.quote:
      timeout: 1s
      retry: {max_attempts: 3, initial_delay: 250ms, jitter: none}
"""


class FakeTime:
    """A clock that moves only when told to; sleeps move it and are recorded."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        """The current fake time."""
        return self.now

    def sleep(self, seconds: float) -> None:
        """Record a sleep and advance the clock."""
        self.sleeps.append(seconds)
        self.now += seconds

    async def async_sleep(self, seconds: float) -> None:
        """The awaitable twin of :meth:`sleep`."""
        self.sleep(seconds)


class FlakyServer(http.server.ThreadingHTTPServer):
    """Answers request n with ``schedule[n]`` (the last entry repeats).

    An entry is a status code, or ``"slow"``: a 200 that first moves the fake clock
    forward by ``slow_by`` seconds, as if the answer took that long.
    """

    daemon_threads = True

    def __init__(self, schedule: list[int | str], time: FakeTime, *, slow_by: float = 2.0) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.schedule = schedule
        self.time = time
        self.slow_by = slow_by
        self.requests: list[tuple[str, str]] = []
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        """The server's base URL."""
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}"

    def next_status(self, method: str, path: str) -> tuple[int, int]:
        """Record a request; return its number (1-based) and status."""
        with self.lock:
            self.requests.append((method, path))
            n = len(self.requests)
            entry = self.schedule[min(n, len(self.schedule)) - 1]
        if entry == "slow":
            self.time.now += self.slow_by
            return n, 200
        assert isinstance(entry, int)
        return n, entry


class _Handler(http.server.BaseHTTPRequestHandler):
    server: FlakyServer

    def _answer(self) -> None:
        n, status = self.server.next_status(self.command, self.path)
        body = f"hit-{n}".encode() if status == 200 else b"unavailable"
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        """Answer a GET from the schedule."""
        self._answer()

    def do_POST(self) -> None:
        """Answer a POST from the schedule (after reading its body)."""
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self._answer()

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002  the base class's name
        """Keep test output quiet."""


def fetch(url: str, data: bytes | None = None) -> str:
    """GET (or POST ``data``) with urllib; an HTTP error is closed and re-raised as is."""
    try:
        with urllib.request.urlopen(url, data=data, timeout=10) as response:  # noqa: S310  loopback test server
            return str(response.read().decode())
    except urllib.error.HTTPError as exc:
        exc.close()
        raise


async def afetch(url: str, data: bytes | None = None) -> str:
    """The async client: the same request in a worker thread."""
    return await asyncio.to_thread(fetch, url, data)


@pytest.fixture
def time() -> FakeTime:
    """A fresh fake clock."""
    return FakeTime()


@pytest.fixture
def serve(time: FakeTime) -> Iterator[object]:
    """Start flaky servers on 127.0.0.1 (port 0) for the test; stop them afterwards."""
    servers: list[FlakyServer] = []
    threads: list[threading.Thread] = []

    def start(schedule: list[int | str]) -> FlakyServer:
        server = FlakyServer(schedule, time)
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
        thread.start()
        servers.append(server)
        threads.append(thread)
        return server

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()
    for thread in threads:
        thread.join(timeout=5)


@pytest.fixture
def events() -> list[object]:
    """The executor's events."""
    return []


@pytest.fixture
def executor(time: FakeTime, events: list[object]) -> Executor:
    """An executor over the HTTP test policies, on fake time."""
    engine = tierpolicy.Engine(tierpolicy.load_files({"policies.yaml": POLICIES}))
    return Executor(
        engine,
        clock=time.clock,
        sleep=time.sleep,
        async_sleep=time.async_sleep,
        random=lambda: 0.5,
        on_event=events.append,
    )


def get(shell: str, executor: Executor, operation: str, url: str, data: bytes | None = None) -> str:
    """Call the server through the sync or the async shell."""
    if shell == "sync":
        return executor.run(operation, fetch, url, data)
    return asyncio.run(executor.arun(operation, afetch, url, data))


SHELLS = ["sync", "async"]


@pytest.mark.parametrize("shell", SHELLS)
def test_503_503_200_is_retried_twice_with_the_policys_backoff(shell, serve, executor, time):
    """Two 503s then a 200: three requests, sleeping 0.25 then 0.5 s, and the 200's body."""
    server = serve([503, 503, 200])
    assert get(shell, executor, "catalog.get", f"{server.url}/item/7") == "hit-3"
    assert server.requests == [("GET", "/item/7")] * 3
    assert time.sleeps == [0.25, 0.5]


@pytest.mark.parametrize("shell", SHELLS)
def test_always_503_gives_up_after_max_attempts(shell, serve, executor, time):
    """A server that always answers 503 gets exactly max_attempts requests, then the error."""
    server = serve([503])
    with pytest.raises(ResilienceError) as info:
        get(shell, executor, "catalog.get", f"{server.url}/item/7")
    assert len(server.requests) == 3
    assert time.sleeps == [0.25, 0.5]
    assert info.value.classification.code == "UPSTREAM_UNAVAILABLE"
    assert isinstance(info.value.__cause__, urllib.error.HTTPError)
    assert info.value.__cause__.code == 503


@pytest.mark.parametrize("shell", SHELLS)
def test_an_outage_trips_the_breaker_and_falls_back_to_the_cached_result(
    shell, serve, executor, time, events
):
    """Two 200s, then 503s: two failures trip the breaker, and calls answer from the cache."""
    server = serve([200, 200, 503])
    url = f"{server.url}/search?q=lamp"
    assert get(shell, executor, "search.query", url) == "hit-1"
    assert get(shell, executor, "search.query", url) == "hit-2"
    # Attempts 1 and 2 fail (2 of 4 calls: 50%, the threshold); attempt 3 is rejected.
    assert get(shell, executor, "search.query", url) == "hit-2"
    assert len(server.requests) == 4
    assert BreakerTransition("search.query", "closed", "open", "threshold_reached") in events
    assert events[-1] == FallbackUsed("search.query", "cached", age=0.75)
    # While open, calls never reach the server.
    assert get(shell, executor, "search.query", url) == "hit-2"
    assert len(server.requests) == 4
    # After wait_in_open, one probe goes through, fails, and re-opens the breaker; the
    # cached result is now too old, so the static fallback answers.
    time.now += 60.0
    assert get(shell, executor, "search.query", url) == "degraded"
    assert len(server.requests) == 5
    assert events[-1] == FallbackUsed("search.query", "static")


@pytest.mark.parametrize("shell", SHELLS)
def test_a_non_idempotent_post_is_sent_once(shell, serve, executor):
    """payments.capture is not idempotent: a 503 after the request was sent is not retried."""
    server = serve([503, 200])
    with pytest.raises(ResilienceError) as info:
        get(shell, executor, "payments.capture", f"{server.url}/capture", b"amount=10")
    assert server.requests == [("POST", "/capture")]
    assert info.value.reason == "NOT_IDEMPOTENT"


def test_a_slow_sync_answer_counts_as_a_timeout_and_is_retried(serve, executor, time):
    """A 200 that took 2s of a 1s timeout is discarded as a timeout; the retry's answer is used."""
    server = serve(["slow", 200])
    assert get("sync", executor, "shipping.quote", f"{server.url}/quote") == "hit-2"
    assert len(server.requests) == 2
    assert time.sleeps == [0.25]


@pytest.mark.parametrize("shell", SHELLS)
def test_always_503_trips_the_breaker_after_minimum_calls_requests(shell, serve, executor, events):
    """Always 503: 3 attempts, then 1 more trips the breaker (4 of 4 failed); later calls send nothing."""
    server = serve([503])
    url = f"{server.url}/search"
    assert get(shell, executor, "search.query", url) == "degraded"
    assert len(server.requests) == 3
    assert get(shell, executor, "search.query", url) == "degraded"
    assert len(server.requests) == 4
    assert [e for e in events if isinstance(e, BreakerTransition)] == [
        BreakerTransition("search.query", "closed", "open", "threshold_reached")
    ]
    for _ in range(3):
        assert get(shell, executor, "search.query", url) == "degraded"
    assert len(server.requests) == 4
