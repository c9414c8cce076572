"""Unreachable progression tiers (TP413) and rules that are not monotone (TP409)."""

from __future__ import annotations

from pathlib import Path

import pytest

import tierpolicy
from tierpolicy import Code, Position
from tierpolicy.engine._progression_checks import RuleInput, progression_findings
from tierpolicy.engine.cel import BOOL, DOUBLE, INT, ObjectType, compile_expression

ENV = {
    "metrics": ObjectType("metrics", {"orders": INT, "rating": DOUBLE}),
    "seller": ObjectType("seller", {"verified": BOOL}),
}
POLICIES = Path(__file__).resolve().parents[1] / "policies"


def findings(**rules: str) -> list[tuple[str, str, str]]:
    """Check rules given lowest tier first (silver=..., gold=...) and return (code, tier, message)."""
    inputs = [
        RuleInput(index, tier, compile_expression(text, ENV), Position("tiers.yaml", index, 7))
        for index, (tier, text) in enumerate(rules.items(), start=1)
    ]
    by_line = {rule.position.line: rule.tier for rule in inputs}
    return [
        (d.code.value, by_line[d.position.line], d.message)
        for d in progression_findings(inputs, ENV)
        if d.severity == "warning"
    ]


def test_stricter_higher_rules_are_clean():
    """A chain where each higher rule implies the one below gives no finding."""
    assert (
        findings(
            silver="metrics.orders >= 10 && metrics.rating >= 4.0",
            gold="metrics.orders >= 100 && metrics.rating >= 4.5 && seller.verified",
            platinum="metrics.orders >= 500 && metrics.rating >= 4.8 && seller.verified",
        )
        == []
    )


def test_lower_rule_implying_a_higher_one_is_unreachable():
    """A lower tier whose rule implies a higher tier's rule is reported, naming that tier."""
    [(code, tier, message)] = findings(silver="metrics.orders >= 100", gold="metrics.orders >= 50")
    assert (code, tier) == ("TP413", "silver")
    assert "'gold', which is tried first" in message


def test_implication_skips_a_tier():
    """Implication is checked against every higher tier, not only the next one."""
    found = findings(
        silver="metrics.orders >= 600 && metrics.rating >= 4.9",
        gold="metrics.orders >= 700",
        platinum="metrics.orders >= 500 && metrics.rating >= 4.8",
    )
    assert ("TP413", "silver") in [(code, tier) for code, tier, _ in found]
    assert any("'platinum'" in message for code, tier, message in found if tier == "silver")


def test_unsatisfiable_rule_is_unreachable():
    """A rule no value can meet names the attribute whose clauses contradict each other."""
    [(code, tier, message)] = findings(
        silver="metrics.rating >= 4.5 && metrics.rating < 4.0", gold="metrics.rating >= 4.8"
    )
    assert (code, tier) == ("TP413", "silver")
    assert "metrics.rating" in message


def test_contradictory_booleans_are_unsatisfiable():
    """``a && !a`` is a rule that can never hold."""
    [(code, tier, _)] = findings(silver="seller.verified && !seller.verified")
    assert (code, tier) == ("TP413", "silver")


@pytest.mark.parametrize(
    ("lower", "higher", "expected"),
    [
        # Whole numbers: > 99 is >= 100, so silver implies gold.
        ("metrics.orders > 99", "metrics.orders >= 100", [("TP413", "silver")]),
        # Doubles: 99.5 meets silver's rule and not gold's, and gold implies silver.
        ("metrics.rating > 3.0", "metrics.rating >= 3.5", []),
        # Equal bounds, one strict: gold (> 4) is inside silver (>= 4).
        ("metrics.rating >= 4.0", "metrics.rating > 4.0", []),
        # Silver (> 4) is inside gold (>= 4); an unreachable tier is not also compared for TP409.
        ("metrics.rating > 4.0", "metrics.rating >= 4.0", [("TP413", "silver")]),
    ],
)
def test_bounds_are_compared_exactly(lower, higher, expected):
    """Strict and non-strict bounds, and whole-number attributes, are compared exactly."""
    assert [(code, tier) for code, tier, _ in findings(silver=lower, gold=higher)] == expected


def test_higher_rule_missing_a_clause_is_not_monotone():
    """A higher rule that drops a clause of the lower rule is reported at the higher tier, naming it."""
    [(code, tier, message)] = findings(
        silver="metrics.orders >= 10 && seller.verified", gold="metrics.orders >= 100"
    )
    assert (code, tier) == ("TP409", "gold")
    assert "'seller.verified'" in message
    assert "'silver'" in message


def test_higher_rule_with_a_lower_threshold_is_not_monotone():
    """A higher rule with a weaker threshold on a shared attribute is reported."""
    found = findings(
        silver="metrics.rating >= 4.5 && metrics.orders >= 10",
        gold="metrics.rating >= 4.0 && metrics.orders >= 200",
    )
    assert [(code, tier) for code, tier, _ in found] == [("TP409", "gold")]
    assert "'metrics.rating >= 4.5'" in found[0][2]


@pytest.mark.parametrize(
    "rule",
    [
        "metrics.orders >= 100 || metrics.rating >= 4.9",
        "metrics.orders != 3",
        "metrics.orders * 2 >= 100",
        "size(string(metrics.orders)) > 2",
    ],
)
def test_rules_outside_the_simple_shape_are_not_judged(rule):
    """A rule that is not an ``&&`` of attribute-constant comparisons is never reported."""
    assert findings(silver=rule, gold="metrics.orders >= 1") == []
    assert findings(silver="metrics.orders >= 1000 && metrics.rating >= 5.0", gold=rule) == []


def test_shipped_policies_have_no_progression_findings():
    """The marketplace policies' progression rules are monotone and every tier is reachable."""
    result = tierpolicy.check(POLICIES)
    codes = {d.code for d in result.diagnostics}
    assert not codes & {Code.UNREACHABLE_TIER, Code.PROGRESSION_NOT_MONOTONE}
    assert result.policy_set is not None
