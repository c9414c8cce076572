"""The sliding-window counter, as pure functions (the ``sliding_window`` algorithm).

Each window counts requests in fixed periods aligned to multiples of its period, and
estimates the requests of the last period as the current period's count plus the
previous period's count weighted by how much of it still overlaps the sliding window
(Cloudflare's approximation). State per window: ``(start, previous, current)`` with
``start`` the beginning of the current period in integer microseconds; all arithmetic is
exact integer arithmetic except the one comparison that admits a request
(:func:`fits_in`), which both stores compute in doubles. As with GCRA, every window is checked first and all are updated only if all
allow, and a window whose periods have both passed is at rest (equal to a fresh key).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

from ._gcra import US, GcraWindow, WindowResult

if TYPE_CHECKING:
    from collections.abc import Sequence

SlidingState = tuple[int, int, int]
"""(start of the current period, previous period's count, current period's count)."""


class SlidingResult(NamedTuple):
    """The answer of every window to one request (see :class:`~._gcra.GcraResult`).

    Attributes:
        allowed: Whether every window allowed it.
        windows: One result per window.
        deciding: The index of the deciding window.
        states: The states to store.
        expires_at: When every window is at rest again (integer microseconds).
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


def fits_in(state: SlidingState, now: int, period: int, quota: int, cost: int) -> bool:
    """Whether ``cost`` more fits: the estimate, in IEEE doubles, plus ``cost`` is at most ``quota``.

    This one comparison is computed in floating point, in exactly this order of
    operations, because the Redis store's Lua script (whose numbers are doubles) computes
    it the same way: both stores then decide identically, bit for bit, even where
    ``quota * period`` would not fit a double's 53 bits. Everything else is integer.
    """
    start, previous, current = state
    return previous * ((period - (now - start)) / period) + current + cost <= quota


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
    periods = [w.period * US for w in windows]
    rolled = [roll(s, now, p) for s, p in zip(states, periods, strict=True)]
    fits = [fits_in(s, now, p, w.quota, cost) for s, p, w in zip(rolled, periods, windows, strict=True)]
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
            WindowResult(allowed=fit, remaining=remaining, reset_after=reset / US, retry_after=retry / US)
        )
    if allowed:
        deciding = min(range(len(results)), key=lambda i: (results[i].remaining, i))
    else:
        denied = [i for i, r in enumerate(results) if not r.allowed]
        deciding = max(denied, key=lambda i: (results[i].retry_after, -i))
    expires = max(start + 2 * p for (start, _, _), p in zip(rolled, periods, strict=True))
    return SlidingResult(allowed, tuple(results), deciding, tuple(rolled), expires)


def sliding_refund(
    states: Sequence[SlidingState | None], now: int, windows: Sequence[GcraWindow], cost: int
) -> tuple[tuple[SlidingState, ...], int]:
    """Give ``cost`` back to every window's current count; return the states and when they expire."""
    periods = [w.period * US for w in windows]
    rolled = [roll(s, now, p) for s, p in zip(states, periods, strict=True)]
    refunded = tuple((start, previous, max(0, current - cost)) for start, previous, current in rolled)
    expires = max(start + 2 * p for (start, _, _), p in zip(refunded, periods, strict=True))
    return refunded, expires
