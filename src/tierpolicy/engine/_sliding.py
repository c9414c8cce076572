"""The sliding-window counter, as pure functions (the ``sliding_window`` algorithm).

Each window counts requests in fixed periods aligned to multiples of its period, and
estimates the requests of the last period as the current period's count plus the
previous period's count weighted by how much of it still overlaps the sliding window
(Cloudflare's approximation). State per window: ``(start, previous, current)`` with
``start`` the beginning of the current period in integer nanoseconds; all arithmetic is
exact. As with GCRA, every window is checked first and all are updated only if all
allow, and a window whose periods have both passed is at rest (equal to a fresh key).
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from ._gcra import NS, GcraWindow, WindowResult

if TYPE_CHECKING:
    from collections.abc import Sequence

SlidingState = tuple[int, int, int]
"""(start of the current period, previous period's count, current period's count)."""


@dataclasses.dataclass(frozen=True, slots=True)
class SlidingResult:
    """The answer of every window to one request (see :class:`~._gcra.GcraResult`).

    Attributes:
        allowed: Whether every window allowed it.
        windows: One result per window.
        deciding: The index of the deciding window.
        states: The states to store.
        expires_at: When every window is at rest again (integer nanoseconds).
    """

    allowed: bool
    windows: tuple[WindowResult, ...]
    deciding: int
    states: tuple[SlidingState, ...]
    expires_at: int


def roll(state: SlidingState | None, now: int, period: int) -> SlidingState:
    """Move a window's state to the period that contains ``now``."""
    if state is None:
        return (now - now % period, 0, 0)
    start, _, current = state
    if now < start + period:
        return state
    passed = (now - start) // period
    return (start + passed * period, current if passed == 1 else 0, 0)


def _used(state: SlidingState, now: int, period: int) -> int:
    """The estimated requests of the last period, times ``period`` (to stay in integers)."""
    start, previous, current = state
    return previous * (period - (now - start)) + current * period


def _retry_after(state: SlidingState, now: int, period: int, quota: int, cost: int) -> int:
    """Nanoseconds until a request of ``cost`` fits (the longest wait when it never can)."""
    start, previous, current = state
    if cost > quota:
        return start + 2 * period - now
    room = quota - current - cost
    if room >= 0:
        offset = period - (room * period) // previous if previous else 0
        return max(0, start + offset - now)
    # It only fits in the next period, where this period's count becomes the previous one.
    offset = period - ((quota - cost) * period) // current
    return max(0, start + period + offset - now)


def sliding_window(
    states: Sequence[SlidingState | None], now: int, windows: Sequence[GcraWindow], cost: int = 1
) -> SlidingResult:
    """Check every window, then count the request in all of them only if all allow."""
    if len(states) != len(windows):
        msg = f"{len(states)} stored states for {len(windows)} windows"
        raise ValueError(msg)
    if cost < 0:
        msg = "the cost of a request cannot be negative"
        raise ValueError(msg)
    periods = [w.period * NS for w in windows]
    rolled = [roll(s, now, p) for s, p in zip(states, periods, strict=True)]
    fits = [
        _used(s, now, p) + cost * p <= w.quota * p for s, p, w in zip(rolled, periods, windows, strict=True)
    ]
    allowed = all(fits)
    if allowed:
        rolled = [(start, previous, current + cost) for start, previous, current in rolled]
    results = []
    for s, p, w, fit in zip(rolled, periods, windows, fits, strict=True):
        start, previous, current = s
        remaining = max(0, (w.quota * p - _used(s, now, p)) // p)
        reset = start + 2 * p - now if current else (start + p - now if previous else 0)
        retry = 0 if fit else _retry_after(s, now, p, w.quota, cost)
        results.append(
            WindowResult(allowed=fit, remaining=remaining, reset_after=reset / NS, retry_after=retry / NS)
        )
    if allowed:
        deciding = min(range(len(results)), key=lambda i: (results[i].remaining, i))
    else:
        denied = [i for i, r in enumerate(results) if not r.allowed]
        deciding = max(denied, key=lambda i: (results[i].retry_after, -i))
    expires = max(start + 2 * p for (start, _, _), p in zip(rolled, periods, strict=True))
    return SlidingResult(allowed, tuple(results), deciding, tuple(rolled), expires)
