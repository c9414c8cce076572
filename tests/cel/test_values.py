from __future__ import annotations

import collections
import datetime as dt
import enum
import math
from types import MappingProxyType

import pytest

from tierpolicy.engine._exceptions import ConditionError
from tierpolicy.engine.cel import UInt
from tierpolicy.engine.cel import _values as rt

UTC = dt.UTC


def raises(fn, *args) -> str:
    """The message of the ConditionError ``fn(*args)`` raises."""
    with pytest.raises(ConditionError) as info:
        fn(*args)
    return str(info.value)


class Colour(enum.IntEnum):
    """An int subclass, as context values may be."""

    RED = 1


class Name(enum.StrEnum):
    """A str subclass, as context values may be."""

    ANNA = "anna"


@pytest.mark.parametrize(
    ("value", "kind"),
    [
        (True, "bool"),
        (1, "int"),
        (UInt(1), "uint"),
        (1.0, "double"),
        ("a", "string"),
        (b"a", "bytes"),
        (None, "null_type"),
        ([1], "list"),
        ((1,), "list"),
        ({}, "map"),
        (MappingProxyType({}), "map"),
        (collections.OrderedDict(), "map"),
        (dt.datetime.now(UTC), "timestamp"),
        (dt.timedelta(1), "duration"),
        (Colour.RED, "int"),
        (Name.ANNA, "string"),
        ({1}, "set"),
    ],
)
def test_kind_of_names_cel_types(value, kind):
    """Run-time values map to CEL type names; subclasses count as their base kind."""
    assert rt.kind_of(value) == kind


def test_uint_is_an_int_subclass_with_a_distinct_repr():
    """UInt compares like an int but shows that it is unsigned."""
    assert UInt(3) == 3
    assert repr(UInt(3)) == "UInt(3)"


@pytest.mark.parametrize(
    ("left", "right", "expected"),
    [
        (1, 1.0, True),
        (1, UInt(1), True),
        (UInt(2), 2.0, True),
        (True, 1, False),
        (False, 0, False),
        (1, "1", False),
        (None, None, True),
        (None, 0, False),
        (math.nan, math.nan, False),
        ([1, 2], (1.0, UInt(2)), True),
        ([1, 2], [1], False),
        ([1, "a"], [1, 2], False),
        ({"a": 1}, {"a": 1.0}, True),
        ({"a": 1}, {"b": 1}, False),
        ({"a": 1}, {"a": 1, "b": 2}, False),
        ({1: "x"}, {1.0: "x"}, True),
        ({True: "x"}, {1: "x"}, False),
        (2**63 - 1, 9223372036854775808.0, True),
        (b"a", b"a", True),
        (dt.timedelta(1), dt.timedelta(days=1), True),
    ],
)
def test_equality_is_heterogeneous_and_numeric_across_kinds(left, right, expected):
    """== is false across kinds except numbers, which compare by value (ints as doubles)."""
    assert rt.equals(left, right) is expected
    assert rt.equals(right, left) is expected


@pytest.mark.parametrize(
    ("op", "left", "right", "expected"),
    [
        ("<", 1, 2, True),
        ("<=", 2, 2, True),
        (">", 2, 1.5, True),
        (">=", UInt(1), -1, True),
        ("<", -1, UInt(0), True),
        ("<", 2**63 - 1, 9223372036854775808.0, False),
        ("<", math.nan, 1, False),
        (">=", math.nan, 1, False),
        ("<", "a", "b", True),
        ("<", b"a", b"b", True),
        ("<", False, True, True),
        ("<", dt.timedelta(1), dt.timedelta(2), True),
    ],
)
def test_ordering(op, left, right, expected):
    """Ordering works within a kind and across numeric kinds; NaN is unordered."""
    assert rt.compare(op, left, right) is expected


@pytest.mark.parametrize(
    ("left", "right", "message"),
    [
        ("a", 1, "no matching overload for '<' on string and int"),
        (True, 1, "no matching overload for '<' on bool and int"),
        (None, None, "no matching overload for '<' on null_type and null_type"),
        ([1], [2], "no matching overload for '<' on list and list"),
        (
            dt.datetime(2020, 1, 1),  # noqa: DTZ001  a naive datetime is the point
            dt.datetime(2020, 1, 1, tzinfo=UTC),
            "no matching overload for '<' on timestamp and timestamp",
        ),
    ],
)
def test_ordering_errors(left, right, message):
    """Ordering across kinds (other than numbers) has no overload."""
    assert raises(rt.compare, "<", left, right) == message


@pytest.mark.parametrize(
    ("fn", "left", "right", "expected"),
    [
        (rt.add, 1, 2, 3),
        (rt.add, UInt(1), UInt(2), UInt(3)),
        (rt.add, 1.5, 2.0, 3.5),
        (rt.add, "a", "b", "ab"),
        (rt.add, b"a", b"b", b"ab"),
        (rt.add, [1], (2,), [1, 2]),
        (rt.add, dt.timedelta(1), dt.timedelta(2), dt.timedelta(3)),
        (rt.subtract, 1, 2, -1),
        (rt.subtract, UInt(3), UInt(2), UInt(1)),
        (rt.subtract, 1.5, 0.5, 1.0),
        (rt.subtract, dt.timedelta(3), dt.timedelta(1), dt.timedelta(2)),
        (rt.multiply, 3, 4, 12),
        (rt.multiply, UInt(3), UInt(4), UInt(12)),
        (rt.multiply, 1.5, 2.0, 3.0),
        (rt.divide, 7, 2, 3),
        (rt.divide, -7, 2, -3),
        (rt.divide, 7, -2, -3),
        (rt.divide, -7, -2, 3),
        (rt.divide, UInt(7), UInt(2), UInt(3)),
        (rt.divide, 1.0, 4.0, 0.25),
        (rt.divide, 1.0, 0.0, math.inf),
        (rt.divide, -1.0, 0.0, -math.inf),
        (rt.divide, 1.0, -0.0, -math.inf),
        (rt.modulo, 7, 3, 1),
        (rt.modulo, -7, 3, -1),
        (rt.modulo, 7, -3, 1),
        (rt.modulo, UInt(7), UInt(3), UInt(1)),
    ],
)
def test_arithmetic(fn, left, right, expected):
    """Arithmetic keeps the operand kind; integer division and modulo truncate toward zero."""
    result = fn(left, right)
    assert result == expected
    assert type(result) is type(expected)


def test_zero_divided_by_zero_is_nan():
    """0.0 / 0.0 is NaN, not a Python ZeroDivisionError."""
    assert math.isnan(rt.divide(0.0, 0.0))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("fn", "left", "right", "message"),
    [
        (rt.add, 2**63 - 1, 1, "integer overflow in '+'"),
        (rt.subtract, -(2**63), 1, "integer overflow in '-'"),
        (rt.multiply, 2**32, 2**32, "integer overflow in '*'"),
        (rt.divide, -(2**63), -1, "integer overflow in '/'"),
        (rt.modulo, -(2**63), -1, "integer overflow in '%'"),
        (rt.add, UInt(2**64 - 1), UInt(1), "integer overflow in '+'"),
        (rt.subtract, UInt(0), UInt(1), "integer overflow in '-'"),
        (rt.divide, 1, 0, "division by zero"),
        (rt.divide, UInt(1), UInt(0), "division by zero"),
        (rt.modulo, 1, 0, "modulus by zero"),
        (rt.modulo, UInt(1), UInt(0), "modulus by zero"),
        (rt.add, 1, 1.0, "no matching overload for '+' on int and double"),
        (rt.add, 1, True, "no matching overload for '+' on int and bool"),
        (rt.add, UInt(1), 1, "no matching overload for '+' on uint and int"),
        (rt.subtract, "a", "b", "no matching overload for '-' on string and string"),
        (rt.subtract, True, 1, "no matching overload for '-' on bool and int"),
        (rt.subtract, UInt(1), 1, "no matching overload for '-' on uint and int"),
        (rt.multiply, True, True, "no matching overload for '*' on bool and bool"),
        (rt.multiply, UInt(1), 1, "no matching overload for '*' on uint and int"),
        (rt.divide, True, 1, "no matching overload for '/' on bool and int"),
        (rt.divide, UInt(1), 1, "no matching overload for '/' on uint and int"),
        (rt.modulo, 1.0, 1.0, "no matching overload for '%' on double and double"),
        (rt.modulo, True, 1, "no matching overload for '%' on bool and int"),
        (rt.modulo, UInt(1), 1, "no matching overload for '%' on uint and int"),
        (rt.add, dt.timedelta(days=2_000_000), dt.timedelta(days=2_000_000), "duration out of range"),
    ],
)
def test_arithmetic_errors(fn, left, right, message):
    """Overflow, division by zero and mixed kinds raise ConditionError with a clear message."""
    assert raises(fn, left, right) == message


def test_duration_arithmetic_stays_within_int64_nanoseconds():
    """Sums and differences of durations must fit int64 nanoseconds; literals may be larger."""
    limit = dt.timedelta(microseconds=(2**63 - 1) // 1000)
    assert rt.add(limit, dt.timedelta(0)) == limit
    assert raises(rt.add, limit, dt.timedelta(microseconds=1)) == "duration out of range"
    assert raises(rt.subtract, -limit, dt.timedelta(microseconds=2)) == "duration out of range"
    assert rt.parse_duration("200000000000s") == dt.timedelta(seconds=200_000_000_000)


def test_timestamp_arithmetic():
    """Timestamp ± duration, timestamp - timestamp, and their range checks."""
    start = dt.datetime(2020, 1, 1, tzinfo=UTC)
    hour = dt.timedelta(hours=1)
    assert rt.add(start, hour) == dt.datetime(2020, 1, 1, 1, tzinfo=UTC)
    assert rt.add(hour, start) == dt.datetime(2020, 1, 1, 1, tzinfo=UTC)
    assert rt.subtract(start, hour) == dt.datetime(2019, 12, 31, 23, tzinfo=UTC)
    assert rt.subtract(start + hour, start) == hour
    assert raises(rt.add, dt.datetime.max.replace(tzinfo=UTC), hour) == "timestamp out of range"
    far = dt.datetime(1500, 1, 1, tzinfo=UTC)
    assert raises(rt.subtract, start, far) == "duration out of range"
    naive = dt.datetime(2020, 1, 1)  # noqa: DTZ001  a naive datetime is the point
    assert raises(rt.subtract, naive, start) == "no matching overload for '-' on timestamp and timestamp"


def test_negate_and_not():
    """Unary minus on int (with overflow) and double; ! on bool only."""
    assert rt.negate(5) == -5
    assert rt.negate(1.5) == -1.5
    assert raises(rt.negate, -(2**63)) == "integer overflow in '-'"
    assert raises(rt.negate, UInt(1)) == "no matching overload for '-' on uint"
    assert raises(rt.negate, True) == "no matching overload for '-' on bool"
    assert rt.logical_not(True) is False
    assert rt.logical_not(False) is True
    assert raises(rt.logical_not, 0) == "no matching overload for '!' on int"


def test_map_lookup_follows_cel_key_rules():
    """Numeric keys match across kinds; bool keys never match 0 or 1; doubles must be whole."""
    mapping = {1: "one", "a": "A", UInt(2): "two"}
    assert rt.map_lookup(mapping, 1.0) == "one"
    assert rt.map_lookup(mapping, UInt(1)) == "one"
    assert rt.map_lookup(mapping, 2) == "two"
    assert rt.map_lookup(mapping, True) is rt.MISSING
    assert rt.map_lookup(mapping, 1.5) is rt.MISSING
    assert rt.map_lookup(mapping, None) is rt.MISSING
    assert rt.map_lookup(mapping, [1]) is rt.MISSING
    assert rt.map_lookup({True: "yes"}, True) == "yes"
    assert rt.map_lookup({True: "yes"}, 1) is rt.MISSING
    assert rt.map_lookup({"a": 1}, "b") is rt.MISSING
    assert rt.in_map("a", mapping) is True


def test_index():
    """Lists index by int, uint or whole double; maps by key; errors name the problem."""
    assert rt.index([7, 8, 9], 1) == 8
    assert rt.index([7, 8, 9], UInt(2)) == 9
    assert rt.index((7, 8), 0.0) == 7
    assert rt.index({"a": 1}, "a") == 1
    assert raises(rt.index, [7], 1) == "index 1 out of range for a list of size 1"
    assert raises(rt.index, [7], -1) == "index -1 out of range for a list of size 1"
    assert raises(rt.index, [7], 0.5) == "no matching overload for '[]' on list and double"
    assert raises(rt.index, [7], True) == "no matching overload for '[]' on list and bool"
    assert raises(rt.index, {"a": 1}, "b") == "no such key: 'b'"
    assert raises(rt.index, {1: 1}, 2) == "no such key: 2"
    assert raises(rt.index, {1: 1}, 2.5) == "no such key: 2.5"
    assert raises(rt.index, {1: 1}, None) == "no such key: null_type"
    assert raises(rt.index, "abc", 0) == "no matching overload for '[]' on string and int"


def test_build_map_rejects_bad_and_repeated_keys():
    """Map literals need int, uint, bool or string keys, each once."""
    assert rt.build_map([("a", 1), (2, "b")]) == {"a": 1, 2: "b"}
    assert raises(rt.build_map, [(1.5, 1)]) == "unsupported map key type double"
    assert raises(rt.build_map, [("a", 1), ("a", 2)]) == "map literal has a repeated key: 'a'"
    assert raises(rt.build_map, [(1, 1), (UInt(1), 2)]) == "map literal has a repeated key: 1"
    message = "a map cannot mix bool keys with the integer keys 0 and 1"
    assert raises(rt.build_map, [(True, 1), (1, 2)]) == message
    assert raises(rt.build_map, [(0, 1), (False, 2)]) == message


def test_size_select_and_has():
    """size() counts code points, bytes, elements and entries; selection needs a map."""
    assert rt.size("h\u00e9") == 2
    assert rt.size(b"h\xc3\xa9") == 3
    assert rt.size((1, 2)) == 2
    assert rt.size({"a": 1}) == 1
    assert raises(rt.size, 1) == "no matching overload for 'size' on int"
    assert rt.select({"a": 1}, "a") == 1
    assert raises(rt.select, {"a": 1}, "b") == "no such key: 'b'"
    assert raises(rt.select, 1, "b") == "type int does not support field selection"
    assert rt.has_field({"a": None}, "a") is True
    assert rt.has_field({}, "a") is False
    assert raises(rt.has_field, [1], "a") == "has() needs a map or object, not list"


def test_string_functions():
    """startsWith, endsWith, contains and matches work on strings only."""
    assert rt.starts_with("hello", "he") is True
    assert rt.ends_with("hello", "lo") is True
    assert rt.contains("hello", "ell") is True
    assert rt.matches("hello", "l+") is True
    assert rt.matches("hello", "^l") is False
    assert raises(rt.contains, "a", 1) == "no matching overload for 'contains' on string and int"


def test_run_time_regexes_are_checked_and_cached():
    """A pattern from the context is compiled once; an invalid one is a ConditionError."""
    rt._REGEX_CACHE.clear()
    assert rt.matches("abc", "b")
    assert "b" in rt._REGEX_CACHE
    message = raises(rt.matches, "abc", "(")
    assert message == "invalid regular expression '(': missing ): ("


def test_regex_cache_is_bounded():
    """The run-time pattern cache never grows beyond its limit."""
    rt._REGEX_CACHE.clear()
    for n in range(rt._REGEX_CACHE_SIZE + 5):
        rt.matches("x", f"x{{0,{n}}}")
    assert len(rt._REGEX_CACHE) <= rt._REGEX_CACHE_SIZE


@pytest.mark.parametrize(
    ("fn", "value", "expected"),
    [
        (rt.to_int, 5, 5),
        (rt.to_int, UInt(5), 5),
        (rt.to_int, -7.9, -7),
        (rt.to_int, "-42", -42),
        (rt.to_int, "+42", 42),
        (rt.to_int, dt.datetime(1969, 12, 31, 23, 59, 59, 500000, tzinfo=UTC), -1),
        (rt.to_uint, 5, UInt(5)),
        (rt.to_uint, UInt(5), UInt(5)),
        (rt.to_uint, 5.9, UInt(5)),
        (rt.to_uint, "300", UInt(300)),
        (rt.to_double, 1, 1.0),
        (rt.to_double, UInt(1), 1.0),
        (rt.to_double, " -1.5e3 ", -1500.0),
        (rt.to_double, "inf", math.inf),
        (rt.to_string, 5, "5"),
        (rt.to_string, UInt(5), "5"),
        (rt.to_string, 1.5, "1.5"),
        (rt.to_string, True, "true"),
        (rt.to_string, False, "false"),
        (rt.to_string, "s", "s"),
        (rt.to_string, b"\xc3\xbf", "\u00ff"),
        (rt.to_string, dt.datetime(2020, 1, 2, 3, 4, 5, tzinfo=UTC), "2020-01-02T03:04:05Z"),
        (rt.to_string, dt.timedelta(seconds=90), "90s"),
        (rt.to_bool, True, True),
        (rt.to_bool, "t", True),
        (rt.to_bool, "FALSE", False),
        (rt.to_bytes, b"a", b"a"),
        (rt.to_bytes, "\u00ff", b"\xc3\xbf"),
        (rt.to_timestamp, 0, dt.datetime(1970, 1, 1, tzinfo=UTC)),
        (rt.to_timestamp, "1970-01-01T00:00:00Z", dt.datetime(1970, 1, 1, tzinfo=UTC)),
        (rt.to_duration, "1m", dt.timedelta(minutes=1)),
        (rt.to_duration, dt.timedelta(1), dt.timedelta(1)),
    ],
)
def test_conversions(fn, value, expected):
    """Type conversions follow CEL: truncation, strict string syntax, UTF-8."""
    result = fn(value)
    assert result == expected
    assert type(result) is type(expected)


def test_timestamp_conversion_is_identity_on_timestamps():
    """timestamp(t) returns t itself."""
    now = dt.datetime.now(UTC)
    assert rt.to_timestamp(now) is now


@pytest.mark.parametrize(
    ("fn", "value", "message"),
    [
        (rt.to_int, True, "no matching overload for 'int' on bool"),
        (rt.to_int, UInt(2**63), "uint value out of int range"),
        (rt.to_int, 9.223372036854775807e18, "double value out of int range"),
        (rt.to_int, -9.223372036854775808e18, "double value out of int range"),
        (rt.to_int, math.nan, "double value out of int range"),
        (rt.to_int, "1_000", "cannot convert string '1_000' to int"),
        (rt.to_int, "99999999999999999999", "string value out of int range"),
        (rt.to_int, None, "no matching overload for 'int' on null_type"),
        (rt.to_uint, True, "no matching overload for 'uint' on bool"),
        (rt.to_uint, -1, "int value out of uint range"),
        (rt.to_uint, -0.5, "double value out of uint range"),
        (rt.to_uint, "-1", "cannot convert string '-1' to uint"),
        (rt.to_uint, "18446744073709551616", "integer overflow in 'uint'"),
        (rt.to_uint, None, "no matching overload for 'uint' on null_type"),
        (rt.to_double, True, "no matching overload for 'double' on bool"),
        (rt.to_double, "0x1p3", "cannot convert string '0x1p3' to double"),
        (rt.to_double, None, "no matching overload for 'double' on null_type"),
        (rt.to_string, b"\xff", "bytes are not valid UTF-8"),
        (rt.to_string, None, "no matching overload for 'string' on null_type"),
        (rt.to_bool, "yes", "cannot convert string 'yes' to bool"),
        (rt.to_bool, 1, "no matching overload for 'bool' on int"),
        (rt.to_bytes, 1, "no matching overload for 'bytes' on int"),
        (rt.to_timestamp, 10**12, "timestamp out of range"),
        (rt.to_timestamp, 1.5, "no matching overload for 'timestamp' on double"),
        (rt.to_duration, 1, "no matching overload for 'duration' on int"),
    ],
)
def test_conversion_errors(fn, value, message):
    """Conversions outside the target range or syntax raise ConditionError."""
    assert raises(fn, value) == message


@pytest.mark.parametrize(
    ("number", "text"),
    [
        (0.0, "0"),
        (-0.0, "-0"),
        (123.0, "123"),
        (123.456, "123.456"),
        (-4.5e-3, "-0.0045"),
        (0.0001, "0.0001"),
        (1e-5, "1e-05"),
        (100000.0, "100000"),
        (1e6, "1e+06"),
        (1234567.5, "1.2345675e+06"),
        (1e100, "1e+100"),
        (0.1 + 0.2, "0.30000000000000004"),
        (math.inf, "inf"),
        (-math.inf, "-inf"),
        (math.nan, "nan"),
    ],
)
def test_format_double_matches_the_reference_runtimes(number, text):
    """string(double) is Go's %g: shortest round-trip digits, exponent outside [-4, 6)."""
    assert rt.format_double(number) == text


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2009-02-13T23:31:30Z", dt.datetime(2009, 2, 13, 23, 31, 30, tzinfo=UTC)),
        ("2009-02-13t23:31:30z", dt.datetime(2009, 2, 13, 23, 31, 30, tzinfo=UTC)),
        ("2009-02-13T23:31:30.123456789Z", dt.datetime(2009, 2, 13, 23, 31, 30, 123456, tzinfo=UTC)),
        ("2009-02-13T23:31:30.5+01:30", dt.datetime(2009, 2, 13, 22, 1, 30, 500000, tzinfo=UTC)),
        ("2009-02-13T23:31:30-02:00", dt.datetime(2009, 2, 14, 1, 31, 30, tzinfo=UTC)),
        ("2016-12-31T23:59:60Z", dt.datetime(2017, 1, 1, tzinfo=UTC)),
    ],
)
def test_parse_timestamp(text, expected):
    """RFC 3339 with offsets converts to UTC; digits past microseconds are truncated."""
    assert rt.parse_timestamp(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("2009-02-13", "invalid timestamp '2009-02-13'; expected RFC 3339"),
        ("2009-02-13 23:31:30Z", "invalid timestamp '2009-02-13 23:31:30Z'; expected RFC 3339"),
        ("2009-02-30T00:00:00Z", "invalid timestamp '2009-02-30T00:00:00Z'; out of range"),
        ("0000-01-01T00:00:00Z", "invalid timestamp '0000-01-01T00:00:00Z'; out of range"),
        ("0001-01-01T00:00:00+01:00", "invalid timestamp '0001-01-01T00:00:00+01:00'; out of range"),
        ("2009-02-13T23:31:30+24:00", "invalid timestamp '2009-02-13T23:31:30+24:00'; out of range"),
    ],
)
def test_parse_timestamp_errors(text, message):
    """Malformed or out-of-range timestamps raise ConditionError."""
    assert raises(rt.parse_timestamp, text) == message


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0", dt.timedelta(0)),
        ("90s", dt.timedelta(seconds=90)),
        ("1h30m", dt.timedelta(minutes=90)),
        ("2160h", dt.timedelta(days=90)),
        ("-1.5h", dt.timedelta(minutes=-90)),
        ("+1s", dt.timedelta(seconds=1)),
        (".5s", dt.timedelta(milliseconds=500)),
        ("1.s", dt.timedelta(seconds=1)),
        ("1ms1us1ns", dt.timedelta(microseconds=1001)),
        ("1999ns", dt.timedelta(microseconds=1)),
        ("315576000000s", rt.MAX_DURATION),
    ],
)
def test_parse_duration(text, expected):
    """Go duration syntax with units h, m, s, ms, us and ns; nanoseconds truncate."""
    assert rt.parse_duration(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "invalid duration ''; expected e.g. 90s or 1h30m"),
        ("1", "invalid duration '1'; expected e.g. 90s or 1h30m"),
        ("1d", "invalid duration '1d'; expected e.g. 90s or 1h30m"),
        ("1h1", "invalid duration '1h1'; expected e.g. 90s or 1h30m"),
        (".s", "invalid duration '.s'; expected e.g. 90s or 1h30m"),
        ("-", "invalid duration '-'; expected e.g. 90s or 1h30m"),
        ("315576000001s", "duration '315576000001s' out of range"),
    ],
)
def test_parse_duration_errors(text, message):
    """Malformed or out-of-range durations raise ConditionError."""
    assert raises(rt.parse_duration, text) == message


def test_format_timestamp_and_duration_fractions():
    """Fractions print with 3 or 6 digits, like the protobuf JSON format."""
    base = dt.datetime(1, 1, 1, tzinfo=UTC)
    assert rt.format_timestamp(base) == "0001-01-01T00:00:00Z"
    assert rt.format_timestamp(base.replace(microsecond=120000)) == "0001-01-01T00:00:00.120Z"
    assert rt.format_timestamp(base.replace(microsecond=123456)) == "0001-01-01T00:00:00.123456Z"
    offset = dt.datetime(2020, 1, 1, 1, tzinfo=dt.timezone(dt.timedelta(hours=1)))
    assert rt.format_timestamp(offset) == "2020-01-01T00:00:00Z"
    assert rt.format_duration(dt.timedelta(milliseconds=-500)) == "-0.500s"
    assert rt.format_duration(dt.timedelta(microseconds=1)) == "0.000001s"


@pytest.mark.parametrize(
    ("name", "offset"),
    [
        ("UTC", dt.timedelta(0)),
        ("+02:00", dt.timedelta(hours=2)),
        ("-09:30", dt.timedelta(hours=-9.5)),
        ("05:45", dt.timedelta(hours=5.75)),
    ],
)
def test_parse_timezone(name, offset):
    """UTC and fixed offsets (sign optional) are supported time zones."""
    assert rt.parse_timezone(name).utcoffset(None) == offset


@pytest.mark.parametrize("name", ["Europe/Berlin", "+2:00", "+24:00", "utc"])
def test_parse_timezone_rejects_other_names(name):
    """IANA names and malformed offsets are rejected."""
    with pytest.raises(ValueError, match="time zone"):
        rt.parse_timezone(name)


def test_time_parts():
    """Timestamp accessors work in UTC or a given zone; duration accessors truncate."""
    moment = dt.datetime(2009, 2, 13, 23, 31, 30, 123456, tzinfo=UTC)
    parts = {name: rt.time_part(name, moment) for name in rt.TIMESTAMP_PARTS}
    assert parts == {
        "getFullYear": 2009,
        "getMonth": 1,
        "getDate": 13,
        "getDayOfMonth": 12,
        "getDayOfWeek": 5,
        "getDayOfYear": 43,
        "getHours": 23,
        "getMinutes": 31,
        "getSeconds": 30,
        "getMilliseconds": 123,
    }
    assert rt.time_part("getDate", moment, "+11:00") == 14
    assert rt.time_part("getHours", moment, "-02:30") == 21
    span = dt.timedelta(seconds=-3730, milliseconds=-500)
    assert [rt.time_part(name, span) for name in rt.DURATION_PARTS] == [-1, -62, -3730, -500]


def _parts(moment: dt.datetime, zone: str) -> list[int]:
    return [rt.time_part(name, moment, zone) for name in rt.TIMESTAMP_PARTS]


@pytest.mark.parametrize(
    ("moment", "zone", "parts"),
    [
        (dt.datetime.max.replace(tzinfo=UTC), "+02:00", [10000, 0, 1, 0, 6, 0, 1, 59, 59, 999]),
        (dt.datetime.max.replace(tzinfo=UTC), "+23:59", [10000, 0, 1, 0, 6, 0, 23, 58, 59, 999]),
        (dt.datetime.max.replace(tzinfo=UTC), "-01:00", [9999, 11, 31, 30, 5, 364, 22, 59, 59, 999]),
        (dt.datetime(1, 1, 1, tzinfo=UTC), "-01:00", [0, 11, 31, 30, 0, 365, 23, 0, 0, 0]),
        (dt.datetime(1, 1, 1, 12, tzinfo=UTC), "-23:59", [0, 11, 31, 30, 0, 365, 12, 1, 0, 0]),
        (dt.datetime(1, 1, 1, 23, 59, 59, 500000, tzinfo=UTC), "+02:00", [1, 0, 2, 1, 2, 1, 1, 59, 59, 500]),
    ],
)
def test_zoned_time_parts_at_the_range_ends(moment, zone, parts):
    """A zone may put the local time in year 10000 or year 0 (a leap year), as in CEL."""
    assert _parts(moment, zone) == parts


def test_zoned_time_parts_of_an_aware_context_value_at_the_range_end():
    """A context datetime in another zone is converted by its instant, even into year 10000."""
    moment = dt.datetime(9999, 12, 31, 23, tzinfo=dt.timezone(dt.timedelta(hours=1)))
    assert _parts(moment, "+05:00") == [10000, 0, 1, 0, 6, 0, 3, 0, 0, 0]


def test_time_part_errors():
    """Accessors reject other kinds, bad zones and instants outside the range."""
    moment = dt.datetime(2009, 2, 13, tzinfo=UTC)
    assert raises(rt.time_part, "getHours", "x") == "no matching overload for 'getHours' on string"
    assert raises(rt.time_part, "getHours", moment, 1) == "no matching overload for 'time zone' on int"
    assert raises(rt.time_part, "getHours", moment, "Mars/Olympus").startswith("unsupported time zone")
    before = dt.datetime(1, 1, 1, tzinfo=dt.timezone(dt.timedelta(hours=1)))  # 0000-12-31T23:00Z
    assert raises(rt.time_part, "getHours", before) == "timestamp out of range"
    assert raises(rt.time_part, "getHours", before, "+02:00") == "timestamp out of range"
    after = dt.datetime(9999, 12, 31, 23, tzinfo=dt.timezone(dt.timedelta(hours=-1)))
    assert raises(rt.time_part, "getFullYear", after, "-23:00") == "timestamp out of range"
    span = dt.timedelta(1)
    message = "no matching overload for 'getHours' on duration and string"
    assert raises(rt.time_part, "getHours", span, "UTC") == message
