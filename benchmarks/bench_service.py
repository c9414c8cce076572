"""Load benchmark of the seller service's evaluate endpoint, over real HTTP, against a FastAPI floor.

One run starts each server as a subprocess on a free port of 127.0.0.1, one uvicorn
worker, ``LOG_LEVEL=warning``, and drives it from this process (a separate process from
the server):

1. **floor**: a minimal FastAPI application under ``uvicorn.run`` with the same
   arguments ``tierpolicy serve`` uses, one ``POST`` route at the evaluate path that
   returns a constant dict (the evaluate answer of the same request, so the same size)
   through the same return annotation: no authentication, no body read, no engine. What
   the framework and the server alone cost;
2. **embedded**: ``tierpolicy serve`` on embedded defaults: a SQLite file in a
   temporary directory, no ``REDIS_URL`` (in-memory stores);
3. **postgres+redis**: ``tierpolicy serve`` with ``DATABASE_URL`` on a throwaway
   database ``tierpolicy_bench_<random>`` created on the machine's PostgreSQL (dropped
   afterwards; migrated at startup) and ``REDIS_URL`` on a ``redis-server`` this script
   starts on a free port (stopped afterwards). ``--database-url`` / ``--redis-url`` use
   servers you give instead (nothing is created, dropped or flushed on them).

Each server gets the same load, in turn:

- **open loop**: requests at a fixed arrival rate (default 1,000/s for 10 s after a 2 s
  warm-up at the same rate) over several keep-alive HTTP/1.1 connections (default 8).
  Request ``i`` is due at ``start + i / rate``; whichever connection is free takes the
  next due request, waits until it is due, sends it and reads the answer. Latency is
  counted from the request's **intended** send time, so when the server falls behind
  the queueing shows (no coordinated omission); since asyncio's timers tick in
  milliseconds, a request may leave up to 0.5 ms before it is due, and is then timed
  from its actual send. Also reported: the service time (from the actual send) and the
  send lag (actual minus intended send time: the timer, this process's scheduling and,
  when the server falls behind, the wait for a free connection);
- **closed loop**: N connections (default 32) each sending the next request as soon as
  the previous answer arrived, for 5 s after a 1 s warm-up: the most requests per second
  the server gives.

The request is the evaluate endpoint's with a batch of 5 queries taken from
``examples/eval-request.json`` (two features, two limits and the tier query, without
the trace), with a service bearer token minted for a random ``JWT_SECRET``, one service
principal per connection (so the shipped ``service-api`` limit, 2,000/s per principal,
never refuses part of a fast closed loop; every request still pays its check). The client
is a small asyncio HTTP/1.1 client (``asyncio.Protocol``, a Content-Length response
parser): httpx costs about ten times as much CPU per request, which on this 2-CPU machine
would make the client, not the server, the limit. Every answer's status is checked; any
status but 200 counts as an error, by status (0: the connection broke).

Also read per run: the CPU time of the server process (all threads, from
``/proc/<pid>/stat``), of redis-server, of this client, and how many CPUs the whole
machine kept busy (``/proc/stat``), so a report can say what limits the numbers.
``--profile PATH`` also runs the embedded service under cProfile (switched on for one
closed-loop run only, after its warm-up) and prints where its time goes by package.

Usage::

    python benchmarks/bench_service.py                 # full run, about 2 minutes
    python benchmarks/bench_service.py --quick         # smoke run, about 30 s
    python benchmarks/bench_service.py --rate 1500 --duration 20 --connections 16
    python benchmarks/bench_service.py --profile service.prof --json service.json

Needs ``pip install -e '.[service,bench]'``, a PostgreSQL server at
``postgresql://postgres@127.0.0.1:5432`` (``--postgres-admin-url``) and ``redis-server``
on the PATH for the third configuration (``--configs floor,embedded`` leaves it out).
Linux only (``/proc``).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import dataclasses
import json
import math
import os
import platform
import pstats
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import timeit
from pathlib import Path
from typing import TYPE_CHECKING, Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import cpu_ticks, import_tierpolicy, loadavg

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "eval-request.json"
POLICIES = ROOT / "policies"
PATH = "/api/marketplace/seller/policy/evaluate"
HOST = "127.0.0.1"
QUERY_IDS = ("promote", "checkout", "listings", "images", "tier")
"""The example's queries the benchmark sends: two features, two limits, the tier."""
CONFIGS = ("floor", "embedded", "postgres+redis")
TARGET_RATE = 1_000.0
TARGET_P99_NS = 5_000_000
DB_PREFIX = "tierpolicy_bench_"
ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
STATUS_BROKEN = 0
"""The status recorded for a request whose connection broke before it was answered."""
TIMER_SLACK_NS = 500_000
"""How early the open loop may send a request: half of epoll's 1 ms timer granularity.

asyncio's sleeps end on a millisecond tick (epoll rounds its timeout up), so a request
timed to its due time would leave 0 to 1 ms late; aimed 0.5 ms early it leaves within
0.5 ms either side. A request sent early is timed from its actual send, a late one from
its due time (``open_loop``), so neither the timer nor a slow server hides any waiting.
"""
MAX_HEAD = 65_536
"""The largest response head the client accepts."""
SETTINGS_ENV = (
    "DATABASE_URL",
    "REDIS_URL",
    "POLICY_DIR",
    "JWT_SECRET",
    "JWT_PUBLIC_KEY",
    "JWT_AUDIENCE",
    "RATE_LIMIT_MAX_REQUESTS",
    "SELLER_CACHE_TTL",
    "SELLER_API_BASE_URL",
    "LOG_LEVEL",
    "SENTRY_DSN",
    "HOST",
    "PORT",
    "TRUSTED_PROXIES",
    "MAX_BODY_BYTES",
    "MIGRATE_ON_STARTUP",
)
"""The service's settings: left out of the environment the servers inherit, then set."""


# --------------------------------------------------------------------------- arguments


@dataclasses.dataclass(frozen=True)
class Options:
    """What one run does, after defaults and ``--quick`` are applied."""

    rate: float
    duration: float
    warmup: float
    connections: int
    closed_connections: int
    closed_duration: float
    closed_warmup: float
    configs: tuple[str, ...]
    quick: bool
    database_url: str | None
    redis_url: str | None
    postgres_admin_url: str
    json_path: Path | None
    profile: Path | None
    quiet: bool
    repeat: int = 1


FULL_DEFAULTS = {"duration": 10.0, "warmup": 2.0, "closed_duration": 5.0, "closed_warmup": 1.0}
QUICK_DEFAULTS = {"duration": 2.0, "warmup": 0.5, "closed_duration": 1.0, "closed_warmup": 0.5}


def _positive(kind: type[float | int]) -> Any:
    def parse(text: str) -> float | int:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if not math.isfinite(value) or value <= 0:
            raise argparse.ArgumentTypeError(f"must be more than 0, not {text}")
        return value

    parse.__name__ = kind.__name__
    return parse


def _non_negative(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, not {text}")
    return value


def _configs(text: str) -> tuple[str, ...]:
    names = tuple(name.strip() for name in text.split(",") if name.strip())
    unknown = [name for name in names if name not in CONFIGS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown configuration {', '.join(unknown) or '(none)'}; choose from {', '.join(CONFIGS)}"
        )
    return tuple(dict.fromkeys(names))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bench_service.py", description=(__doc__ or "").split("\n\n", 1)[0])
    parser.add_argument(
        "--rate", type=_positive(float), default=TARGET_RATE, help="open-loop requests per second (1000)"
    )
    parser.add_argument(
        "--duration", type=_positive(float), help="open-loop seconds measured (10; --quick: 2)"
    )
    parser.add_argument("--warmup", type=_non_negative, help="open-loop warm-up seconds (2; --quick: 0.5)")
    parser.add_argument(
        "--connections", type=_positive(int), default=8, help="open-loop keep-alive connections (8)"
    )
    parser.add_argument(
        "--closed-connections", type=_positive(int), default=32, help="closed-loop connections (32)"
    )
    parser.add_argument(
        "--closed-duration", type=_positive(float), help="closed-loop seconds measured (5; --quick: 1)"
    )
    parser.add_argument("--closed-warmup", type=_non_negative, help="closed-loop warm-up seconds (1)")
    parser.add_argument(
        "--configs",
        type=_configs,
        default=CONFIGS,
        help=f"comma-separated servers to run ({','.join(CONFIGS)})",
    )
    parser.add_argument("--quick", action="store_true", help="a short smoke run (about 30 s)")
    parser.add_argument(
        "--database-url",
        help="a PostgreSQL URL to use instead of a throwaway database (migrated at startup, never dropped)",
    )
    parser.add_argument(
        "--redis-url", help="a Redis URL to use instead of a redis-server of the script's own (never flushed)"
    )
    parser.add_argument(
        "--postgres-admin-url",
        default=ADMIN_URL,
        help=f"where the throwaway database is created ({ADMIN_URL})",
    )
    parser.add_argument("--json", dest="json_path", type=Path, help="also write the numbers as JSON")
    parser.add_argument(
        "--profile",
        type=Path,
        help="also profile the embedded service (cProfile) in one closed-loop run; stats to this path",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    parser.add_argument(
        "--repeat",
        type=_positive(int),
        default=1,
        help="run every configuration this many times (1); a table of the runs' key figures follows",
    )
    return parser


def parse_args(argv: Sequence[str] | None = None) -> Options:
    """The options of a run; a usage error exits with status 2 and a message naming the flag."""
    parser = build_parser()
    args = parser.parse_args(argv)
    defaults = QUICK_DEFAULTS if args.quick else FULL_DEFAULTS
    for name, value in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    if args.database_url is not None and not args.database_url.startswith(("postgresql://", "postgresql+")):
        parser.error(f"--database-url: not a PostgreSQL URL: {args.database_url!r}")
    if args.redis_url is not None and not args.redis_url.startswith(
        ("redis://", "rediss://", "redis+cluster://")
    ):
        parser.error(f"--redis-url: not a Redis URL: {args.redis_url!r}")
    if args.profile is not None and not args.profile.parent.is_dir():
        parser.error(f"--profile: no such directory: {str(args.profile.parent)!r}")
    if args.json_path is not None and not args.json_path.parent.is_dir():
        parser.error(f"--json: no such directory: {str(args.json_path.parent)!r}")
    return Options(
        rate=args.rate,
        duration=args.duration,
        warmup=args.warmup,
        connections=args.connections,
        closed_connections=args.closed_connections,
        closed_duration=args.closed_duration,
        closed_warmup=args.closed_warmup,
        configs=args.configs,
        quick=args.quick,
        database_url=args.database_url,
        redis_url=args.redis_url,
        postgres_admin_url=args.postgres_admin_url,
        json_path=args.json_path,
        profile=args.profile,
        quiet=args.quiet,
        repeat=args.repeat,
    )


# --------------------------------------------------------------------------- requests


def eval_body(example: Path = EXAMPLE, ids: Sequence[str] = QUERY_IDS) -> bytes:
    """The evaluate request: the example's time and context with the queries ``ids``, no trace.

    Raises:
        ValueError: The example has no query with one of ``ids``.
    """
    request = json.loads(example.read_text(encoding="utf-8"))
    by_id = {query["id"]: query for query in request["queries"]}
    missing = [i for i in ids if i not in by_id]
    if missing:
        raise ValueError(f"{example}: no query with id {', '.join(missing)}")
    queries = [{k: v for k, v in by_id[i].items() if k != "trace"} for i in ids]
    body = {"now": request["now"], "context": request["context"], "queries": queries}
    return json.dumps(body, separators=(",", ":")).encode()


_TOKEN = re.compile(r"[A-Za-z0-9._~+/=-]+")


def build_request(host: str, port: int, path: str, body: bytes, token: str | None = None) -> bytes:
    """One keep-alive HTTP/1.1 ``POST`` of a JSON body, as bytes on the wire.

    Raises:
        ValueError: The token or the path would break the request line or a header.
    """
    if not path.startswith("/") or any(c in path for c in " \r\n"):
        raise ValueError(f"not a request path: {path!r}")
    headers = [
        f"POST {path} HTTP/1.1",
        f"Host: {host}:{port}",
        "User-Agent: tierpolicy-bench",
        "Accept: application/json",
        "Content-Type: application/json",
        f"Content-Length: {len(body)}",
    ]
    if token is not None:
        if not _TOKEN.fullmatch(token):
            raise ValueError("the token is not a bearer token (RFC 6750 b64token)")
        headers.append(f"Authorization: Bearer {token}")
    return ("\r\n".join(headers) + "\r\n\r\n").encode("ascii") + body


def build_get(host: str, port: int, path: str) -> bytes:
    """One keep-alive HTTP/1.1 ``GET``."""
    return f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUser-Agent: tierpolicy-bench\r\n\r\n".encode()


class ProtocolError(Exception):
    """The server's answer is not HTTP/1.1 this client reads."""


def parse_head(head: bytes) -> tuple[int, int]:
    """The status and Content-Length of a response head (without its blank line).

    Raises:
        ProtocolError: No status line, or no Content-Length (the client reads no other framing).
    """
    lines = head.split(b"\r\n")
    parts = lines[0].split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
        raise ProtocolError(f"not an HTTP/1.x status line: {lines[0][:80]!r}")
    length = None
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            if not value.strip().isdigit():
                raise ProtocolError(f"bad Content-Length: {value.strip()[:40]!r}")
            length = int(value)
        elif name == b"transfer-encoding":
            raise ProtocolError("chunked answers are not read by this client")
    if length is None:
        raise ProtocolError("an answer without Content-Length")
    return int(parts[1]), length


class ResponseParser:
    """Splits a byte stream of HTTP/1.1 answers into (status, body) pairs.

    Args:
        keep_bodies: Keep each body (else only the statuses are returned, bodies ``b""``).
    """

    def __init__(self, *, keep_bodies: bool = False) -> None:
        self._buffer = bytearray()
        self._status = 0
        self._need: int | None = None
        self._keep = keep_bodies

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        """The answers ``data`` completes, in order.

        Raises:
            ProtocolError: A malformed head, or a head larger than 64 KiB.
        """
        buffer = self._buffer
        buffer += data
        done: list[tuple[int, bytes]] = []
        while True:
            if self._need is None:
                end = buffer.find(b"\r\n\r\n")
                if end < 0:
                    if len(buffer) > MAX_HEAD:
                        raise ProtocolError("a response head larger than 64 KiB")
                    return done
                self._status, self._need = parse_head(bytes(buffer[:end]))
                del buffer[: end + 4]
            if len(buffer) < self._need:
                return done
            body = bytes(buffer[: self._need]) if self._keep else b""
            del buffer[: self._need]
            done.append((self._status, body))
            self._need = None


# --------------------------------------------------------------------------- statistics


def percentile(ordered: Sequence[float], q: float) -> float:
    """The nearest-rank ``q``-th percentile of ascending ``ordered``: at least q % of the values are <= it.

    Raises:
        ValueError: No values, or ``q`` outside 0 to 100.
    """
    if not ordered:
        raise ValueError("no values")
    if not 0 <= q <= 100:
        raise ValueError(f"percentile must be within 0 and 100, not {q}")
    # Rounded first: 99.9 / 100 * 1000 is 999.0000000000001 in binary floating point.
    rank = math.ceil(round(q / 100 * len(ordered), 9))
    return ordered[max(rank, 1) - 1]


PERCENTILES = (("p50", 50.0), ("p90", 90.0), ("p99", 99.0), ("p99.9", 99.9))


def distribution(values: Sequence[float]) -> dict[str, float]:
    """p50, p90, p99, p99.9 and max of ``values`` (empty: an empty dict)."""
    if not values:
        return {}
    ordered = sorted(values)
    return {name: percentile(ordered, q) for name, q in PERCENTILES} | {"max": ordered[-1]}


@dataclasses.dataclass
class CpuReading:
    """CPU seconds used so far by the server, redis-server and this process, and the machine's ticks."""

    server: float | None
    redis: float | None
    client: float
    machine: tuple[int, int] | None

    def __sub__(self, earlier: CpuReading) -> dict[str, float | None]:
        def diff(a: float | None, b: float | None) -> float | None:
            return None if a is None or b is None else a - b

        busy = None
        if self.machine is not None and earlier.machine is not None:
            ticks = self.machine[1] - earlier.machine[1]
            busy = (self.machine[0] - earlier.machine[0]) / ticks * (os.cpu_count() or 1) if ticks else None
        return {
            "server": diff(self.server, earlier.server),
            "redis": diff(self.redis, earlier.redis),
            "client": self.client - earlier.client,
            "machine_busy_cpus": busy,
        }


def process_cpu_seconds(pid: int | None) -> float | None:
    """User + system CPU seconds of process ``pid`` and all its threads (``/proc/<pid>/stat``)."""
    if pid is None:
        return None
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii")
    except OSError:
        return None
    # The command name may hold spaces and parentheses: fields count from the last ")".
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclasses.dataclass
class LoadResult:
    """What one load run measured (nanoseconds)."""

    server: str
    mode: str
    connections: int
    target_rate: float | None
    window_s: float
    latency_ns: list[int]
    service_ns: list[int]
    lag_ns: list[int]
    statuses: collections.Counter[int]
    unsent: int
    cpu: dict[str, float | None]

    @property
    def completed(self) -> int:
        return sum(self.statuses.values())

    @property
    def errors(self) -> int:
        return self.completed - self.statuses.get(200, 0) + self.unsent

    @property
    def rate(self) -> float:
        return self.completed / self.window_s if self.window_s > 0 else 0.0

    def cpu_share(self, name: str) -> float | None:
        """CPU seconds of ``name`` per second of the window: 1.0 is one CPU kept busy."""
        used = self.cpu.get(name)
        return None if used is None or self.window_s <= 0 else used / self.window_s

    def to_json(self) -> dict[str, Any]:
        return {
            "server": self.server,
            "mode": self.mode,
            "connections": self.connections,
            "target_rate": self.target_rate,
            "window_s": self.window_s,
            "completed": self.completed,
            "rate": self.rate,
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "unsent": self.unsent,
            "errors": self.errors,
            "latency_ns": distribution(self.latency_ns),
            "service_ns": distribution(self.service_ns),
            "send_lag_ns": distribution(self.lag_ns),
            "cpu_seconds": self.cpu,
        }


# --------------------------------------------------------------------------- the client


class _Connection(asyncio.Protocol):
    """One keep-alive connection with at most one request in flight."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = ResponseParser()
        self.waiter: asyncio.Future[int] | None = None
        self.lost = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        try:
            answers = self.parser.feed(data)
        except ProtocolError as exc:
            self._fail(exc)
            return
        for status, _body in answers:
            waiter, self.waiter = self.waiter, None
            if waiter is not None and not waiter.done():
                waiter.set_result(status)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self._fail(exc or ConnectionResetError("the server closed the connection"))

    def _fail(self, exc: Exception) -> None:
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(ConnectionError(str(exc)))
        if self.transport is not None:
            self.transport.abort()
            self.lost = True

    async def request(self, payload: bytes) -> int:
        assert self.transport is not None
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(payload)
        return await self.waiter


async def _connect(port: int) -> _Connection:
    loop = asyncio.get_running_loop()
    _transport, protocol = await loop.create_connection(_Connection, HOST, port)
    return protocol


@dataclasses.dataclass
class _Probe:
    """How the load reads CPU use around the measured window."""

    server_pid: int | None
    redis_pid: int | None

    def read(self) -> CpuReading:
        return CpuReading(
            process_cpu_seconds(self.server_pid),
            process_cpu_seconds(self.redis_pid),
            time.process_time(),
            cpu_ticks(),
        )


async def open_loop(
    server: str,
    port: int,
    payloads: Sequence[bytes],
    *,
    rate: float,
    duration: float,
    warmup: float,
    connections: int,
    probe: _Probe,
) -> LoadResult:
    """Requests due at a fixed rate; latency from each request's intended send time.

    Connection ``slot`` sends ``payloads[slot % len(payloads)]``.
    """
    conns = [await _connect(port) for _ in range(connections)]
    interval = 1e9 / rate
    warm = round(warmup * rate)
    total = warm + round(duration * rate)
    start = time.perf_counter_ns() + 20_000_000
    measure_from = start + round(warm * interval)
    latency: list[int] = []
    service: list[int] = []
    lag: list[int] = []
    statuses: collections.Counter[int] = collections.Counter()
    next_index = 0
    last_done = measure_from
    readings: list[CpuReading] = []

    async def reader() -> None:
        await asyncio.sleep(max(0, measure_from - time.perf_counter_ns()) / 1e9)
        readings.append(probe.read())

    async def worker(slot: int) -> None:
        nonlocal next_index, last_done
        conn = conns[slot]
        payload = payloads[slot % len(payloads)]
        while next_index < total:
            i = next_index
            next_index += 1
            due = start + round(i * interval)
            wait = due - time.perf_counter_ns() - TIMER_SLACK_NS
            if wait > 0:
                await asyncio.sleep(wait / 1e9)
            if conn.lost:
                conn = conns[slot] = await _connect(port)
            sent = time.perf_counter_ns()
            try:
                status = await conn.request(payload)
            except ConnectionError:
                status = STATUS_BROKEN
            done = time.perf_counter_ns()
            if i >= warm:
                latency.append(done - min(due, sent))
                service.append(done - sent)
                lag.append(sent - due)
                statuses[status] += 1
                last_done = max(last_done, done)

    read_task = asyncio.create_task(reader())
    tasks = [asyncio.create_task(worker(slot)) for slot in range(connections)]
    # Bounded in time whatever the server does: requests still unsent then count as errors.
    _done, pending = await asyncio.wait(tasks, timeout=warmup + duration + 30)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    readings.append(probe.read())
    await read_task
    for conn in conns:
        if conn.transport is not None:
            conn.transport.close()
    measured = sum(statuses.values())
    return LoadResult(
        server=server,
        mode="open",
        connections=connections,
        target_rate=rate,
        window_s=(last_done - measure_from) / 1e9,
        latency_ns=latency,
        service_ns=service,
        lag_ns=lag,
        statuses=statuses,
        unsent=total - warm - measured,
        cpu=readings[-1] - readings[0],
    )


async def closed_loop(
    server: str,
    port: int,
    payloads: Sequence[bytes],
    *,
    duration: float,
    warmup: float,
    connections: int,
    probe: _Probe,
    on_measure: Any = None,
) -> LoadResult:
    """Each connection sends its next request as soon as the answer to the last one is read.

    Connection ``slot`` sends ``payloads[slot % len(payloads)]``.
    """
    conns = [await _connect(port) for _ in range(connections)]
    begin = time.perf_counter_ns()
    measure_from = begin + round(warmup * 1e9)
    end = measure_from + round(duration * 1e9)
    latency: list[int] = []
    statuses: collections.Counter[int] = collections.Counter()
    readings: list[CpuReading] = []
    last_done = measure_from

    async def reader() -> None:
        await asyncio.sleep(max(0, measure_from - time.perf_counter_ns()) / 1e9)
        if on_measure is not None:
            on_measure()
        readings.append(probe.read())

    async def worker(slot: int) -> None:
        nonlocal last_done
        conn = conns[slot]
        payload = payloads[slot % len(payloads)]
        while (sent := time.perf_counter_ns()) < end:
            if conn.lost:
                conn = conns[slot] = await _connect(port)
            try:
                status = await conn.request(payload)
            except ConnectionError:
                status = STATUS_BROKEN
            done = time.perf_counter_ns()
            if sent >= measure_from:
                latency.append(done - sent)
                statuses[status] += 1
                last_done = max(last_done, done)

    read_task = asyncio.create_task(reader())
    tasks = [asyncio.create_task(worker(slot)) for slot in range(connections)]
    _done, pending = await asyncio.wait(tasks, timeout=warmup + duration + 30)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    readings.append(probe.read())
    await read_task
    for conn in conns:
        if conn.transport is not None:
            conn.transport.close()
    return LoadResult(
        server=server,
        mode="closed",
        connections=connections,
        target_rate=None,
        window_s=(last_done - measure_from) / 1e9,
        latency_ns=latency,
        service_ns=latency,
        lag_ns=[],
        statuses=statuses,
        unsent=len(pending),
        cpu=readings[-1] - readings[0],
    )


def fetch(port: int, payload: bytes, timeout: float = 5.0) -> tuple[int, bytes]:
    """One request on a new connection, blocking: the status and the body.

    Raises:
        OSError: No connection, or no whole answer within ``timeout``.
        ProtocolError: The answer is not HTTP/1.1 this client reads.
    """
    parser = ResponseParser(keep_bodies=True)
    with socket.create_connection((HOST, port), timeout=timeout) as sock:
        sock.sendall(payload)
        while True:
            data = sock.recv(65_536)
            if not data:
                raise ConnectionResetError("closed before a whole answer")
            answers = parser.feed(data)
            if answers:
                return answers[0]


# --------------------------------------------------------------------------- servers


def free_port() -> int:
    """A TCP port on 127.0.0.1 nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        port: int = s.getsockname()[1]
        return port


class ServerProcess:
    """A server subprocess of the benchmark's own, stopped with SIGINT (then SIGKILL).

    Args:
        name: For messages.
        argv: The command.
        env: Its whole environment.
        cwd: Its working directory (its log goes there too).
        port: Where it listens.
        ready_path: A ``GET`` path that answers 200 once it serves.
    """

    def __init__(
        self, name: str, argv: list[str], env: dict[str, str], cwd: Path, port: int, ready_path: str
    ) -> None:
        self.name, self.argv, self.env, self.cwd, self.port = name, argv, env, cwd, port
        self.ready_path = ready_path
        self.log = cwd / f"{re.sub(r'[^a-z0-9]+', '-', name)}.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return None if self.process is None else self.process.pid

    def start(self, timeout: float = 60.0) -> None:
        """Start it and wait until ``ready_path`` answers 200.

        Raises:
            RuntimeError: It exited or did not answer in time (with its log's last lines).
        """
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(  # noqa: S603  the benchmark's own commands
                self.argv, env=self.env, cwd=self.cwd, stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + timeout
        request = build_get(HOST, self.port, self.ready_path)
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            with contextlib.suppress(OSError, ProtocolError):
                if fetch(self.port, request, timeout=2.0)[0] == 200:
                    return
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"{self.name} did not start; the end of its log:\n{self.log_tail()}")

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def signal(self, sig: int) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(sig)

    def stop(self) -> None:
        """SIGINT (uvicorn's graceful shutdown), SIGKILL after 15 s."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


class RedisProcess:
    """A redis-server of the benchmark's own on a free port: no persistence, a temporary directory."""

    def __init__(self, directory: Path) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not on the PATH (or give --redis-url)")
        self.port = free_port()
        self.directory = directory
        self.process = subprocess.Popen(  # noqa: S603  a fixed binary with fixed arguments
            [
                binary,
                *("--port", str(self.port), "--bind", HOST, "--save", "", "--appendonly", "no"),
                *("--dir", str(directory), "--logfile", str(directory / "redis.log")),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection((HOST, self.port), timeout=0.5) as s:
                s.sendall(b"PING\r\n")
                if s.recv(16).startswith(b"+PONG"):
                    return
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"redis-server on port {self.port} did not start")

    @property
    def url(self) -> str:
        return f"redis://{HOST}:{self.port}/0"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@contextlib.contextmanager
def throwaway_database(admin_url: str) -> Iterator[str]:
    """A new PostgreSQL database ``tierpolicy_bench_<random>`` for the block, dropped afterwards."""
    import psycopg  # noqa: PLC0415  only the PostgreSQL configuration needs it
    from psycopg import sql  # noqa: PLC0415
    from sqlalchemy.engine import make_url  # noqa: PLC0415

    name = f"{DB_PREFIX}{secrets.token_hex(8)}"
    # CREATE and DROP DATABASE cannot run inside a transaction block.
    with psycopg.connect(admin_url, autocommit=True, connect_timeout=5) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield (
            make_url(admin_url)
            .set(drivername="postgresql+psycopg", database=name)
            .render_as_string(hide_password=False)
        )
    finally:
        assert name.startswith(DB_PREFIX)  # never anyone else's database
        with psycopg.connect(admin_url, autocommit=True, connect_timeout=5) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def server_env(settings: dict[str, str]) -> dict[str, str]:
    """This process's environment without the service's settings, then ``settings``."""
    env = {k: v for k, v in os.environ.items() if k.upper() not in SETTINGS_ENV}
    env.update(settings)
    return env


def tierpolicy_command() -> list[str]:
    """``tierpolicy`` of this interpreter's environment (the console script when installed)."""
    script = Path(sys.executable).with_name("tierpolicy")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "from tierpolicy.cli import main; main()"]


def service_argv(port: int, profile: Path | None = None) -> list[str]:
    serve = ["serve", "--policies", str(POLICIES), "--host", HOST, "--port", str(port)]
    if profile is not None:
        return [sys.executable, str(Path(__file__).resolve()), "_profiled", str(profile), *serve]
    return [*tierpolicy_command(), *serve]


# --------------------------------------------------------------------------- helper modes


def serve_floor(port: int, body_file: Path) -> None:
    """The floor: one route returning a constant dict, served as ``tierpolicy serve`` serves."""
    import uvicorn  # noqa: PLC0415  the service extra
    from fastapi import FastAPI  # noqa: PLC0415

    answer = json.loads(body_file.read_text(encoding="utf-8"))
    app = FastAPI()

    # The same return annotation as the evaluate route, so FastAPI serialises the same way.
    @app.post(PATH)
    async def evaluate() -> dict[str, object]:
        return answer  # type: ignore[no-any-return]

    @app.get("/health/live")
    async def live() -> dict[str, str]:
        return {"status": "live"}

    uvicorn.run(app, host=HOST, port=port, log_level="warning")


def serve_profiled(stats: Path, cli_args: list[str]) -> None:
    """``tierpolicy`` with cProfile switched on by SIGUSR1 and off (stats written) by SIGUSR2.

    The handlers run on the main thread, the one the event loop (and every async route)
    runs on, so that is the thread profiled.
    """
    import cProfile  # noqa: PLC0415

    from tierpolicy.cli import main as cli_main  # noqa: PLC0415

    profiler = cProfile.Profile()

    def on(_sig: int, _frame: object) -> None:
        profiler.enable()

    def off(_sig: int, _frame: object) -> None:
        profiler.disable()
        profiler.dump_stats(stats)

    signal.signal(signal.SIGUSR1, on)
    signal.signal(signal.SIGUSR2, off)
    sys.argv = ["tierpolicy", *cli_args]
    cli_main()


# --------------------------------------------------------------------------- profile


CATEGORIES = (
    ("waiting for I/O (epoll)", ("select.epoll",)),
    ("uvicorn (HTTP parsing and protocol: httptools or h11)", ("/uvicorn/", "/h11/", "/httptools/")),
    ("JWT (PyJWT, cryptography, hmac)", ("/jwt/", "/cryptography/", "hmac.py", "_hashlib", "openssl")),
    ("tierpolicy engine (evaluate)", ("/tierpolicy/engine/",)),
    ("tierpolicy service (auth, middleware, metrics)", ("/tierpolicy/service/", "/tierpolicy/adapters/")),
    ("prometheus_client (metrics)", ("/prometheus_client/",)),
    ("fastapi (dependencies, validation, serialisation)", ("/fastapi/",)),
    ("starlette (routing, middleware, responses)", ("/starlette/",)),
    ("pydantic / pydantic-core", ("/pydantic/", "/pydantic_core/", "pydantic_core")),
    ("json (stdlib reader, orjson writer)", ("/json/", "_json", "orjson")),
    ("socket send/recv system calls (loopback TCP, in the kernel)", ("_socket.socket",)),
    ("asyncio (event loop, transports)", ("/asyncio/", "_asyncio")),
    ("logging", ("/logging/",)),
    ("uuid, re, typing and other stdlib", ("/uuid.py", "/re/", "/typing.py", "_sre")),
)


def category(filename: str, function: str) -> str:
    """The package a profiled function belongs to, for a where-does-the-time-go table."""
    where = f"{filename} {function}"
    for name, needles in CATEGORIES:
        if any(needle in where for needle in needles):
            return name
    return "other"


LAYERS = (
    (
        "the ASGI application (all it calls, writing the answer included)",
        "fastapi/applications.py",
        "__call__",
    ),
    (
        "the evaluate endpoint (the lane, without FastAPI's router)",
        "tierpolicy/service/_evaluate.py",
        "respond",
    ),
    (
        "FastAPI dependencies (other routes; before the lane, this one)",
        "fastapi/dependencies/utils.py",
        "solve_dependencies",
    ),
    ("  the service's rate limit check", "tierpolicy/service/_limits.py", "__call__"),
    ("    the token check (PyJWT decode, claims)", "tierpolicy/service/_auth.py", "authenticate"),
    ("    the rate limiter's decision", "tierpolicy/engine/_ratelimiter.py", "acheck"),
    ("      the Redis round trip (redis-py asyncio)", "tierpolicy/adapters/redis/_ratelimit.py", "_acall"),
    ("  reading the body and parsing it", "tierpolicy/service/_envelope.py", "read_json"),
    ("  evaluate (the engine)", "tierpolicy/engine/_evaluation.py", "evaluate"),
    ("    request validation (pydantic)", "tierpolicy/engine/_evaluation.py", "parse_request"),
    ("    context coercion (types, timestamps)", "tierpolicy/engine/_engine.py", "coerce"),
    ("    answering the queries", "tierpolicy/engine/_evaluation.py", "_answer"),
    ("  writing the answer (orjson)", "tierpolicy/service/_envelope.py", "envelope"),
    ("  decision metrics", "tierpolicy/service/_metrics.py", "count_answer"),
    ("FastAPI response serialisation", "fastapi/routing.py", "serialize_response"),
    (
        "uvicorn (httptools): reading and parsing requests",
        "uvicorn/protocols/http/httptools_impl.py",
        "data_received",
    ),
    (
        "uvicorn (httptools): writing answers (with the socket send)",
        "uvicorn/protocols/http/httptools_impl.py",
        "send",
    ),
    ("uvicorn + h11: reading and parsing requests", "uvicorn/protocols/http/h11_impl.py", "handle_events"),
    ("uvicorn + h11: writing answers (with the socket send)", "uvicorn/protocols/http/h11_impl.py", "send"),
)
"""Entry points whose cumulative time the profile table shows, when the code has them."""


def profile_breakdown(stats_path: Path, top: int = 15) -> dict[str, Any]:
    """Own time by category, cumulative time of :data:`LAYERS` and the ``top`` functions.

    Built-in functions (and generated ones such as dataclass ``__eq__``) have no package
    of their own: their time goes to their callers' categories, in proportion to the
    time each caller spent in them.
    """
    stats = pstats.Stats(str(stats_path))
    raw: dict[tuple[str, int, str], tuple[int, int, float, float, Any]] = stats.stats  # type: ignore[attr-defined]
    total = sum(entry[2] for entry in raw.values())
    by_category: dict[str, float] = collections.defaultdict(float)
    functions = []
    for (filename, line, function), (_cc, calls, tottime, cumtime, callers) in raw.items():
        functions.append((tottime, cumtime, calls, f"{_short(filename)}:{line}({function})"))
        own = category(filename, function)
        shares = {caller: entry[2] for caller, entry in callers.items()} if callers else {}
        if own == "other" and (filename == "~" or filename.startswith("<")) and sum(shares.values()) > 0:
            spent = sum(shares.values())
            for (caller_file, _line, caller_function), share in shares.items():
                by_category[category(caller_file, caller_function)] += tottime * share / spent
        else:
            by_category[own] += tottime
    functions.sort(reverse=True)
    layers = []
    for label, suffix, function in LAYERS:
        found = [entry[3] for (f, _l, name), entry in raw.items() if name == function and f.endswith(suffix)]
        if found:
            layers.append((label, max(found)))
    return {
        "total_s": total,
        "categories": sorted(by_category.items(), key=lambda item: -item[1]),
        "layers": layers,
        "top": functions[:top],
    }


def _short(filename: str) -> str:
    for marker in ("site-packages/", "/src/", "/lib/python3"):
        if marker in filename:
            return filename.split(marker, 1)[1]
    return filename


# --------------------------------------------------------------------------- running


def say(options: Options, message: str) -> None:
    if not options.quiet:
        sys.stderr.write(f"[bench_service] {message}\n")
        sys.stderr.flush()


def _answer_body(body: bytes) -> bytes:
    """The evaluate endpoint's answer to ``body``, built in-process: the floor's constant."""
    tierpolicy = import_tierpolicy()
    from tierpolicy.engine._evaluation import evaluate  # noqa: PLC0415  after the path set-up

    engine = tierpolicy.load(POLICIES)
    answer = evaluate(engine, json.loads(body))
    envelope = {"data": answer, "meta": {"request_id": "0" * 32, "policy_version": engine.version}}
    return json.dumps(envelope).encode()


def _load(
    options: Options, name: str, port: int, payloads: Sequence[bytes], probe: _Probe, on_measure: Any = None
) -> list[LoadResult]:
    results = []
    if on_measure is None:
        say(
            options, f"{name}: open loop, {options.rate:,.0f}/s for {options.warmup:g}+{options.duration:g} s"
        )
        results.append(
            asyncio.run(
                open_loop(
                    name,
                    port,
                    payloads,
                    rate=options.rate,
                    duration=options.duration,
                    warmup=options.warmup,
                    connections=options.connections,
                    probe=probe,
                )
            )
        )
    say(
        options,
        f"{name}: closed loop, {options.closed_connections} connections for"
        f" {options.closed_warmup:g}+{options.closed_duration:g} s",
    )
    results.append(
        asyncio.run(
            closed_loop(
                name,
                port,
                payloads,
                duration=options.closed_duration,
                warmup=options.closed_warmup,
                connections=options.closed_connections,
                probe=probe,
                on_measure=on_measure,
            )
        )
    )
    return results


def _check_answer(server: ServerProcess, payload: bytes, queries: int) -> int:
    """One request before the load: the answer must be 200 with one result per query; its size."""
    status, body = fetch(server.port, payload)
    if status != 200:
        raise RuntimeError(f"{server.name}: the evaluate request answered {status}: {body[:500]!r}")
    results = json.loads(body)["data"]["results"]
    if len(results) != queries:
        raise RuntimeError(f"{server.name}: {len(results)} results for {queries} queries")
    return len(body)


def run(options: Options, work: Path, *, profile: bool = True) -> dict[str, Any]:
    """Every configuration in turn; the numbers and what was learnt about the servers."""
    import_tierpolicy()
    from tierpolicy.service import mint_token  # noqa: PLC0415  needs the service extra

    secret = secrets.token_urlsafe(48)
    # One service principal per connection: the shipped service-api limit (2,000/s per
    # principal, a guard against runaway loops) would otherwise refuse part of a closed
    # loop on a fast machine, and refusals are cheaper than answers. Each request still
    # pays the same rate-limit check, on its connection's own counter.
    tokens = [
        mint_token(secret, role="service", subject=f"bench-{i}", ttl=3600)
        for i in range(max(options.connections, options.closed_connections))
    ]
    body = eval_body()
    answer = _answer_body(body)
    (work / "floor-body.json").write_bytes(answer)
    common = {"JWT_SECRET": secret, "LOG_LEVEL": "warning", "POLICY_DIR": str(POLICIES)}
    out: dict[str, Any] = {
        "request_bytes": len(body),
        "floor_body_bytes": len(answer),
        "results": [],
        "answer_bytes": {},
        "server_logs": {},
    }
    for name in options.configs:
        port = free_port()
        payloads = [build_request(HOST, port, PATH, body, None if name == "floor" else t) for t in tokens]
        with contextlib.ExitStack() as stack:
            redis_pid = None
            if name == "floor":
                argv = [
                    sys.executable,
                    str(Path(__file__).resolve()),
                    "_floor",
                    str(port),
                    str(work / "floor-body.json"),
                ]
                server = ServerProcess(name, argv, server_env({}), work, port, "/health/live")
            elif name == "embedded":
                directory = Path(stack.enter_context(tempfile.TemporaryDirectory(dir=work)))
                env = server_env({**common, "DATABASE_URL": f"sqlite:///{directory / 'tierpolicy.db'}"})
                server = ServerProcess(name, service_argv(port), env, directory, port, "/health/ready")
            else:
                directory = Path(stack.enter_context(tempfile.TemporaryDirectory(dir=work)))
                database_url = options.database_url or stack.enter_context(
                    throwaway_database(options.postgres_admin_url)
                )
                redis_url = options.redis_url
                if redis_url is None:
                    redis = RedisProcess(directory)
                    stack.callback(redis.stop)
                    redis_url, redis_pid = redis.url, redis.process.pid
                env = server_env(
                    {
                        **common,
                        "DATABASE_URL": database_url,
                        "REDIS_URL": redis_url,
                        "MIGRATE_ON_STARTUP": "always",
                    }
                )
                server = ServerProcess(name, service_argv(port), env, directory, port, "/health/ready")
            say(options, f"{name}: starting on port {port}")
            stack.callback(server.stop)
            server.start()
            out["answer_bytes"][name] = _check_answer(server, payloads[0], len(QUERY_IDS))
            probe = _Probe(server.pid, redis_pid)
            out["results"].extend(_load(options, name, port, payloads, probe))
            server.stop()
            out["server_logs"][name] = _log_summary(server.log)
    if profile and options.profile is not None and "embedded" in options.configs:
        out["profile"] = _profile(options, work, common, body, tokens)
    return out


def _profile(
    options: Options, work: Path, common: dict[str, str], body: bytes, tokens: Sequence[str]
) -> dict[str, Any]:
    assert options.profile is not None
    port = free_port()
    payloads = [build_request(HOST, port, PATH, body, t) for t in tokens]
    stats = options.profile.resolve()
    stats.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory(dir=work) as tmp:
        directory = Path(tmp)
        env = server_env({**common, "DATABASE_URL": f"sqlite:///{directory / 'tierpolicy.db'}"})
        server = ServerProcess(
            "embedded, profiled", service_argv(port, stats), env, directory, port, "/health/ready"
        )
        say(options, f"profile: starting the embedded service under cProfile on port {port}")
        try:
            server.start()
            probe = _Probe(server.pid, None)
            [result] = _load(
                options,
                "embedded (cProfile)",
                port,
                payloads,
                probe,
                on_measure=lambda: server.signal(signal.SIGUSR1),
            )
            server.signal(signal.SIGUSR2)
            deadline = time.monotonic() + 30
            while not stats.exists() and time.monotonic() < deadline:
                time.sleep(0.1)
            time.sleep(0.5)  # the dump is written by the handler; let it finish
        finally:
            server.stop()
    if not stats.exists():
        raise RuntimeError(f"the profiled service wrote no stats; its log:\n{server.log_tail()}")
    return {"result": result, "breakdown": profile_breakdown(stats), "path": str(options.profile)}


def _log_summary(log: Path) -> dict[str, Any]:
    """How many lines the server logged, how many are warnings, errors or tracebacks, the first few."""
    try:
        lines = log.read_text(errors="replace").splitlines()
    except OSError:
        return {"lines": 0, "problems": 0, "first": []}
    problems = [line for line in lines if re.search(r"WARNING|ERROR|CRITICAL|Traceback", line)]
    return {"lines": len(lines), "problems": len(problems), "first": [p[:300] for p in problems[:3]]}


# --------------------------------------------------------------------------- report


def fmt_ms(ns: float | None) -> str:
    """Nanoseconds as milliseconds for the tables (``-`` for nothing)."""
    if ns is None:
        return "-"
    if ns >= 100_000_000:
        return f"{ns / 1e6:,.0f} ms"
    if ns >= 10_000_000:
        return f"{ns / 1e6:.1f} ms"
    return f"{ns / 1e6:.2f} ms"


def fmt_statuses(result: LoadResult) -> str:
    """``0`` when every answer was 200, else the count by status (``unsent`` included)."""
    if result.errors == 0:
        return "0"
    parts = [f"{status}: {count:,}" for status, count in sorted(result.statuses.items()) if status != 200]
    if result.unsent:
        parts.append(f"unsent: {result.unsent:,}")
    return f"**{result.errors:,}** ({', '.join(parts)})"


def _share(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _ratio(a: float | None, b: float | None) -> str:
    return "-" if a is None or not b else f"x{a / b:.2f}"


def machine() -> dict[str, Any]:
    from importlib.metadata import PackageNotFoundError, version  # noqa: PLC0415

    def v(name: str) -> str:
        try:
            return version(name)
        except PackageNotFoundError:
            return "not installed"

    model = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "loadavg_start": loadavg(),
        **{
            name: v(name)
            for name in ("uvicorn", "h11", "httptools", "uvloop", "fastapi", "starlette", "pydantic", "PyJWT")
        },
    }


def target_met(result: LoadResult) -> bool:
    """Whether an open-loop run met the target: p99 under 5 ms at 98 % of 1,000/s or more, no errors."""
    p99 = distribution(result.latency_ns).get("p99")
    rate_ok = result.target_rate is not None and result.rate >= 0.98 * TARGET_RATE and result.errors == 0
    return p99 is not None and p99 < TARGET_P99_NS and rate_ok


def yardstick() -> float:
    """Nanoseconds of an empty Python function call (best of 5): how fast the interpreter runs right now."""
    return min(timeit.repeat("f()", setup="def f(): pass", number=1_000_000, repeat=5)) * 1e3


def runs_summary(runs: Sequence[tuple[dict[str, Any], dict[str, Any]]]) -> str:
    """One row per run and server: the machine's speed then, the open loop's p99 and the closed loop's rate."""
    lines = [
        f"#### The {len(runs)} runs side by side (the machine's speed varies: the empty call is the yardstick)",
        "",
        "| run | empty call at start / end | server | open loop: achieved, p99 | target | closed loop | CPU per request |",
        "| ---: | ---: | --- | ---: | --- | ---: | ---: |",
    ]
    for number, (out, info) in enumerate(runs, 1):
        speed = f"{info['yardstick_start_ns']:.0f} / {info['yardstick_end_ns']:.0f} ns"
        by_server: dict[str, dict[str, LoadResult]] = collections.defaultdict(dict)
        for r in out["results"]:
            by_server[r.server][r.mode] = r
        for server, modes in by_server.items():
            opened, closed = modes.get("open"), modes.get("closed")
            open_text = (
                f"{opened.rate:,.0f}/s, {fmt_ms(distribution(opened.latency_ns).get('p99'))}"
                if opened
                else "-"
            )
            target = (
                "-" if opened is None or server == "floor" else ("met" if target_met(opened) else "not met")
            )
            per_request = closed.cpu_share("server") if closed else None
            cpu = (
                "-"
                if closed is None or per_request is None or not closed.rate
                else f"{per_request / closed.rate * 1e3:.2f} ms"
            )
            rate = f"{closed.rate:,.0f}/s" if closed else "-"
            lines.append(f"| {number} | {speed} | {server} | {open_text} | {target} | {rate} | {cpu} |")
    return "\n".join(lines)


def report(out: dict[str, Any], options: Options, info: dict[str, Any]) -> str:
    results: list[LoadResult] = out["results"]
    floor = {r.mode: r for r in results if r.server == "floor"}
    mode = "quick" if options.quick else "full"
    http = "httptools" if info["httptools"] != "not installed" else "h11"
    loop = "uvloop" if info["uvloop"] != "not installed" else "asyncio"
    lines = [
        f"### tierpolicy seller-service load benchmark ({mode} run)",
        "",
        (
            f"Python {info['python']} ({info['implementation']}), {info['platform']}, {info['cpus']} CPUs"
            f" ({info['cpu_model']}); uvicorn {info['uvicorn']} ({http}, {loop} loop), fastapi {info['fastapi']},"
            f" starlette {info['starlette']}, pydantic {info['pydantic']}, PyJWT {info['PyJWT']};"
            f" load average {info['loadavg_start']} at start, {info.get('loadavg_end')} at end;"
            f" an empty Python function call took {info.get('yardstick_start_ns', 0):.0f} ns at start and"
            f" {info.get('yardstick_end_ns', 0):.0f} ns at end; {info.get('wall_seconds')} s wall."
        ),
        (
            f"`POST {PATH}` with {len(QUERY_IDS)} queries ({', '.join(QUERY_IDS)}; {out['request_bytes']:,} bytes),"
            " a service token (HS256) per connection, one service principal each; answers of "
            + ", ".join(f"{k} {v:,} bytes" for k, v in out["answer_bytes"].items())
            + ". One uvicorn worker per server, `LOG_LEVEL=warning`; the client is this script's asyncio"
            " HTTP/1.1 client in its own process."
        ),
        "",
        (
            f"#### Open loop: {options.rate:,.0f} requests/s for {options.duration:g} s"
            f" (after {options.warmup:g} s of warm-up), {options.connections} connections;"
            " latency from the intended send time (from the actual one when that was earlier)"
        ),
        "",
        "| server | achieved/s | p50 | p90 | p99 | p99.9 | max | errors (non-200) | server CPU | p50 x floor | p99 x floor |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: |",
    ]
    for r in (r for r in results if r.mode == "open"):
        d = distribution(r.latency_ns)
        f = distribution(floor["open"].latency_ns) if "open" in floor else {}
        lines.append(
            f"| {r.server} | {r.rate:,.0f} | {fmt_ms(d.get('p50'))} | {fmt_ms(d.get('p90'))} |"
            f" {fmt_ms(d.get('p99'))} | {fmt_ms(d.get('p99.9'))} | {fmt_ms(d.get('max'))} | {fmt_statuses(r)} |"
            f" {_share(r.cpu_share('server'))} | {_ratio(d.get('p50'), f.get('p50'))} |"
            f" {_ratio(d.get('p99'), f.get('p99'))} |"
        )
    lines += [
        "",
        (
            "Client side of the same runs (service time: from the actual send; send lag: actual minus intended"
            " send time, which is this process's timers and, when the server falls behind, the wait for a free"
            " connection; CPU as CPUs kept busy, 1.00 = one CPU):"
        ),
        "",
        "| server | service p50 | service p99 | send lag p50 | send lag p99 | client CPU | redis-server CPU | whole machine busy CPUs |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in (r for r in results if r.mode == "open"):
        s, g = distribution(r.service_ns), distribution(r.lag_ns)
        busy = r.cpu.get("machine_busy_cpus")
        lines.append(
            f"| {r.server} | {fmt_ms(s.get('p50'))} | {fmt_ms(s.get('p99'))} | {fmt_ms(g.get('p50'))} |"
            f" {fmt_ms(g.get('p99'))} | {_share(r.cpu_share('client'))} | {_share(r.cpu_share('redis'))} |"
            f" {_share(busy)} |"
        )
    lines += [
        "",
        (
            f"#### Closed loop: {options.closed_connections} connections, each sending as soon as it is"
            f" answered, for {options.closed_duration:g} s (after {options.closed_warmup:g} s)"
        ),
        "",
        "| server | requests/s | x floor | p50 | p99 | max | errors (non-200) | server CPU | server CPU per request | client CPU |",
        "| --- | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: |",
    ]
    for r in (r for r in results if r.mode == "closed"):
        d = distribution(r.latency_ns)
        used = r.cpu.get("server")
        per = None if used is None or not r.completed else used / r.completed * 1e9
        lines.append(
            f"| {r.server} | {r.rate:,.0f} | {_ratio(r.rate, floor['closed'].rate if 'closed' in floor else None)} |"
            f" {fmt_ms(d.get('p50'))} | {fmt_ms(d.get('p99'))} | {fmt_ms(d.get('max'))} | {fmt_statuses(r)} |"
            f" {_share(r.cpu_share('server'))} | {fmt_ms(per)} | {_share(r.cpu_share('client'))} |"
        )
    logs = out.get("server_logs") or {}
    if any(v["problems"] for v in logs.values()):
        lines += [
            "",
            "Server logs with warnings or errors: "
            + ", ".join(
                f"{k}: {v['problems']} of {v['lines']} lines" for k, v in logs.items() if v["problems"]
            )
            + ". The first of them:",
            "",
            *(f"    {name}: {line}" for name, v in logs.items() for line in v.get("first", [])),
        ]
    lines += ["", "#### Target", "", "| target | server | measured | met |", "| --- | --- | --- | --- |"]
    for r in (r for r in results if r.mode == "open" and r.server != "floor"):
        p99 = distribution(r.latency_ns).get("p99")
        met = target_met(r)
        lines.append(
            f"| p99 < 5 ms at 1,000 requests/s, one worker | {r.server} |"
            f" p99 {fmt_ms(p99)} at {r.rate:,.0f}/s, {r.errors:,} errors | {'met' if met else '**not met**'} |"
        )
    if "profile" in out:
        prof = out["profile"]
        res: LoadResult = prof["result"]
        b = prof["breakdown"]
        lines += [
            "",
            (
                f"#### Where the embedded service's time goes (cProfile, closed loop, {res.connections}"
                f" connections, {res.rate:,.0f} requests/s under the profiler; stats in `{prof['path']}`)"
            ),
            "",
            (
                "Own time (tottime) of the event-loop thread by package; cProfile's per-call overhead"
                " inflates packages with many small calls, so read the shares, not the absolute times."
            ),
            "",
            "| package | own time | share | per request |",
            "| --- | ---: | ---: | ---: |",
        ]
        for name, seconds in b["categories"]:
            lines.append(
                f"| {name} | {seconds:.2f} s | {seconds / b['total_s']:.1%} |"
                f" {seconds / max(res.completed, 1) * 1e6:,.0f} µs |"
            )
        lines += [
            "",
            "Cumulative time (itself and all it calls) of the steps of a request:",
            "",
            "| step | cumulative | share | per request |",
            "| --- | ---: | ---: | ---: |",
        ]
        for name, seconds in b["layers"]:
            lines.append(
                f"| {name.replace('  ', '&nbsp;&nbsp;')} | {seconds:.2f} s | {seconds / b['total_s']:.1%} |"
                f" {seconds / max(res.completed, 1) * 1e6:,.0f} µs |"
            )
        lines += [
            "",
            "| function (top by own time) | own time | cumulative | calls |",
            "| --- | ---: | ---: | ---: |",
        ]
        lines.extend(f"| `{fn}` | {tt:.3f} s | {ct:.3f} s | {calls:,} |" for tt, ct, calls, fn in b["top"])
    return "\n".join(lines)


def to_json(out: dict[str, Any], options: Options, info: dict[str, Any]) -> dict[str, Any]:
    data = {
        "options": {k: str(v) if isinstance(v, Path) else v for k, v in dataclasses.asdict(options).items()},
        "machine": info,
        **{k: v for k, v in out.items() if k not in {"results", "profile"}},
        "results": [r.to_json() for r in out["results"]],
    }
    if "profile" in out:
        data["profile"] = {
            "result": out["profile"]["result"].to_json(),
            "breakdown": out["profile"]["breakdown"],
        }
    return data


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["_floor"]:
        serve_floor(int(argv[1]), Path(argv[2]))
        return 0
    if argv[:1] == ["_profiled"]:
        serve_profiled(Path(argv[1]), argv[2:])
        return 0
    options = parse_args(argv)
    runs = []
    for number in range(1, options.repeat + 1):
        info = machine()
        info["yardstick_start_ns"] = yardstick()
        started = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix="tierpolicy-bench-") as work:
            out = run(options, Path(work), profile=number == options.repeat)  # the profile: once, last
        info["wall_seconds"] = round(time.perf_counter() - started, 1)
        info["loadavg_end"] = loadavg()
        info["yardstick_end_ns"] = yardstick()
        print(report(out, options, info), flush=True)
        runs.append((out, info))
    if options.repeat > 1:
        print("\n" + runs_summary(runs))
    if options.json_path is not None:
        data = [to_json(out, options, info) for out, info in runs]
        options.json_path.write_text(
            json.dumps(data[0] if len(data) == 1 else data, indent=2, default=str) + "\n"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
