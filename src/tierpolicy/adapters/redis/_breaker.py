"""Circuit breakers whose state every replica of a service shares, in Redis.

Each breaker is one Redis string, ``<prefix>cb:{<breaker key>}`` (the braces make the
breaker key the Redis Cluster hash tag), holding the engine's :class:`BreakerData`
as compact JSON (the closed state's cached permit is not stored: it is rebuilt). Every
change is the engine's own pure step (:func:`acquire_step`, :func:`record_step`) run
here on the state read from Redis, so a shared breaker answers exactly as the
in-memory one (``tests/adapters/test_redis_breaker.py`` compares them).

**Atomicity.** A change is an optimistic transaction: one script call reads the value,
its remaining TTL and the server's ``TIME``; the step runs here; a second script
writes the new value only if the key still holds exactly the value the step read (a
compare-and-set on the whole value, which needs no version field: the steps are
deterministic, so an unchanged value means the step's result is still the right
one). If another replica wrote first, the write script answers the fresh value and the
step runs again on it at once; if that is beaten too, again after a jittered pause (at
most 20 ms) and a fresh read, up to ``attempts`` (32) times in all, and then the store
gives up with :class:`StoreUnavailableError`. So two replicas never both see the same
transition: each transition, and each half-open permit, belongs to exactly one caller.
A step that changes nothing (a call through a closed breaker, a rejection by an open
one) writes nothing, and costs one round trip instead of two.

**Time.** Replicas' clocks differ, and the executor's clock is usually
``time.monotonic``, whose zero is arbitrary per process. The shared state therefore
uses one time base, the Redis server's ``TIME`` (read by the same script as the state,
on the node that holds the key). The caller's ``now`` is used only to convert the
times handed back (:attr:`Rejection.retry_at`, :attr:`Transition.at`,
:attr:`BreakerSnapshot.open_until`) into the caller's clock:
``caller time = now + (redis time - redis now)``.

**TTL.** Every write sets the value and its TTL together (``SET ... PX``): twice the
longest time the state must outlive (a time window's size; for an open breaker, its
current open wait; ``max_wait_in_half_open``), and at least ``min_ttl`` (a day by
default), at most 30 days. A step that changes nothing still rewrites the value once
less than half of that TTL is left, so a busy breaker never expires; an idle one does,
and a breaker whose key has expired (or was reset) is a fresh closed breaker, which is
also what a half-open breaker whose probes were lost with their replica becomes.

**Failures.** redis-py's errors become :class:`StoreUnavailableError` (Redis cannot be
reached, is loading, read-only, ...) or :class:`StoreError`, with the driver's
exception on ``__cause__``; a value that is not a breaker state is a
:class:`StoreError`. After Redis was found unavailable, the store does not ask it again
for ``retry_interval`` seconds and raises at once, so that calls do not each wait for a
connection timeout. The executor treats a failing breaker store as a closed breaker
(see ``docs/executor.md``).

The store's logic lives in :class:`_Core`, whose steps are generators that yield Redis
requests and are sent the replies; the sync and asyncio methods of
:class:`RedisBreakerStore` only perform those requests.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import itertools
import json
import random
import time
from typing import TYPE_CHECKING, Any, Final, NamedTuple, TypeVar

from redis import exceptions as rex

from tierpolicy.engine._breaker import (
    BreakerData,
    BreakerSnapshot,
    BreakerState,
    Permit,
    Rejection,
    Transition,
    Window,
    acquire_step,
    record_step,
    snapshot_of,
)
from tierpolicy.engine._exceptions import StoreError, StoreUnavailableError

from ._connect import AsyncClient, Clients, SyncClient, sync_client
from ._errors import translate

if TYPE_CHECKING:
    from collections.abc import Callable, Generator

    from tierpolicy.engine._resilience import BreakerPolicy, Outcome

T = TypeVar("T")

DEFAULT_MIN_TTL: Final = 86_400.0
"""Seconds an idle breaker's state is kept at least (a day)."""

MAX_TTL: Final = 30 * 86_400.0
"""The longest TTL ever set (an unbounded open wait would otherwise never expire)."""

DEFAULT_ATTEMPTS: Final = 32
"""How many times a contended change is tried before the store gives up."""

_MAX_PAUSE: Final = 0.02
"""The longest pause, in seconds, between two tries of a contended change."""

_FORMAT: Final = 1
"""The first element of every stored value: the layout below."""

_STATES: Final = (BreakerState.CLOSED, BreakerState.OPEN, BreakerState.HALF_OPEN)
_STATE_CODES: Final = {state: code for code, state in enumerate(_STATES)}
_OUTCOME_CODES: Final = {"0": 0, "1": 1, "2": 2, "3": 3}

_READ_SCRIPT: Final = """\
local t = redis.call('TIME')
return {t[1], t[2], redis.call('GET', KEYS[1]), redis.call('PTTL', KEYS[1])}
"""
"""The value, the server's time and the key's remaining TTL, in one round trip."""

_WRITE_SCRIPT: Final = """\
local current = redis.call('GET', KEYS[1])
if (current or '') == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  return 1
end
local t = redis.call('TIME')
return {t[1], t[2], current, redis.call('PTTL', KEYS[1])}
"""
"""Compare-and-set: write ARGV[2] with a TTL of ARGV[3] ms if the key holds ARGV[1] ('': absent).

When it does not, it answers what the read script would, so that the next try needs no
read of its own.
"""


class _Script(NamedTuple):
    source: str
    sha: str


def _script(source: str) -> _Script:
    return _Script(source, hashlib.sha1(source.encode(), usedforsecurity=False).hexdigest())


_READ: Final = _script(_READ_SCRIPT)
_WRITE: Final = _script(_WRITE_SCRIPT)


# --------------------------------------------------------------------------- requests


class _Read(NamedTuple):
    """Run the read script on ``key``; the reply is sent back as it is."""

    key: str


class _Write(NamedTuple):
    """Run the compare-and-set script; the reply (1 written, else a read reply) is sent back."""

    key: str
    expected: str
    value: str
    ttl_ms: int


class _Pause(NamedTuple):
    """Sleep ``seconds`` (between two tries of a contended change)."""

    seconds: float


class _Delete(NamedTuple):
    """Delete ``key``."""

    key: str


class _Keys(NamedTuple):
    """The keys matching ``pattern`` (``SCAN``, every node of a cluster), at most ``limit``."""

    pattern: str
    limit: int


_Request = _Read | _Write | _Pause | _Delete | _Keys

_SCAN_COUNT: Final = 500
"""Keys a ``SCAN`` step looks at (a hint to the server)."""


def _glob_escape(text: str) -> str:
    """``text`` as a Redis glob pattern that matches it alone."""
    return "".join(f"\\{c}" if c in "*?[]\\" else c for c in text)


# --------------------------------------------------------------------------- the stored value


def encode(data: BreakerData) -> str:
    """The stored form of ``data``: a JSON array (its cached permit is left out).

    ``[format, state, generation, openings, changed_at, issued, calls, failures, slow,
    outcome codes (one digit per call, oldest first), buckets (flat: second, calls,
    failures, slow, ...), probe calls, probe failures, probe slow]``.
    """
    window, probes = data.window, data.probes
    return json.dumps(
        [
            _FORMAT,
            _STATE_CODES[data.state],
            data.generation,
            data.openings,
            float(data.changed_at),
            data.issued,
            window.calls,
            window.failures,
            window.slow,
            "".join(map(str, window.entries)),
            [value for bucket in window.buckets for value in bucket],
            probes.calls,
            probes.failures,
            probes.slow,
        ],
        separators=(",", ":"),
    )


def decode(text: str) -> BreakerData:
    """The :class:`BreakerData` stored as ``text`` by :func:`encode`.

    Raises:
        ValueError: ``text`` is not a stored breaker state.
    """
    try:
        (
            layout,
            state,
            generation,
            openings,
            changed_at,
            issued,
            calls,
            failures,
            slow,
            entries,
            flat,
            probe_calls,
            probe_failures,
            probe_slow,
        ) = json.loads(text)
        if layout != _FORMAT or state not in (0, 1, 2) or not isinstance(entries, str) or len(flat) % 4:
            raise ValueError(text)  # noqa: TRY301  one message for every malformed value, below
        counts = (
            state,
            generation,
            openings,
            issued,
            calls,
            failures,
            slow,
            probe_calls,
            probe_failures,
            probe_slow,
        )
        if not all(type(n) is int for n in (*counts, *flat)) or type(changed_at) not in (int, float):
            raise ValueError(text)  # noqa: TRY301  as above
        buckets = tuple(zip(flat[0::4], flat[1::4], flat[2::4], flat[3::4], strict=True))
        return BreakerData(
            state=_STATES[state],
            generation=generation,
            window=Window(calls, failures, slow, tuple(_OUTCOME_CODES[c] for c in entries), buckets),
            openings=openings,
            changed_at=float(changed_at),
            issued=issued,
            probes=Window(probe_calls, probe_failures, probe_slow),
        )
    except (ValueError, TypeError, IndexError, KeyError) as exc:
        msg = f"not a stored breaker state: {text!r:.120}"
        raise ValueError(msg) from exc


_INITIAL: Final = BreakerData()
_INITIAL_VALUE: Final = encode(_INITIAL)


def ttl_seconds(policy: BreakerPolicy, data: BreakerData, min_ttl: float) -> float:
    """How long to keep ``data`` (written now under ``policy``) when nothing touches it again.

    Twice the longest time the state must outlive, at least ``min_ttl``, at most
    :data:`MAX_TTL`: a time window's size, an open breaker's current wait (so that it
    goes half-open, not fresh, when the wait is over) and ``max_wait_in_half_open``.
    """
    horizon = float(policy.window_size) if policy.window_type == "time" else 0.0
    if data.state is BreakerState.OPEN:
        horizon = max(horizon, policy.open_wait(data.openings))
    horizon = max(horizon, policy.max_wait_in_half_open)
    return min(MAX_TTL, max(min_ttl, 2 * horizon))


# --------------------------------------------------------------------------- time


def _shifted(transitions: tuple[Transition, ...], offset: float) -> tuple[Transition, ...]:
    if not offset or not transitions:
        return transitions
    return tuple(dataclasses.replace(t, at=t.at + offset) for t in transitions)


def _to_caller(answer: Permit | Rejection, offset: float) -> Permit | Rejection:
    """``answer`` (in Redis time) in the caller's clock, ``offset`` seconds ahead of Redis."""
    if not offset:
        return answer
    if isinstance(answer, Permit):
        if not answer.transitions:
            return answer
        return dataclasses.replace(answer, transitions=_shifted(answer.transitions, offset))
    retry_at = None if answer.retry_at is None else answer.retry_at + offset
    return dataclasses.replace(answer, retry_at=retry_at, transitions=_shifted(answer.transitions, offset))


# --------------------------------------------------------------------------- the I/O-free core


class _Core:
    """Everything but the I/O: keys, the stored form, TTLs, the transaction loop, time.

    Its ``*ing`` methods are generators that yield :data:`_Request` values, are sent
    each request's raw reply, and return the store method's answer.
    """

    def __init__(
        self,
        *,
        prefix: str,
        name: str,
        min_ttl: float,
        attempts: int,
        retry_interval: float,
        server_clock: Callable[[], float] | None,
    ) -> None:
        if "{" in prefix or "}" in prefix:
            msg = "a Redis key prefix cannot contain '{' or '}': they would become the cluster hash tag"
            raise ValueError(msg)
        if not min_ttl > 0:
            msg = "min_ttl must be a number of seconds > 0"
            raise ValueError(msg)
        if attempts < 1:
            msg = "attempts must be at least 1"
            raise ValueError(msg)
        if not retry_interval >= 0:
            msg = "retry_interval must be a number of seconds >= 0"
            raise ValueError(msg)
        self.prefix = prefix
        self.name = name
        self.min_ttl = min_ttl
        self.attempts = attempts
        self.retry_interval = retry_interval
        self.server_clock = server_clock
        self.policies: dict[str, BreakerPolicy] = {}
        """The policy each breaker was last used with here, for snapshots."""
        self._down_until = 0.0
        self._down_cause: BaseException | None = None

    def key(self, key: str) -> str:
        """The Redis key of breaker ``key``."""
        return f"{self.prefix}cb:{{{key}}}"

    # ------------------------------------------------------------------ availability

    def check(self) -> None:
        """Raise at once if Redis was found unavailable less than ``retry_interval`` ago.

        Raises:
            StoreUnavailableError: It was, from the driver's exception of then.
        """
        if self._down_until and time.monotonic() < self._down_until:
            msg = f"Redis was unavailable less than {self.retry_interval:g}s ago; not asking again yet"
            raise StoreUnavailableError(msg, store=self.name) from self._down_cause

    def failure(self, exc: BaseException) -> StoreError:
        """The library's exception for a driver's ``exc``; an unavailable store is left alone a while."""
        error = translate(exc, self.name)
        if isinstance(error, StoreUnavailableError) and self.retry_interval:
            self._down_until = time.monotonic() + self.retry_interval
            self._down_cause = exc
        return error

    # ------------------------------------------------------------------ replies

    def _read(self, reply: Any) -> tuple[str | None, float, int]:  # noqa: ANN401  a raw Redis reply
        """The value, the time base's now and the remaining TTL (ms) from a read reply."""
        try:
            seconds, micros, raw, pttl = reply
            now = int(seconds) + int(micros) / 1_000_000
            text = raw.decode() if isinstance(raw, bytes) else raw
            remaining = int(pttl)
        except (TypeError, ValueError) as exc:
            msg = f"unexpected reply from the breaker read script: {reply!r:.200}"
            raise StoreError(msg, store=self.name) from exc
        if self.server_clock is not None:
            now = self.server_clock()
        return text, now, remaining

    def _data(self, key: str, text: str | None) -> BreakerData:
        if text is None:
            return _INITIAL
        try:
            return decode(text)
        except ValueError as exc:
            msg = f"the value at {key} is not a breaker state (delete it, or choose another prefix): {exc}"
            raise StoreError(msg, store=self.name) from exc

    # ------------------------------------------------------------------ steps

    def _transact(
        self,
        key: str,
        policy: BreakerPolicy,
        step: Callable[[BreakerData, float], tuple[BreakerData, T]],
    ) -> Generator[_Request, Any, tuple[T, float]]:
        """Apply ``step`` (state, Redis now) atomically; its answer and the Redis now it ran at."""
        redis_key = self.key(key)
        reply = yield _Read(redis_key)
        for attempt in range(self.attempts):
            text, now, pttl = self._read(reply)
            data, answer = step(self._data(redis_key, text), now)
            value = encode(data)
            ttl = ttl_seconds(policy, data, self.min_ttl)
            unchanged = value == (_INITIAL_VALUE if text is None else text)  # absent is fresh
            if unchanged and (text is None or pttl > ttl * 500):  # more than half the TTL (ms) left
                return answer, now
            reply = yield _Write(redis_key, text or "", value, int(ttl * 1000))
            if reply == 1:
                return answer, now
            if attempt and attempt + 1 < self.attempts:
                # Beaten again: back off, jittered so that racers spread out, and read
                # afresh (what the write answered is stale after the pause). The first
                # retry goes at once, on what the write answered.
                yield _Pause(random.uniform(0, min(_MAX_PAUSE, 0.0005 * 2**attempt)))  # noqa: S311  jitter, not crypto
                reply = yield _Read(redis_key)
        msg = f"breaker {key} changed under every one of {self.attempts} attempts to update it"
        raise StoreUnavailableError(msg, store=self.name)

    def acquiring(
        self, key: str, policy: BreakerPolicy, now: float
    ) -> Generator[_Request, Any, Permit | Rejection]:
        """:meth:`RedisBreakerStore.acquire`."""
        self.policies[key] = policy
        answer, redis_now = yield from self._transact(
            key, policy, lambda data, at: acquire_step(data, key, policy, at)
        )
        return _to_caller(answer, now - redis_now)

    def recording(
        self, key: str, policy: BreakerPolicy, permit: Permit, outcome: Outcome, duration: float, now: float
    ) -> Generator[_Request, Any, tuple[Transition, ...]]:
        """:meth:`RedisBreakerStore.record`."""
        self.policies[key] = policy
        transitions, redis_now = yield from self._transact(
            key, policy, lambda data, at: record_step(data, key, policy, permit, outcome, duration, at)
        )
        return _shifted(transitions, now - redis_now)

    def snapshotting(
        self, key: str, now: float, policy: BreakerPolicy | None
    ) -> Generator[_Request, Any, BreakerSnapshot]:
        """:meth:`RedisBreakerStore.snapshot`."""
        redis_key = self.key(key)
        text, redis_now, _ = self._read((yield _Read(redis_key)))
        if policy is None:
            policy = self.policies.get(key)
        snapshot = snapshot_of(self._data(redis_key, text), key, policy, redis_now)
        offset = now - redis_now
        if snapshot.open_until is None or not offset:
            return snapshot
        return dataclasses.replace(snapshot, open_until=snapshot.open_until + offset)

    def resetting(self, key: str) -> Generator[_Request, Any, None]:
        """:meth:`RedisBreakerStore.reset`."""
        yield _Delete(self.key(key))
        self.policies.pop(key, None)

    def listing(self, limit: int) -> Generator[_Request, Any, list[str]]:
        """:meth:`RedisBreakerStore.breakers`."""
        if limit < 1:
            msg = "limit must be at least 1"
            raise ValueError(msg)
        head = f"{self.prefix}cb:{{"
        found = yield _Keys(_glob_escape(head) + "*}", limit)
        texts = (k.decode() if isinstance(k, bytes) else str(k) for k in found)
        return sorted({t[len(head) : -1] for t in texts if t.startswith(head) and t.endswith("}")})


# --------------------------------------------------------------------------- the store


class RedisBreakerStore:
    """Circuit-breaker state in Redis, shared by every replica; sync and asyncio from one object.

    Give it a redis-py client, an asyncio client, or both; or let :meth:`from_url`
    create them when first used. :meth:`acquire`, :meth:`record`, :meth:`snapshot` and
    :meth:`reset` use the sync client; :meth:`aacquire`, :meth:`arecord`,
    :meth:`asnapshot` and :meth:`areset` the asyncio one (an asyncio client belongs to
    one event loop). Hand it to ``Executor(breaker_store=...)``: the executor's async
    shell awaits the asyncio methods.

    Args:
        client: A ``redis.Redis`` or ``redis.cluster.RedisCluster``.
        async_client: A ``redis.asyncio.Redis`` or ``redis.asyncio.cluster.RedisCluster``.
        prefix: Prepended to every key (no braces), so that several applications or
            tests can share a server.
        min_ttl: Seconds an idle breaker's state is kept at least (see the module).
        attempts: How many times a change that other replicas keep beating is tried
            before :class:`StoreUnavailableError`.
        retry_interval: Seconds to raise :class:`StoreUnavailableError` at once, without
            asking Redis, after Redis was found unavailable (0: always ask).
        server_clock: Seconds of the shared time base, used instead of Redis ``TIME``:
            for tests and simulations only. Leave it ``None`` in production, where one
            time base for every replica is the point.
        url: Where clients created on first use connect (set by :meth:`from_url`).
        options: Passed to redis-py when clients are created from ``url``.

    Raises:
        ValueError: The prefix contains a brace, a number is out of range, or neither a
            client nor a URL was given.
    """

    def __init__(
        self,
        client: SyncClient | None = None,
        *,
        async_client: AsyncClient | None = None,
        prefix: str = "tierpolicy:",
        min_ttl: float = DEFAULT_MIN_TTL,
        attempts: int = DEFAULT_ATTEMPTS,
        retry_interval: float = 1.0,
        server_clock: Callable[[], float] | None = None,
        url: str | None = None,
        options: dict[str, Any] | None = None,
    ) -> None:
        self._clients = Clients(client, async_client, url, options, what="this breaker store")
        self.name = self._clients.name
        self._core = _Core(
            prefix=prefix,
            name=self.name,
            min_ttl=min_ttl,
            attempts=attempts,
            retry_interval=retry_interval,
            server_clock=server_clock,
        )

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        prefix: str = "tierpolicy:",
        min_ttl: float = DEFAULT_MIN_TTL,
        attempts: int = DEFAULT_ATTEMPTS,
        retry_interval: float = 1.0,
        server_clock: Callable[[], float] | None = None,
        **options: Any,  # noqa: ANN401  passed through to redis-py
    ) -> RedisBreakerStore:
        """A store whose clients connect to ``url`` when first used (see ``_connect``).

        Raises:
            StoreError: The URL is not a Redis URL.
        """
        sync_client(url, **options)  # fail now on a bad URL, not at the first call
        return cls(
            prefix=prefix,
            min_ttl=min_ttl,
            attempts=attempts,
            retry_interval=retry_interval,
            server_clock=server_clock,
            url=url,
            options=options,
        )

    @property
    def prefix(self) -> str:
        """The key prefix."""
        return self._core.prefix

    def key(self, key: str) -> str:
        """The Redis key that holds breaker ``key``."""
        return self._core.key(key)

    @property
    def client(self) -> SyncClient:
        """The sync client (made from the URL on first use).

        Raises:
            TypeError: The store was given only an asyncio client.
        """
        return self._clients.sync

    @property
    def async_client(self) -> AsyncClient:
        """The asyncio client (made from the URL on first use, and again in a new event loop).

        Raises:
            TypeError: The store was given only a sync client.
        """
        return self._clients.asyncio

    # ------------------------------------------------------------------ sync shell

    def _run(self, steps: Generator[_Request, Any, T]) -> T:
        client = self.client
        core = self._core
        core.check()
        reply: Any = None
        while True:
            try:
                request = steps.send(reply)
            except StopIteration as stop:
                return stop.value  # type: ignore[no-any-return]  # the generator's return type
            try:
                if isinstance(request, _Read):
                    reply = self._eval(client, _READ, request.key)
                elif isinstance(request, _Write):
                    reply = self._eval(
                        client, _WRITE, request.key, request.expected, request.value, request.ttl_ms
                    )
                elif isinstance(request, _Pause):
                    time.sleep(request.seconds)
                    reply = None
                elif isinstance(request, _Keys):
                    keys = client.scan_iter(match=request.pattern, count=_SCAN_COUNT)
                    reply = list(itertools.islice(keys, request.limit))
                else:
                    reply = client.delete(request.key)
            except (rex.RedisError, OSError) as exc:
                raise core.failure(exc) from exc

    @staticmethod
    def _eval(client: SyncClient, script: _Script, key: str, *args: object) -> Any:  # noqa: ANN401  a raw Redis reply
        try:
            return client.evalsha(script.sha, 1, key, *args)  # type: ignore[arg-type, unused-ignore]  # redis-py's EncodableT
        except rex.NoScriptError:  # a restarted server, SCRIPT FLUSH, a failover
            client.script_load(script.source)
            return client.evalsha(script.sha, 1, key, *args)  # type: ignore[arg-type, unused-ignore]  # as above

    def acquire(self, key: str, policy: BreakerPolicy, now: float) -> Permit | Rejection:
        """Ask to make one call through breaker ``key`` (see :func:`acquire_step`).

        ``now`` is the caller's clock; the answer's times are in it too.

        Raises:
            StoreUnavailableError: Redis cannot be reached, or the breaker kept changing.
            StoreError: Redis answered with an error, or the key holds something else.
        """
        return self._run(self._core.acquiring(key, policy, now))

    def record(
        self, key: str, policy: BreakerPolicy, permit: Permit, outcome: Outcome, duration: float, now: float
    ) -> tuple[Transition, ...]:
        """Record how a permitted call went (see :func:`record_step`); the transitions it caused.

        Raises:
            StoreUnavailableError: As for :meth:`acquire`.
            StoreError: As for :meth:`acquire`.
        """
        return self._run(self._core.recording(key, policy, permit, outcome, duration, now))

    def snapshot(self, key: str, now: float, policy: BreakerPolicy | None = None) -> BreakerSnapshot:
        """Breaker ``key`` now, read with ``policy`` (default: the one this store last used for it).

        Without a policy (a replica that has not used the breaker yet) the snapshot has
        the state and counts, but no rates, open-until time or half-open permits left.

        Raises:
            StoreUnavailableError: As for :meth:`acquire`.
            StoreError: As for :meth:`acquire`.
        """
        return self._run(self._core.snapshotting(key, now, policy))

    def reset(self, key: str) -> None:
        """Forget breaker ``key`` for every replica: it starts closed with an empty window.

        Raises:
            StoreUnavailableError: As for :meth:`acquire`.
            StoreError: As for :meth:`acquire`.
        """
        self._run(self._core.resetting(key))

    def breakers(self, limit: int = 1000) -> list[str]:
        """The keys of the breakers held under this store's prefix, sorted; at most ``limit``.

        One ``SCAN`` over the keyspace (every primary of a cluster): for monitoring (the
        seller service reports their states on ``/metrics``), not for a hot path.

        Raises:
            ValueError: ``limit`` is below 1.
            StoreUnavailableError: As for :meth:`acquire`.
            StoreError: As for :meth:`acquire`.
        """
        return self._run(self._core.listing(limit))

    # ------------------------------------------------------------------ asyncio shell

    async def _arun(self, steps: Generator[_Request, Any, T]) -> T:
        client = self.async_client
        core = self._core
        core.check()
        reply: Any = None
        while True:
            try:
                request = steps.send(reply)
            except StopIteration as stop:
                return stop.value  # type: ignore[no-any-return]  # the generator's return type
            try:
                if isinstance(request, _Read):
                    reply = await self._aeval(client, _READ, request.key)
                elif isinstance(request, _Write):
                    reply = await self._aeval(
                        client, _WRITE, request.key, request.expected, request.value, request.ttl_ms
                    )
                elif isinstance(request, _Pause):
                    await asyncio.sleep(request.seconds)
                    reply = None
                elif isinstance(request, _Keys):
                    reply = []
                    async for found in client.scan_iter(match=request.pattern, count=_SCAN_COUNT):
                        reply.append(found)
                        if len(reply) >= request.limit:
                            break
                else:
                    reply = await client.delete(request.key)
            except (rex.RedisError, OSError) as exc:
                raise core.failure(exc) from exc

    @staticmethod
    async def _aeval(client: AsyncClient, script: _Script, key: str, *args: object) -> Any:  # noqa: ANN401  a raw Redis reply
        try:
            return await client.evalsha(script.sha, 1, key, *args)  # type: ignore[arg-type, misc, unused-ignore]  # redis-py's typing of evalsha differs between versions
        except rex.NoScriptError:  # a restarted server, SCRIPT FLUSH, a failover
            await client.script_load(script.source)
            return await client.evalsha(script.sha, 1, key, *args)  # type: ignore[arg-type, misc, unused-ignore]  # as above

    async def aacquire(self, key: str, policy: BreakerPolicy, now: float) -> Permit | Rejection:
        """:meth:`acquire` over the asyncio client."""
        return await self._arun(self._core.acquiring(key, policy, now))

    async def arecord(
        self, key: str, policy: BreakerPolicy, permit: Permit, outcome: Outcome, duration: float, now: float
    ) -> tuple[Transition, ...]:
        """:meth:`record` over the asyncio client."""
        return await self._arun(self._core.recording(key, policy, permit, outcome, duration, now))

    async def asnapshot(self, key: str, now: float, policy: BreakerPolicy | None = None) -> BreakerSnapshot:
        """:meth:`snapshot` over the asyncio client."""
        return await self._arun(self._core.snapshotting(key, now, policy))

    async def areset(self, key: str) -> None:
        """:meth:`reset` over the asyncio client."""
        await self._arun(self._core.resetting(key))

    async def abreakers(self, limit: int = 1000) -> list[str]:
        """:meth:`breakers` over the asyncio client."""
        return await self._arun(self._core.listing(limit))

    # ------------------------------------------------------------------ closing

    def close(self) -> None:
        """Close the sync client if this store made it (a client passed in is the caller's)."""
        self._clients.close()

    async def aclose(self) -> None:
        """Close the asyncio client if this store made it."""
        await self._clients.aclose()
