"""Tests of decisions: their JSON form, read-only entitlements and limit checks."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json

import pytest

from tierpolicy import (
    Action,
    Entitlements,
    FeatureDecision,
    LimitDecision,
    MissingClause,
    Reason,
    TierDecision,
    TraceStep,
)

BERLIN = dt.timezone(dt.timedelta(hours=1))
STEP = TraceStep("tier", "pass", "tier gold is eligible", "feature:f")


def feature(name: str = "f", *, allowed: bool = True, trace: tuple[TraceStep, ...] = ()) -> FeatureDecision:
    """A feature decision for tier gold."""
    return FeatureDecision(
        feature=name,
        allowed=allowed,
        reason=Reason.TIER_MATCH if allowed else Reason.TIER_BELOW_MINIMUM,
        rule=f"feature:{name}",
        source="t.yaml:7:5",
        tier="gold",
        policy_version="0123456789abcdef",
        message="m",
        trace=trace,
    )


def limit(value: int | None, name: str = "listings") -> LimitDecision:
    """A limit decision for tier gold."""
    return LimitDecision(
        limit=name,
        value=value,
        unit="listings",
        reason=Reason.TIER_MATCH,
        rule=f"limit:{name}",
        source="t.yaml:9:5",
        tier="gold",
        policy_version="0123456789abcdef",
        message="m",
    )


def clause(expected: object, actual: object, error: str | None = None) -> MissingClause:
    """A missing clause comparing metrics.x."""
    return MissingClause("metrics.x >= c", "metrics.x", ">=", expected, actual, error)


def tier_decision(**changes: object) -> TierDecision:
    """A tier decision with a pending downgrade, changed by ``changes``."""
    decision = TierDecision(
        seller_id="s-1",
        current_tier="gold",
        qualified_tier="silver",
        effective_tier="gold",
        action=Action.DOWNGRADE_PENDING,
        next_tier="platinum",
        missing=(clause(100, 50),),
        keep_missing=(),
        downgrade_effective_at=dt.datetime(2027, 2, 26, 13, 30, tzinfo=BERLIN),
        reason=Reason.QUALIFIED,
        rule="progression:silver",
        source="t.yaml:20:7",
        policy_version="0123456789abcdef",
        message="m",
    )
    return dataclasses.replace(decision, **changes)


def test_trace_step_to_json():
    """A trace step renders its four fields; the rule may be null."""
    assert STEP.to_json() == {
        "step": "tier",
        "outcome": "pass",
        "detail": "tier gold is eligible",
        "rule": "feature:f",
    }
    assert TraceStep("grace", "decide", "kept").to_json()["rule"] is None


def test_feature_decision_to_json():
    """A feature decision renders outcome, allowed, reason value and its trace."""
    assert feature(trace=(STEP,)).to_json() == {
        "feature": "f",
        "outcome": "allow",
        "allowed": True,
        "reason": "TIER_MATCH",
        "rule": "feature:f",
        "source": "t.yaml:7:5",
        "tier": "gold",
        "policy_version": "0123456789abcdef",
        "message": "m",
        "trace": [STEP.to_json()],
    }


def test_feature_outcome_reads_allow_or_deny():
    """The outcome is 'allow' for an allowed feature and 'deny' otherwise."""
    assert (feature().outcome, feature(allowed=False).outcome) == ("allow", "deny")
    assert feature(allowed=False).to_json()["reason"] == "TIER_BELOW_MINIMUM"


@pytest.mark.parametrize(
    ("value", "shown", "unlimited"), [(10, 10, False), (0, 0, False), (None, "unlimited", True)]
)
def test_limit_decision_to_json(value, shown, unlimited):
    """A limit renders its number, or 'unlimited' with the unlimited flag set."""
    assert limit(value).to_json() == {
        "limit": "listings",
        "value": shown,
        "unlimited": unlimited,
        "unit": "listings",
        "reason": "TIER_MATCH",
        "rule": "limit:listings",
        "source": "t.yaml:9:5",
        "tier": "gold",
        "policy_version": "0123456789abcdef",
        "message": "m",
        "trace": [],
    }
    assert limit(value).unlimited is unlimited


def test_limit_allows_is_inclusive():
    """allows(n) holds up to and including the limit; unlimited allows everything."""
    assert limit(10).allows(10)
    assert limit(10).allows(-1)
    assert not limit(10).allows(11)
    assert limit(0).allows(0)
    assert not limit(0).allows(1)
    assert limit(None).allows(10**18)


def test_tier_decision_to_json_renders_timestamps_in_utc_with_z():
    """A tier decision renders its action, clauses and the downgrade time in UTC with Z."""
    assert tier_decision().to_json() == {
        "seller_id": "s-1",
        "current_tier": "gold",
        "qualified_tier": "silver",
        "effective_tier": "gold",
        "action": "downgrade_pending",
        "next_tier": "platinum",
        "missing": [
            {
                "clause": "metrics.x >= c",
                "attribute": "metrics.x",
                "operator": ">=",
                "expected": 100,
                "actual": 50,
                "error": None,
            }
        ],
        "keep_missing": [],
        "downgrade_effective_at": "2027-02-26T12:30:00Z",
        "reason": "QUALIFIED",
        "rule": "progression:silver",
        "source": "t.yaml:20:7",
        "policy_version": "0123456789abcdef",
        "message": "m",
        "trace": [],
    }


def test_tier_decision_without_downgrade_or_next_tier():
    """No pending downgrade and no next tier render as null."""
    decision = tier_decision(action=Action.KEEP, next_tier=None, downgrade_effective_at=None, missing=())
    rendered = decision.to_json()
    assert (
        rendered["action"],
        rendered["next_tier"],
        rendered["downgrade_effective_at"],
        rendered["missing"],
    ) == (
        "keep",
        None,
        None,
        [],
    )


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (dt.datetime(2026, 1, 31, 12, 0, 30, tzinfo=dt.UTC), "2026-01-31T12:00:30Z"),
        (dt.datetime(2026, 1, 1, 0, 30, tzinfo=BERLIN), "2025-12-31T23:30:00Z"),
        (dt.datetime(2026, 1, 1, 0, 0, 0, 250_000, tzinfo=dt.UTC), "2026-01-01T00:00:00.250000Z"),
        (dt.timedelta(seconds=90), "90s"),
        (dt.timedelta(milliseconds=1500), "1.500s"),  # CEL/protobuf JSON form
        (dt.timedelta(hours=-1), "-3600s"),
        (dt.timedelta(0), "0s"),
        (b"abc", "abc"),
        (b"caf\xc3\xa9", "café"),
        (b"\xff\x00", "\\xff\x00"),
        ([1, dt.timedelta(seconds=2)], [1, "2s"]),
        ((b"a", (2.5, None)), ["a", [2.5, None]]),
        ({1: b"x", "k": [dt.timedelta(seconds=3)]}, {"1": "x", "k": ["3s"]}),
        ("text", "text"),
        (None, None),
        (True, True),
    ],
)
def test_missing_clause_renders_runtime_values_for_json(value, shown):
    """Timestamps (UTC, Z), durations (seconds), bytes, lists, tuples and maps become JSON values."""
    rendered = clause(value, value).to_json()
    assert (rendered["expected"], rendered["actual"]) == (shown, shown)
    json.dumps(rendered)


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (dt.timedelta(days=90), "7776000s"),
        (dt.timedelta(seconds=1_234_567), "1234567s"),
        (dt.timedelta(microseconds=1), "0.000001s"),
    ],
)
def test_large_and_small_durations_render_exactly(value, shown):
    """A duration renders as its exact number of seconds, without exponent notation."""
    assert clause(value, None).to_json()["expected"] == shown


def test_missing_clause_with_error_and_no_attribute():
    """A clause that could not be evaluated renders its error; a non-comparison has nulls."""
    missing = MissingClause("size(x) > 2", None, None, None, None, "attribute 'x' is missing")
    assert missing.to_json() == {
        "clause": "size(x) > 2",
        "attribute": None,
        "operator": None,
        "expected": None,
        "actual": None,
        "error": "attribute 'x' is missing",
    }


def entitlements() -> Entitlements:
    """Entitlements with three features (two allowed) and two limits."""
    return Entitlements(
        seller_id="s-1",
        tier="gold",
        features={"b": feature("b"), "a": feature("a", allowed=False), "c": feature("c")},
        limits={"listings": limit(None), "images": limit(12, "images")},
        policy_version="0123456789abcdef",
    )


def test_entitlement_mappings_are_read_only():
    """The features and limits mappings cannot be changed, even though the dicts passed in can."""
    given = {"f": feature()}
    result = Entitlements("s-1", "gold", given, {}, "v")
    given["g"] = feature("g")
    assert list(result.features) == ["f"]
    with pytest.raises(TypeError):
        result.features["x"] = feature("x")  # type: ignore[index]
    with pytest.raises(TypeError):
        result.limits["x"] = limit(1)  # type: ignore[index]
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.tier = "bronze"  # type: ignore[misc]


def test_enabled_features_in_policy_order():
    """enabled_features names the allowed features in the order given."""
    assert entitlements().enabled_features == ("b", "c")
    assert Entitlements("s", "gold", {}, {}, "v").enabled_features == ()


def test_entitlements_to_json():
    """Entitlements render every feature and limit decision under its name, in order."""
    rendered = entitlements().to_json()
    assert list(rendered) == ["seller_id", "tier", "policy_version", "features", "limits"]
    assert (rendered["seller_id"], rendered["tier"], rendered["policy_version"]) == (
        "s-1",
        "gold",
        "0123456789abcdef",
    )
    assert rendered["features"] == {name: feature(name, allowed=name != "a").to_json() for name in "bac"}
    assert list(rendered["features"]) == ["b", "a", "c"]
    assert rendered["limits"] == {"listings": limit(None).to_json(), "images": limit(12, "images").to_json()}
    json.dumps(rendered)


def test_reason_and_action_values_are_stable_strings():
    """Reasons and actions are string enums whose values are the JSON spellings."""
    assert Reason.ROLLOUT_EXCLUDED == "ROLLOUT_EXCLUDED"
    assert [a.value for a in Action] == ["keep", "upgrade", "downgrade_pending", "downgrade"]
    assert [r.value for r in Reason] == [r.name for r in Reason]
    assert len(Reason) == 12
