"""GCRA (the generic cell rate algorithm) as pure functions, and rate-limit decisions.

A window allows ``capacity`` units at once and refills one unit every
``emission_interval``. Its whole state is one number, the theoretical arrival time
(TAT): the time at which the window would be fully refilled. A key whose TAT is in the
past is indistinguishable from a key never seen, which is what lets stores drop it.

All times are integer microseconds so that the arithmetic is exact: the same hits give
the same answers in every process and in every store (the in-memory store, and the
Redis store's server-side script, whose Lua numbers are doubles: microseconds since the
epoch stay below 2**53, where nanoseconds would not). Several windows are checked together: every window is checked first and
all are updated only if all allow, so a request denied by one window consumes none.
"""

from __future__ import annotations

import dataclasses
import math
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from collections.abc import Sequence

US = 1_000_000
"""Microseconds per second: the resolution of every rate-limit clock (Redis ``TIME`` gives microseconds)."""


@dataclasses.dataclass(frozen=True, slots=True)
class GcraWindow:
    """One window of a limit: ``quota`` units per ``period`` seconds, ``burst`` at once.

    Attributes:
        name: The name the window has in ``RateLimit-Policy`` headers.
        quota: Units per period (the ``q`` of the header).
        period: The period in whole seconds (the ``w`` of the header).
        burst: Units that may be spent at once from rest (defaults to ``quota``).
        emission_interval: Microseconds to refill one unit (at least 1); derived.
        tolerance: How far ahead of now the TAT may run, ``burst`` emission intervals; derived.
    """

    name: str
    quota: int
    period: int
    burst: int
    # Derived once here because every hit reads them.
    emission_interval: int = dataclasses.field(init=False, repr=False, compare=False)
    tolerance: int = dataclasses.field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        interval = max(1, round(self.period * US / self.quota))
        object.__setattr__(self, "emission_interval", interval)
        object.__setattr__(self, "tolerance", interval * self.burst)


class WindowResult(NamedTuple):
    """The answer of one window to one request; durations in seconds.

    (Named tuples, like the other per-request values here: they are built on every hit.)

    Attributes:
        allowed: Whether this window alone would allow the request.
        remaining: Whole units still available after this answer.
        reset_after: Seconds until the window is back at full capacity.
        retry_after: Seconds until the same request would be allowed (0 when allowed).
    """

    allowed: bool
    remaining: int
    reset_after: float
    retry_after: float


class GcraResult(NamedTuple):
    """The answer of every window of a limit to one request.

    Attributes:
        allowed: Whether every window allowed it.
        windows: One result per window, in the limit's order.
        deciding: The index of the window that decided: when denied, the denying window
            with the longest wait; when allowed, the window with the fewest remaining.
        tats: The TATs to store: updated when allowed, unchanged when denied.
    """

    allowed: bool
    windows: tuple[WindowResult, ...]
    deciding: int
    tats: tuple[int, ...]


def gcra(tats: Sequence[int | None], now: int, windows: Sequence[GcraWindow], cost: int = 1) -> GcraResult:
    """Check every window, then update all only if all allow.

    ``tats`` holds the stored TAT of each window (``None`` for a fresh key); ``now`` and
    the TATs are integer microseconds. A cost of 0 asks without consuming.
    """
    if len(tats) != len(windows):
        msg = f"{len(tats)} stored states for {len(windows)} windows"
        raise ValueError(msg)
    if cost < 0:
        msg = "the cost of a request cannot be negative"
        raise ValueError(msg)
    # One window's step, inlined: this loop runs on every hit.
    results: list[WindowResult] = []
    new: list[int] = []
    allowed = True
    deciding = 0
    for i, window in enumerate(windows):
        tat = tats[i]
        interval = window.emission_interval
        base = now if tat is None or tat < now else tat
        new_tat = base + interval * cost
        allow_at = new_tat - window.tolerance
        if now >= allow_at:
            remaining = (now - allow_at) // interval
            results.append(WindowResult(True, remaining, (new_tat - now) / US, 0.0))  # noqa: FBT003  positional for speed
            new.append(new_tat)
            if remaining < results[deciding].remaining:
                deciding = i
        else:
            allowed = False
            results.append(
                WindowResult(
                    False,  # noqa: FBT003  positional for speed
                    max(0, (window.tolerance - (base - now)) // interval),
                    (base - now) / US,
                    (allow_at - now) / US,
                )
            )
            new.append(base)
    if allowed:
        return GcraResult(True, tuple(results), deciding, tuple(new))  # noqa: FBT003  positional for speed
    denied = [i for i, r in enumerate(results) if not r.allowed]
    deciding = max(denied, key=lambda i: (results[i].retry_after, -i))
    # Nothing was consumed: report each window as it stands before this request.
    return GcraResult(
        False,  # noqa: FBT003  positional for speed
        tuple(
            _at_rest(tat, now, w) if r.allowed else r
            for tat, w, r in zip(tats, windows, results, strict=True)
        ),
        deciding,
        tuple(now if t is None else t for t in tats),
    )


def _at_rest(tat: int | None, now: int, window: GcraWindow) -> WindowResult:
    base = now if tat is None or tat < now else tat
    remaining = max(0, (window.tolerance - (base - now)) // window.emission_interval)
    return WindowResult(allowed=True, remaining=remaining, reset_after=(base - now) / US, retry_after=0.0)


class RateLimitDecision(NamedTuple):
    """What a rate limit says about one request (a named tuple: one is built per limit per request).

    Attributes:
        allowed: Whether the request may go ahead (always true in shadow mode).
        limited: Whether the limit would deny it (in shadow mode: would have denied).
        limit: The limit's name.
        window: The deciding window.
        windows: Every window of the limit, for ``RateLimit-Policy``.
        remaining: Units left in the deciding window.
        reset_after: Seconds until the deciding window is at full capacity.
        retry_after: Seconds until the request would be allowed (0 when allowed).
        shadow: Whether the limit runs in shadow mode (counts, never denies).
        policy_version: The version of the policy set.
        rule: ``ratelimit:<name>``.
        source: Where the limit is defined (``FILE:LINE:COL``).
        fallback: The limit's ``on_store_error`` mode (``fail_open``, ``fail_closed`` or
            ``local``) when the store could not answer and the mode decided instead;
            ``None`` when the store answered.
    """

    allowed: bool
    limited: bool
    limit: str
    window: GcraWindow
    windows: tuple[GcraWindow, ...]
    remaining: int
    reset_after: float
    retry_after: float
    shadow: bool = False
    policy_version: str = ""
    rule: str = ""
    source: str = ""
    fallback: str | None = None

    def headers(self) -> dict[str, str]:
        """The IETF httpapi RateLimit header fields (draft-ietf-httpapi-ratelimit-headers-10).

        ``RateLimit-Policy`` lists every window (``"name";q=<quota>;w=<seconds>``),
        ``RateLimit`` reports the deciding window (``"name";r=<remaining>;t=<seconds to
        reset>``), and ``Retry-After`` (whole seconds, rounded up) is added when the
        request is denied. A shadow-mode limit never adds ``Retry-After``.
        """
        headers = {
            "RateLimit-Policy": ", ".join(f'"{w.name}";q={w.quota};w={w.period}' for w in self.windows),
            "RateLimit": f'"{self.window.name}";r={self.remaining};t={math.ceil(self.reset_after)}',
        }
        if not self.allowed:
            headers["Retry-After"] = str(max(1, math.ceil(self.retry_after)))
        return headers


def gcra_refund(
    tats: Sequence[int | None], now: int, windows: Sequence[GcraWindow], cost: int
) -> tuple[int, ...]:
    """Give ``cost`` back to every window (undo a hit); a TAT never moves before ``now``."""
    return tuple(
        now if tat is None or tat <= now else max(now, tat - w.emission_interval * cost)
        for tat, w in zip(tats, windows, strict=True)
    )
