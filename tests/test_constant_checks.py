"""Conditions that are always true or always false (TP306), found by constant folding."""

from __future__ import annotations

import pytest

from tierpolicy import Code
from tierpolicy.engine._constant_checks import constant_value
from tierpolicy.engine._loader import SourceFile, check_files
from tierpolicy.engine.cel import BOOL, DOUBLE, INT, STRING, TIMESTAMP, ObjectType, compile_expression

ENV = {
    "seller": ObjectType("seller", {"verified": BOOL, "country": STRING, "since": TIMESTAMP}),
    "metrics": ObjectType("metrics", {"orders": INT, "rating": DOUBLE}),
}


def folded(text: str) -> bool | None:
    """Fold a condition that compiles against ENV (compiling first proves it is valid)."""
    compile_expression(text, ENV)
    return constant_value(text, ENV)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("true", True),
        ("false", False),
        ("!false", True),
        ("1 < 2", True),
        ("2.5 >= 3.0", False),
        ("-1 < 0", True),
        ("'a' == 'b'", False),
        ("'b' > 'a'", True),
        ("true != false", True),
        ("seller.verified && false", False),
        ("false && metrics.orders >= 10", False),
        ("metrics.orders >= 10 || true", True),
        ("metrics.orders >= 10 || (1 == 1 && 2 == 2)", True),
        ("seller.verified && (1 > 2 || 'x' == 'y')", False),
        ("1 > 2 ? seller.verified : true", True),
        ("metrics.orders == metrics.orders", True),
        ("seller.country != seller.country", False),
        ("seller.since <= seller.since", True),
        ("metrics.orders > metrics.orders || false", False),
    ],
)
def test_constant_conditions_are_folded(text, expected):
    """Literals, logic, comparisons of constants and self-comparisons fold to their value."""
    assert folded(text) is expected


@pytest.mark.parametrize(
    "text",
    [
        "seller.verified",
        "seller.verified && true",
        "metrics.orders >= 10 || false",
        "metrics.rating == metrics.rating",
        "metrics.orders + 0 == metrics.orders",
        "1 + 1 == 2",
        "'a' in ['a']",
        "seller.verified ? true : true",
        "[1].all(x, x == x)",
        "size('abc') == 3",
    ],
)
def test_undecided_conditions_are_left_alone(text):
    """Anything beyond the shallow rules, or a double compared with itself (NaN), is not judged."""
    assert folded(text) is None


def test_rate_limit_condition_is_checked():
    """A RateLimits ``when`` that is always false is reported at the condition."""
    text = (
        "apiVersion: tierpolicy/v1\nkind: RateLimits\nmetadata: {name: rl}\nspec:\n  limits:\n"
        "    - name: api\n      match: {routes: ['/api/*']}\n      when: 1 > 2\n      key: seller.id\n"
        "      windows:\n        - rate: 3/minute\n"
    )
    result = check_files([SourceFile("rl.yaml", text.encode())], root="p")
    found = [(d.code, d.severity, d.position.line, d.position.column) for d in result.diagnostics]
    assert found == [(Code.CONSTANT_CONDITION, "warning", 8, 13)]
    assert "always false" in result.diagnostics[0].message


def test_floor_rule_is_not_also_reported_as_constant():
    """The lowest tier's ignored rule is TP412 only, even when it is a constant."""
    text = (
        "apiVersion: tierpolicy/v1\nkind: Tiers\nmetadata: {name: t}\nspec:\n"
        "  tiers: [{name: bronze}, {name: silver}]\n  progression:\n    rules:\n"
        "      bronze: {when: 'true'}\n"
    )
    result = check_files([SourceFile("t.yaml", text.encode())], root="p")
    assert [d.code for d in result.diagnostics] == [Code.FLOOR_RULE]
