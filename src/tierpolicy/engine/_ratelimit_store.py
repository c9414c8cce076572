"""The in-memory rate-limit store, and checking a request against a limit.

The store keeps one entry per counter key (``rl:<limit>:<key>``): the TAT of each of the
limit's windows, in integer nanoseconds. Each hit runs the pure :func:`~._gcra.gcra`
step under one lock, with no awaits and no I/O inside it, so the store is safe from
threads and from asyncio tasks alike; the Redis store will run the same step in a
server-side script.

Memory is bounded by time, not by a cap: an entry whose every TAT is in the past is at
rest, and a key at rest answers exactly like a fresh key, so it is dropped. Expired
entries are swept every ``sweep_interval`` seconds of the store's clock (during a hit),
or on demand with :meth:`InMemoryRateLimitStore.sweep`.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING

from ._gcra import NS, GcraResult, GcraWindow, RateLimitDecision, gcra
from ._sliding import SlidingResult, SlidingState, sliding_window

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

    from ._ratelimits import RateLimitPolicy


class InMemoryRateLimitStore:
    """A thread-safe, asyncio-safe GCRA store for one process.

    Args:
        clock: Seconds from a monotonic clock (injectable for tests).
        sweep_interval: Seconds of the clock between sweeps of expired keys.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic, sweep_interval: float = 60.0) -> None:
        self._clock = clock
        self._sweep_ns = max(1, int(sweep_interval * NS))
        self._lock = threading.Lock()
        self._state: dict[str, tuple[int, ...]] = {}
        self._sliding: dict[str, tuple[int, tuple[SlidingState, ...]]] = {}
        self._next_sweep: int | None = None

    def __len__(self) -> int:
        """How many keys are resident."""
        return len(self._state) + len(self._sliding)

    def now(self) -> int:
        """The store's clock in integer nanoseconds."""
        return int(self._clock() * NS)

    def hit(self, key: str, windows: Sequence[GcraWindow], cost: int = 1) -> GcraResult:
        """Check every window of ``key`` and consume ``cost`` from all of them only if all allow."""
        now = self.now()
        with self._lock:
            self._maybe_sweep_locked(now)
            stored = self._state.get(key)
            tats: Sequence[int | None] = (
                stored if stored is not None and len(stored) == len(windows) else [None] * len(windows)
            )
            result = gcra(tats, now, windows, cost)
            if result.allowed and cost > 0:
                self._state[key] = result.tats
        return result

    def hit_sliding(self, key: str, windows: Sequence[GcraWindow], cost: int = 1) -> SlidingResult:
        """Like :meth:`hit`, with the sliding-window counter instead of GCRA."""
        now = self.now()
        with self._lock:
            self._maybe_sweep_locked(now)
            stored = self._sliding.get(key)
            states: Sequence[SlidingState | None] = (
                stored[1] if stored is not None and len(stored[1]) == len(windows) else [None] * len(windows)
            )
            result = sliding_window(states, now, windows, cost)
            if result.allowed and cost > 0:
                self._sliding[key] = (result.expires_at, result.states)
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
        if self._next_sweep is None:
            self._next_sweep = now + self._sweep_ns
        elif now >= self._next_sweep:
            self._sweep_locked(now)

    def _sweep_locked(self, now: int) -> int:
        expired = [k for k, tats in self._state.items() if max(tats) <= now]
        for k in expired:
            del self._state[k]
        stale = [k for k, (expires, _) in self._sliding.items() if expires <= now]
        for k in stale:
            del self._sliding[k]
        self._next_sweep = now + self._sweep_ns
        return len(expired) + len(stale)

    def reset(self, key: str) -> None:
        """Forget ``key`` (an admin action)."""
        with self._lock:
            self._state.pop(key, None)
            self._sliding.pop(key, None)


def decide(
    policy: RateLimitPolicy, result: GcraResult | SlidingResult, windows: Sequence[GcraWindow]
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
    )


def check_rate_limit(
    policy: RateLimitPolicy,
    store: InMemoryRateLimitStore,
    context: Mapping[str, object],
    *,
    tier: str | None = None,
    cost: int | None = None,
) -> RateLimitDecision:
    """Check one request against one limit: compute its key, hit the store, decide.

    ``tier`` chooses per-tier rates (an unknown or missing tier gets the lowest tier's).

    Raises:
        ConditionError: The key expression failed for this context.
    """
    windows = policy.windows_for(tier)
    key = policy.key_of(context)
    spend = policy.cost if cost is None else cost
    result: GcraResult | SlidingResult = (
        store.hit_sliding(key, windows, spend)
        if policy.algorithm == "sliding_window"
        else store.hit(key, windows, spend)
    )
    return decide(policy, result, windows)
