"""Test support: a small policy set that exercises every tiers feature, and helpers."""

from __future__ import annotations

import datetime as dt

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
