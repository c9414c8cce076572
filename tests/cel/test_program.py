from __future__ import annotations

import dataclasses
import datetime as dt

import pytest

from tierpolicy.engine.cel import (
    BOOL,
    DOUBLE,
    DURATION,
    INT,
    STRING,
    TIMESTAMP,
    ListType,
    ObjectType,
    compile_expression,
)

ENV = {
    "seller": ObjectType(
        "seller", {"verified": BOOL, "suspended": BOOL, "country": STRING, "tags": ListType(STRING)}
    ),
    "metrics": ObjectType("metrics", {"rating": DOUBLE, "orders_60d": INT, "age": DURATION}),
    "now": TIMESTAMP,
}


def test_program_attributes():
    """A program exposes its source, result type and the attribute paths it reads."""
    program = compile_expression("seller.verified && metrics.rating >= 4.5", ENV)
    assert program.source == "seller.verified && metrics.rating >= 4.5"
    assert program.result_type == BOOL
    assert program.references == frozenset({"seller.verified", "metrics.rating"})
    assert repr(program) == "Program('seller.verified && metrics.rating >= 4.5', result_type=bool)"


def test_programs_are_frozen():
    """A compiled program cannot be modified."""
    program = compile_expression("seller.verified", ENV)
    with pytest.raises(dataclasses.FrozenInstanceError):
        program.source = "true"  # type: ignore[misc]


def test_top_level_conjunction_is_split_into_clauses():
    """Each operand of the top-level && is a clause with its exact text and offset."""
    source = (
        "seller.verified && (metrics.rating >= 4.5 || seller.country == 'DE') && metrics.orders_60d > 100"
    )
    program = compile_expression(source, ENV)
    assert [(c.source, c.offset) for c in program.clauses] == [
        ("seller.verified", 0),
        ("(metrics.rating >= 4.5 || seller.country == 'DE')", 19),
        ("metrics.orders_60d > 100", 72),
    ]
    for clause in program.clauses:
        assert source[clause.offset : clause.offset + len(clause.source)] == clause.source


def test_parenthesised_conjunctions_are_flattened_into_clauses():
    """(a && b) && c has three clauses."""
    program = compile_expression("(seller.verified && !seller.suspended) && metrics.orders_60d > 1", ENV)
    assert [c.source for c in program.clauses] == [
        "seller.verified",
        "!seller.suspended",
        "metrics.orders_60d > 1",
    ]


def test_clause_programs_evaluate_on_their_own():
    """Every clause has its own program, with its own source and references."""
    program = compile_expression("seller.verified && metrics.orders_60d > 100", ENV)
    first, second = program.clauses
    assert first.program.source == "seller.verified"
    assert second.program.references == frozenset({"metrics.orders_60d"})
    context = {"seller": {"verified": True}, "metrics": {"orders_60d": 42}}
    assert first.program.evaluate(context) is True
    assert second.program.evaluate(context) is False
    assert program.evaluate(context) is False
    assert second.program.clauses[0].program is second.program
    assert second.program.clauses[0].offset == 0


def test_an_expression_without_top_level_and_is_one_clause():
    """Without a top-level &&, the single clause is the whole expression and its program."""
    program = compile_expression("seller.verified || metrics.orders_60d > 1", ENV)
    (clause,) = program.clauses
    assert clause.source == program.source
    assert clause.offset == 0
    assert clause.program is program


def test_clause_offset_skips_leading_whitespace():
    """The clause text excludes surrounding whitespace."""
    program = compile_expression("  seller.verified  ", ENV)
    assert (program.clauses[0].source, program.clauses[0].offset) == ("seller.verified", 2)


@pytest.mark.parametrize(
    ("source", "attribute", "operator", "value"),
    [
        ("metrics.orders_60d >= 50", "metrics.orders_60d", ">=", 50),
        ("50 <= metrics.orders_60d", "metrics.orders_60d", ">=", 50),
        ("4.5 < metrics.rating", "metrics.rating", ">", 4.5),
        ("4.5 > metrics.rating", "metrics.rating", "<", 4.5),
        ("metrics.rating != -1.5", "metrics.rating", "!=", -1.5),
        ("'DE' == seller.country", "seller.country", "==", "DE"),
        ("metrics.age >= duration('2160h')", "metrics.age", ">=", dt.timedelta(days=90)),
        ("seller.verified", "seller.verified", "==", True),
        ("!seller.suspended", "seller.suspended", "==", False),
        ("(seller.verified)", "seller.verified", "==", True),
        ("seller.verified == true", "seller.verified", "==", True),
    ],
)
def test_comparison_clauses_explain_themselves(source, attribute, operator, value):
    """Clauses comparing an attribute with a constant expose the parts, attribute first."""
    (clause,) = compile_expression(source, ENV).clauses
    assert (clause.attribute, clause.operator, clause.value) == (attribute, operator, value)


@pytest.mark.parametrize(
    "source",
    [
        "seller.country in ['DE', 'FR']",
        "metrics.orders_60d > metrics.rating",
        "size(seller.tags) > 1",
        "seller.tags.exists(t, t == 'x')",
        "1 < 2",
        "!(seller.verified || seller.suspended)",
        "now > now - metrics.age",
        "metrics.orders_60d / 0 > 1",
    ],
)
def test_other_clauses_have_no_explanation(source):
    """Anything but attribute-versus-constant leaves attribute, operator and value unset."""
    (clause,) = compile_expression(source, ENV).clauses
    assert (clause.attribute, clause.operator, clause.value) == (None, None, None)


def test_iteration_variables_are_not_clause_attributes():
    """A comparison on an iteration variable inside a macro is not a context attribute."""
    program = compile_expression("seller.tags.all(t, t == 'x') && seller.verified", ENV)
    assert program.clauses[0].attribute is None
    assert program.clauses[1].attribute == "seller.verified"


@pytest.mark.parametrize(
    ("source", "reads"),
    [
        ("seller.verified", False),
        ("now > timestamp('2026-01-01T00:00:00Z')", True),
        ("seller.verified && now.getFullYear() > 2025", True),
        ("metrics.age > duration('1h')", False),
    ],
)
def test_a_program_knows_whether_it_reads_now(source, reads):
    """reads_now is worked out once at compile time, for whole programs and for each clause."""
    program = compile_expression(source, ENV)
    assert program.reads_now is reads
    assert any(clause.program.reads_now for clause in program.clauses) is reads
