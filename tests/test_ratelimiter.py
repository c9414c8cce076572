"""The rate limiter: every matching limit, partitions and refunds, headers, and store failure modes."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tierpolicy
from support import FakeClock
from tierpolicy.engine._ratelimit_store import Hit, InMemoryRateLimitStore, Step

if TYPE_CHECKING:
    from collections.abc import Sequence


POLICY = """\
apiVersion: tierpolicy/v1
kind: Context
metadata: {name: ctx}
spec:
  attributes:
    request: {client_ip: string}
---
apiVersion: tierpolicy/v1
kind: Tiers
metadata: {name: t}
spec:
  tiers: [{name: bronze}, {name: gold}]
---
apiVersion: tierpolicy/v1
kind: RateLimits
metadata: {name: rl}
spec:
  limits:
    - name: seller
      match: {routes: ["/api/*"]}
      key: seller.id
      windows:
        - {name: seller-hour, rate: {bronze: 3/hour, gold: 6/hour}}
        - {name: seller-burst, rate: 2/s}
    - name: seller-search
      match: {routes: ["/api/search"]}
      key: seller.id + ":search"
      partition: seller.id
      windows: [{rate: 4/hour}]
    - name: address
      match: {routes: ["/api/*"]}
      key: request.client_ip
      windows: [{rate: 5/hour}]
    - name: watch
      match: {routes: ["/api/*"]}
      key: seller.id
      windows: [{rate: 1/hour}]
      shadow: true
    - name: open
      match: {operations: ["open.*"]}
      key: seller.id
      windows: [{rate: 1/hour}]
      on_store_error: fail_open
    - name: closed
      match: {operations: ["closed.*", "mixed.*"]}
      key: seller.id
      windows: [{rate: 1/hour}]
      on_store_error: fail_closed
    - name: local
      match: {operations: ["local.*", "mixed.*"]}
      key: seller.id
      windows: [{rate: 9/hour, burst: 9}]
      on_store_error: local
    - name: shadow-closed
      match: {operations: ["shadow.*"]}
      key: seller.id
      windows: [{rate: 1/hour}]
      on_store_error: fail_closed
      shadow: true
"""


def context(seller: str = "s-1", tier: str = "bronze", ip: str = "10.0.0.1") -> dict[str, object]:
    """A request context of one seller from one address."""
    return {"seller": {"id": seller, "tier": tier}, "request": {"client_ip": ip}}


@pytest.fixture(scope="module")
def policies() -> tierpolicy.PolicySet:
    """The limits above, compiled once."""
    return tierpolicy.load_files({"rl.yaml": POLICY}, root="t")


@pytest.fixture
def limiter(policies) -> tierpolicy.RateLimiter:
    """A limiter over an in-memory store on a frozen clock."""
    return tierpolicy.RateLimiter(policies, InMemoryRateLimitStore(clock=FakeClock()))


class DownStore:
    """A store double that is unreachable (or broken) and counts how often it was asked."""

    name = "down://"

    def __init__(self, error: type[tierpolicy.StoreError] = tierpolicy.StoreUnavailableError) -> None:
        self.error = error
        self.calls = 0

    def hit_many(self, hits: Sequence[Hit]) -> Step:  # noqa: ARG002  the interface's signature
        """Fail."""
        self.calls += 1
        raise self.error("down", store=self.name)

    async def ahit_many(self, hits: Sequence[Hit]) -> Step:
        """Fail."""
        return self.hit_many(hits)

    def refund_many(self, hits: Sequence[Hit]) -> None:
        """Fail."""
        self.hit_many(hits)

    async def arefund_many(self, hits: Sequence[Hit]) -> None:
        """Fail."""
        self.hit_many(hits)

    def close(self) -> None:
        """Nothing to close."""

    async def aclose(self) -> None:
        """Nothing to close."""


class RefundFails(InMemoryRateLimitStore):
    """An in-memory store whose refunds fail, as a store that went away mid-request would."""

    def refund_many(self, hits: Sequence[Hit]) -> None:  # noqa: ARG002  the interface's signature
        """Fail."""
        raise tierpolicy.StoreUnavailableError("gone")


# --------------------------------------------------------------------------- matching and results


def test_no_matching_limit_allows_with_no_headers(limiter):
    """A route no limit matches is allowed, with no decisions and no headers."""
    result = limiter.check(context(), route="/health")
    assert (result.allowed, result.decisions, result.deciding, result.headers()) == (True, (), None, {})
    assert result.retry_after == 0.0


def test_every_matching_limit_is_checked_partition_by_partition(limiter):
    """A search request is checked by the seller's partition (seller, search, shadow), then the address."""
    result = limiter.check(context(), route="/api/search")
    assert [d.limit for d in result.decisions] == ["seller", "seller-search", "watch", "address"]
    assert result.allowed


def test_tier_comes_from_the_context_or_the_argument(limiter):
    """The seller's tier in the context picks per-tier rates; an explicit tier wins."""
    assert limiter.check(context(tier="gold"), route="/api/x").decisions[0].windows[0].quota == 6
    assert limiter.check(context(seller="s-2"), route="/api/x").decisions[0].windows[0].quota == 3
    assert (
        limiter.check(context(seller="s-3"), route="/api/x", tier="gold").decisions[0].windows[0].quota == 6
    )
    assert (
        limiter.check({"seller": {"id": "s-4"}, "request": {"client_ip": "1"}}, route="/api/x")
        .decisions[0]
        .windows[0]
        .quota
        == 3
    )


def test_a_denial_in_one_partition_refunds_the_others(limiter):
    """When the address limit denies, the seller's counters get their units back."""
    for i in range(5):  # five sellers use up the address
        assert limiter.check(context(seller=f"other-{i}"), route="/api/x").allowed
    denied = limiter.check(context(), route="/api/x")
    assert not denied.allowed
    assert denied.deciding is not None
    assert denied.deciding.limit == "address"
    # The seller spent nothing: from another address, all 3 of the hour are there.
    fresh = limiter.check(context(ip="10.9.9.9"), route="/api/x")
    assert fresh.decisions[0].remaining == 1  # burst window (2/s): 2 - 1
    assert [limiter.check(context(ip=f"10.9.9.{i}"), route="/api/x").allowed for i in range(3)] == [
        True,
        False,
        False,
    ]


def test_a_failed_refund_is_logged_and_the_request_stays_denied(policies, caplog):
    """If the refund cannot be made, the denial stands and a warning says so."""
    limiter = tierpolicy.RateLimiter(policies, RefundFails(clock=FakeClock()))
    for i in range(5):
        limiter.check(context(seller=f"other-{i}"), route="/api/x")
    with caplog.at_level(logging.WARNING, logger="tierpolicy.ratelimit"):
        assert not limiter.check(context(), route="/api/x").allowed
    assert "could not refund" in caplog.text


def test_one_partition_is_all_or_nothing(limiter):
    """The seller and seller-search limits share a partition: a denial by one spends nothing from the other."""
    ctx = context(tier="gold")
    clock = limiter.store._clock
    for _ in range(4):
        assert limiter.check(ctx, route="/api/search").allowed
        clock.advance(1.0)
    denied = limiter.check(ctx, route="/api/search")
    assert not denied.allowed
    assert denied.deciding.limit == "seller-search"
    # seller-hour (gold 6/hour) spent 4, not 5.
    assert limiter.check(ctx, route="/api/other").decisions[0].remaining == 1  # burst 2/s: 2-1


def test_shadow_limits_count_but_never_deny_or_show(limiter):
    """A shadow limit says it would deny, but the request is allowed and its windows stay out of the headers."""
    first = limiter.check(context(), route="/api/x")
    second = limiter.check(context(), route="/api/x")
    watch = next(d for d in second.decisions if d.limit == "watch")
    assert second.allowed
    assert (watch.allowed, watch.limited) == (True, True)
    assert "watch" not in second.headers()["RateLimit-Policy"]
    assert first.deciding is not None
    assert first.deciding.limit != "watch"


def test_headers_list_every_enforced_window_and_report_the_deciding_one(limiter):
    """RateLimit-Policy lists all enforced windows; RateLimit the deciding one; Retry-After when denied."""
    allowed = limiter.check(context(), route="/api/x")
    headers = allowed.headers()
    assert (
        headers["RateLimit-Policy"]
        == '"seller-hour";q=3;w=3600, "seller-burst";q=2;w=1, "address";q=5;w=3600'
    )
    assert headers["RateLimit"] == '"seller-burst";r=1;t=1'
    assert "Retry-After" not in headers
    limiter.check(context(), route="/api/x")
    denied = limiter.check(context(), route="/api/x")
    assert denied.headers()["RateLimit"].startswith('"seller-burst";r=0')
    assert denied.headers()["Retry-After"] == "1"
    assert denied.retry_after == pytest.approx(0.5)


def test_cost_overrides_each_limits_cost(limiter):
    """A cost passed to check is spent by every limit; a bad cost is a clear error."""
    assert limiter.check(context(), route="/api/x", cost=2).allowed
    assert not limiter.check(context(), route="/api/x", cost=2).allowed
    assert limiter.check(context(), route="/api/x", cost=0).allowed
    for bad in (-1, 10**10, 1.5, True, "2"):
        with pytest.raises(tierpolicy.InvalidRequestError, match="cost must be a whole number"):
            limiter.check(context(), route="/api/x", cost=bad)  # type: ignore[arg-type]


def test_a_key_that_cannot_be_computed_raises_condition_error(limiter):
    """A context without the seller a limit counts by is the caller's mistake: ConditionError."""
    with pytest.raises(tierpolicy.ConditionError):
        limiter.check({"request": {"client_ip": "1"}}, route="/api/x")


def test_async_check_counts_in_the_same_store(limiter):
    """The async check answers like the sync one and shares its counters."""

    async def run() -> list[bool]:
        return [(await limiter.acheck(context(), route="/api/x")).allowed for _ in range(3)]

    assert asyncio.run(run()) == [True, True, False]


def test_a_holder_is_followed_across_reloads(policies):
    """A limiter over a PolicyHolder uses the limits of the engine it holds now."""
    holder = tierpolicy.PolicyHolder(tierpolicy.Engine(policies))
    limiter = tierpolicy.RateLimiter(holder, InMemoryRateLimitStore(clock=FakeClock()))
    assert limiter.check(context(), route="/api/x").decisions[0].limit == "seller"
    replacement = POLICY.replace("name: seller\n", "name: seller-v2\n")
    holder.swap(tierpolicy.Engine(tierpolicy.load_files({"rl.yaml": replacement}, root="t")))
    assert limiter.check(context(), route="/api/x").decisions[0].limit == "seller-v2"


def test_engines_and_sets_without_limits_are_accepted(policies):
    """An engine is a source too; a policy set without RateLimits limits nothing."""
    assert tierpolicy.RateLimiter(tierpolicy.Engine(policies)).check(context(), route="/api/x").decisions
    bare = tierpolicy.load_files(
        {"t.yaml": POLICY.split("---\napiVersion: tierpolicy/v1\nkind: RateLimits", maxsplit=1)[0]}, root="t"
    )
    assert tierpolicy.RateLimiter(bare).check(context(), route="/api/x").decisions == ()


def test_limits_whose_when_is_false_are_not_checked():
    """A limit whose ``when`` does not hold spends nothing and gives no decision; the others still count."""
    gated = POLICY.replace(
        '    - name: address\n      match: {routes: ["/api/*"]}\n',
        '    - name: address\n      match: {routes: ["/api/*"]}\n      when: seller.tier == "gold"\n',
    )
    assert gated != POLICY
    limiter = tierpolicy.RateLimiter(
        tierpolicy.load_files({"rl.yaml": gated}, root="t"), InMemoryRateLimitStore(clock=FakeClock())
    )
    bronze = limiter.check(context(tier="bronze"), route="/api/x")
    assert "address" not in [d.limit for d in bronze.decisions]
    gold = limiter.check(context(seller="s-2", tier="gold"), route="/api/x")
    address = next(d for d in gold.decisions if d.limit == "address")
    assert address.remaining == 4  # the bronze request before it spent nothing of the address's 5/hour


def test_the_route_memo_is_bounded(limiter):
    """Distinct raw paths do not grow the limiter's memo without bound."""
    for i in range(5000):
        limiter.limits_for(route=f"/nothing/{i}")
    assert len(limiter._memo[1]) <= 4096


def test_bad_settings_are_rejected(policies):
    """Fewer than 1 replica and a negative or NaN retry interval are errors."""
    with pytest.raises(ValueError, match="replicas"):
        tierpolicy.RateLimiter(policies, replicas=0)
    for bad in (-1.0, float("nan")):
        with pytest.raises(ValueError, match="retry_interval"):
            tierpolicy.RateLimiter(policies, retry_interval=bad)


# --------------------------------------------------------------------------- store failures


def test_each_limit_applies_its_mode_when_the_store_is_down(policies):
    """fail_open allows, fail_closed denies, local counts a share in this process."""
    limiter = tierpolicy.RateLimiter(policies, DownStore(), replicas=3, clock=FakeClock())
    opened = limiter.check(context(), operation="open.x")
    assert opened.allowed
    assert opened.decisions[0].fallback == "fail_open"
    assert opened.decisions[0].remaining == 1
    closed = limiter.check(context(), operation="closed.x")
    assert not closed.allowed
    assert (closed.decisions[0].fallback, closed.decisions[0].remaining) == ("fail_closed", 0)
    assert closed.retry_after == pytest.approx(1.0)
    local = [limiter.check(context(), operation="local.x") for _ in range(4)]
    assert [r.allowed for r in local] == [True, True, True, False]  # 9/hour over 3 replicas
    assert local[0].decisions[0].window.quota == 3
    assert local[0].decisions[0].fallback == "local"


def test_an_unavailable_store_is_left_alone_for_the_retry_interval(policies):
    """After one failure the store is not asked again until retry_interval has passed."""
    clock = FakeClock()
    store = DownStore()
    limiter = tierpolicy.RateLimiter(policies, store, retry_interval=2.0, clock=clock)
    for _ in range(10):
        limiter.check(context(), operation="open.x")
    assert store.calls == 1
    assert not limiter.store_available
    clock.advance(1.0)
    assert limiter.check(context(), operation="closed.x").retry_after == pytest.approx(1.0)
    clock.advance(1.0)
    assert limiter.store_available
    limiter.check(context(), operation="open.x")
    assert store.calls == 2


def test_a_broken_store_applies_modes_without_backing_off(policies, caplog):
    """A store error that is not an outage (a bad reply) applies the modes but keeps asking the store."""
    store = DownStore(tierpolicy.StoreError)
    limiter = tierpolicy.RateLimiter(policies, store, clock=FakeClock())
    with caplog.at_level(logging.ERROR, logger="tierpolicy.ratelimit"):
        assert limiter.check(context(), operation="open.x").allowed
        assert limiter.check(context(), operation="open.x").allowed
    assert store.calls == 2
    assert limiter.store_available
    assert "failed" in caplog.text


def test_fail_closed_in_a_partition_keeps_local_limits_unspent(policies):
    """When a fail_closed limit denies, the local limits of the same partition spend nothing."""
    limiter = tierpolicy.RateLimiter(policies, DownStore(), clock=FakeClock())
    mixed = limiter.check(context(), operation="mixed.x")
    assert not mixed.allowed
    assert [d.fallback for d in mixed.decisions] == ["fail_closed", "local"]
    assert len(limiter.local_store) == 0


def test_a_shadow_fail_closed_limit_does_not_deny(policies):
    """A shadow limit under fail_closed reports the would-be denial and lets the request through."""
    limiter = tierpolicy.RateLimiter(policies, DownStore(), clock=FakeClock())
    result = limiter.check(context(), operation="shadow.x")
    assert result.allowed
    assert (result.decisions[0].limited, result.decisions[0].fallback) == (True, "fail_closed")


def test_local_fallbacks_are_refunded_when_a_later_partition_denies():
    """Units a local fallback spent are given back when another partition denies the request."""

    class DownForSellers(InMemoryRateLimitStore):
        def hit_many(self, hits: Sequence[Hit]) -> Step:
            if any(":{s-" in h.key or h.key.startswith("rl:{s-") for h in hits):
                raise tierpolicy.StoreUnavailableError("down for sellers")
            return super().hit_many(hits)

    text = POLICY.replace(
        "key: request.client_ip\n      windows: [{rate: 5/hour}]",
        'key: request.client_ip\n      windows: [{rate: 5/hour}]\n    - name: local-api\n      match: {routes: ["/api/*"]}\n      key: seller.id\n      windows: [{rate: 9/hour}]\n      on_store_error: local',
    )
    policies2 = tierpolicy.load_files(
        {"rl.yaml": text.replace("name: seller\n", "name: seller\n      on_store_error: local\n")}, root="t"
    )
    limiter = tierpolicy.RateLimiter(
        policies2, DownForSellers(clock=FakeClock()), retry_interval=0.0, clock=FakeClock()
    )
    for i in range(5):
        assert limiter.check(context(seller=f"s-o{i}"), route="/api/x").allowed
    before = limiter.local_store._state.copy()
    assert not limiter.check(context(), route="/api/x").allowed
    assert {k: v for k, v in limiter.local_store._state.items() if "s-1" in k} == {
        k: v for k, v in before.items() if "s-1" in k
    }


@settings(max_examples=80, deadline=None)
@given(
    requests=st.lists(
        st.tuples(
            st.sampled_from(["s-1", "s-2", "s-3", "s-4", "s-5", "s-6"]),
            st.sampled_from(["a", "b"]),
            st.sampled_from(["/api/x", "/api/search"]),
            st.integers(0, 700_000),
        ),
        min_size=1,
        max_size=40,
    )
)
def test_partitions_with_refunds_equal_one_atomic_check(policies, requests):
    """Checking partition by partition, refunding on denial, admits exactly what one all-or-nothing check would."""
    clock = FakeClock()
    limiter = tierpolicy.RateLimiter(policies, InMemoryRateLimitStore(clock=clock))
    reference = InMemoryRateLimitStore(clock=clock)
    for seller, ip, route, gap in requests:
        clock.advance(gap / 1_000_000)
        ctx = context(seller=seller, ip=ip)
        hits = [
            Hit(p.key_of(ctx), p.windows_for("bronze"), p.cost, p.algorithm, p.shadow)
            for p in limiter.limits_for(route=route)
        ]
        expected = reference.hit_many(hits).allowed
        assert limiter.check(ctx, route=route).allowed == expected


def test_a_route_with_only_shadow_limits_sends_no_headers():
    """Shadow limits stay invisible to clients: no RateLimit headers when only they match."""
    text = POLICY.replace(
        'routes: ["/api/*"]}\n      key: seller.id\n      windows: [{rate: 1/hour}]\n      shadow: true',
        'routes: ["/shadow-only"]}\n      key: seller.id\n      windows: [{rate: 1/hour}]\n      shadow: true',
    )
    limiter = tierpolicy.RateLimiter(
        tierpolicy.load_files({"rl.yaml": text}, root="t"), InMemoryRateLimitStore(clock=FakeClock())
    )
    limiter.check(context(), route="/shadow-only")
    result = limiter.check(context(), route="/shadow-only")
    assert result.allowed
    assert result.deciding is not None
    assert result.deciding.limited
    assert result.headers() == {}


def test_the_tier_is_read_from_any_mapping(policies):
    """A seller given as any Mapping (not only a dict) supplies the tier."""
    import types  # noqa: PLC0415  only this test needs it

    limiter = tierpolicy.RateLimiter(policies, InMemoryRateLimitStore(clock=FakeClock()))
    ctx = {"seller": types.MappingProxyType({"id": "m-1", "tier": "gold"}), "request": {"client_ip": "1"}}
    assert limiter.check(ctx, route="/api/x").decisions[0].windows[0].quota == 6
