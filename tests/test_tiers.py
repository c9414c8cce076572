"""Tests of the compiled tiers model: precomputed decisions, clause explanations, overrides."""

from __future__ import annotations

import dataclasses
import datetime as dt
from types import MappingProxyType

import pytest

from support import NOW
from tierpolicy import Override, Reason, rollout_bucket
from tierpolicy.engine._tiers import (
    CompiledFeature,
    activation,
    active_overrides,
    iso,
    lookup,
    unmet_clauses,
)
from tierpolicy.engine.cel import BOOL, DOUBLE, INT, STRING, TIMESTAMP, ObjectType, compile_expression

TIERS = ("bronze", "silver", "gold")
ENV = {
    "seller": ObjectType("seller", {"id": STRING, "tier": STRING, "verified": BOOL, "joined_at": TIMESTAMP}),
    "metrics": ObjectType("metrics", {"rating": DOUBLE, "orders": INT}),
    "now": TIMESTAMP,
}
GOOD = {"seller": {"id": "s-1", "tier": "gold", "verified": True}, "metrics": {"rating": 4.9, "orders": 10}}
LATER = NOW + dt.timedelta(days=1)


def feature(
    condition: str | None = None,
    rollout_bp: int | None = None,
    *,
    enabled: bool = True,
    explicit: bool = False,
) -> CompiledFeature:
    """Feature f for silver and gold (from silver, or listed explicitly)."""
    return CompiledFeature(
        name="f",
        description="",
        rule="feature:f",
        source="t.yaml:7:5",
        tiers=TIERS,
        grants=(False, True, True),
        explicit_tiers=explicit,
        minimum=None if explicit else "silver",
        condition=compile_expression(condition, ENV) if condition else None,
        rollout_bp=rollout_bp,
        enabled=enabled,
        policy_version="v1",
    )


def override(kind: str = "feature", target: str = "f", value: object = True, **extra: object) -> Override:
    """An override for seller s-1, active from before NOW until LATER unless told otherwise."""
    return Override(
        "s-1", kind, target, value, extra.pop("reason", "r"), extra.pop("expires_at", LATER), **extra
    )


# --------------------------------------------------------------------------- static decisions


@pytest.mark.parametrize(
    ("condition", "rollout_bp", "has_static"),
    [
        (None, None, True),
        (None, 10_000, True),
        (None, 9_999, False),
        (None, 5_000, False),
        (None, 0, False),
        ("seller.verified", None, False),
        ("seller.verified", 10_000, False),
        ("seller.verified", 5_000, False),
    ],
)
def test_static_is_none_exactly_when_the_context_matters(condition, rollout_bp, has_static):
    """The static decisions exist unless a condition or a partial rollout (< 100 %) exists."""
    assert (feature(condition, rollout_bp).static is not None) is has_static


@pytest.mark.parametrize(("condition", "rollout_bp"), [(None, None), ("seller.verified", 5_000)])
def test_disabled_feature_is_always_static_denial(condition, rollout_bp):
    """A switched-off feature's static decision is DISABLED for every tier, condition or not."""
    compiled = feature(condition, rollout_bp, enabled=False)
    assert compiled.static == compiled.deny_disabled
    assert [(d.tier, d.allowed, d.reason) for d in compiled.static] == [
        (tier, False, Reason.DISABLED) for tier in TIERS
    ]
    assert compiled.static[0].message == "f is switched off for everyone"


@pytest.mark.parametrize("rollout_bp", [None, 10_000])
def test_static_decisions_equal_what_decide_returns(rollout_bp):
    """Each tier's static decision is the one decide() gives without override or trace."""
    compiled = feature(rollout_bp=rollout_bp)
    assert compiled.static is not None
    for index in range(len(TIERS)):
        assert compiled.static[index] is compiled.decide(index, GOOD, "s-1", NOW, None, None)
    assert [(d.tier, d.allowed, d.reason) for d in compiled.static] == [
        ("bronze", False, Reason.TIER_BELOW_MINIMUM),
        ("silver", True, Reason.TIER_MATCH),
        ("gold", True, Reason.TIER_MATCH),
    ]


def test_shared_decisions_cover_every_tier_with_the_feature_fields():
    """Every shared decision tuple has one decision per tier with the feature's rule and version."""
    compiled = feature("seller.verified", 2_500)
    for name in ("outcome", "deny_condition", "deny_rollout"):
        decisions = getattr(compiled, name)
        assert [d.tier for d in decisions] == list(TIERS), name
        assert {(d.feature, d.rule, d.source, d.policy_version, d.trace) for d in decisions} == {
            ("f", "feature:f", "t.yaml:7:5", "v1", ())
        }


@pytest.mark.parametrize(
    ("condition", "rollout_bp", "reason", "message"),
    [
        (None, None, Reason.TIER_MATCH, "tier gold includes f"),
        (None, 10_000, Reason.TIER_MATCH, "tier gold includes f"),
        ("seller.verified", None, Reason.CONDITION_MATCH, "tier gold includes f and its condition holds"),
        (None, 1_250, Reason.ROLLOUT_INCLUDED, "tier gold includes f and the seller is in its 12.5% rollout"),
        (
            "seller.verified",
            5_000,
            Reason.ROLLOUT_INCLUDED,
            "tier gold includes f and its condition holds and the seller is in its 50% rollout",
        ),
    ],
)
def test_allow_reason_and_message_name_what_was_met(condition, rollout_bp, reason, message):
    """The allow decision's reason is the strongest check passed, and its message lists them."""
    allow = feature(condition, rollout_bp).outcome[2]
    assert (allow.allowed, allow.reason, allow.message) == (True, reason, message)


def test_denial_messages():
    """Tier, condition and rollout denials explain themselves, quoting the policy."""
    compiled = feature("metrics.rating >= 4.5", 1_250)
    assert compiled.outcome[0].message == "f needs tier silver or higher; the seller is bronze"
    assert compiled.outcome[0].reason is Reason.TIER_BELOW_MINIMUM
    assert compiled.deny_condition[2].message == "the condition of f is not met: metrics.rating >= 4.5"
    assert compiled.deny_rollout[2].message == "the seller is outside the 12.5% rollout of f"
    listed = feature(explicit=True).outcome[0]
    assert (listed.reason, listed.message) == (
        Reason.TIER_NOT_LISTED,
        "f is available only to tiers silver, gold",
    )


def test_needs_now_follows_the_condition():
    """needs_now is set only when the condition reads the evaluation time."""
    assert feature("now - seller.joined_at > duration('1h')").needs_now
    assert not feature("seller.verified").needs_now
    assert not feature().needs_now


def test_decide_with_a_condition_and_rollout():
    """decide() checks the tier, then the condition, then the seller's pinned rollout bucket."""
    bucket = rollout_bucket("f", "s-1")
    admits, excludes = feature("metrics.rating >= 4.5", bucket + 1), feature("metrics.rating >= 4.5", bucket)
    assert admits.decide(2, GOOD, "s-1", NOW, None, None) is admits.outcome[2]
    assert excludes.decide(2, GOOD, "s-1", NOW, None, None) is excludes.deny_rollout[2]
    bad = {**GOOD, "metrics": {"rating": 1.0}}
    assert admits.decide(2, bad, "s-1", NOW, None, None) is admits.deny_condition[2]
    assert admits.decide(0, GOOD, "s-1", NOW, None, None) is admits.outcome[0]


def test_feature_override_beats_the_tier_but_not_the_kill_switch():
    """A feature override decides whatever the tier; enabled: false still denies."""
    grant = override(reason="pilot")
    decision = feature().decide(0, GOOD, "s-1", NOW, grant, None)
    assert (decision.allowed, decision.reason, decision.rule, decision.source, decision.tier) == (
        True,
        Reason.OVERRIDE,
        "override",
        "request",
        "bronze",
    )
    assert decision.message == f"override: allowed until {iso(LATER)} (pilot)"
    off = feature(enabled=False).decide(0, GOOD, "s-1", NOW, grant, None)
    assert off.reason is Reason.DISABLED


# --------------------------------------------------------------------------- clauses and lookup


def test_unmet_clauses_explain_each_failing_clause():
    """Failing clauses are listed with the actual value; passing ones are not; errors say why."""
    program = compile_expression(
        "seller.verified && metrics.rating >= 4.5 && metrics.orders > 100 && size(seller.id) > 10", ENV
    )
    context = {"seller": {"id": "s-1", "verified": True}, "metrics": {"rating": 4.1}}
    assert unmet_clauses(program, context, NOW) == [
        "metrics.rating >= 4.5 is false (metrics.rating is 4.1)",
        "metrics.orders > 100 could not be evaluated (attribute 'metrics.orders' is missing from the context)",
        "size(seller.id) > 10 is false",
    ]


def test_unmet_clauses_sees_now():
    """A clause reading now is evaluated at the time given."""
    program = compile_expression("now > seller.joined_at && seller.verified", ENV)
    context = {"seller": {"joined_at": NOW, "verified": True}}
    assert unmet_clauses(program, context, NOW) == ["now > seller.joined_at is false"]
    assert unmet_clauses(program, context, LATER) == []


def test_unmet_clauses_of_a_true_condition_is_empty():
    """Nothing is unmet when every clause holds."""
    program = compile_expression("seller.verified && metrics.rating >= 4.5", ENV)
    assert unmet_clauses(program, GOOD, NOW) == []


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("metrics.rating", 4.9),
        ("seller.verified", True),
        ("metrics", {"rating": 4.9, "orders": 10}),
        ("metrics.missing", None),
        ("metrics.rating.deeper", None),
        ("nothing.at.all", None),
        ("seller.id", "s-1"),
    ],
)
def test_lookup_follows_dotted_paths(path, value):
    """The value at a dotted path is returned, or None when any part is absent."""
    assert lookup(GOOD, path) == value


def test_lookup_reads_any_mapping():
    """Dotted lookups read through any Mapping, as conditions do, not only through dict."""
    context = MappingProxyType({"metrics": MappingProxyType({"rating": 4.1})})
    assert lookup(context, "metrics.rating") == 4.1


# --------------------------------------------------------------------------- now and activation


def test_reads_now_and_activation():
    """The activation adds now only for programs that read it, else is the context itself."""
    with_now = compile_expression("now > seller.joined_at", ENV)
    without = compile_expression("seller.verified", ENV)
    assert (with_now.reads_now, without.reads_now) == (True, False)
    assert activation(GOOD, without, NOW) is GOOD
    assert activation(GOOD, with_now, NOW) == {**GOOD, "now": NOW}
    assert "now" not in GOOD


@pytest.mark.parametrize(
    ("moment", "text"),
    [
        (dt.datetime(2026, 11, 28, 12, 0, tzinfo=dt.UTC), "2026-11-28T12:00:00Z"),
        (dt.datetime(2026, 11, 28, 1, 0, tzinfo=dt.timezone(dt.timedelta(hours=2))), "2026-11-27T23:00:00Z"),
        (dt.datetime(2026, 1, 1, 0, 0, 0, 5, tzinfo=dt.UTC), "2026-01-01T00:00:00.000005Z"),
    ],
)
def test_iso_renders_utc_with_z(moment, text):
    """Any aware timestamp renders in UTC with a Z suffix."""
    assert iso(moment) == text


# --------------------------------------------------------------------------- override merge rule


def test_request_override_wins_over_policy_override():
    """For the same target, an override passed with the request beats the policy file's."""
    policy, request = override(value=True, rule="override:0"), override(value=False, rule="override:db-1")
    assert active_overrides([policy], [request], "s-1", NOW) == {("feature", "f"): request}


def test_last_active_override_wins_within_a_source():
    """Within one source the last active override for a target wins."""
    first, second = override(value=True, rule="a"), override(value=False, rule="b")
    assert active_overrides([first, second], [], "s-1", NOW)[("feature", "f")] is second
    assert active_overrides([], [second, first], "s-1", NOW)[("feature", "f")] is first


def test_inactive_overrides_never_displace_active_ones():
    """An expired or not-yet-started override later in the list does not replace an active one."""
    active = override(rule="active")
    expired = override(value=False, rule="expired", expires_at=NOW)
    future = override(value=False, rule="future", starts_at=LATER, expires_at=LATER + dt.timedelta(days=1))
    assert active_overrides([active, expired], [future], "s-1", NOW) == {("feature", "f"): active}


def test_overrides_are_per_seller_and_per_target():
    """Other sellers' overrides are ignored; kind and target together are the key."""
    mine = [
        override("feature", "f", True),
        override("limit", "f", 5),
        override("tier", "gold", None),
        override("feature", "g", False),
    ]
    theirs = dataclasses.replace(override("feature", "f", False), seller_id="s-2")
    chosen = active_overrides(mine, [theirs], "s-1", NOW)
    assert list(chosen) == [("feature", "f"), ("limit", "f"), ("tier", "gold"), ("feature", "g")]
    assert chosen[("feature", "f")] is mine[0]
    assert active_overrides(mine, [], "s-3", NOW) == {}


def test_later_tier_override_for_another_tier_is_a_separate_target():
    """Two tier overrides for different tiers are different targets, both returned in order."""
    gold, silver = override("tier", "gold", None), override("tier", "silver", None)
    assert list(active_overrides([gold], [silver], "s-1", NOW).values()) == [gold, silver]


def test_only_reachable_outcomes_are_built():
    """Denials for gates a feature lacks are not built; ungranted tiers reuse the tier denial."""
    plain = feature()
    assert (plain.deny_condition, plain.deny_rollout, plain.deny_disabled) == ((), (), ())
    conditional = feature("seller.verified")
    assert conditional.deny_condition[0] is conditional.outcome[0]
    assert conditional.deny_condition[2] is not conditional.outcome[2]
    assert conditional.plain_condition
    assert not feature("seller.verified", 5_000).plain_condition
