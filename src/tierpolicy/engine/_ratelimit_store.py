"""Rate-limit stores: the store interface, the pure step every store runs, the in-memory store.

A request is checked against one or more limits at once, each a :class:`Hit` (its
counter key, windows, cost, algorithm, shadow flag). A store answers a batch of hits
atomically: every window of every hit is checked first, and the counters are written
only if no hit that is not in shadow mode denies. :func:`apply_hits` is that step, pure
over the stored states and the store's clock; the in-memory store here runs it under one
lock, and the Redis store runs a Lua transcription of it on the server, then runs it
again on the states the script read to build the same results (``tests/adapters``
checks both stores against each other from one table).

Stored state per counter key is a tuple of integers: the TAT of each window (GCRA), or
``(start, previous, current)`` for each window (sliding window), tagged with the
algorithm. State of another algorithm or another number of windows (the policy changed)
counts as a fresh key.

The in-memory store bounds its memory by time, not by a cap: an entry whose windows are
all at rest answers exactly like a fresh key, so it is dropped. Expired entries are swept
every ``sweep_interval`` seconds of the store's clock (during a hit), or on demand with
:meth:`InMemoryRateLimitStore.sweep`. It keeps a GCRA counter as the bare tuple of its
TATs (at rest when the largest is past) and a sliding-window counter as a
:class:`SlidingEntry`, in one dictionary, so a key written by one algorithm reads as
fresh to the other.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from typing import TYPE_CHECKING, Literal, NamedTuple, Protocol

from ._gcra import US, GcraResult, GcraWindow, RateLimitDecision, gcra, gcra_refund
from ._sliding import SlidingResult, SlidingState, sliding_refund, sliding_window

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

    from ._ratelimits import RateLimitPolicy

logger = logging.getLogger("tierpolicy.ratelimit")

Algorithm = Literal["gcra", "sliding_window"]
StoreResult = GcraResult | SlidingResult
State = tuple[int, ...]
"""A counter's stored integers: TATs (GCRA) or flattened ``(start, previous, current)`` triples."""


class Hit(NamedTuple):
    """One limit's share of one request.

    (A named tuple rather than a frozen dataclass: one is built per limit per request.)

    Attributes:
        key: The counter key (``rl:{<partition>}:<limit>:<key>``).
        windows: The windows to check, in the limit's order.
        cost: Units to spend (0 asks without spending).
        algorithm: ``gcra`` or ``sliding_window``.
        shadow: A shadow hit is counted but its denial blocks nothing.
    """

    key: str
    windows: tuple[GcraWindow, ...]
    cost: int = 1
    algorithm: Algorithm = "gcra"
    shadow: bool = False

    @property
    def size(self) -> int:
        """How many integers this hit's stored state holds."""
        return len(self.windows) if self.algorithm == "gcra" else 3 * len(self.windows)


class Write(NamedTuple):
    """A counter to store: its state and when it is at rest (integer microseconds)."""

    key: str
    algorithm: Algorithm
    state: State
    expires_at: int


class Step(tuple[bool, "Sequence[Hit]", "Sequence[State | None]", int]):  # noqa: SLOT001  its __dict__ caches the details
    """What a batch of hits comes to: the tuple ``(allowed, hits, states, now)``.

    The decision (:attr:`allowed`) is made, and the counters written, when the store
    answers; the per-window details (:attr:`results`) are computed from the states the
    store read (``states``, one per hit, ``None`` for a fresh counter), by the same pure
    step, when first read. Stores on the hot path decide with a few integer comparisons
    and leave the rest to whoever reads the details. (A tuple, built as
    ``Step((allowed, hits, states, now))``, because a store builds one per call: tuple's
    own constructor costs half of any ``__init__`` in Python.)

    Attributes:
        writes: The counters a store is to write (filled by :func:`apply_hits`; empty
            for a step a store already applied).
    """

    writes: tuple[Write, ...] = ()
    _results: tuple[StoreResult, ...] | None = None

    @property
    def allowed(self) -> bool:
        """Whether no hit outside shadow mode denied (the counters are written)."""
        return self[0]

    @property
    def now(self) -> int:
        """The store's time of the decision, in integer microseconds."""
        return self[3]

    @property
    def results(self) -> tuple[StoreResult, ...]:
        """One result per hit (computed when first read).

        When the batch is denied, hits that would have allowed report their windows as
        they stand (nothing was spent).
        """
        if self._results is None:
            decided, hits, states, now = self
            allowed, results, _ = _evaluate(hits, states, now)
            if allowed != decided:
                # Only a store whose own transcription of the step differs gets here.
                logger.error("a rate-limit store decided %s where the engine decides %s", decided, allowed)
            self._results = results
        return self._results

    def __repr__(self) -> str:
        return f"Step(allowed={self[0]}, results={self.results!r})"


def _unflatten(state: State) -> list[SlidingState | None]:
    return [(state[i], state[i + 1], state[i + 2]) for i in range(0, len(state), 3)]


def _one(hit: Hit, state: State | None, now: int, cost: int) -> tuple[StoreResult, Write]:
    if hit.algorithm == "gcra":
        tats: Sequence[int | None] = state if state is not None else (None,) * len(hit.windows)
        g = gcra(tats, now, hit.windows, cost)
        return g, Write(hit.key, "gcra", g.tats, max(g.tats))
    states = _unflatten(state) if state is not None else [None] * len(hit.windows)
    s = sliding_window(states, now, hit.windows, cost)
    return s, Write(hit.key, "sliding_window", tuple(v for t in s.states for v in t), s.expires_at)


def _evaluate(
    hits: Sequence[Hit], states: Sequence[State | None], now: int
) -> tuple[bool, tuple[StoreResult, ...], tuple[Write, ...]]:
    answers = [_one(h, s, now, h.cost) for h, s in zip(hits, states, strict=True)]
    allowed = all(r.allowed or h.shadow for h, (r, _) in zip(hits, answers, strict=True))
    if allowed:
        writes = tuple(w for h, (r, w) in zip(hits, answers, strict=True) if r.allowed and h.cost > 0)
        return True, tuple(r for r, _ in answers), writes
    # Denied: nothing is spent anywhere, so hits that allowed report their windows as they stand.
    results = tuple(
        _one(h, s, now, 0)[0] if r.allowed else r for h, s, (r, _) in zip(hits, states, answers, strict=True)
    )
    return False, results, ()


def apply_hits(hits: Sequence[Hit], states: Sequence[State | None], now: int) -> Step:
    """Check every window of every hit, and write all only if no blocking hit denies.

    ``states`` holds each hit's stored state (``None`` for a fresh key, or state of
    another shape, which the caller passes as ``None``); ``now`` is integer microseconds.
    """
    allowed, results, writes = _evaluate(hits, states, now)
    step = Step((allowed, hits, states, now))
    step._results, step.writes = results, writes  # noqa: SLF001  this module's own cache
    return step


def at_rest(hit: Hit) -> StoreResult:
    """The answer of a fresh counter to a request that spends nothing (every window full)."""
    return _one(hit, None, 0, 0)[0]


def refund_hits(hits: Sequence[Hit], states: Sequence[State | None], now: int) -> tuple[Write, ...]:
    """Give each hit's cost back (undo an allowed batch); a counter at rest is deleted (expires_at <= now)."""
    writes = []
    for hit, state in zip(hits, states, strict=True):
        if state is None or hit.cost == 0:
            continue
        if hit.algorithm == "gcra":
            tats = gcra_refund(state, now, hit.windows, hit.cost)
            writes.append(Write(hit.key, "gcra", tats, max(tats)))
        else:
            refunded, expires = sliding_refund(_unflatten(state), now, hit.windows, hit.cost)
            writes.append(Write(hit.key, "sliding_window", tuple(v for t in refunded for v in t), expires))
    return tuple(writes)


class RateLimitStore(Protocol):
    """Where counters live. Each call is atomic over all its hits.

    Stores raise :class:`~tierpolicy.StoreUnavailableError` when they cannot be reached
    and :class:`~tierpolicy.StoreError` for other failures; the limiter applies each
    limit's ``on_store_error`` mode. A store may require every hit of one call to share a
    partition (the Redis store does: one cluster slot per script call).
    """

    name: str
    """The store's address without secrets (``memory://``, ``redis://host:6379/0``)."""

    def hit_many(self, hits: Sequence[Hit]) -> Step:
        """Check and spend, all or nothing."""
        ...

    async def ahit_many(self, hits: Sequence[Hit]) -> Step:
        """:meth:`hit_many` for asyncio code."""
        ...

    def refund_many(self, hits: Sequence[Hit]) -> None:
        """Give back what an allowed :meth:`hit_many` of the same hits spent."""
        ...

    async def arefund_many(self, hits: Sequence[Hit]) -> None:
        """:meth:`refund_many` for asyncio code."""
        ...

    def close(self) -> None:
        """Release the sync side's connections, if any."""
        ...

    async def aclose(self) -> None:
        """Release the asyncio side's connections, if any (call it from their event loop)."""
        ...


def _monotonic_us() -> int:
    return time.monotonic_ns() // 1000


class SlidingEntry(NamedTuple):
    """A sliding-window counter in the in-memory store: its state and when it is at rest."""

    state: State
    expires_at: int


class InMemoryRateLimitStore:
    """A thread-safe, asyncio-safe store for one process.

    Every call runs the pure step under one lock with no awaits and no I/O inside it, so
    it is exact from many threads and safe from asyncio tasks (the async methods run
    inline: they never block on I/O).

    Args:
        clock: Seconds from a monotonic clock (injectable for tests).
        sweep_interval: Seconds of the clock between sweeps of expired keys.
    """

    name = "memory://"

    def __init__(self, clock: Callable[[], float] = time.monotonic, sweep_interval: float = 60.0) -> None:
        self._clock = clock
        # The default clock read as integer microseconds directly: no float in between.
        self._now_us: Callable[[], int] = (
            _monotonic_us if clock is time.monotonic else lambda: int(clock() * US)
        )
        self._default_clock = clock is time.monotonic
        self._sweep_us = max(1, int(sweep_interval * US))
        self._lock = threading.Lock()
        # key -> the TATs of a GCRA counter (a plain tuple), or a SlidingEntry. The GCRA
        # entry is bare because the hot path reads and writes it on every hit; its expiry
        # is its largest TAT, which only the sweep needs.
        self._state: dict[str, State | SlidingEntry] = {}
        self._next_sweep = self._now_us() + self._sweep_us

    def __len__(self) -> int:
        """How many keys are resident."""
        return len(self._state)

    def now(self) -> int:
        """The store's time in integer microseconds."""
        return self._now_us()

    def _stored(self, hit: Hit) -> State | None:
        found = self._state.get(hit.key)
        if found is None:
            return None
        if isinstance(found, SlidingEntry):
            return found.state if hit.algorithm == "sliding_window" and len(found.state) == hit.size else None
        return found if hit.algorithm == "gcra" and len(found) == len(hit.windows) else None

    def _write(self, write: Write) -> None:
        self._state[write.key] = (
            write.state if write.algorithm == "gcra" else SlidingEntry(write.state, write.expires_at)
        )

    def hit_many(self, hits: Sequence[Hit]) -> Step:
        """Check every window of every hit; spend from all only if no blocking hit denies."""
        # The default clock read inline: a call of _monotonic_us costs a tenth of a hit.
        now = time.monotonic_ns() // 1000 if self._default_clock else self._now_us()
        if len(hits) == 1 and hits[0][3] == "gcra":  # [3]: Hit.algorithm, without the property
            # The common case: one GCRA counter, decided with a few integer comparisons;
            # Step computes the details from the state read when they are asked for.
            key, windows, cost, _, shadow = hits[0]
            fits, tats = self._spend_gcra(key, windows, cost, now)
            return Step((fits or shadow, hits, (tats,), now))
        if len(hits) == 1:
            return self._one_sliding(hits, now)
        with self._lock:
            self._maybe_sweep_locked(now)
            step = apply_hits(hits, [self._stored(h) for h in hits], now)
            for w in step.writes:
                self._write(w)
        return step

    def _spend_gcra(
        self, key: str, windows: Sequence[GcraWindow], cost: int, now: int
    ) -> tuple[bool, State | None]:
        """Decide one GCRA counter and spend from it if every window allows.

        The decision of _gcra.gcra alone, with a few integer comparisons. Returns whether
        it fits and the TATs it read (``None`` for a fresh counter).
        """
        new: list[int] = []
        # acquire() and release() rather than `with`: about 70 ns less a call.
        lock = self._lock
        lock.acquire()
        try:
            if now >= self._next_sweep:
                self._sweep_locked(now)
            found = self._state.get(key)
            # type() rather than isinstance(): a SlidingEntry is a tuple too.
            tats: State | None = found if type(found) is tuple and len(found) == len(windows) else None  # type: ignore[assignment]  # narrowed by type() above
            # A fresh counter's windows are at rest: their TATs count as now.
            for tat, window in zip(itertools.repeat(now) if tats is None else tats, windows):  # noqa: B905  repeat() is endless; tats has one per window, checked above
                new_tat = (tat if tat > now else now) + window.emission_interval * cost  # noqa: FURB136  max() costs a call
                if new_tat - window.tolerance > now:
                    return False, tats
                new.append(new_tat)
            if cost > 0:
                self._state[key] = tuple(new)
            return True, tats
        finally:
            lock.release()

    def _one_sliding(self, hits: Sequence[Hit], now: int) -> Step:
        """One sliding-window counter, decided inline as GCRA's is.

        The decision and the write of _sliding.sliding_window (roll each window to the
        period holding ``now``, the same floating-point comparison, all windows or
        none); Step computes the details from the same state when they are read.
        """
        hit = hits[0]
        windows = hit.windows
        cost = hit.cost
        with self._lock:
            self._maybe_sweep_locked(now)
            flat = self._stored(hit)
            new: list[int] = []
            expires = now
            fits = True
            for i, window in enumerate(windows):
                period = window.period * US
                if flat is None:
                    start, previous, current = now - now % period, 0, 0
                else:
                    start, previous, current = flat[3 * i], flat[3 * i + 1], flat[3 * i + 2]
                    if now >= start + period:  # roll to the period that holds now
                        passed = (now - start) // period
                        start, previous, current = start + passed * period, current if passed == 1 else 0, 0
                # The same doubles, in the same order, as _sliding.fits_in (and the Redis script).
                if previous * ((period - (now - start)) / period) + current + cost > window.quota:
                    fits = False
                    break
                new += (start, previous, current + cost)
                expires = max(expires, start + 2 * period)
            if fits and cost > 0:
                self._state[hit.key] = SlidingEntry(tuple(new), expires)
        return Step((fits or hit.shadow, hits, (flat,), now))

    async def ahit_many(self, hits: Sequence[Hit]) -> Step:
        """:meth:`hit_many`, inline (no I/O)."""
        return self.hit_many(hits)

    def refund_many(self, hits: Sequence[Hit]) -> None:
        """Give back what the same hits spent."""
        now = self.now()
        with self._lock:
            for w in refund_hits(hits, [self._stored(h) for h in hits], now):
                if w.expires_at <= now:
                    self._state.pop(w.key, None)
                else:
                    self._write(w)

    async def arefund_many(self, hits: Sequence[Hit]) -> None:
        """:meth:`refund_many`, inline (no I/O)."""
        self.refund_many(hits)

    def close(self) -> None:
        """Nothing to release (part of the store interface)."""

    async def aclose(self) -> None:
        """Nothing to release (part of the store interface)."""

    def allow(self, key: str, windows: Sequence[GcraWindow], cost: int = 1) -> bool:
        """Check one GCRA counter and spend ``cost`` from all its windows only if all allow.

        The decision alone, the cheapest call of the store (as ``limits``' ``hit()`` is
        of its limiters): it builds no result and no :class:`Hit`. :meth:`hit` answers
        the same with every window's details.

        Raises:
            ValueError: ``cost`` is negative.
        """
        if cost < 0:
            msg = "the cost of a request cannot be negative"
            raise ValueError(msg)
        now = time.monotonic_ns() // 1000 if self._default_clock else self._now_us()
        return self._spend_gcra(key, windows, cost, now)[0]

    async def aallow(self, key: str, windows: Sequence[GcraWindow], cost: int = 1) -> bool:
        """:meth:`allow` for asyncio code; it never blocks on I/O, so it runs inline.

        Raises:
            ValueError: ``cost`` is negative.
        """
        return self.allow(key, windows, cost)

    def hit(self, key: str, windows: Sequence[GcraWindow], cost: int = 1) -> GcraResult:
        """Check one GCRA counter and spend ``cost`` from all its windows only if all allow."""
        result = self.hit_many([Hit(key, tuple(windows), cost)]).results[0]
        assert isinstance(result, GcraResult)  # noqa: S101  a gcra hit gives a GcraResult
        return result

    def hit_sliding(self, key: str, windows: Sequence[GcraWindow], cost: int = 1) -> SlidingResult:
        """Like :meth:`hit`, with the sliding-window counter instead of GCRA."""
        result = self.hit_many([Hit(key, tuple(windows), cost, "sliding_window")]).results[0]
        assert isinstance(result, SlidingResult)  # noqa: S101  a sliding hit gives a SlidingResult
        return result

    async def ahit(self, key: str, windows: Sequence[GcraWindow], cost: int = 1) -> GcraResult:
        """:meth:`hit` for asyncio code; it never blocks on I/O, so it runs inline."""
        return self.hit(key, windows, cost)

    def sweep(self) -> int:
        """Drop every key at rest now; return how many were dropped."""
        now = self.now()
        with self._lock:
            return self._sweep_locked(now)

    def _maybe_sweep_locked(self, now: int) -> None:
        if now >= self._next_sweep:
            self._sweep_locked(now)

    def _sweep_locked(self, now: int) -> int:
        expired = [
            k
            for k, entry in self._state.items()
            if (entry.expires_at if isinstance(entry, SlidingEntry) else max(entry)) <= now
        ]
        for k in expired:
            del self._state[k]
        self._next_sweep = now + self._sweep_us
        return len(expired)

    def reset(self, key: str) -> None:
        """Forget ``key`` (an admin action)."""
        with self._lock:
            self._state.pop(key, None)


def decide(
    policy: RateLimitPolicy,
    result: StoreResult,
    windows: Sequence[GcraWindow],
    *,
    fallback: str | None = None,
) -> RateLimitDecision:
    """Turn a store's answer into a :class:`RateLimitDecision` (shadow mode never denies)."""
    deciding = result.windows[result.deciding]
    return RateLimitDecision(
        allowed=result.allowed or policy.shadow,
        limited=not result.allowed,
        limit=policy.name,
        window=windows[result.deciding],
        windows=tuple(windows),
        remaining=deciding.remaining,
        reset_after=deciding.reset_after,
        retry_after=deciding.retry_after,
        shadow=policy.shadow,
        policy_version=policy.policy_version,
        rule=policy.rule,
        source=policy.source,
        fallback=fallback,
    )


def check_rate_limit(
    policy: RateLimitPolicy,
    store: RateLimitStore,
    context: Mapping[str, object],
    *,
    tier: str | None = None,
    cost: int | None = None,
) -> RateLimitDecision:
    """Check one request against one limit: compute its key, hit the store, decide.

    ``tier`` chooses per-tier rates (an unknown or missing tier gets the lowest tier's).
    Store errors propagate; :class:`~tierpolicy.RateLimiter` is what applies the
    limit's ``on_store_error`` mode and checks every limit of a route together.

    Raises:
        ConditionError: The key expression failed for this context.
        StoreError: The store failed.
    """
    windows = policy.windows_for(tier)
    hit = Hit(
        policy.key_of(context),
        windows,
        policy.cost if cost is None else cost,
        policy.algorithm,
        policy.shadow,
    )
    return decide(policy, store.hit_many([hit]).results[0], windows)
