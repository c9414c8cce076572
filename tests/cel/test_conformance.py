"""The official CEL conformance suite (google/cel-spec), run against our CEL subset.

Every ``SimpleTest`` of ``../shared/cel-conformance/*.textproto`` becomes one pytest case
with the id ``file/section/name``. A case is *outside the subset* when

* a mechanical rule in :func:`exclusion_reason` says so (protobuf messages, type
  values, functions the subset does not offer, sub-microsecond timestamps, ...), or
* the explicit :data:`EXCLUDED` table lists its file, section or id with a reason.

Such cases are reported as skipped with their reason. Every other case must pass: the
value must equal the expected one including its CEL type (int, uint and double are
distinct; NaN equals NaN; the sign of zero matters), and a case that expects an error
passes when compiling raises ``ExpressionSyntaxError``/``ExpressionTypeError`` or
evaluating raises ``ConditionError`` (never any other exception).

Genuine implementation bugs are listed in :data:`KNOWN_DEVIATIONS` and marked as strict
xfail, so fixing one turns its case red until the entry is removed.
"""

from __future__ import annotations

import datetime as dt
import math
import os
import re
from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tierpolicy.engine._exceptions import (
    ConditionError,
    ExpressionSyntaxError,
    ExpressionTypeError,
)
from tierpolicy.engine.cel import (
    BOOL,
    BYTES,
    DOUBLE,
    DURATION,
    DYN,
    INT,
    NULL_TYPE,
    STRING,
    TIMESTAMP,
    UINT,
    ListType,
    MapType,
    UInt,
    compile_expression,
)

from .conformance import ConformanceCase, TypeSpec, Value, load_dir

if TYPE_CHECKING:
    from tierpolicy.engine.cel import CelType

REPO_ROOT = Path(__file__).resolve().parents[2]
CONFORMANCE_DIR = REPO_ROOT / ".." / "shared" / "cel-conformance"

# ------------------------------------------------------------------ subset boundaries

PROTO = "protobuf messages, wrapper types and containers: outside the subset"
TYPE_VALUES = "type values (type(), type denotations): outside the subset"
UNCHECKED = (
    "only meaningful with type checking disabled: tierpolicy always type-checks"
    " conditions at load time (the official checker rejects this expression too)"
)
QUALIFIED_NAMES = (
    "dotted variable names / namespace resolution: context attributes are plain"
    " identifiers, nested attributes are object fields"
)
NANOS = (
    "sub-microsecond timestamps/durations: the subset uses Python datetime/timedelta,"
    " which have microsecond precision (finer digits are truncated)"
)
IANA_ZONES = (
    "IANA time zone names (Europe/Berlin): outside the subset, they would make decisions"
    " depend on the host's time zone database; UTC and fixed offsets are supported"
)

EXCLUDED: dict[str, str] = {
    # key: "file", "file/section" or "file/section/name"
    "basic/variables/unbound_is_runtime_error": UNCHECKED,
    "basic/functions/unbound_is_runtime_error": UNCHECKED,
    "comparisons/eq_literal/not_eq_list_length": UNCHECKED,
    "logic/conditional/mixed_type": UNCHECKED,
    "logic/AND/short_circuit_type_left": UNCHECKED,
    "logic/AND/short_circuit_type_right": UNCHECKED,
    "logic/OR/short_circuit_type_left": UNCHECKED,
    "logic/OR/short_circuit_type_right": UNCHECKED,
}
"""Cases outside the subset that no mechanical rule detects, keyed by id prefix."""

KNOWN_DEVIATIONS: dict[str, str] = {}
"""In-subset cases our implementation gets wrong (reported upstream): strict xfail."""

# Standard CEL functions the subset does not offer. (Unknown names are compile errors
# and stay in the suite: the cases using them expect an error.)
_UNSUPPORTED_FUNCTIONS = {"type": TYPE_VALUES}
_TIME_ACCESSORS = {
    "getFullYear",
    "getMonth",
    "getDate",
    "getDayOfMonth",
    "getDayOfWeek",
    "getDayOfYear",
    "getHours",
    "getMinutes",
    "getSeconds",
    "getMilliseconds",
}
_SUPPORTED_ZONE_RE = re.compile(r"UTC|[+-]?\d{2}:\d{2}")

_LITERAL_RE = re.compile(
    r"""(?i:[rb]{0,2})(?:\"\"\"(?:\\.|[^\\])*?\"\"\"|'''(?:\\.|[^\\])*?'''"""
    r"""|"(?:\\.|[^"\\\n])*"|'(?:\\.|[^'\\\n])*')""",
    re.DOTALL,
)
_CALL_RE = re.compile(r"([A-Za-z_]\w*)\s*\(")
_ZONE_ARG_RE = re.compile(r"""\.(\w+)\(\s*(['"])(.*?)\2\s*\)""")
_MESSAGE_RE = re.compile(r"(?<![\w.])([A-Za-z_][\w.]*)\s*\{")
_TIME_LITERAL_RE = re.compile(r"""(timestamp|duration)\(\s*(['"])(.*?)\2\s*\)""")
_DURATION_PART_RE = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(h|ms|us|µs|ns|m|s)")
_NANOS_PER_UNIT = {
    "h": 3_600 * 10**9,
    "m": 60 * 10**9,
    "s": 10**9,
    "ms": 10**6,
    "us": 10**3,
    "µs": 10**3,
    "ns": 1,
}


def _without_literals(expr: str) -> str:
    return _LITERAL_RE.sub('""', expr)


def _has_sub_microsecond_literal(expr: str) -> bool:
    for function, _, text in _TIME_LITERAL_RE.findall(expr):
        if function == "timestamp":
            fraction = re.search(r"\.(\d+)", text)
            if fraction and fraction.group(1)[6:].strip("0"):
                return True
        else:
            nanos = sum(
                Decimal(number) * _NANOS_PER_UNIT[unit] for number, unit in _DURATION_PART_RE.findall(text)
            )
            if nanos % 1000:
                return True
    return False


def _declaration_reason(case: ConformanceCase) -> str | None:
    if case.container:
        return PROTO
    if any(spec.kind in {"message", "wrapper"} for _, spec in case.type_env) or any(
        value.kind == "object" for _, value in case.bindings
    ):
        return PROTO
    if case.expected is not None and case.expected.kind == "type":
        return TYPE_VALUES
    if any("." in name for name, _ in case.type_env):
        return QUALIFIED_NAMES
    return None


def _expression_reason(expr: str) -> str | None:
    code = _without_literals(expr)
    if "google.protobuf." in code or any(name != "in" for name in _MESSAGE_RE.findall(code)):
        return PROTO
    for name in _CALL_RE.findall(code):
        if name in _UNSUPPORTED_FUNCTIONS:
            return _UNSUPPORTED_FUNCTIONS[name]
    for name, _, zone in _ZONE_ARG_RE.findall(expr):
        if name in _TIME_ACCESSORS and not _SUPPORTED_ZONE_RE.fullmatch(zone):
            return IANA_ZONES
    if _has_sub_microsecond_literal(expr):
        return NANOS
    return None


def exclusion_reason(case: ConformanceCase) -> str | None:
    """Return why ``case`` is outside the subset, or ``None`` when it must pass."""
    for key in (case.id, f"{case.file}/{case.section}", case.file):
        if key in EXCLUDED:
            return EXCLUDED[key]
    return _declaration_reason(case) or _expression_reason(case.expr)


# ------------------------------------------------------------------ conversions

_PRIMITIVES: dict[str, CelType] = {
    "BOOL": BOOL,
    "INT64": INT,
    "UINT64": UINT,
    "DOUBLE": DOUBLE,
    "STRING": STRING,
    "BYTES": BYTES,
}
_WELL_KNOWN: dict[str, CelType] = {"TIMESTAMP": TIMESTAMP, "DURATION": DURATION, "ANY": DYN}
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def to_cel_type(spec: TypeSpec) -> CelType:
    """Convert a conformance type declaration to our CEL type."""
    if spec.kind == "primitive":
        return _PRIMITIVES[spec.name]
    if spec.kind == "well_known":
        return _WELL_KNOWN[spec.name]
    if spec.kind == "list":
        return ListType(to_cel_type(spec.params[0]))
    if spec.kind == "map":
        return MapType(to_cel_type(spec.params[0]), to_cel_type(spec.params[1]))
    if spec.kind == "dyn":
        return DYN
    if spec.kind == "null":
        return NULL_TYPE
    raise AssertionError(f"type {spec} is outside the subset; exclusion_reason should skip it")


def to_runtime(value: Value) -> object:
    """Convert a conformance value to the runtime value our implementation expects."""
    payload = value.payload
    match value.kind:
        case "uint":
            assert isinstance(payload, int)
            return UInt(payload)
        case "list":
            assert isinstance(payload, tuple)
            return [to_runtime(item) for item in payload]
        case "map":
            assert isinstance(payload, tuple)
            return {to_runtime(k): to_runtime(v) for k, v in payload}
        case "duration":
            assert isinstance(payload, int)
            return dt.timedelta(microseconds=payload // 1000)
        case "timestamp":
            assert isinstance(payload, int)
            return _EPOCH + dt.timedelta(microseconds=payload // 1000)
        case "null":
            return None
        case _:
            return payload


def describe(value: object) -> str:
    """Render a runtime value with its Python type, for failure messages."""
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(describe(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{describe(k)}: {describe(v)}" for k, v in value.items()) + "}"
    return f"{type(value).__name__}({value!r})"


def _same_double(actual: object, expected: float) -> bool:
    if type(actual) is not float:
        return False
    if math.isnan(expected):
        return math.isnan(actual)
    return actual == expected and math.copysign(1.0, actual) == math.copysign(1.0, expected)


def cel_equal(actual: object, expected: Value) -> bool:
    """Return whether ``actual`` is ``expected``, CEL type included."""
    payload = expected.payload
    match expected.kind:
        case "null":
            return actual is None
        case "bool" | "string" | "bytes":
            python_type = {"bool": bool, "string": str, "bytes": bytes}[expected.kind]
            return type(actual) is python_type and actual == payload
        case "int":
            return type(actual) is int and actual == payload
        case "uint":
            return isinstance(actual, UInt) and int(actual) == payload
        case "double":
            assert isinstance(payload, float)
            return _same_double(actual, payload)
        case "list":
            assert isinstance(payload, tuple)
            return (
                isinstance(actual, (list, tuple))
                and len(actual) == len(payload)
                and all(cel_equal(a, e) for a, e in zip(actual, payload, strict=True))
            )
        case "map":
            assert isinstance(payload, tuple)
            if not isinstance(actual, Mapping) or len(actual) != len(payload):
                return False
            return all(
                any(cel_equal(k, key) and cel_equal(v, value) for k, v in actual.items())
                for key, value in payload
            )
        case "duration":
            return isinstance(actual, dt.timedelta) and actual == to_runtime(expected)
        case "timestamp":
            return (
                isinstance(actual, dt.datetime)
                and actual.utcoffset() == dt.timedelta(0)
                and actual == to_runtime(expected)
            )
    raise AssertionError(f"cannot compare against {expected}")


# ------------------------------------------------------------------ cases


def _suite() -> list[ConformanceCase]:
    if not CONFORMANCE_DIR.is_dir():
        return []
    return load_dir(CONFORMANCE_DIR)


CASES = _suite()


def _params() -> list[object]:
    if not CASES:
        return [pytest.param(None, id="suite-missing")]
    params = []
    for case in CASES:
        marks: list[pytest.MarkDecorator] = []
        reason = exclusion_reason(case)
        if reason is not None:
            marks.append(pytest.mark.skip(reason=f"outside the subset: {reason}"))
        elif case.id in KNOWN_DEVIATIONS:
            marks.append(pytest.mark.xfail(strict=True, reason=KNOWN_DEVIATIONS[case.id]))
        params.append(pytest.param(case, id=case.id, marks=marks))
    return params


def _run(case: ConformanceCase) -> None:
    env = {name: to_cel_type(spec) for name, spec in case.type_env}
    activation = {name: to_runtime(value) for name, value in case.bindings}
    where = f"{case.id}: {case.expr!r}"
    if case.expected is None:
        try:
            program = compile_expression(case.expr, env, expected=DYN)
        except (ExpressionSyntaxError, ExpressionTypeError):
            return
        try:
            result = program.evaluate(activation)
        except ConditionError:
            return
        pytest.fail(f"{where}: expected an error {case.error_messages}, got {describe(result)}")
    program = compile_expression(case.expr, env, expected=DYN)
    result = program.evaluate(activation)
    assert cel_equal(result, case.expected), f"{where}: expected {case.expected}, got {describe(result)}"


@pytest.mark.parametrize("case", _params())
def test_conformance_case(case: ConformanceCase | None) -> None:
    """An official conformance case inside the subset gives the expected value or error."""
    if case is None:
        message = f"CEL conformance suite not found at {CONFORMANCE_DIR.resolve()}"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    _run(case)


# ------------------------------------------------------------------ the tables stay honest


def test_case_ids_are_unique() -> None:
    """Every conformance case has its own file/section/name id."""
    ids = [case.id for case in CASES]
    assert len(ids) == len(set(ids))


def test_exclusion_keys_match_cases() -> None:
    """Every key of the exclusion table names a file, section or case of the suite."""
    if not CASES:
        pytest.skip("CEL conformance suite not found")
    known = {key for case in CASES for key in (case.id, f"{case.file}/{case.section}", case.file)}
    assert set(EXCLUDED) <= known, sorted(set(EXCLUDED) - known)


def test_known_deviations_are_in_subset() -> None:
    """Every known deviation names a case that exists and is inside the subset."""
    if not CASES:
        pytest.skip("CEL conformance suite not found")
    by_id = {case.id: case for case in CASES}
    for case_id in KNOWN_DEVIATIONS:
        assert case_id in by_id, case_id
        assert exclusion_reason(by_id[case_id]) is None, case_id
