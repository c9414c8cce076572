"""Test support: a small policy set that exercises every tiers feature, and helpers."""

from __future__ import annotations

import dataclasses
import datetime as dt

from tierpolicy.engine._resilience import BreakerPolicy

NOW = dt.datetime(2026, 11, 28, 12, 0, tzinfo=dt.UTC)

SMALL_SET = """\
apiVersion: tierpolicy/v1
kind: Context
metadata: {name: ctx}
spec:
  attributes:
    seller: {verified: bool, joined_at: timestamp, below_since: timestamp}
    metrics: {orders: int, rating: double, claim_rate: double}
---
apiVersion: tierpolicy/v1
kind: Tiers
metadata: {name: small}
spec:
  tiers: [{name: bronze}, {name: silver}, {name: gold}]
  features:
    basic: {from: bronze}
    promoted: {from: silver, when: "seller.verified && metrics.rating >= 4.5"}
    onboarding: {tiers: [bronze]}
    beta: {from: bronze, rollout: 50}
    killed: {from: bronze, enabled: false}
    veteran: {from: bronze, when: 'now - seller.joined_at >= duration("2160h")'}
  limits:
    listings: {unit: listings, values: {bronze: 10, gold: unlimited}}
    images: {values: {bronze: 5, silver: 8, gold: 12}}
  progression:
    window_days: 60
    grace_period_days: 90
    rules:
      silver: {when: "metrics.orders >= 10 && metrics.rating >= 4.0"}
      gold: {when: "metrics.orders >= 100 && metrics.rating >= 4.5 && metrics.claim_rate < 0.01"}
  overrides:
    - {seller: vip, feature: promoted, value: true, reason: pilot, expires: "2099-01-01T00:00:00Z"}
    - {seller: vip, limit: listings, value: 500, reason: migration, expires: "2099-01-01T00:00:00Z"}
"""


def seller(tier: str = "silver", sid: str = "s-1", **attrs: object) -> dict[str, object]:
    """Build a context for one seller."""
    metrics = attrs.pop("metrics", {"orders": 0, "rating": 0.0, "claim_rate": 0.0})
    return {"seller": {"id": sid, "tier": tier, **attrs}, "metrics": metrics}


class FakeClock:
    """A clock that moves only when told to; seconds as a float."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        """The current fake time."""
        return self.now

    def advance(self, seconds: float) -> None:
        """Move the clock forward."""
        self.now += seconds


@dataclasses.dataclass
class ReferenceBucket:
    """The continuous-state leaky bucket of ITU-T I.371, an independent formulation of GCRA."""

    interval: int
    limit: int
    level: int = 0
    last: int | None = None

    def drained(self, now: int) -> int:
        """The bucket level at ``now`` before this arrival."""
        if self.last is None:
            return 0
        return max(0, self.level - (now - self.last))


def reference(buckets: list[ReferenceBucket], now: int, cost: int) -> tuple[bool, list[int]]:
    """Admit if every bucket has room for ``cost``; fill all only then. Return (allowed, remaining)."""
    levels = [b.drained(now) for b in buckets]
    allowed = all(x + cost * b.interval <= b.limit for x, b in zip(levels, buckets, strict=True))
    if allowed:
        for x, b in zip(levels, buckets, strict=True):
            b.level = x + cost * b.interval
            b.last = now
    remaining = [(b.limit - b.drained(now)) // b.interval for b in buckets]
    return allowed, remaining


def count_breaker(size: int = 4, **changes: object) -> BreakerPolicy:
    """A breaker over the last ``size`` calls that opens at 50 % failures once it has seen them all.

    Open for 10 s, doubled at each reopening up to 30 s; two probe calls when half open.
    ``changes`` replace any other setting.
    """
    policy = BreakerPolicy(
        window_type="count",
        window_size=size,
        failure_rate_threshold=50.0,
        slow_call_duration=1.0,
        slow_call_rate_threshold=100.0,
        minimum_calls=size,
        wait_in_open=10.0,
        wait_multiplier=2.0,
        max_wait_in_open=30.0,
        permitted_calls_in_half_open=2,
        max_wait_in_half_open=0.0,
    )
    return dataclasses.replace(policy, **changes)  # type: ignore[arg-type]
