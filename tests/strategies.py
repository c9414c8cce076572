"""Shared Hypothesis strategies for the tierpolicy test suite.

Each area keeps its strategies under its own heading below; add new areas at the end
under a new heading rather than mixing them into an existing section.
"""

from __future__ import annotations

import copy
import datetime as dt
import math
import re
from typing import TYPE_CHECKING, Any

from hypothesis import assume
from hypothesis import strategies as st

from tierpolicy.engine._errorinfo import ErrorInfo
from tierpolicy.engine._resilience import BreakerPolicy, OperationPolicy, RetryPolicy
from tierpolicy.engine.cel import (
    BOOL,
    DOUBLE,
    DURATION,
    INT,
    STRING,
    TIMESTAMP,
    UINT,
    ListType,
    MapType,
    ObjectType,
    UInt,
)
from tierpolicy.engine.cel._lexer import RESERVED as _LEXER_RESERVED

if TYPE_CHECKING:
    from collections.abc import Callable

    from tierpolicy.engine.cel import CelType

CEL_RESERVED = _LEXER_RESERVED | {"true", "false", "null", "in"}
"""Words that cannot name an attribute (CEL reserved words and literals)."""


# =====================================================================================
# CEL expressions and contexts (tests/cel/test_differential.py)
#
# `cel_expressions()` draws well-typed expressions of our CEL subset over a small
# seller-marketplace schema; `cel_contexts()` draws activations for that schema in
# which attributes are sometimes missing. Types are tracked as short tags: "bool",
# "int", "uint", "double", "string", "bytes", "timestamp", "duration", "list<string>",
# "list<int>", "list<dyn>", "map<string,double>" and "map<string,int>".
# =====================================================================================

CEL_SELLER_FIELDS: dict[str, str] = {
    "id": "string",
    "country": "string",
    "verified": "bool",
    "rating": "double",
    "sales": "int",
    "tags": "list<string>",
}
"""The fields of the declared ``seller`` object, by type tag."""

CEL_METRIC_KEYS = ("rating", "defect_rate", "refund_rate")
"""Keys that may appear in ``metrics`` (``map<string, double>``)."""

CEL_COUNT_KEYS = ("orders", "returns", "listings")
"""Keys that may appear in ``counts`` (``map<string, int>``)."""

CEL_ROOTS: dict[str, str] = {
    "metrics": "map<string,double>",
    "counts": "map<string,int>",
    "quota": "uint",
    "now": "timestamp",
    "joined": "timestamp",
    "grace": "duration",
}
"""Root variables besides ``seller``, by type tag.

Timestamps and durations are roots rather than ``seller`` fields because the official
runtime's Python binding cannot hold them inside a ``map<string, dyn>``.
"""

CEL_ENV: dict[str, CelType] = {
    "seller": ObjectType(
        "seller",
        {
            "id": STRING,
            "country": STRING,
            "verified": BOOL,
            "rating": DOUBLE,
            "sales": INT,
            "tags": ListType(STRING),
        },
    ),
    "metrics": MapType(STRING, DOUBLE),
    "counts": MapType(STRING, INT),
    "quota": UINT,
    "now": TIMESTAMP,
    "joined": TIMESTAMP,
    "grace": DURATION,
}
"""The schema as our CEL environment."""

_INT_MIN, _INT_MAX = -(2**63), 2**63 - 1
_UINT_MAX = 2**64 - 1
_STRING_ALPHABET = "abAB01 _-.'\"\\é日🐱"
_REGEXES = ("^a", "b$", "[0-9]+", "a|b", "^$", ".*", "(ab)+", "^[A-Z]{2}$", "é", "\\d")
_RESULT_TYPES = (
    "bool",
    "bool",
    "bool",
    "int",
    "uint",
    "double",
    "string",
    "list<string>",
    "list<int>",
    "timestamp",
    "duration",
)
_ORDERED_TYPES = ("int", "uint", "double", "string", "bytes", "bool", "timestamp", "duration")
_EQUALITY_TYPES = (*_ORDERED_TYPES, "list<string>", "list<int>", "map<string,double>")
_MAX_DEPTH = 4
_ORDERING_OPS = ("<", "<=", ">", ">=", "==", "!=")
_INT_OPS = ("+", "-", "*", "/", "%")
_INT_STRINGS = ('"12"', '"-7"', '"+3"', '"0x1"', '"9223372036854775808"')
_DOUBLE_STRINGS = ('"1.5"', '"-0"', '"1e3"', '"inf"', '"x"')
_TS_ACCESSORS = (
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
)
_DURATION_ACCESSORS = ("getHours", "getMinutes", "getSeconds", "getMilliseconds")
_ZONES = ('"UTC"', '"+02:00"', '"-09:30"', '"00:00"', '"+14:00"')
_TIMESTAMP_STRINGS = (
    '"2026-03-01T12:00:00Z"',
    '"2026-03-01T12:00:00+02:00"',
    '"2026-03-01T12:00:00.5-09:30"',
    '"1970-01-01T00:00:00.000001Z"',
    '"0001-01-01T00:00:00Z"',
    '"9999-12-31T23:59:59.999999Z"',
)
# Literal syntax beyond plain double quotes: single, raw and triple quotes and every
# escape form (simple, octal, hex, \u, \U). Written as raw Python strings: the text is
# CEL source.
_ODD_STRING_LITERALS = (
    r"'single'",
    r"r'raw\n'",
    r'R"raw\d"',
    r"'''tri" + "\n" + r"ple'''",
    r'"""tri"ple"""',
    r'"\u00e9\U0001F431"',
    r'"\x41\101\a\t\?"',
    r"'it\'s'",
    r'""',
)
_ODD_BYTES_LITERALS = (r"b'\xff\x00'", r"b'\377'", r"br'\x41'", "b'\u00e9'", r'b"""b"""', r'b""')
_DURATION_STRINGS = (
    '"90s"',
    '"1h30m"',
    '"-1.5s"',
    '"1.5h"',
    '"300ms"',
    '"1us"',
    '"0s"',
    '"2160h"',
    '"-0.000001s"',
)

# ------------------------------------------------------------------ literals

_interesting_ints = st.sampled_from([0, 1, -1, 2, 7, 10, 100, _INT_MAX, _INT_MIN, 2**31, -(2**62)])
cel_ints = st.one_of(st.integers(-20, 20), _interesting_ints, st.integers(_INT_MIN, _INT_MAX))
"""int64 values, small ones and the boundaries most often."""

cel_uints = st.one_of(
    st.integers(0, 20), st.sampled_from([2**63, _UINT_MAX, 2**32]), st.integers(0, _UINT_MAX)
)
"""uint64 values."""

cel_doubles = st.one_of(
    st.sampled_from([0.0, -0.0, 0.5, 1.0, -1.5, 4.5, 1e300, -1e-300, math.inf, -math.inf]),
    st.floats(-1e6, 1e6),
    st.floats(allow_nan=True, allow_infinity=True),
)
"""Doubles including signed zeros, infinities and NaN."""

cel_strings = st.text(_STRING_ALPHABET, max_size=6)
"""Short strings over an alphabet with quotes, backslashes and non-ASCII characters."""

# CEL durations are an int64 of nanoseconds (about 106751.99 days). Boundary probes
# stay a day inside: cel-cpp, the differential reference, checks overflow on whole
# seconds first and so rejects some results within a second of the exact limit.
_MAX_DURATION = dt.timedelta(days=106_751)
cel_timestamps = st.one_of(
    st.sampled_from(
        [
            dt.datetime(1, 1, 1, tzinfo=dt.UTC),
            dt.datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=dt.UTC),
            dt.datetime(1970, 1, 1, tzinfo=dt.UTC),
            dt.datetime(2026, 2, 28, 23, 30, tzinfo=dt.UTC),
            dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + _MAX_DURATION,
            dt.datetime(1970, 1, 1, tzinfo=dt.UTC) - _MAX_DURATION,
        ]
    ),
    st.datetimes(
        min_value=dt.datetime(1, 1, 1),  # noqa: DTZ001  hypothesis wants naive bounds
        max_value=dt.datetime(9999, 12, 31, 23, 59, 59, 999999),  # noqa: DTZ001  same
        timezones=st.just(dt.UTC),
    ),
)
"""Timestamps anywhere in CEL's range (years 1 to 9999), microsecond precision."""

cel_context_timestamps = st.datetimes(
    min_value=dt.datetime(1, 1, 2),  # noqa: DTZ001  hypothesis wants naive bounds
    max_value=dt.datetime(9999, 12, 30),  # noqa: DTZ001  same
    timezones=st.just(dt.UTC),
) | st.sampled_from([dt.datetime(1970, 1, 1, tzinfo=dt.UTC), dt.datetime(2026, 3, 1, tzinfo=dt.UTC)])
"""Timestamps for contexts: cel-expr-python cannot take a Python datetime within a day of
CEL's range limits as input (it reports them as infinite), so inputs stay inside."""

cel_durations = st.one_of(
    st.sampled_from([dt.timedelta(0), _MAX_DURATION, -_MAX_DURATION, dt.timedelta(days=100_000)]),
    st.timedeltas(dt.timedelta(days=-400), dt.timedelta(days=400)),
    st.timedeltas(-_MAX_DURATION, _MAX_DURATION),
)
"""Durations within CEL's range (an int64 of nanoseconds, about +-292 years)."""


def cel_string_literal(text: str) -> str:
    """Render ``text`` as a CEL string literal."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r")
    return f'"{escaped}"'


def cel_double_literal(value: float) -> str:
    """Render a finite double as a CEL literal (``double("nan")`` style otherwise)."""
    if math.isnan(value):
        return 'double("NaN")'
    if math.isinf(value):
        return 'double("Infinity")' if value > 0 else 'double("-Infinity")'
    text = repr(abs(value))
    return f"-{text}" if math.copysign(1.0, value) < 0 else text


def cel_timestamp_literal(value: dt.datetime) -> str:
    """Render a UTC timestamp as ``timestamp("...Z")``."""
    return f'timestamp("{value.replace(tzinfo=None).isoformat(timespec="microseconds")}Z")'


def cel_duration_literal(value: dt.timedelta) -> str:
    """Render a duration as ``duration("...s")`` with microsecond precision."""
    micros = (value.days * 86_400 + value.seconds) * 1_000_000 + value.microseconds
    sign = "-" if micros < 0 else ""
    seconds, fraction = divmod(abs(micros), 1_000_000)
    return f'duration("{sign}{seconds}.{fraction:06d}s")'


# ------------------------------------------------------------------ expressions


class _Gen:
    """Draws one well-typed expression; ``scope`` holds macro variables by type tag."""

    def __init__(self, draw: st.DrawFn) -> None:
        self.draw = draw
        self.counter = 0

    def pick(self, options: tuple[str, ...] | list[str]) -> str:
        return self.draw(st.sampled_from(options))

    def int_value(self, strategy: st.SearchStrategy[int]) -> int:
        return self.draw(strategy)

    def fresh(self) -> str:
        self.counter += 1
        return f"v{self.counter}"

    def expr(self, tag: str, depth: int, scope: dict[str, str]) -> str:
        """Return an expression of type ``tag``, nesting at most ``depth`` levels."""
        scoped = [name for name, t in scope.items() if t == tag]
        if depth <= 0 or self.draw(st.integers(0, 3)) == 0:
            if scoped and self.draw(st.booleans()):
                return self.pick(scoped)
            return self.leaf(tag)
        return getattr(self, "node_" + _method(tag))(depth - 1, scope)

    # -------------------------------------------------------------- leaves

    def leaf(self, tag: str) -> str:
        """Return a literal or an attribute of type ``tag``."""
        attributes = _ATTRIBUTES.get(tag, ())
        if attributes and self.draw(st.booleans()):
            return self.pick(attributes)
        return getattr(self, "literal_" + _method(tag))()

    def literal_bool(self) -> str:
        return self.pick(("true", "false"))

    def literal_int(self) -> str:
        return str(self.draw(cel_ints))

    def literal_uint(self) -> str:
        return f"{self.int_value(cel_uints)}u"

    def literal_double(self) -> str:
        value = self.draw(cel_doubles)
        return cel_double_literal(value)

    def literal_string(self) -> str:
        if self.draw(st.integers(0, 3)) == 0:
            return self.pick(_ODD_STRING_LITERALS)
        return cel_string_literal(self.draw(cel_strings))

    def literal_bytes(self) -> str:
        if self.draw(st.integers(0, 3)) == 0:
            return self.pick(_ODD_BYTES_LITERALS)
        return "b" + cel_string_literal(self.draw(st.text("ab\\'\"é", max_size=4)))

    def literal_timestamp(self) -> str:
        match self.int_value(st.integers(0, 2)):
            case 0:
                seconds = self.int_value(st.integers(-62_135_596_900, 253_402_300_900))
                return f"timestamp({seconds})"
            case 1:
                return f"timestamp({self.pick(_TIMESTAMP_STRINGS)})"
            case _:
                return cel_timestamp_literal(self.draw(cel_timestamps))

    def literal_duration(self) -> str:
        if self.draw(st.booleans()):
            return f"duration({self.pick(_DURATION_STRINGS)})"
        return cel_duration_literal(self.draw(cel_durations))

    # Literal lists and maps are never empty: an empty literal has no element type of
    # its own, and the checkers infer one differently (a macro over `{}` may be rejected
    # by one and accepted by the other), which is not what these tests are about.

    def literal_list_string(self) -> str:
        size = self.int_value(st.integers(1, 3))
        return "[" + ", ".join(self.literal_string() for _ in range(size)) + "]"

    def literal_list_int(self) -> str:
        size = self.int_value(st.integers(1, 3))
        return "[" + ", ".join(self.literal_int() for _ in range(size)) + "]"

    def literal_list_dyn(self) -> str:
        """Return a list literal with elements of at least two types (so ``list<dyn>``)."""
        kinds = ("int", "uint", "double", "string", "bool")
        first, second = self.draw(st.lists(st.sampled_from(kinds), min_size=2, max_size=2, unique=True))
        tags = [first, second, *self.draw(st.lists(st.sampled_from(kinds), max_size=2))]
        order = self.draw(st.permutations(tags))
        return "[" + ", ".join(self.leaf(tag) for tag in order) + "]"

    def literal_map_string_double(self) -> str:
        keys = self.draw(st.lists(st.sampled_from(CEL_METRIC_KEYS), unique=True, min_size=1, max_size=3))
        return "{" + ", ".join(f'"{k}": {self.literal_double()}' for k in keys) + "}"

    def literal_map_string_int(self) -> str:
        keys = self.draw(st.lists(st.sampled_from(CEL_COUNT_KEYS), unique=True, min_size=1, max_size=3))
        return "{" + ", ".join(f'"{k}": {self.literal_int()}' for k in keys) + "}"

    # -------------------------------------------------------------- composite nodes

    def binary(self, lhs: str, ops: tuple[str, ...], rhs: str, depth: int, scope: dict[str, str]) -> str:
        """Return ``(a op b)`` with ``a`` of type ``lhs`` and ``b`` of type ``rhs``."""
        left, op, right = self.expr(lhs, depth, scope), self.pick(ops), self.expr(rhs, depth, scope)
        return f"({left} {op} {right})"

    def ternary(self, tag: str, depth: int, scope: dict[str, str]) -> str:
        cond = self.expr("bool", depth, scope)
        return f"({cond} ? {self.expr(tag, depth, scope)} : {self.expr(tag, depth, scope)})"

    def node_bool(self, depth: int, scope: dict[str, str]) -> str:
        forms: tuple[Callable[[int, dict[str, str]], str], ...] = (
            lambda d, s: f"!{self.expr('bool', d, s)}",
            lambda d, s: self.binary("bool", ("&&", "||"), "bool", d, s),
            lambda d, s: self.comparison(_ORDERED_TYPES, _ORDERING_OPS, d, s),
            lambda d, s: self.comparison(_EQUALITY_TYPES, ("==", "!="), d, s),
            self.mixed_numeric_comparison,
            self.membership,
            self.presence,
            self.string_test,
            self.macro_bool,
            lambda d, s: self.ternary("bool", d, s),
        )
        return self.draw(st.sampled_from(forms))(depth, scope)

    def comparison(
        self, tags: tuple[str, ...], ops: tuple[str, ...], depth: int, scope: dict[str, str]
    ) -> str:
        tag = self.pick(tags)
        return self.binary(tag, ops, tag, depth, scope)

    def mixed_numeric_comparison(self, depth: int, scope: dict[str, str]) -> str:
        """Compare numbers of two different kinds through ``dyn()`` (CEL orders them)."""
        left, right = self.draw(
            st.lists(st.sampled_from(("int", "uint", "double")), min_size=2, max_size=2, unique=True)
        )
        op = self.pick(_ORDERING_OPS)
        return f"(dyn({self.expr(left, depth, scope)}) {op} {self.expr(right, depth, scope)})"

    def membership(self, depth: int, scope: dict[str, str]) -> str:
        if self.draw(st.booleans()):
            tag = self.pick(("string", "int"))
            return self.binary(tag, ("in",), f"list<{tag}>", depth, scope)
        # Heterogeneous equality: a value against a list of mixed types.
        tag = self.pick(("int", "uint", "double", "string", "bool"))
        return f"({self.expr(tag, depth, scope)} in {self.literal_list_dyn()})"

    def presence(self, depth: int, scope: dict[str, str]) -> str:  # noqa: ARG002  uniform signature
        match self.int_value(st.integers(0, 3)):
            case 0:
                return f'("{self.pick(CEL_METRIC_KEYS)}" in metrics)'
            case 1:
                return f"has(metrics.{self.pick(CEL_METRIC_KEYS)})"
            case 2:
                return f"has(seller.{self.pick(tuple(CEL_SELLER_FIELDS))})"
            case _:
                return f'bool("{self.pick(("true", "false", "1", "f", "TRUE", "yes"))}")'

    def string_test(self, depth: int, scope: dict[str, str]) -> str:
        target = self.expr("string", depth, scope)
        if self.draw(st.booleans()):
            return f"{target}.matches({cel_string_literal(self.pick(_REGEXES))})"
        function = self.pick(("startsWith", "endsWith", "contains"))
        return f"{target}.{function}({self.expr('string', depth, scope)})"

    def macro_bool(self, depth: int, scope: dict[str, str]) -> str:
        macro = self.pick(("exists", "all", "exists_one"))
        var = self.fresh()
        match self.int_value(st.integers(0, 3)):
            case 0:
                source, elem = self.expr("list<string>", depth, scope), "string"
            case 1:
                source, elem = self.expr("list<int>", depth, scope), "int"
            case 2:
                source, elem = self.leaf("map<string,double>"), "string"
            case _:
                other = self.leaf(self.pick(("int", "uint", "double", "string")))
                return f"{self.literal_list_dyn()}.{macro}({var}, {var} == {other})"
        body = self.expr("bool", depth, {**scope, var: elem})
        return f"{source}.{macro}({var}, {body})"

    def node_int(self, depth: int, scope: dict[str, str]) -> str:
        match self.int_value(st.integers(0, 7)):
            case 0 | 1:
                return self.binary("int", _INT_OPS, "int", depth, scope)
            case 2:
                return f"-({self.expr('int', depth, scope)})"
            case 3:
                tag = self.pick(("string", "bytes", "list<string>", "list<int>", "map<string,int>"))
                return f"size({self.expr(tag, depth, scope)})"
            case 4:
                if self.draw(st.booleans()):
                    return f"int({self.pick(_INT_STRINGS)})"
                return f"int({self.expr(self.pick(('double', 'uint', 'timestamp')), depth, scope)})"
            case 5:
                if self.draw(st.booleans()):
                    accessor = self.pick(_DURATION_ACCESSORS)
                    return f"{self.expr('duration', depth, scope)}.{accessor}()"
                accessor = self.pick(_TS_ACCESSORS)
                zone = self.pick(("", *_ZONES))
                return f"{self.expr('timestamp', depth, scope)}.{accessor}({zone})"
            case 6:
                index = self.expr("int", depth, scope)
                return f"{self.expr('list<int>', depth, scope)}[{index}]"
            case _:
                return self.ternary("int", depth, scope)

    def node_uint(self, depth: int, scope: dict[str, str]) -> str:
        match self.int_value(st.integers(0, 3)):
            case 0 | 1:
                return self.binary("uint", _INT_OPS, "uint", depth, scope)
            case 2:
                return f"uint({self.expr(self.pick(('int', 'double')), depth, scope)})"
            case _:
                return self.ternary("uint", depth, scope)

    def node_double(self, depth: int, scope: dict[str, str]) -> str:
        match self.int_value(st.integers(0, 4)):
            case 0 | 1:
                return self.binary("double", ("+", "-", "*", "/"), "double", depth, scope)
            case 2:
                return f"-({self.expr('double', depth, scope)})"
            case 3:
                if self.draw(st.booleans()):
                    return f"double({self.pick(_DOUBLE_STRINGS)})"
                return f"double({self.expr(self.pick(('int', 'uint')), depth, scope)})"
            case _:
                return self.ternary("double", depth, scope)

    def node_string(self, depth: int, scope: dict[str, str]) -> str:
        match self.int_value(st.integers(0, 4)):
            case 0 | 1:
                return self.binary("string", ("+",), "string", depth, scope)
            case 2:
                tag = self.pick(("int", "uint", "double", "bool", "bytes", "timestamp", "duration"))
                return f"string({self.expr(tag, depth, scope)})"
            case 3:
                index = self.expr("int", depth, scope)
                return f"{self.expr('list<string>', depth, scope)}[{index}]"
            case _:
                return self.ternary("string", depth, scope)

    def node_bytes(self, depth: int, scope: dict[str, str]) -> str:
        if self.draw(st.booleans()):
            return self.binary("bytes", ("+",), "bytes", depth, scope)
        return f"bytes({self.expr('string', depth, scope)})"

    def node_timestamp(self, depth: int, scope: dict[str, str]) -> str:
        match self.int_value(st.integers(0, 2)):
            case 0:
                return self.binary("timestamp", ("+", "-"), "duration", depth, scope)
            case 1:
                return self.binary("duration", ("+",), "timestamp", depth, scope)
            case _:
                return self.ternary("timestamp", depth, scope)

    def node_duration(self, depth: int, scope: dict[str, str]) -> str:
        match self.int_value(st.integers(0, 2)):
            case 0:
                return self.binary("duration", ("+", "-"), "duration", depth, scope)
            case 1:
                return self.binary("timestamp", ("-",), "timestamp", depth, scope)
            case _:
                return self.ternary("duration", depth, scope)

    def node_list_string(self, depth: int, scope: dict[str, str]) -> str:
        # No map()/filter() over a map here: map iteration order is unspecified in CEL.
        var = self.fresh()
        inner = {**scope, var: "string"}
        match self.int_value(st.integers(0, 2)):
            case 0:
                return self.binary("list<string>", ("+",), "list<string>", depth, scope)
            case 1:
                source = self.expr("list<string>", depth, scope)
                return f"{source}.filter({var}, {self.expr('bool', depth, inner)})"
            case _:
                source = self.expr("list<string>", depth, scope)
                return f"{source}.map({var}, {self.expr('string', depth, inner)})"

    def node_list_int(self, depth: int, scope: dict[str, str]) -> str:
        var = self.fresh()
        match self.int_value(st.integers(0, 2)):
            case 0:
                return self.binary("list<int>", ("+",), "list<int>", depth, scope)
            case 1:
                source = self.expr("list<string>", depth, scope)
                body = self.expr("int", depth, {**scope, var: "string"})
                return f"{source}.map({var}, {body})"
            case _:
                source = self.expr("list<int>", depth, scope)
                body = self.expr("bool", depth, {**scope, var: "int"})
                return f"{source}.filter({var}, {body})"

    def node_map_string_double(self, depth: int, scope: dict[str, str]) -> str:  # noqa: ARG002  uniform signature
        return self.leaf("map<string,double>")

    def node_map_string_int(self, depth: int, scope: dict[str, str]) -> str:  # noqa: ARG002  uniform signature
        return self.leaf("map<string,int>")


def _method(tag: str) -> str:
    return tag.replace("<", "_").replace(">", "").replace(",", "_")


_ATTRIBUTES: dict[str, tuple[str, ...]] = {
    "string": ("seller.id", "seller.country", "seller.tags[0]"),
    "bool": ("seller.verified",),
    "double": (
        "seller.rating",
        "metrics.rating",
        'metrics["defect_rate"]',
        "metrics.refund_rate",
    ),
    "int": ("seller.sales", "counts.orders", 'counts["returns"]'),
    "uint": ("quota",),
    "timestamp": ("now", "joined"),
    "duration": ("grace",),
    "list<string>": ("seller.tags",),
    "map<string,double>": ("metrics",),
    "map<string,int>": ("counts",),
}


@st.composite
def cel_expressions(draw: st.DrawFn, result: str | None = None) -> str:
    """Draw a well-typed CEL expression over :data:`CEL_ENV`.

    Args:
        draw: Supplied by Hypothesis.
        result: The type tag of the result; drawn (mostly ``bool``) when ``None``.
    """
    gen = _Gen(draw)
    tag = result if result is not None else gen.pick(_RESULT_TYPES)
    depth = gen.int_value(st.integers(1, _MAX_DEPTH))
    return gen.expr(tag, depth, {})


# ------------------------------------------------------------------ contexts


def _sometimes_missing(draw: st.DrawFn, fields: dict[str, object]) -> dict[str, object]:
    """Drop each entry with probability 1/8."""
    return {key: value for key, value in fields.items() if draw(st.integers(0, 7)) != 0}


@st.composite
def cel_contexts(draw: st.DrawFn) -> dict[str, object]:
    """Draw an activation for :data:`CEL_ENV`; attributes are missing now and then.

    Values use our runtime representation: ``UInt`` for uint, aware UTC datetimes,
    timedeltas, lists and dicts.
    """
    seller = {
        "id": draw(st.sampled_from(["s-1", "s-42", ""]) | cel_strings),
        "country": draw(st.sampled_from(["DE", "US", "FR", "de", ""])),
        "verified": draw(st.booleans()),
        "rating": draw(st.sampled_from([4.5, 5.0, 3.9, 0.0]) | cel_doubles),
        "sales": draw(cel_ints),
        "tags": draw(st.lists(st.sampled_from(["new", "eu", "a1", "bulk", "é"]) | cel_strings, max_size=3)),
    }
    metrics = {key: draw(cel_doubles) for key in CEL_METRIC_KEYS}
    counts = {key: draw(cel_ints) for key in CEL_COUNT_KEYS}
    roots: dict[str, object] = {
        "seller": _sometimes_missing(draw, seller),
        "metrics": _sometimes_missing(draw, metrics),
        "counts": _sometimes_missing(draw, counts),
        "quota": UInt(draw(cel_uints)),
        "now": draw(cel_context_timestamps),
        "joined": draw(cel_context_timestamps),
        "grace": draw(cel_durations),
    }
    # Root variables go missing more rarely than fields.
    if draw(st.integers(0, 15)) == 0:
        del roots[draw(st.sampled_from(sorted(roots)))]
    return roots


# =====================================================================================
# JSON-like documents and YAML-ish text (tests/test_yaml.py)
#
# `json_values()` draws what a policy document holds once read: dicts with str keys,
# lists, str, int, float, bool and None, nested a few levels. `yaml_like_text()` draws
# short strings over an alphabet dense in YAML indicators, which reaches far more of
# the parser's error paths than arbitrary text does.
# =====================================================================================

_YAML_ALPHABET = "ab1.:-?,[]{}&*!|>'\"#%@`~ \t\n\r\x85\u2028é"


def json_scalars(text: st.SearchStrategy[str] | None = None) -> st.SearchStrategy[object]:
    """Draw ``None``, a bool, an int, a finite-or-infinite float (never NaN) or a string.

    Args:
        text: The strings to draw; any text when ``None``.
    """
    strings = st.text() if text is None else text
    return st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), strings)


def json_values(
    text: st.SearchStrategy[str] | None = None,
    keys: st.SearchStrategy[str] | None = None,
    max_leaves: int = 20,
) -> st.SearchStrategy[object]:
    """Draw a JSON-like value: scalars, lists and dicts with string keys, nested.

    NaN is left out so drawn values compare equal to themselves.

    Args:
        text: The string values to draw; any text when ``None``.
        keys: The mapping keys to draw; any text when ``None``.
        max_leaves: Roughly how many scalars one value holds at most.
    """
    key_strategy = st.text() if keys is None else keys
    return st.recursive(
        json_scalars(text),
        lambda children: st.one_of(
            st.lists(children, max_size=4),
            st.dictionaries(key_strategy, children, max_size=4),
        ),
        max_leaves=max_leaves,
    )


def yaml_like_text(max_size: int = 60) -> st.SearchStrategy[str]:
    """Draw short text made mostly of YAML indicators, quotes, breaks and tabs."""
    return st.text(_YAML_ALPHABET, max_size=max_size)


# =====================================================================================
# Policy sets, evaluation contexts and YAML-ish documents (tests/test_properties.py)
#
# Everything here is plain data; the tests render YAML and build engine objects.
# `policy_contexts(environment, tiers)` draws an evaluation context for any compiled
# context schema (a policy set's `environment`), with attributes now and then missing
# or of the wrong type. `policy_documents()` draws a valid Context and Tiers document
# pair. `yamlish_documents()` draws documents that look like policies but are mostly
# wrong: random nesting over the real key vocabulary, junk keys, mutated valid ones.
# =====================================================================================

POLICY_NOW = dt.datetime(2026, 11, 28, 12, 0, tzinfo=dt.UTC)
"""The evaluation time the policy property tests pass explicitly."""

POLICY_TIER_POOL = ("bronze", "silver", "gold", "platinum", "diamond", "no", "on")
"""Tier names; ``no`` and ``on`` are booleans in YAML 1.1 but text in YAML 1.2."""

POLICY_SELLER_IDS = ("s-1", "s-42", "s-10042", "s-20077", "vip", "ü-1", "1e3", " ")
"""Seller ids, including the ones the shipped and the small policy sets override."""

POLICY_CONTEXT_ATTRIBUTES: dict[str, dict[str, str]] = {
    "seller": {
        "verified": "bool",
        "country": "string",
        "joined_at": "timestamp",
        "categories": "list<string>",
        "kyc_level": "int",
    },
    "metrics": {"orders": "int", "rating": "double", "claim_rate": "double"},
    "request": {"channel": "string"},
}
"""The attributes :data:`POLICY_CONDITIONS` read; every generated Context declares them."""

POLICY_CONDITIONS = (
    "true",
    "seller.verified",
    "metrics.rating >= 4.5",
    "seller.verified && metrics.rating >= 4.5 && metrics.claim_rate < 0.01",
    'seller.country in ["DE", "FR", "NL"]',
    'now - seller.joined_at >= duration("2160h")',
    "seller.country.matches('^[A-Z]{2}$')",
    "!seller.verified || metrics.orders >= 100",
    '"fashion" in seller.categories',
    "size(seller.categories) > 1 && seller.kyc_level >= 2",
    'request.channel == "api"',
    "metrics.orders > 10 ? metrics.rating > 4.0 : false",
    "has(seller.verified) && seller.verified",
    'seller.tier == "gold" || metrics.orders >= 1000',
    "seller.id.startsWith('s-') && metrics.orders / 0 > 1",
)
"""Valid feature conditions over :data:`POLICY_CONTEXT_ATTRIBUTES` (some fail at run time)."""

POLICY_PROGRESSION_CONDITIONS = (
    "metrics.orders >= 10",
    "metrics.orders >= 100 && metrics.rating >= 4.5",
    "metrics.rating >= 4.0 && metrics.claim_rate < 0.02 && seller.verified",
    "metrics.orders >= 500 && seller.kyc_level >= 2",
    "false",
)
"""Valid progression rules (conjunctions of comparisons, so ``missing`` has clauses)."""

POLICY_TYPE_NAMES = (
    "bool",
    "int",
    "uint",
    "double",
    "string",
    "bytes",
    "timestamp",
    "duration",
    "dyn",
    "list<string>",
    "list<int>",
    "map<string, int>",
    "map<string, double>",
)
"""CEL type names a Context document may declare."""

POLICY_KEY_VOCABULARY = (
    "apiVersion",
    "kind",
    "metadata",
    "spec",
    "name",
    "description",
    "labels",
    "tiers",
    "features",
    "limits",
    "progression",
    "overrides",
    "attributes",
    "from",
    "when",
    "rollout",
    "enabled",
    "unit",
    "values",
    "window_days",
    "grace_period_days",
    "rules",
    "seller",
    "feature",
    "limit",
    "tier",
    "value",
    "reason",
    "expires",
    "starts",
    "author",
    "bronze",
    "silver",
    "gold",
    "metrics",
    "rating",
    "listing.create",
    "<<",
)
"""Keys of the real policy format (plus a few values used as keys)."""

_NAME_REGEX = r"[a-z][a-z0-9_]{0,10}(?:[.-][a-z0-9_]{1,6}){0,2}"

policy_names = st.one_of(
    st.sampled_from(("listing.create", "checkout.one_page", "a", "on", "null", "x-1.y_2")),
    st.from_regex(_NAME_REGEX, fullmatch=True),
)
"""Feature, limit and document names matching the policy format's name pattern."""

policy_seller_ids = st.one_of(st.sampled_from(POLICY_SELLER_IDS), st.text(min_size=1, max_size=12))
"""Non-empty seller ids: known ones (overridden in policies) and arbitrary text."""

policy_rollout_basis_points = st.integers(0, 10_000)
"""A rollout percentage with at most two decimals, as basis points (``1250`` is 12.5 %)."""


def percent_text(basis_points: int) -> str:
    """Write basis points as the percentage a person types: ``1250`` -> ``12.50``."""
    return f"{basis_points // 100}.{basis_points % 100:02d}"


_POLICY_INTS = st.one_of(
    st.integers(-5, 2_000),
    st.sampled_from([0, 1, 2, 10, 100, 500, 1_000]),
    st.integers(-(2**63), 2**63 - 1),
)
_POLICY_DOUBLES = st.one_of(
    st.floats(0, 5),
    st.floats(0, 0.1),
    st.sampled_from([0.0, 4.0, 4.5, 4.8, 0.01, 0.005, -0.0]),
    st.floats(allow_nan=True, allow_infinity=True),
)
_POLICY_STRINGS = st.one_of(
    st.sampled_from(["DE", "FR", "US", "api", "web", "fashion", "home", "s-1", ""]),
    st.text(max_size=6),
)
_POLICY_TIMESTAMPS = st.one_of(
    st.datetimes(
        min_value=dt.datetime(2015, 1, 1),  # noqa: DTZ001  hypothesis wants naive bounds
        max_value=dt.datetime(2035, 1, 1),  # noqa: DTZ001  same
        timezones=st.just(dt.UTC),
    ),
    cel_timestamps,
)
_POLICY_DURATIONS = st.one_of(st.timedeltas(dt.timedelta(days=-400), dt.timedelta(days=400)), cel_durations)
_JSON_SCALARS = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=4))
_PRIMITIVE_VALUES: dict[str, st.SearchStrategy[object]] = {
    "bool": st.booleans(),
    "int": _POLICY_INTS,
    "uint": cel_uints.map(UInt),
    "double": _POLICY_DOUBLES,
    "string": _POLICY_STRINGS,
    "bytes": st.binary(max_size=4),
    "null_type": st.none(),
    "timestamp": _POLICY_TIMESTAMPS,
    "duration": _POLICY_DURATIONS,
    "dyn": _JSON_SCALARS,
}


def policy_values(cel_type: CelType, *, mistakes: bool = True) -> st.SearchStrategy[object]:
    """Draw a value of ``cel_type`` in the engine's runtime representation.

    Args:
        cel_type: A type from a compiled context schema.
        mistakes: Whether object fields are sometimes missing or of another type.
    """
    if isinstance(cel_type, ObjectType):
        return _object_values(dict(cel_type.fields), mistakes=mistakes)
    if isinstance(cel_type, ListType):
        return st.lists(policy_values(cel_type.elem, mistakes=mistakes), max_size=3)
    if isinstance(cel_type, MapType):
        # Map keys are bool, int, uint or string; dyn keys are drawn as strings.
        keys = _PRIMITIVE_VALUES.get(str(cel_type.key), _POLICY_STRINGS)
        if str(cel_type.key) == "dyn":
            keys = _POLICY_STRINGS
        return st.dictionaries(keys, policy_values(cel_type.value, mistakes=mistakes), max_size=3)
    return _PRIMITIVE_VALUES.get(str(cel_type), _JSON_SCALARS)


@st.composite
def _object_values(draw: st.DrawFn, fields: dict[str, CelType], *, mistakes: bool) -> dict[str, object]:
    value: dict[str, object] = {}
    for key, field_type in fields.items():
        roll = draw(st.integers(0, 19)) if mistakes else 19
        if roll < 2:
            continue  # missing: conditions reading it fail with CONDITION_ERROR
        if roll == 2:
            value[key] = draw(_JSON_SCALARS)  # probably of the wrong type
            continue
        value[key] = draw(policy_values(field_type, mistakes=mistakes))
    return value


@st.composite
def policy_contexts(
    draw: st.DrawFn,
    environment: dict[str, CelType],
    tiers: tuple[str, ...] | list[str],
    *,
    mistakes: bool = True,
) -> dict[str, object]:
    """Draw an evaluation context for a compiled context schema.

    ``seller.id`` and ``seller.tier`` are always valid (a non-empty id and one of
    ``tiers``); ``now`` is left out because the tests pass it explicitly.
    """
    context: dict[str, object] = {}
    for root, root_type in environment.items():
        if root in {"now", "seller"}:
            continue
        if mistakes and draw(st.integers(0, 19)) == 0:
            continue
        context[root] = draw(policy_values(root_type, mistakes=mistakes))
    seller_type = environment.get("seller")
    fields = dict(seller_type.fields) if isinstance(seller_type, ObjectType) else {}
    fields.pop("id", None)
    fields.pop("tier", None)
    seller = draw(_object_values(fields, mistakes=mistakes))
    seller["id"] = draw(policy_seller_ids)
    seller["tier"] = draw(st.sampled_from(tuple(tiers)))
    context["seller"] = seller
    return context


# ------------------------------------------------------------------ valid documents

policy_timestamps_text = st.builds(
    lambda moment, zone: moment.isoformat() + zone,
    st.datetimes(
        min_value=dt.datetime(2000, 1, 1),  # noqa: DTZ001  hypothesis wants naive bounds
        max_value=dt.datetime(2100, 1, 1),  # noqa: DTZ001  same
    ),
    st.sampled_from(["Z", "+00:00", "+02:00", "-05:30"]),
)
"""RFC 3339 timestamps with a timezone, as written in a policy file."""

policy_exact_rollouts = st.one_of(st.integers(0, 100), st.integers(0, 400).map(lambda q: q / 4))
"""Rollout percentages exact in binary floating point (whole numbers and quarters)."""

_LIMIT_VALUES = st.one_of(st.integers(0, 10**6), st.just("unlimited"), st.integers(0, 2**70))


@st.composite
def policy_documents(
    draw: st.DrawFn,
    text: st.SearchStrategy[str] | None = None,
    rollouts: st.SearchStrategy[float] | None = None,
    conditions: tuple[str, ...] = POLICY_CONDITIONS,
) -> list[dict[str, object]]:
    """Draw a valid Context document and a valid Tiers document, as plain data.

    Args:
        draw: Supplied by Hypothesis.
        text: Free text (descriptions, reasons, units, seller ids, labels).
        rollouts: Rollout percentages; :data:`policy_exact_rollouts` by default.
        conditions: The pool of feature conditions.
    """
    text = st.text(max_size=12) if text is None else text
    rollouts = policy_exact_rollouts if rollouts is None else rollouts
    some_text = text.filter(bool)
    tiers = draw(st.lists(st.sampled_from(POLICY_TIER_POOL), min_size=1, max_size=4, unique=True))

    def maybe(spec: dict[str, object], key: str, strategy: st.SearchStrategy[object]) -> None:
        if draw(st.integers(0, 2)) == 0:
            spec[key] = draw(strategy)

    features: dict[str, object] = {}
    for name in draw(st.lists(policy_names, max_size=5, unique=True)):
        feature: dict[str, object] = {}
        if draw(st.booleans()):
            feature["from"] = draw(st.sampled_from(tiers))
        else:
            feature["tiers"] = draw(st.lists(st.sampled_from(tiers), min_size=1, unique=True))
        maybe(feature, "when", st.sampled_from(conditions))
        maybe(feature, "rollout", rollouts)
        maybe(feature, "enabled", st.booleans())
        maybe(feature, "description", text)
        features[name] = feature
    limits: dict[str, object] = {}
    for name in draw(st.lists(policy_names, max_size=4, unique=True)):
        values = {tiers[0]: draw(_LIMIT_VALUES)}
        for tier in tiers[1:]:
            if draw(st.booleans()):
                values[tier] = draw(_LIMIT_VALUES)
        limit: dict[str, object] = {"values": values}
        maybe(limit, "unit", text)
        maybe(limit, "description", text)
        limits[name] = limit
    spec: dict[str, object] = {"tiers": [_tier_entry(draw, tier, text) for tier in tiers]}
    if features or draw(st.booleans()):
        spec["features"] = features
    if limits or draw(st.booleans()):
        spec["limits"] = limits
    if draw(st.booleans()):
        rules = {
            tier: {"when": draw(st.sampled_from(POLICY_PROGRESSION_CONDITIONS))}
            for tier in draw(st.lists(st.sampled_from(tiers), min_size=1, unique=True))
        }
        progression: dict[str, object] = {"rules": rules}
        maybe(progression, "window_days", st.integers(1, 3660))
        maybe(progression, "grace_period_days", st.integers(0, 3660))
        spec["progression"] = progression
    overrides = [
        _override(draw, tiers, list(features), list(limits), some_text)
        for _ in range(draw(st.integers(0, 4)))
    ]
    if overrides:
        spec["overrides"] = overrides
    metadata: dict[str, object] = {"name": draw(policy_names)}
    maybe(metadata, "description", text)
    maybe(metadata, "labels", st.dictionaries(policy_names, text, max_size=2))
    extra = draw(
        st.dictionaries(
            st.from_regex(r"x[a-z0-9_]{0,6}", fullmatch=True),
            st.sampled_from(POLICY_TYPE_NAMES)
            | st.dictionaries(
                # Nested names must be usable in conditions: no CEL reserved word.
                st.from_regex(r"[a-z][a-z0-9_]{0,6}", fullmatch=True).filter(lambda n: n not in CEL_RESERVED),
                st.sampled_from(POLICY_TYPE_NAMES),
                min_size=1,
                max_size=3,
            ),
            max_size=3,
        )
    )
    context = {
        "apiVersion": "tierpolicy/v1",
        "kind": "Context",
        "metadata": {"name": draw(policy_names)},
        "spec": {"attributes": {**POLICY_CONTEXT_ATTRIBUTES, **extra}},
    }
    tiers_document = {"apiVersion": "tierpolicy/v1", "kind": "Tiers", "metadata": metadata, "spec": spec}
    return [context, tiers_document]


def _tier_entry(draw: st.DrawFn, tier: str, text: st.SearchStrategy[str]) -> dict[str, object]:
    entry: dict[str, object] = {"name": tier}
    if draw(st.booleans()):
        entry["description"] = draw(text)
    return entry


def _override(
    draw: st.DrawFn,
    tiers: list[str],
    features: list[str],
    limits: list[str],
    text: st.SearchStrategy[str],
) -> dict[str, object]:
    kinds = ["tier", *(["feature"] if features else []), *(["limit"] if limits else [])]
    kind = draw(st.sampled_from(kinds))
    seller = draw(st.sampled_from(POLICY_SELLER_IDS[:5]) | text)
    override: dict[str, object] = {"seller": seller}
    if kind == "feature":
        override["feature"] = draw(st.sampled_from(features))
        override["value"] = draw(st.booleans())
    elif kind == "limit":
        override["limit"] = draw(st.sampled_from(limits))
        override["value"] = draw(_LIMIT_VALUES)
    else:
        override["tier"] = draw(st.sampled_from(tiers))
    override["reason"] = draw(text)
    expires = draw(policy_timestamps_text)
    override["expires"] = expires
    if draw(st.booleans()):
        # A start at or after the expiry is a load error (the override could never apply).
        starts = draw(policy_timestamps_text)
        assume(dt.datetime.fromisoformat(starts) < dt.datetime.fromisoformat(expires))
        override["starts"] = starts
    if draw(st.booleans()):
        override["author"] = draw(text)
    return override


# ------------------------------------------------------------------ YAML-ish junk

_YAMLISH_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.sampled_from([0, 1, -1, 60, 3661, 2**63, 10**700]),
    st.floats(),
    st.text(max_size=10),
    st.sampled_from(
        [
            "tierpolicy/v1",
            "tierpolicy/v2",
            "Tiers",
            "Context",
            "unlimited",
            "bronze",
            "silver",
            "gold",
            "int",
            "list<string>",
            "map<string, int>",
            "list<",
            "float",
            "2099-01-01T00:00:00Z",
            "2020-01-01",
            "90d",
            "seller.verified",
            "metrics.rating >= 4.5",
            "seller.",
            "(((",
            "x.matches('[')",
            '"\\',
        ]
    ),
    st.sampled_from(POLICY_CONDITIONS),
    cel_expressions(),
)
_YAMLISH_KEYS = st.one_of(st.sampled_from(POLICY_KEY_VOCABULARY), st.text(max_size=6), policy_names)

yamlish_values = st.recursive(
    _YAMLISH_SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_YAMLISH_KEYS, inner, max_size=5),
    max_leaves=20,
)
"""Random nesting of lists and mappings over the policy vocabulary and junk scalars."""


@st.composite
def _random_documents(draw: st.DrawFn) -> object:
    if draw(st.integers(0, 4)) == 0:
        return draw(yamlish_values)
    envelope = {
        "apiVersion": st.just("tierpolicy/v1") | _YAMLISH_SCALARS,
        "kind": st.sampled_from(["Tiers", "Context"]) | _YAMLISH_SCALARS,
        "metadata": st.fixed_dictionaries({"name": policy_names}) | yamlish_values,
        "spec": st.dictionaries(_YAMLISH_KEYS, yamlish_values, max_size=6),
    }
    keys = draw(st.lists(st.sampled_from(list(envelope)), unique=True))
    document = {key: draw(envelope[key]) for key in keys}
    document.update(draw(st.dictionaries(_YAMLISH_KEYS, yamlish_values, max_size=1)))
    return document


def _copy(value: object) -> object:
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value


@st.composite
def _mutated_documents(draw: st.DrawFn) -> list[object]:
    documents = _copy(draw(policy_documents()))
    assert isinstance(documents, list)
    for _ in range(draw(st.integers(1, 3))):
        node: object = documents
        while True:
            children = list(node) if isinstance(node, dict) else list(range(len(node)))
            if not children:
                break
            key = draw(st.sampled_from(children))
            child = node[key]
            if isinstance(child, dict | list) and child and draw(st.integers(0, 3)) != 0:
                node = child
                continue
            action = draw(st.integers(0, 3))
            if action == 0 and isinstance(node, dict):
                del node[key]
            elif action == 1 and isinstance(node, dict):
                node[draw(_YAMLISH_KEYS)] = draw(yamlish_values)
            elif action == 2:
                node[key] = [child]
            else:
                node[key] = draw(yamlish_values)
            break
    return documents


yamlish_documents = st.lists(_random_documents(), min_size=1, max_size=2) | _mutated_documents()
"""Lists of YAML documents (plain data): random policy-like ones, or mutated valid ones."""


# =====================================================================================
# Resilience: retry and circuit breaker policies (tests/test_retry.py,
# tests/test_breaker.py)
#
# `retry_policies()` draws compiled `RetryPolicy` values (with or without a deadline,
# every jitter mode, no budget); `operation_policies()` wraps one in an
# `OperationPolicy`. `breaker_policies()` draws small `BreakerPolicy` values whose
# windows, thresholds and waits are tiny so that a short rule-based run reaches every
# state. Thresholds are whole or half percentages and clock steps are multiples of
# 1/4 s, so float arithmetic in the code under test and in the reference is exact.
# =====================================================================================

RESILIENCE_JITTERS = ("none", "full", "equal", "decorrelated")
RESILIENCE_CATEGORIES = ("transient", "throttled", "unavailable", "internal", "invalid_request")


@st.composite
def retry_policies(draw: st.DrawFn, *, deadline: bool | None = None) -> RetryPolicy:
    """A compiled retry policy; ``deadline`` forces one (True) or none (False)."""
    initial = draw(st.sampled_from((0.0, 0.01, 0.1, 0.25, 1.0, 2.0)))
    cap = initial + draw(st.sampled_from((0.0, 0.5, 1.0, 5.0, 30.0)))
    has_deadline = draw(st.booleans()) if deadline is None else deadline
    return RetryPolicy(
        max_attempts=draw(st.integers(1, 10)),
        initial_delay=initial,
        multiplier=draw(st.sampled_from((1.0, 1.5, 2.0, 3.0))),
        max_delay=cap,
        jitter=draw(st.sampled_from(RESILIENCE_JITTERS)),
        deadline=draw(st.sampled_from((0.5, 1.0, 3.0, 8.0, 60.0))) if has_deadline else None,
        categories=draw(st.none() | st.frozensets(st.sampled_from(RESILIENCE_CATEGORIES), min_size=1)),
        honor_retry_after=draw(st.booleans()),
        max_retry_after=draw(st.none() | st.sampled_from((0.0, 1.0, 5.0))),
        budget=None,
    )


@st.composite
def operation_policies(draw: st.DrawFn, *, deadline: bool | None = None) -> OperationPolicy:
    """An operation policy around a drawn retry policy."""
    return OperationPolicy(
        pattern="payments.*",
        idempotent=draw(st.booleans()),
        timeout=draw(st.none() | st.sampled_from((0.1, 1.0, 2.0))),
        retry=draw(retry_policies(deadline=deadline)),
        breaker=None,
        bulkhead=None,
        fallback=(),
        rule="resilience:payments.*",
        source="resilience.yaml:1:1",
    )


@st.composite
def breaker_policies(draw: st.DrawFn) -> BreakerPolicy:
    """A small circuit breaker policy (count or time window)."""
    window_type = draw(st.sampled_from(("count", "time")))
    size = draw(st.integers(1, 6))
    minimum = draw(st.integers(1, 6))
    if window_type == "count":
        minimum = min(minimum, size)
    wait = draw(st.sampled_from((0.5, 1.0, 2.0)))
    return BreakerPolicy(
        window_type=window_type,
        window_size=size,
        failure_rate_threshold=draw(st.sampled_from((20.0, 50.0, 66.5, 100.0))),
        slow_call_duration=draw(st.none() | st.sampled_from((0.5, 2.0))),
        slow_call_rate_threshold=draw(st.sampled_from((50.0, 100.0))),
        minimum_calls=minimum,
        wait_in_open=wait,
        wait_multiplier=draw(st.sampled_from((1.0, 2.0))),
        max_wait_in_open=wait * draw(st.sampled_from((1, 4))),
        permitted_calls_in_half_open=draw(st.integers(1, 4)),
        max_wait_in_half_open=draw(st.sampled_from((0.0, 0.0, 1.0, 3.0))),
    )


# =====================================================================================
# Error classification (tests/test_classification.py)
#
# `errors_documents()` draws an Errors document (as plain data) whose rules combine
# exception names, statuses and ranges, reasons, domains, message patterns, operation
# globs and conditions from small pools, so generated errors often match several rules;
# `error_infos()` draws errors over the same pools.
# =====================================================================================

ERROR_NAMES = ("app.Base", "app.Child", "TimeoutError", "ConnectionError", "httpx.ConnectTimeout")
ERROR_STATUSES: tuple[int | str, ...] = (400, 404, 429, 500, 503, "4xx", "5xx")
ERROR_REASONS = ("QUOTA", "LOCKED")
ERROR_DOMAINS = ("pay.example", "ship.example")
ERROR_GLOBS = ("payments.*", "search.query", "*", "s?ipping.*")
ERROR_PATTERNS = ("timeout", "^boom$", "(?i)declined")
ERROR_CONDITIONS = ("error.status >= 500", "has(error.retry_after)", "'app.Child' in error.types")
ERROR_CODES = ("FIRST", "SECOND", "THIRD")


def _one_or_list(draw: st.DrawFn, pool: tuple[object, ...]) -> object:
    items = draw(st.lists(st.sampled_from(pool), min_size=1, max_size=3, unique=True))
    return items[0] if len(items) == 1 and draw(st.booleans()) else items


@st.composite
def error_matches(draw: st.DrawFn) -> dict[str, object]:
    """One non-empty ``match:`` mapping."""
    match: dict[str, object] = {}
    while not match:
        if draw(st.booleans()):
            match["exception"] = _one_or_list(draw, ERROR_NAMES)
        if draw(st.booleans()):
            match["status"] = _one_or_list(draw, ERROR_STATUSES)
        for key, pool in (
            ("reason", ERROR_REASONS),
            ("domain", ERROR_DOMAINS),
            ("operation", ERROR_GLOBS),
            ("message", ERROR_PATTERNS),
            ("when", ERROR_CONDITIONS),
        ):
            if draw(st.integers(0, 4)) == 0:
                match[key] = draw(st.sampled_from(pool))
    return match


@st.composite
def errors_documents(draw: st.DrawFn, max_rules: int = 12) -> dict[str, object]:
    """An Errors document: three codes plus INTERNAL, rules, and a final catch-all."""
    codes = {
        code: {"category": "transient", "status": 503, "title": code.title(), "message": f"{code} happened."}
        for code in ERROR_CODES
    }
    codes["INTERNAL"] = {"category": "internal", "status": 500, "title": "Internal", "message": "Oops."}
    matches = draw(st.lists(error_matches(), max_size=max_rules))
    rules: list[dict[str, object]] = [
        {"name": f"r{i}", "match": match, "code": draw(st.sampled_from(ERROR_CODES))}
        for i, match in enumerate(matches)
    ]
    rules.append({"name": "internal", "code": "INTERNAL"})
    return {
        "apiVersion": "tierpolicy/v1",
        "kind": "Errors",
        "metadata": {"name": "generated-errors"},
        "spec": {"codes": codes, "rules": rules},
    }


@st.composite
def error_infos(draw: st.DrawFn) -> ErrorInfo:
    """An error over the pools of `errors_documents()`."""
    return ErrorInfo(
        types=tuple(draw(st.lists(st.sampled_from(ERROR_NAMES), max_size=3, unique=True))),
        status=draw(st.none() | st.sampled_from((302, 400, 404, 429, 451, 500, 503, 599))),
        reason=draw(st.none() | st.sampled_from(ERROR_REASONS)),
        domain=draw(st.none() | st.sampled_from(ERROR_DOMAINS)),
        message=draw(st.sampled_from(("", "timeout", "boom", "Card DECLINED", "read timeout"))),
        operation=draw(
            st.none() | st.sampled_from(("payments.capture", "search.query", "shipping.rate", "x"))
        ),
        retry_after=draw(st.none() | st.sampled_from((0.0, 2.5, 7200.0))),
    )


# ---------------------------------------------------------------- variants of the shipped policies

_VARIANT_STATUSES = (400, 404, 409, 422, 429, 500, 503, 504)
_VARIANT_TIMEOUTS = ("500ms", "1s", "2s", "3s")
_VARIANT_STORE_MODES = ("fail_open", "fail_closed", "local")


def _documents_of(documents: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in documents if d["kind"] == kind]


def _mutate_tiers(draw: st.DrawFn, spec: dict[str, Any]) -> None:
    ladder = [t["name"] for t in spec["tiers"]]
    features = spec.get("features", {})
    limits = spec.get("limits", {})
    choice = draw(st.sampled_from(("from", "rollout", "enabled", "when", "limit", "grace", "threshold")))
    if choice in {"from", "rollout", "enabled", "when"} and features:
        feature = features[draw(st.sampled_from(sorted(features)))]
        if choice == "from" and "from" in feature:
            feature["from"] = draw(st.sampled_from(ladder))
        elif choice == "rollout":
            feature["rollout"] = draw(st.integers(1, 100))
        elif choice == "enabled":
            feature["enabled"] = not feature.get("enabled", True)
        else:
            feature.pop("when", None)
    elif choice == "limit" and limits:
        values = limits[draw(st.sampled_from(sorted(limits)))]["values"]
        values[draw(st.sampled_from(sorted(values)))] = draw(
            st.one_of(st.just("unlimited"), st.integers(0, 10**6))
        )
    elif choice == "grace" and "progression" in spec:
        spec["progression"]["grace_period_days"] = draw(st.integers(1, 365))
    elif choice == "threshold" and spec.get("progression", {}).get("rules"):
        rules = spec["progression"]["rules"]
        rule = rules[draw(st.sampled_from(sorted(rules)))]
        # Whole numbers only, not the digits inside names such as orders_60d.
        numbers = list(re.finditer(r"(?<![\w.])\d+", rule["when"]))
        if numbers:
            found = draw(st.sampled_from(numbers))
            replacement = str(draw(st.integers(0, 100_000)))
            rule["when"] = rule["when"][: found.start()] + replacement + rule["when"][found.end() :]


def _mutate_errors(draw: st.DrawFn, spec: dict[str, Any]) -> None:
    codes = spec["codes"]
    code = codes[draw(st.sampled_from(sorted(codes)))]
    choice = draw(st.sampled_from(("status", "retryable", "title", "swap")))
    if choice == "status":
        code["status"] = draw(st.sampled_from(_VARIANT_STATUSES))
    elif choice == "retryable":
        code["retryable"] = not code.get("retryable", False)
    elif choice == "title":
        code["title"] = draw(st.sampled_from(("Changed", "Another title", code["title"])))
    elif len(spec["rules"]) > 2:  # two rules before the catch-all
        index = draw(st.integers(0, len(spec["rules"]) - 3))
        rules = spec["rules"]
        rules[index], rules[index + 1] = rules[index + 1], rules[index]


def _mutate_resilience(draw: st.DrawFn, spec: dict[str, Any]) -> None:
    operations = spec["operations"]
    operation = operations[draw(st.sampled_from(sorted(operations)))]
    choice = draw(st.sampled_from(("attempts", "timeout", "threshold", "breaker", "bulkhead")))
    if choice == "attempts" and "retry" in operation:
        operation["retry"]["max_attempts"] = draw(st.integers(1, 6))
    elif choice == "timeout" and "timeout" in operation:
        operation["timeout"] = draw(st.sampled_from(_VARIANT_TIMEOUTS))
    elif choice == "threshold" and "circuit_breaker" in operation:
        operation["circuit_breaker"]["failure_rate_threshold"] = draw(st.integers(10, 90))
    elif choice == "breaker":
        operation.pop("circuit_breaker", None)
    elif choice == "bulkhead":
        operation["bulkhead"] = {"max_concurrent": draw(st.integers(1, 100))}


def _mutate_ratelimits(draw: st.DrawFn, spec: dict[str, Any]) -> None:
    limit = draw(st.sampled_from(spec["limits"]))
    choice = draw(st.sampled_from(("rate", "shadow", "store")))
    if choice == "rate":
        window = draw(st.sampled_from(limit["windows"]))
        if isinstance(window["rate"], dict):
            tier = draw(st.sampled_from(sorted(window["rate"])))
            window["rate"][tier] = f"{draw(st.integers(1, 10_000))}/minute"
        else:
            window["rate"] = f"{draw(st.integers(1, 10_000))}/minute"
        window.pop("burst", None)
    elif choice == "shadow":
        limit["shadow"] = not limit.get("shadow", False)
    else:
        limit["on_store_error"] = draw(st.sampled_from(_VARIANT_STORE_MODES))


_MUTATORS = {
    "Tiers": _mutate_tiers,
    "Errors": _mutate_errors,
    "Resilience": _mutate_resilience,
    "RateLimits": _mutate_ratelimits,
}


@st.composite
def shipped_policy_variants(draw: st.DrawFn, documents: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Up to three valid edits of a policy set given as documents' plain data (``to_data()``).

    Edits a product person makes: a feature's tiers, rollout, switch or condition, a limit
    value, the grace period or a progression threshold, an error code's status,
    retryability or title, two adjacent classification rules, retry attempts, timeouts,
    breaker thresholds, bulkheads, rates, shadow mode and store-error modes. The input
    is not changed.
    """
    variant = copy.deepcopy(documents)
    kinds = sorted(kind for kind in _MUTATORS if _documents_of(variant, kind))
    for kind in draw(st.lists(st.sampled_from(kinds), max_size=3)) if kinds else []:
        _MUTATORS[kind](draw, _documents_of(variant, kind)[0]["spec"])
    return variant
