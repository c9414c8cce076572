"""Tests of the engine's questions: features, limits, tiers, entitlements, overrides."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest

import tierpolicy
from support import NOW, SMALL_SET, seller
from tierpolicy import Action, Override, Reason


def test_unconditional_feature_follows_the_tier(engine):
    """A feature from bronze is allowed at every tier with reason TIER_MATCH."""
    for tier in ("bronze", "silver", "gold"):
        decision = engine.check("basic", seller(tier))
        assert decision.allowed
        assert decision.reason is Reason.TIER_MATCH
        assert decision.tier == tier
        assert decision.rule == "feature:basic"
        assert decision.source == "policy.yaml:15:5"
        assert decision.policy_version == engine.version


def test_feature_below_minimum_tier_is_denied(engine):
    """A bronze seller is denied a silver feature and told which tier is needed."""
    decision = engine.check("promoted", seller("bronze", verified=True, metrics={"rating": 5.0}))
    assert not decision.allowed
    assert decision.reason is Reason.TIER_BELOW_MINIMUM
    assert decision.message == "promoted needs tier silver or higher; the seller is bronze"


def test_condition_true_and_false(engine):
    """A conditional feature follows its condition once the tier allows it."""
    good = seller("gold", verified=True, metrics={"rating": 4.6})
    bad = seller("gold", verified=True, metrics={"rating": 4.4})
    assert engine.check("promoted", good).reason is Reason.CONDITION_MATCH
    denied = engine.check("promoted", bad)
    assert (denied.allowed, denied.reason) == (False, Reason.CONDITION_FALSE)


def test_condition_error_denies_and_says_why(engine):
    """A condition reading a missing attribute denies with CONDITION_ERROR and the cause."""
    decision = engine.check("promoted", seller("gold", verified=True, metrics={}))
    assert not decision.allowed
    assert decision.reason is Reason.CONDITION_ERROR
    assert "metrics.rating" in decision.message


def test_explicit_tier_list_is_not_monotone(engine):
    """A feature listed for bronze only is denied to gold with TIER_NOT_LISTED."""
    assert engine.check("onboarding", seller("bronze")).allowed
    decision = engine.check("onboarding", seller("gold"))
    assert (decision.allowed, decision.reason) == (False, Reason.TIER_NOT_LISTED)


def test_rollout_uses_the_pinned_bucket(engine):
    """A 50 % rollout admits exactly the sellers whose bucket is below 5,000."""
    for i in range(200):
        sid = f"s-{i}"
        decision = engine.check("beta", seller("bronze", sid=sid))
        assert decision.allowed == (tierpolicy.rollout_bucket("beta", sid) < 5_000)
        expected = Reason.ROLLOUT_INCLUDED if decision.allowed else Reason.ROLLOUT_EXCLUDED
        assert decision.reason is expected


def test_disabled_feature_is_denied_even_with_override(engine):
    """enabled: false is a kill switch that beats every override."""
    override = Override("s-1", "feature", "killed", True, "try", NOW + dt.timedelta(days=1))
    decision = engine.check("killed", seller("gold"), overrides=[override])
    assert (decision.allowed, decision.reason) == (False, Reason.DISABLED)


def test_condition_reading_now_uses_the_evaluation_time(engine):
    """`now` in a condition is the evaluation time, injectable per call."""
    context = seller("bronze", joined_at=NOW - dt.timedelta(days=91))
    assert engine.check("veteran", context).allowed
    assert not engine.check("veteran", context, now=NOW - dt.timedelta(days=2)).allowed


def test_unknown_feature_raises_with_suggestion(engine):
    """An unknown feature never silently allows: it raises with a suggestion."""
    with pytest.raises(tierpolicy.UnknownFeatureError) as info:
        engine.check("promotd", seller())
    assert info.value.suggestions == ("promoted",)


def test_context_without_seller_tier_raises(engine):
    """A context without seller.tier, or with an unknown tier, is an InvalidContextError."""
    with pytest.raises(tierpolicy.InvalidContextError, match=r"seller\.tier"):
        engine.check("basic", {"seller": {"id": "s-1"}})
    with pytest.raises(tierpolicy.InvalidContextError, match="did you mean 'silver'"):
        engine.check("basic", {"seller": {"id": "s-1", "tier": "silvr"}})
    with pytest.raises(tierpolicy.InvalidContextError, match="'seller' object"):
        engine.check("basic", {})
    with pytest.raises(tierpolicy.InvalidContextError, match=r"seller\.id"):
        engine.check("basic", {"seller": {"id": "", "tier": "gold"}})


def test_limits_inherit_and_allow_unlimited(engine):
    """Silver inherits bronze's listings limit; gold's is unlimited."""
    bronze = engine.limit("listings", seller("bronze"))
    silver = engine.limit("listings", seller("silver"))
    gold = engine.limit("listings", seller("gold"))
    assert (bronze.value, silver.value, gold.value) == (10, 10, None)
    assert gold.unlimited
    assert gold.allows(10**9)
    assert not bronze.allows(11)
    assert silver.message == "listings for tier silver is 10 listings (inherited from bronze)"


def test_unknown_limit_raises(engine):
    """An unknown limit raises UnknownLimitError."""
    with pytest.raises(tierpolicy.UnknownLimitError):
        engine.limit("listing", seller())


def test_policy_override_wins_over_the_tier(engine):
    """An override in the policy file allows a feature the tier would deny."""
    decision = engine.check("promoted", seller("bronze", sid="vip"))
    assert (decision.allowed, decision.reason, decision.rule) == (
        True,
        Reason.OVERRIDE,
        "override:0",
    )
    limit = engine.limit("listings", seller("bronze", sid="vip"))
    assert (limit.value, limit.reason) == (500, Reason.OVERRIDE)


def test_runtime_override_beats_policy_override(engine):
    """A request override for the same target wins over the policy file's."""
    deny = Override(
        "vip",
        "feature",
        "promoted",
        False,
        "abuse",
        NOW + dt.timedelta(days=1),
        rule="override:db-7",
    )
    decision = engine.check("promoted", seller("bronze", sid="vip"), overrides=[deny])
    assert (decision.allowed, decision.rule) == (False, "override:db-7")


def test_expired_and_future_overrides_do_not_apply(engine):
    """Overrides apply only while starts_at <= now < expires_at."""
    expired = Override("s-1", "feature", "promoted", True, "old", NOW)
    future = Override(
        "s-1",
        "feature",
        "promoted",
        True,
        "later",
        NOW + dt.timedelta(days=2),
        starts_at=NOW + dt.timedelta(days=1),
    )
    decision = engine.check("promoted", seller("bronze"), overrides=[expired, future])
    assert decision.reason is Reason.TIER_BELOW_MINIMUM


def test_tier_override_changes_the_tier_for_everything(engine):
    """A tier override moves the seller to that tier for features and limits."""
    gold = Override("s-1", "tier", "gold", None, "partner", NOW + dt.timedelta(days=1))
    assert engine.limit("listings", seller("bronze"), overrides=[gold]).value is None
    decision = engine.check("onboarding", seller("bronze"), overrides=[gold])
    assert (decision.allowed, decision.tier) == (False, "gold")


def test_trace_records_every_step(engine):
    """With trace=True the decision lists the steps tried; without, the same decision has none."""
    context = seller("gold", verified=True, metrics={"rating": 4.9})
    traced = engine.check("promoted", context, trace=True)
    assert [(s.step, s.outcome) for s in traced.trace] == [("tier", "pass"), ("condition", "pass")]
    plain = engine.check("promoted", context)
    assert plain.trace == ()
    assert dataclasses.replace(traced, trace=()) == plain


def test_decisions_are_frozen(engine):
    """Decisions cannot be changed after they are made."""
    decision = engine.check("basic", seller())
    with pytest.raises(dataclasses.FrozenInstanceError):
        decision.allowed = False  # type: ignore[misc]


def test_entitlements_cover_every_feature_and_limit(engine):
    """Entitlements give one decision per feature and limit, equal to the single checks."""
    context = seller("silver", verified=True, metrics={"rating": 4.8}, joined_at=NOW)
    entitlements = engine.entitlements(context)
    assert list(entitlements.features) == list(engine.features)
    assert list(entitlements.limits) == list(engine.limits)
    for name, decision in entitlements.features.items():
        assert decision == engine.check(name, context)
    assert entitlements.tier == "silver"
    assert "promoted" in entitlements.enabled_features
    assert entitlements.to_json()["limits"]["listings"]["value"] == 10


def _metrics(orders: int, rating: float, claim_rate: float = 0.0) -> dict[str, object]:
    return {"orders": orders, "rating": rating, "claim_rate": claim_rate}


def test_qualify_upgrade_and_missing_for_next(engine):
    """Metrics meeting silver's rule upgrade a bronze seller and list what gold still needs."""
    decision = engine.qualify(seller("bronze", metrics=_metrics(50, 4.6, 0.02)))
    assert (decision.qualified_tier, decision.action, decision.effective_tier) == (
        "silver",
        Action.UPGRADE,
        "silver",
    )
    assert decision.next_tier == "gold"
    missing = {(m.attribute, m.operator, m.expected, m.actual) for m in decision.missing}
    assert missing == {("metrics.orders", ">=", 100, 50), ("metrics.claim_rate", "<", 0.01, 0.02)}
    assert decision.reason is Reason.QUALIFIED
    assert decision.rule == "progression:silver"


def test_qualify_keep(engine):
    """A gold seller whose metrics meet gold's rule keeps gold and has no next tier."""
    decision = engine.qualify(seller("gold", metrics=_metrics(500, 4.9, 0.001)))
    assert (decision.action, decision.next_tier, decision.missing) == (Action.KEEP, None, ())


def test_qualify_downgrade_waits_for_the_grace_period(engine):
    """A downgrade is pending for 90 days after the seller fell below, then takes effect."""
    fell = NOW - dt.timedelta(days=10)
    pending = engine.qualify(seller("gold", metrics=_metrics(5, 3.0)), below_since=fell)
    assert pending.action is Action.DOWNGRADE_PENDING
    assert pending.effective_tier == "gold"
    assert pending.qualified_tier == "bronze"
    assert pending.downgrade_effective_at == fell + dt.timedelta(days=90)
    due = engine.qualify(seller("gold", metrics=_metrics(5, 3.0)), below_since=NOW - dt.timedelta(days=90))
    assert (due.action, due.effective_tier) == (Action.DOWNGRADE, "bronze")


def test_qualify_reads_below_since_from_context(engine):
    """seller.below_since in the context starts the grace period."""
    context = seller("gold", metrics=_metrics(5, 3.0), below_since="2026-01-01T00:00:00Z")
    assert engine.qualify(context).action is Action.DOWNGRADE
    with pytest.raises(tierpolicy.InvalidContextError, match="below_since"):
        engine.qualify(seller("gold", metrics=_metrics(5, 3.0), below_since="yesterday"))


def test_qualify_floor_when_no_rule_holds(engine):
    """With no rule met the seller qualifies for the lowest tier, reason FLOOR."""
    decision = engine.qualify(seller("bronze", metrics=_metrics(0, 0.0)))
    assert (decision.qualified_tier, decision.reason, decision.action) == (
        "bronze",
        Reason.FLOOR,
        Action.KEEP,
    )


def test_qualify_rule_error_counts_as_not_met(engine):
    """A progression rule that cannot be evaluated is not met, and the trace says why."""
    decision = engine.qualify(seller("bronze", metrics={"orders": 500}), trace=True)
    assert decision.qualified_tier == "bronze"
    assert any(step.outcome == "error" for step in decision.trace)


def test_qualify_tier_override_pins_the_tier(engine):
    """A tier override keeps the seller at the overridden tier whatever the metrics."""
    pin = Override("s-1", "tier", "gold", None, "contract", NOW + dt.timedelta(days=30))
    decision = engine.qualify(seller("bronze", metrics=_metrics(0, 0.0)), overrides=[pin])
    assert (decision.current_tier, decision.action, decision.reason) == (
        "gold",
        Action.KEEP,
        Reason.OVERRIDE,
    )


def test_qualify_without_progression_raises():
    """Asking for tier qualification of a set without progression rules is an error."""
    engine = tierpolicy.Engine(
        tierpolicy.load_files(
            {
                "t.yaml": "apiVersion: tierpolicy/v1\nkind: Tiers\nmetadata: {name: t}\nspec:\n  tiers: [{name: a}]\n"
            }
        )
    )
    with pytest.raises(tierpolicy.InvalidContextError, match="no progression"):
        engine.qualify(seller("a"))


def test_holder_keeps_the_running_set_when_a_reload_fails(tmp_path, small_set):
    """A policy set that fails to load never replaces the running one."""
    holder = tierpolicy.PolicyHolder(tierpolicy.Engine(small_set))
    (tmp_path / "bad.yaml").write_text(
        "apiVersion: tierpolicy/v1\nkind: Tiers\nmetadata: {name: x}\nspec: {tiers: []}\n"
    )
    with pytest.raises(tierpolicy.PolicyLoadError):
        holder.reload(tmp_path)
    assert holder.engine.version == small_set.version
    (tmp_path / "bad.yaml").write_text(SMALL_SET)
    new = holder.reload(tmp_path)
    assert holder.engine is new
    previous = holder.swap(tierpolicy.Engine(small_set))
    assert previous is new


def test_qualify_never_downgrades_on_an_unevaluable_rule(engine):
    """A gold seller whose metrics are missing keeps gold: the reason is CONDITION_ERROR."""
    decision = engine.qualify(seller("gold", metrics={}))
    assert (decision.action, decision.effective_tier, decision.reason) == (
        Action.KEEP,
        "gold",
        Reason.CONDITION_ERROR,
    )
    assert decision.rule == "progression:gold"
    assert "could not be evaluated" in decision.message


def test_pending_downgrade_says_what_keeps_the_tier(engine):
    """During a pending downgrade, keep_missing lists the current tier's unmet clauses."""
    decision = engine.qualify(seller("gold", metrics=_metrics(150, 4.8, 0.05)), below_since=NOW)
    assert decision.action is Action.DOWNGRADE_PENDING
    assert [(m.attribute, m.expected, m.actual) for m in decision.keep_missing] == [
        ("metrics.claim_rate", 0.01, 0.05)
    ]
    assert decision.to_json()["keep_missing"][0]["clause"] == "metrics.claim_rate < 0.01"


def test_override_of_a_removed_tier_is_ignored(engine):
    """A stored tier override naming a tier the policy no longer has is skipped, not fatal."""
    stale = Override("s-1", "tier", "diamond", None, "old contract", NOW + dt.timedelta(days=1))
    decision = engine.check("onboarding", seller("bronze"), overrides=[stale], trace=True)
    assert (decision.allowed, decision.tier) == (True, "bronze")
    assert decision.trace[0].outcome == "skip"


def test_policy_override_ids_name_the_rule():
    """An override with an id is reported as override:<id>, stable across reordering."""
    text = (
        "apiVersion: tierpolicy/v1\nkind: Tiers\nmetadata: {name: t}\nspec:\n"
        "  tiers: [{name: a}, {name: b}]\n  features: {f: {from: b}}\n"
        "  overrides: [{id: pilot-7, seller: s-1, feature: f, value: true, reason: r,"
        " expires: '2099-01-01T00:00:00Z'}]\n"
    )
    engine = tierpolicy.Engine(tierpolicy.load_files({"t.yaml": text}))
    assert engine.check("f", seller("a")).rule == "override:pilot-7"


def test_trace_names_the_failing_clause(engine):
    """A condition that is false names, in the trace, the clause that failed and its value."""
    decision = engine.check("promoted", seller("gold", verified=True, metrics={"rating": 4.1}), trace=True)
    assert decision.trace[-1].detail == (
        "seller.verified && metrics.rating >= 4.5 is false: metrics.rating >= 4.5 is false (metrics.rating is 4.1)"
    )


def test_conditions_with_braces_compile_into_messages():
    """Condition text with map literals ({...}) appears verbatim in messages."""
    text = (
        "apiVersion: tierpolicy/v1\nkind: Tiers\nmetadata: {name: t}\nspec:\n"
        "  tiers: [{name: a}]\n  features:\n    f: {from: a, when: \"{'x': 1}['x'] == 2\"}\n"
    )
    engine = tierpolicy.Engine(tierpolicy.load_files({"t.yaml": text}))
    decision = engine.check("f", seller("a"))
    assert decision.message == "the condition of f is not met: {'x': 1}['x'] == 2"


# --------------------------------------------------------------------------- classify


def test_classify_takes_exceptions_and_error_infos():
    """Engine.classify accepts an exception or an ErrorInfo and gives equal decisions."""
    text = (
        "apiVersion: tierpolicy/v1\nkind: Errors\nmetadata: {name: e}\nspec:\n"
        "  codes:\n"
        "    UPSTREAM_TIMEOUT: {category: timeout, status: 504, retryable: true, title: T, message: M}\n"
        "    INTERNAL: {category: internal, status: 500, title: I, message: Oops}\n"
        "  rules:\n"
        "    - {name: timeout, match: {exception: TimeoutError, operation: 'search.*'}, code: UPSTREAM_TIMEOUT}\n"
        "    - {name: internal, code: INTERNAL}\n"
    )
    engine = tierpolicy.Engine(tierpolicy.load_files({"e.yaml": text}))
    assert engine.errors is not None
    assert list(engine.errors.codes) == ["UPSTREAM_TIMEOUT", "INTERNAL"]
    from_exception = engine.classify(TimeoutError("slow"), operation="search.query")
    info = tierpolicy.ErrorInfo(types=("TimeoutError", "OSError"), operation="search.query")
    assert engine.classify(info) == from_exception
    assert (from_exception.code, from_exception.rule) == ("UPSTREAM_TIMEOUT", "error-rule:timeout")
    assert engine.classify(TimeoutError("slow")).code == "INTERNAL"


def test_classify_without_errors_document_raises(engine):
    """The small set has no Errors document: classify raises NoErrorsPolicyError."""
    assert engine.errors is None
    with pytest.raises(tierpolicy.NoErrorsPolicyError):
        engine.classify(ValueError("x"))
