"""Tests of the engine's questions: features, limits, tiers, entitlements, overrides."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tierpolicy
from support import NOW, SMALL_SET, seller
from tierpolicy import Action, Override, Reason
from tierpolicy.engine._retry import RetryReason, decide_retry
from tierpolicy.engine._retryplan import RetryPlan


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


# --------------------------------------------------------------------------- retry plans


def _shipped() -> tierpolicy.Engine:
    """An engine over the shipped policies (Errors and Resilience documents)."""
    from pathlib import Path  # noqa: PLC0415  only the retry-plan tests need it

    return tierpolicy.load(Path(__file__).resolve().parents[1] / "policies")


SHIPPED = _shipped()


def _plan(operation: str, error: object, **kwargs: object) -> RetryPlan:
    """Ask the shipped policies for a retry plan."""
    return SHIPPED.retry_plan(operation, error, **kwargs)  # type: ignore[arg-type]


def test_retry_plan_for_a_retryable_error():
    """A 503 from shipping is retried after the un-jittered equal-jitter backoff."""
    plan = _plan("shipping.labels.create", tierpolicy.ErrorInfo(types=(), status=503), attempt=1)
    assert (plan.retry, plan.reason, plan.delay, plan.delay_min, plan.delay_max) == (
        True,
        "RETRY",
        0.25,
        0.125,
        0.25,
    )
    assert (plan.jitter, plan.max_attempts, plan.deadline, plan.deadline_remaining) == (
        "equal",
        3,
        12.0,
        12.0,
    )
    assert (plan.code, plan.category, plan.retryable, plan.never_executed) == (
        "SHIPPING_PROVIDER_UNAVAILABLE",
        "unavailable",
        True,
        False,
    )
    assert (plan.rule, plan.source, plan.policy_version) == (
        "resilience:shipping.*",
        "resilience.yaml:56:5",
        SHIPPED.version,
    )
    assert plan.message == (
        "SHIPPING_PROVIDER_UNAVAILABLE is retryable: make attempt 2 of 3 after 0.25s without jitter; "
        "with equal jitter between 0.125s and 0.25s"
    )
    assert plan.trace == ()


def test_retry_plan_for_a_second_failure_doubles_the_delay():
    """After attempt 2 the backoff is initial * multiplier."""
    plan = _plan("shipping.rates", tierpolicy.ErrorInfo(types=(), status=503), attempt=2, elapsed=1.0)
    assert (plan.reason, plan.delay, plan.delay_min, plan.delay_max, plan.deadline_remaining) == (
        "RETRY",
        0.5,
        0.25,
        0.5,
        11.0,
    )


def test_retry_plan_for_an_error_that_is_not_retryable():
    """A declined payment (402) is never retried."""
    plan = _plan("payments.capture", tierpolicy.ErrorInfo(types=(), status=402), attempt=1)
    assert (plan.retry, plan.reason, plan.delay, plan.delay_min, plan.delay_max) == (
        False,
        "NOT_RETRYABLE",
        0.0,
        0.0,
        0.0,
    )
    assert (plan.code, plan.retryable) == ("PAYMENT_DECLINED", False)
    assert plan.message == "PAYMENT_DECLINED is not retryable"


def test_retry_plan_non_idempotent_when_the_request_may_have_run():
    """A read timeout of a payment capture may have charged the card: no retry."""
    error = tierpolicy.ErrorInfo(types=("httpx.ReadTimeout", "httpx.TimeoutException"))
    plan = _plan("payments.capture", error, attempt=1)
    assert (plan.retry, plan.reason, plan.idempotent, plan.never_executed) == (
        False,
        "NOT_IDEMPOTENT",
        False,
        False,
    )
    assert (plan.code, plan.retryable, plan.rule) == (
        "PAYMENT_PROVIDER_TIMEOUT",
        True,
        "resilience:payments.capture",
    )
    assert plan.message == (
        "payments.capture is not idempotent and PAYMENT_PROVIDER_TIMEOUT does not prove "
        "the request never reached the server"
    )


def test_retry_plan_non_idempotent_when_the_request_never_ran():
    """A refused connection proves the capture never ran: it is retried."""
    plan = _plan("payments.capture", ConnectionRefusedError(111, "Connection refused"), attempt=1)
    assert (plan.retry, plan.reason, plan.delay, plan.delay_min, plan.delay_max) == (
        True,
        "RETRY",
        0.2,
        0.0,
        0.2,
    )
    assert (plan.code, plan.never_executed, plan.idempotent, plan.jitter) == (
        "CONNECT_FAILED",
        True,
        False,
        "full",
    )


def test_retry_plan_counts_executor_refusals_as_never_executed():
    """An exception the executor raised instead of calling counts as never executed."""
    plan = _plan("payments.capture", tierpolicy.CallRejectedError("payments.capture", "refused"), attempt=1)
    assert (plan.never_executed, plan.classification.never_executed) == (True, False)
    info = tierpolicy.ErrorInfo(types=("tierpolicy.engine._exceptions.CallRejectedError",))
    assert _plan("payments.capture", info, attempt=1).never_executed is True


def test_retry_plan_when_attempts_are_exhausted():
    """The third failed attempt of a three-attempt policy is the last."""
    plan = _plan("shipping.labels.create", tierpolicy.ErrorInfo(types=(), status=503), attempt=3, elapsed=2.0)
    assert (plan.retry, plan.reason, plan.delay, plan.max_attempts) == (False, "ATTEMPTS_EXHAUSTED", 0.0, 3)
    assert plan.message == "attempt 3 was the last of 3"


def test_retry_plan_when_the_backoff_passes_the_deadline():
    """Search has a 2 s deadline: at 1.9 s a backoff of up to 0.15 s does not fit."""
    plan = _plan("search.query", tierpolicy.ErrorInfo(types=(), status=503), attempt=1, elapsed=1.9)
    assert (plan.retry, plan.reason, plan.delay, plan.delay_min, plan.delay_max) == (
        False,
        "DEADLINE",
        0.0,
        0.05,
        0.15,
    )
    assert (plan.deadline, plan.deadline_remaining, plan.jitter) == (2.0, 0.1, "decorrelated")
    assert plan.message == "a backoff of up to 0.15s would end at or past the deadline (0.1s left)"


def test_retry_plan_when_retry_after_exceeds_the_remaining_deadline():
    """A Retry-After of 5 s with 2 s of the 12 s deadline left gives up."""
    error = tierpolicy.ErrorInfo(types=(), status=503, retry_after=5.0)
    plan = _plan("shipping.labels.create", error, attempt=1, elapsed=10.0)
    assert (plan.retry, plan.reason, plan.delay, plan.retry_after, plan.deadline_remaining) == (
        False,
        "RETRY_AFTER_EXCEEDS_DEADLINE",
        0.0,
        5.0,
        2.0,
    )
    assert plan.message == "the server asked to wait 5s but the deadline leaves 2s"


def test_retry_plan_honours_retry_after_within_the_deadline():
    """A Retry-After longer than the backoff sets the delay, as the executor sleeps."""
    error = tierpolicy.ErrorInfo(types=(), status=503, retry_after=2.5)
    plan = _plan("shipping.labels.create", error, attempt=1, elapsed=1.5)
    assert (plan.retry, plan.delay, plan.delay_min, plan.delay_max, plan.retry_after) == (
        True,
        2.5,
        2.5,
        2.5,
        2.5,
    )
    assert plan.message == (
        "SHIPPING_PROVIDER_UNAVAILABLE is retryable: make attempt 2 of 3 after 2.5s (the server's Retry-After)"
    )


def test_retry_plan_caps_retry_after_by_the_policy():
    """payments.* caps Retry-After at 3 s; a capped hint that outlasts the deadline gives up."""
    error = tierpolicy.ErrorInfo(types=(), status=503, retry_after=10.0)
    plan = _plan("payments.refund", error, attempt=1)
    assert (plan.retry, plan.delay, plan.retry_after, plan.rule) == (True, 3.0, 3.0, "resilience:payments.*")
    late = _plan("payments.refund", error, attempt=1, elapsed=6.0)
    assert (late.reason, late.retry_after, late.deadline_remaining) == (
        "RETRY_AFTER_EXCEEDS_DEADLINE",
        3.0,
        2.0,
    )
    assert (
        late.message == "the server asked to wait 10s (3s with the policy's cap) but the deadline leaves 2s"
    )


def test_retry_plan_decorrelated_jitter_reads_the_previous_delay():
    """Decorrelated jitter's range grows from the previous delay: min(cap, 3 * previous)."""
    plan = _plan("search.query", tierpolicy.ErrorInfo(types=(), status=503), attempt=1, previous_delay=0.1)
    assert (plan.delay, plan.delay_min, plan.delay_max) == (0.3, 0.05, 0.3)


def test_retry_plan_for_an_operation_without_policy():
    """An operation no pattern matches is planned as NO_RETRY_POLICY, not an error."""
    plan = _plan("ledger.post", tierpolicy.ErrorInfo(types=(), status=503), attempt=1)
    assert (plan.retry, plan.reason, plan.rule, plan.source, plan.jitter, plan.idempotent) == (
        False,
        "NO_RETRY_POLICY",
        None,
        None,
        None,
        None,
    )
    assert (plan.code, plan.max_attempts, plan.deadline_remaining) == ("UPSTREAM_UNAVAILABLE", None, None)
    assert plan.message == "no resilience pattern matches ledger.post: it gets one attempt only"


def test_retry_plan_is_deterministic():
    """The same question gives the same plan, twice, with no randomness in it."""
    error = tierpolicy.ErrorInfo(types=(), status=503)
    first = _plan("payments.refund", error, attempt=2, elapsed=0.5, trace=True)
    second = _plan("payments.refund", error, attempt=2, elapsed=0.5, trace=True)
    assert first == second
    assert first.to_json() == second.to_json()
    assert (first.delay, first.delay_min, first.delay_max) == (0.4, 0.0, 0.4)


def test_retry_plan_trace_lists_rules_policy_and_decision():
    """With trace=True the plan lists the classification rules, the policy and the decision."""
    plan = _plan("payments.capture", ConnectionRefusedError(111, "refused"), attempt=1, trace=True)
    assert [(s.step, s.outcome, s.rule) for s in plan.trace] == [
        ("rule", "decide", "error-rule:connect-failed"),
        ("resilience", "pass", "resilience:payments.capture"),
        ("retry", "decide", "resilience:payments.capture"),
    ]
    assert plan.trace[1].detail == "payments.capture uses the policy of payments.capture"
    assert plan.trace[2].detail == f"RETRY: {plan.message}"


def test_retry_plan_json():
    """to_json gives every member, the classification nested."""
    plan = _plan("payments.capture", tierpolicy.ErrorInfo(types=(), status=402), attempt=1)
    assert plan.to_json() == {
        "operation": "payments.capture",
        "attempt": 1,
        "retry": False,
        "reason": "NOT_RETRYABLE",
        "delay": 0.0,
        "delay_min": 0.0,
        "delay_max": 0.0,
        "jitter": "full",
        "max_attempts": 3,
        "deadline": 8.0,
        "deadline_remaining": 8.0,
        "retry_after": None,
        "idempotent": False,
        "classification": {
            "code": "PAYMENT_DECLINED",
            "category": "failed_precondition",
            "retryable": False,
            "never_executed": False,
            "rule": "error-rule:payment-declined",
        },
        "rule": "resilience:payments.capture",
        "source": "resilience.yaml:35:5",
        "policy_version": SHIPPED.version,
        "message": "PAYMENT_DECLINED is not retryable",
        "trace": [],
    }


def test_retry_plan_is_frozen():
    """A plan is an immutable value."""
    plan = _plan("search.query", tierpolicy.ErrorInfo(types=(), status=503), attempt=1)
    assert isinstance(plan, RetryPlan)
    with pytest.raises(dataclasses.FrozenInstanceError):
        plan.retry = False  # type: ignore[misc]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"attempt": 0}, "attempt must be a whole number >= 1"),
        ({"attempt": True}, "attempt must be a whole number >= 1"),
        ({"attempt": 1, "elapsed": -1.0}, "elapsed must be a finite number of seconds >= 0"),
        ({"attempt": 1, "elapsed": float("nan")}, "elapsed must be a finite number of seconds >= 0"),
        ({"attempt": 1, "previous_delay": float("inf")}, "previous_delay must be a finite number"),
    ],
)
def test_retry_plan_rejects_bad_arguments(kwargs, message):
    """Malformed attempt, elapsed or previous_delay raise ValueError naming it."""
    with pytest.raises(ValueError, match=message):
        _plan("search.query", tierpolicy.ErrorInfo(types=(), status=503), **kwargs)


def test_retry_plan_without_errors_document_raises(engine):
    """A set without an Errors document cannot plan: NoErrorsPolicyError."""
    with pytest.raises(tierpolicy.NoErrorsPolicyError):
        engine.retry_plan("search.query", TimeoutError("slow"), attempt=1)


def test_retry_plan_agrees_with_the_executor():
    """The executor's jittered sleeps fall inside the plan's range, retry for retry."""
    sleeps: list[float] = []
    executor = tierpolicy.Executor(SHIPPED, sleep=sleeps.append, random=lambda: 0.5, clock=lambda: 0.0)

    def fail() -> None:
        raise ConnectionRefusedError(111, "refused")

    with pytest.raises(tierpolicy.ResilienceError):
        executor.run("payments.capture", fail)
    plans = [_plan("payments.capture", ConnectionRefusedError(111, "x"), attempt=n) for n in (1, 2, 3)]
    assert [p.reason for p in plans] == [RetryReason.RETRY, RetryReason.RETRY, RetryReason.ATTEMPTS_EXHAUSTED]
    assert sleeps == [0.1, 0.2]
    assert all(p.delay_min <= s <= p.delay_max for p, s in zip(plans, sleeps, strict=False))


_OPERATIONS = ("payments.capture", "payments.refund", "shipping.labels.create", "search.query", "ledger.post")
_ERRORS = (
    tierpolicy.ErrorInfo(types=(), status=503),
    tierpolicy.ErrorInfo(types=(), status=402),
    tierpolicy.ErrorInfo(types=(), status=429, retry_after=1.0),
    tierpolicy.ErrorInfo(types=("httpx.ConnectError",)),
    tierpolicy.ErrorInfo(types=("httpx.ReadTimeout", "httpx.TimeoutException")),
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    operation=st.sampled_from(_OPERATIONS),
    error=st.sampled_from(_ERRORS),
    attempt=st.integers(1, 7),
    elapsed=st.floats(0, 20, allow_nan=False),
    previous=st.none() | st.floats(0, 2, allow_nan=False),
    draw=st.floats(0, 1, exclude_max=True),
)
def test_retry_plan_bounds_every_executor_decision(operation, error, attempt, elapsed, previous, draw):
    """Whatever the jitter draw, the executor retries when the plan does, sleeping within its range."""
    plan = SHIPPED.retry_plan(operation, error, attempt=attempt, elapsed=elapsed, previous_delay=previous)
    model = SHIPPED.policy_set.models["Resilience"]
    policy = model.policy_for(operation)  # type: ignore[attr-defined]
    if policy is None:
        assert plan.reason == RetryReason.NO_RETRY_POLICY
        return

    class Draw:
        def random(self) -> float:
            return draw

    actual = decide_retry(
        policy,
        retryable=plan.retryable,
        category=plan.category,
        never_executed=plan.never_executed,
        failed_attempt=attempt,
        elapsed=elapsed,
        previous_delay=previous,
        retry_after=plan.classification.retry_after,
        random=Draw(),
        budget=None,
    )
    if plan.retry:
        assert actual.retry is True
        assert plan.delay_min - 1e-6 <= actual.delay <= plan.delay_max + 1e-6
    elif actual.retry:
        assert plan.reason == RetryReason.DEADLINE  # only a short draw fits: the plan stays safe
    else:
        assert actual.reason == plan.reason
