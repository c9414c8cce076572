"""Differential tests: our CEL subset against the official CEL runtime (cel-expr-python).

``cel-expr-python`` wraps cel-cpp, the reference implementation; it is a test-only
dependency. Hypothesis draws well-typed expressions over a small seller-marketplace
schema (``tests/strategies.py``) and contexts in which attributes are sometimes missing;
both implementations must give the same value (CEL type included) or both must fail.

Modelling notes:

* cel-expr-python has no schema objects without protobuf, so the ``seller`` object is
  declared there as ``map<string, dyn>``. Both sides then fail on a missing field and
  answer ``false`` to ``has()`` on it; the generator only produces expressions that are
  well-typed under our (stricter) object type, so the looser declaration cannot make
  the official runtime accept something we must reject.
* Map keys cross the cel-expr-python boundary as plain Python values, so a ``uint`` key
  is compared as an ``int``; the generated maps use string keys only.
* Failures are compared as "failed", not by stage or message: a constant subexpression
  may be rejected while compiling by one runtime and while evaluating by the other.
* cel-cpp prints the CPU-dependent sign of a NaN (``string(0.0/0.0)`` is "-nan" on
  x86); that sign is ignored (ours prints "nan" everywhere).
* Timestamps in contexts stay a day inside CEL's range: cel-expr-python cannot take a
  Python datetime at the very limits as input. Literals in expressions span the range.

Disagreements that :data:`DIFFERENCES` explains (documented deliberate differences and
known deviations, each with minimal examples tested below) are discarded with
``hypothesis.reject()`` and counted as events (``--hypothesis-show-statistics``).
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping
from typing import Any

import pytest
from cel_expr_python import cel
from hypothesis import event, given, reject, settings

from strategies import CEL_ENV, cel_contexts, cel_expressions
from tierpolicy.engine._exceptions import (
    ConditionError,
    ExpressionSyntaxError,
    ExpressionTypeError,
)
from tierpolicy.engine.cel import DYN, UInt, compile_expression

THEIR_VARIABLES = {
    "seller": cel.Type.Map(cel.Type.STRING, cel.Type.DYN),
    "metrics": cel.Type.Map(cel.Type.STRING, cel.Type.DOUBLE),
    "counts": cel.Type.Map(cel.Type.STRING, cel.Type.INT),
    "quota": cel.Type.UINT,
    "now": cel.Type.TIMESTAMP,
    "joined": cel.Type.TIMESTAMP,
    "grace": cel.Type.DURATION,
}
"""The official runtime's declarations for the schema of ``strategies.CEL_ENV``."""

THEIR_ENV = cel.NewEnv(variables=THEIR_VARIABLES)

FAILED = ("failed",)
"""The outcome of an expression that does not compile or fails at run time."""

_KINDS = {
    "BOOL": "bool",
    "INT": "int",
    "UINT": "uint",
    "DOUBLE": "double",
    "STRING": "string",
    "BYTES": "bytes",
    "NULL": "null",
    "TIMESTAMP": "timestamp",
    "DURATION": "duration",
}


def _double(value: float) -> tuple[object, ...]:
    if math.isnan(value):
        return ("double", "nan")
    return ("double", value, math.copysign(1.0, value))


def _key(value: object) -> object:
    # cel-expr-python hands map keys over as plain Python values (uint keys as int).
    return (type(value).__name__, int(value)) if isinstance(value, UInt) else value


_SCALARS: dict[type, str] = {
    bool: "bool",
    UInt: "uint",
    int: "int",
    str: "string",
    bytes: "bytes",
    dt.datetime: "timestamp",
    dt.timedelta: "duration",
}


def tag_ours(value: object) -> tuple[object, ...]:
    """Tag one of our runtime values with its CEL kind, for comparison."""
    if value is None:
        return ("null",)
    if type(value) is float:
        return _double(value)
    if type(value) in _SCALARS:
        payload = int(value) if isinstance(value, UInt) else value
        return (_SCALARS[type(value)], payload)
    if isinstance(value, (list, tuple)):
        return ("list", tuple(tag_ours(v) for v in value))
    if isinstance(value, Mapping):
        return ("map", frozenset((_key(k), tag_ours(v)) for k, v in value.items()))
    return ("unexpected python type", type(value).__name__, repr(value))


def tag_theirs(value: Any) -> tuple[object, ...]:
    """Tag a cel-expr-python value (or list/map accessor) with its CEL kind."""
    name = value.type().name()
    payload = value.value()
    if name.startswith("LIST"):
        return ("list", tuple(tag_theirs(v) for v in payload))
    if name.startswith("MAP"):
        return ("map", frozenset((k, tag_theirs(v)) for k, v in payload.items()))
    kind = _KINDS.get(name, name)
    if kind == "null":
        return ("null",)
    if kind == "double":
        return _double(payload)
    if kind == "bytes":
        return ("bytes", bytes(payload))
    return (kind, payload)


def _plain(value: object) -> object:
    """Convert our runtime context value to what cel-expr-python accepts."""
    if isinstance(value, UInt):
        return int(value)
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


Outcome = tuple[tuple[object, ...], str]
"""A tagged value (or :data:`FAILED`) and the error message, empty for a value."""


def ours(expr: str, context: Mapping[str, object]) -> Outcome:
    """Evaluate with tierpolicy's CEL subset; any other exception propagates (a bug)."""
    try:
        program = compile_expression(expr, CEL_ENV, expected=DYN)
    except (ExpressionSyntaxError, ExpressionTypeError) as exc:
        return FAILED, f"compile[{exc.reason}]: {exc}"
    try:
        return tag_ours(program.evaluate(context)), ""
    except ConditionError as exc:
        return FAILED, f"evaluate: {exc}"


def theirs(expr: str, context: Mapping[str, object]) -> Outcome:
    """Evaluate with the official runtime."""
    try:
        program = THEIR_ENV.compile(expr)
    except RuntimeError as exc:
        return FAILED, str(exc)
    result = program.eval(data={k: _plain(v) for k, v in context.items()})
    if result.type() == cel.Type.ERROR:
        return FAILED, str(result.value())
    return tag_theirs(result), ""


# ------------------------------------------------------------------ differences
#
# Deliberate differences are documented in docs/cel.md; their examples are asserted, so
# changing the behaviour fails a test until the docs and this table follow.
#
# Known deviations are bugs reported to the owner of the CEL implementation; their
# examples run as strict-xfail tests, so the fix turns them red: then delete the entry
# and its clause in `explain_difference`, and move its examples to the fixed ones, which
# stay as regression tests.

CONSTANT_ARGUMENTS = "deliberate difference: constant arguments"

DIFFERENCES = {
    CONSTANT_ARGUMENTS: (
        "docs/cel.md, 'What is checked when the set loads': a conversion whose constant"
        " argument cannot convert is a load error even where CEL would never run it or"
        " would absorb its error (CEL: `true || bool('yes')` is true)"
    ),
}
"""Every explained disagreement with the official runtime, by label."""

DELIBERATE_DIFFERENCE_EXAMPLES = {
    "true || bool('yes')": CONSTANT_ARGUMENTS,
    "false ? uint(-1) : 1u": CONSTANT_ARGUMENTS,
    "true ? 1 : timestamp(253402300800).getHours()": CONSTANT_ARGUMENTS,
}
"""Minimal expressions on which we disagree with the official runtime by design."""

KNOWN_DEVIATION_EXAMPLES: dict[str, str] = {}
"""Minimal expressions on which we disagree with the official runtime by mistake."""

FIXED_DEVIATION_EXAMPLES = (
    "true ? 1 : --9223372036854775808",
    "timestamp('9999-12-31T23:59:59Z').getFullYear('+02:00') == 10000",
    "timestamp('0001-01-01T00:00:00Z').getDayOfYear('-01:00') == 365",
)
"""Minimal expressions of former known deviations, on which we now agree."""


def explain_difference(actual: Outcome, expected: Outcome) -> str | None:
    """Return the label of the difference (see DIFFERENCES) behind a disagreement."""
    (value, message), (expected_value, _) = actual, expected
    if value != FAILED or expected_value == FAILED:
        return None
    if message.startswith("compile[value]"):
        return CONSTANT_ARGUMENTS
    return None


# ------------------------------------------------------------------ properties


def _without_nan_sign(outcome: tuple[object, ...]) -> tuple[object, ...]:
    """Drop the sign cel-cpp prints for a negative NaN (``string(0.0/0.0)`` is "-nan").

    The sign of a NaN depends on the CPU; formatting it would make a decision depend on
    the machine, so ours always prints "nan". Only string and bytes results carry it.
    """
    match outcome:
        case ("string", str() as text):
            return ("string", text.replace("-nan", "nan"))
        case ("bytes", bytes() as data):
            return ("bytes", data.replace(b"-nan", b"nan"))
    return outcome


def _check(expr: str, context: dict[str, object]) -> None:
    expected, actual = theirs(expr, context), ours(expr, context)
    expected = (_without_nan_sign(expected[0]), expected[1])
    if actual[0] != expected[0]:
        reason = explain_difference(actual, expected)
        if reason is not None:
            event(reason)
            reject()
    assert actual[0] == expected[0], (
        f"\nexpression: {expr}\ncontext: {context}"
        f"\nofficial: {expected[0]} {expected[1]}\nours:     {actual[0]} {actual[1]}"
    )


def test_both_runtimes_declare_the_same_variables() -> None:
    """The official runtime is given a declaration for every root of our schema."""
    assert set(THEIR_VARIABLES) == set(CEL_ENV)


@pytest.mark.parametrize(
    "expr",
    [
        *FIXED_DEVIATION_EXAMPLES,
        *(
            pytest.param(expr, marks=pytest.mark.xfail(strict=True, reason=DIFFERENCES[label]))
            for expr, label in KNOWN_DEVIATION_EXAMPLES.items()
        ),
    ],
)
def test_deviation_examples(expr: str) -> None:
    """A deviation's example gives the official runtime's answer (xfail while it is known)."""
    assert ours(expr, {})[0] == theirs(expr, {})[0]


@pytest.mark.parametrize("expr", list(DELIBERATE_DIFFERENCE_EXAMPLES))
def test_deliberate_difference_examples(expr: str) -> None:
    """A deliberate difference's example still differs, and in the documented way."""
    actual, expected = ours(expr, {}), theirs(expr, {})
    assert actual[0] != expected[0]
    assert explain_difference(actual, expected) == DELIBERATE_DIFFERENCE_EXAMPLES[expr]


@settings(max_examples=2000, deadline=None)
@given(expr=cel_expressions(result="bool"), context=cel_contexts())
def test_conditions_agree_with_official_runtime(expr: str, context: dict[str, object]) -> None:
    """A boolean condition gives the official runtime's answer, or fails where it fails."""
    _check(expr, context)


@settings(max_examples=2000, deadline=None)
@given(expr=cel_expressions(), context=cel_contexts())
def test_expressions_agree_with_official_runtime(expr: str, context: dict[str, object]) -> None:
    """An expression of any type gives the official runtime's value and type, or fails too."""
    _check(expr, context)
