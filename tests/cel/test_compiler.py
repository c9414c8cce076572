from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterator, Mapping

import pytest

from tierpolicy.engine._exceptions import ConditionError, ExpressionSyntaxError, ExpressionTypeError
from tierpolicy.engine.cel import (
    BOOL,
    DOUBLE,
    DURATION,
    DYN,
    INT,
    STRING,
    TIMESTAMP,
    UINT,
    ListType,
    MapType,
    ObjectType,
    UInt,
    compile_expression,
)

UTC = dt.UTC
NOW = dt.datetime(2026, 3, 15, 10, 20, 30, tzinfo=UTC)

ENV = {
    "seller": ObjectType(
        "seller",
        {
            "verified": BOOL,
            "country": STRING,
            "name": STRING,
            "tags": ListType(STRING),
            "joined": TIMESTAMP,
            "address": ObjectType("seller.address", {"city": STRING, "zip": STRING}),
        },
    ),
    "metrics": ObjectType(
        "metrics",
        {"rating": DOUBLE, "orders_60d": INT, "volume": UINT, "age": DURATION, "flags": ListType(BOOL)},
    ),
    "now": TIMESTAMP,
    "labels": MapType(STRING, STRING),
    "extra": DYN,
    "items": ListType(MapType(STRING, DYN)),
}


def context(**overrides):
    """A matching context; ``root__field=value`` overrides a field, ``...`` removes it."""
    base = {
        "seller": {
            "verified": True,
            "country": "DE",
            "name": "Anna's Antiques",
            "tags": ["vintage", "furniture"],
            "joined": dt.datetime(2024, 1, 1, tzinfo=UTC),
            "address": {"city": "Berlin", "zip": "10115"},
        },
        "metrics": {
            "rating": 4.7,
            "orders_60d": 150,
            "volume": 10,
            "age": dt.timedelta(days=400),
            "flags": [True, False],
        },
        "now": NOW,
        "labels": {"env": "prod"},
        "extra": None,
        "items": [{"price": 5, "sku": "a"}, {"price": 20, "sku": "b"}],
    }
    for key, value in overrides.items():
        root, _, field = key.partition("__")
        if field:
            if value is ...:
                del base[root][field]
            else:
                base[root][field] = value
        elif value is ...:
            del base[root]
        else:
            base[root] = value
    return base


def run(source, expected=BOOL, **overrides):
    """Compile ``source`` in ENV and evaluate it against a context."""
    return compile_expression(source, ENV, expected=expected).evaluate(context(**overrides))


def fails(source, expected=BOOL, **overrides) -> str:
    """The message of the ConditionError ``source`` raises against a context."""
    program = compile_expression(source, ENV, expected=expected)
    with pytest.raises(ConditionError) as info:
        program.evaluate(context(**overrides))
    return str(info.value)


EXAMPLE = (
    'seller.verified && metrics.rating >= 4.5 && metrics.orders_60d > 100 && seller.country in ["DE", "FR"]'
)


def test_the_reference_condition():
    """The brief's example condition is true for a matching context and false otherwise."""
    assert run(EXAMPLE) is True
    assert run(EXAMPLE, seller__country="US") is False
    assert run(EXAMPLE, metrics__rating=4.4) is False
    assert run(EXAMPLE, seller__verified=False) is False


def test_missing_attribute_message():
    """A missing attribute fails with a message naming the dotted path."""
    assert fails(EXAMPLE, metrics__rating=...) == "attribute 'metrics.rating' is missing from the context"
    assert fails(EXAMPLE, metrics=...) == "attribute 'metrics' is missing from the context"
    assert fails("now > seller.joined", now=...) == "attribute 'now' is missing from the context"
    assert fails("seller.address.city == 'x'", seller__address={}) == (
        "attribute 'seller.address.city' is missing from the context"
    )


def test_type_mismatch_message():
    """A context value of the wrong kind fails with CEL's no-overload message."""
    assert fails(EXAMPLE, metrics__rating="4.7") == "no matching overload for '>=' on string and double"
    assert (
        fails("4.5 <= metrics.rating", metrics__rating="x")
        == "no matching overload for '<=' on double and string"
    )
    assert fails(EXAMPLE, seller__verified="yes") == "no matching overload for '&&' on string"


def test_parent_that_is_not_an_object():
    """Reading a field of a scalar names the parent and its kind."""
    assert fails("seller.address.city == 'x'", seller__address="Berlin") == (
        "'seller.address' is string, not an object; cannot read 'city'"
    )
    assert (
        fails("metrics.rating > 1.0", metrics=[1]) == "'metrics' is list, not an object; cannot read 'rating'"
    )


def test_context_must_be_a_mapping():
    """Evaluating against something that is not a mapping is a ConditionError."""
    program = compile_expression("seller.verified", ENV)
    with pytest.raises(ConditionError, match="the context must be a mapping"):
        program.evaluate([])  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "source",
    [
        "false && metrics.missing_root_is_fine_here == 1",
        "metrics.orders_60d / 0 == 1 && false",
        "false && metrics.orders_60d / 0 == 1",
        "seller.name.size() > 1 && metrics.orders_60d / 0 == 1 && false",
    ],
)
def test_and_absorbs_errors_when_an_operand_is_false(source):
    """False && <error> is false in either order (CEL's commutative &&)."""
    source = source.replace("metrics.missing_root_is_fine_here", "metrics.orders_60d / 0")
    assert run(source) is False


@pytest.mark.parametrize(
    "source",
    [
        "true || metrics.orders_60d / 0 == 1",
        "metrics.orders_60d / 0 == 1 || true",
        "false || metrics.orders_60d / 0 == 1 || seller.verified",
    ],
)
def test_or_absorbs_errors_when_an_operand_is_true(source):
    """True || <error> is true in either order (CEL's commutative ||)."""
    assert run(source) is True


def test_absorption_covers_missing_attributes():
    """A missing attribute is absorbed like any other error."""
    assert (
        run("metrics.rating > 4.0 && seller.verified", metrics__rating=..., seller__verified=False) is False
    )
    assert run("metrics.rating > 4.0 || seller.verified", metrics__rating=...) is True


def test_unabsorbed_errors_propagate_the_first_one():
    """When no operand decides, the first error is raised."""
    source = "metrics.orders_60d / 0 == 1 && seller.name.size() / 0 == 1 && true"
    assert fails(source) == "division by zero"
    assert fails("metrics.orders_60d % 0 == 1 || false") == "modulus by zero"


def test_non_bool_operands_of_logic_fail_unless_absorbed():
    """A dyn operand that is not a bool is an error, absorbed like one."""
    assert fails("extra && true", extra="yes") == "no matching overload for '&&' on string"
    assert fails("extra || false", extra=1) == "no matching overload for '||' on int"
    assert run("extra && false", extra="yes") is False
    assert run("extra || true", extra=1) is True


@pytest.mark.parametrize("size", [2, 3, 4, 6])
def test_logical_chains_of_every_length(size):
    """&& and || chains give CEL's answer whatever their length (unrolled or looped)."""
    trues = " && ".join(["seller.verified"] * size)
    assert run(trues) is True
    assert run(trues, seller__verified=False) is False
    falses = " || ".join(["!seller.verified"] * size)
    assert run(falses) is False
    assert run(falses, seller__verified=False) is True
    erroring = " && ".join(["metrics.orders_60d / 0 == 1"] * (size - 1) + ["seller.verified"])
    assert fails(erroring) == "division by zero"
    assert run(erroring, seller__verified=False) is False
    non_bool = " && ".join(["seller.verified"] * (size - 1) + ["extra"])
    assert fails(non_bool, extra=1) == "no matching overload for '&&' on int"
    assert run(non_bool, extra=True) is True


def test_conditional_evaluates_only_the_chosen_branch():
    """Cond ? a : b never evaluates the other branch, so its error cannot surface."""
    assert run("seller.verified ? true : metrics.orders_60d / 0 == 1") is True
    assert run("!seller.verified ? metrics.orders_60d / 0 == 1 : true") is True
    assert fails("extra ? true : false", extra="x") == "no matching overload for '?:' on string"


def test_int_context_values_for_double_attributes():
    """JSON-style ints in double attributes behave as doubles."""
    assert run("metrics.rating >= 4.5", metrics__rating=5) is True
    assert run("metrics.rating >= 5", metrics__rating=5) is True
    assert run("metrics.rating == 5", metrics__rating=5.0) is True
    assert run("metrics.rating + 0.5 == 5.5", metrics__rating=5) is True
    assert run("metrics.rating", expected=DOUBLE, metrics__rating=5) == 5.0
    assert (
        fails("metrics.rating >= 4.5", metrics__rating=True)
        == "no matching overload for '>=' on bool and double"
    )


def test_plain_ints_for_uint_attributes():
    """Non-negative ints in uint attributes are read as uint."""
    assert run("metrics.volume == 10u") is True
    assert run("metrics.volume + 1u == 11u") is True
    result = run("metrics.volume", expected=UINT)
    assert (result, type(result)) == (UInt(10), UInt)
    assert (
        fails("metrics.volume + 1u == 11u", metrics__volume=-1)
        == "no matching overload for '+' on int and uint"
    )


def test_naive_datetimes_are_rejected():
    """A timestamp attribute without a time zone fails instead of comparing wrongly."""
    naive = dt.datetime(2024, 1, 1)  # noqa: DTZ001  the point of the test
    message = "attribute 'seller.joined' is a timestamp without a time zone"
    assert fails("seller.joined < now", seller__joined=naive) == message
    assert fails("seller.joined < timestamp('2025-01-01T00:00:00Z')", seller__joined=naive) == message
    assert (
        fails("now > timestamp('2025-01-01T00:00:00Z')", now=naive)
        == "attribute 'now' is a timestamp without a time zone"
    )


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("100 < metrics.orders_60d", True),
        ("4.8 > metrics.rating", True),
        ("'DE' == seller.country", True),
        ("'FR' != seller.country", True),
        ("150.0 == metrics.orders_60d", True),
        ("metrics.orders_60d == 150.0", True),
        ("metrics.orders_60d < 150.5", True),
        ("seller.address.city == 'Berlin'", True),
        ("seller.address.city >= 'C'", False),
        ("labels.env == 'prod'", True),
        ("seller.verified == true", True),
        ("extra == null", True),
        ("extra != null", False),
        ("seller.joined < timestamp('2025-01-01T00:00:00Z')", True),
        ("metrics.age > duration('2160h')", True),
        ("metrics.volume > 5u", True),
        ("metrics.volume > 5", True),
        ("extra == b'x'", False),
    ],
)
def test_attribute_against_constant_comparisons(source, expected):
    """path-op-constant comparisons, either way round, give CEL's answers."""
    assert run(source) is expected


def test_comparisons_against_values_of_another_kind():
    """The fast path falls back to CEL semantics for every other kind of value."""
    assert run("seller.country == 'DE'", seller__country=1) is False
    assert run("seller.country != 'DE'", seller__country=None) is True
    assert run("metrics.orders_60d == 150", metrics__orders_60d=UInt(150)) is True
    assert run("metrics.orders_60d > 100", metrics__orders_60d=150.5) is True
    assert (
        fails("metrics.orders_60d > 100", metrics__orders_60d="150")
        == "no matching overload for '>' on string and int"
    )


def test_comparisons_between_expressions():
    """Comparisons of two computed values use the generic implementation."""
    assert run("metrics.orders_60d * 2 > metrics.orders_60d") is True
    assert run("seller.name < seller.country") is True
    assert run("metrics.rating > metrics.rating - 1.0") is True
    assert run("size(seller.tags) == size(seller.tags)") is True
    assert run("[1, 2] == [1.0, 2u]") is True
    assert run("seller.joined < now") is True
    assert fails("extra < 1", extra="a") == "no matching overload for '<' on string and int"


def test_membership():
    """In works on lists (CEL equality) and maps (keys), with a fast path for constant lists."""
    assert run("seller.country in ['DE', 'FR']") is True
    assert run("seller.country in ['US']") is False
    assert run("seller.country in ['DE', 'FR']", seller__country=1) is False
    assert run("metrics.orders_60d in [150, 200]") is True
    assert run("metrics.orders_60d in [150, 200]", metrics__orders_60d=150.0) is True
    assert run("metrics.orders_60d in [1, 'a']") is False
    assert run("seller.country in {'DE': 1}") is True
    assert run("'furniture' in seller.tags") is True
    assert run("'env' in labels") is True
    assert run("seller.address.city in ['Berlin']") is True
    assert run("extra in [1, 2]", extra=2.0) is True
    assert fails("1 in extra", extra=1) == "no matching overload for 'in' on int and int"
    assert fails("seller.country in ['DE']", seller=...) == "attribute 'seller' is missing from the context"


def test_heterogeneous_equality():
    """== never fails on mixed kinds: numbers compare by value, other kinds are unequal."""
    assert run("1 == 1.0") is True
    assert run("dyn(1u) == 1") is True
    assert run("extra == 1", extra=True) is False
    assert run("extra == 'true'", extra=True) is False
    assert run("[extra] == [1]", extra=1.0) is True


def test_has_macro():
    """has() tests presence without reading, on objects and maps."""
    assert run("has(seller.address)") is True
    assert run("has(seller.address)", seller__address=...) is False
    assert run("has(seller.address.city)") is True
    assert run("has(labels.env) && !has(labels.zone)") is True
    assert run("has(extra.x)", extra={"x": 1}) is True
    assert fails("has(extra.x)", extra=1) == "has() needs a map or object, not int"
    assert fails("has(seller.address.city)", seller__address=...) == (
        "attribute 'seller.address' is missing from the context"
    )


def test_selection_and_indexing():
    """Selection and indexing on computed values, with CEL's errors."""
    assert run("items[1].price", expected=DYN) == 20
    assert run("items[0]['sku']", expected=DYN) == "a"
    assert run("seller.tags[1]", expected=STRING) == "furniture"
    assert run("labels['env']", expected=STRING) == "prod"
    assert run("{'a': {'b': 1}}.a.b", expected=INT) == 1
    assert fails("seller.tags[5] == 'x'") == "index 5 out of range for a list of size 2"
    assert fails("labels['zone'] == 'x'") == "no such key: 'zone'"
    assert fails("items[0].colour == 'x'") == "no such key: 'colour'"
    assert fails("extra.x == 1", extra=[1]) == "'extra' is list, not an object; cannot read 'x'"
    assert fails("(extra).x == 1", extra=[1]) == "'extra' is list, not an object; cannot read 'x'"
    assert fails("items[0].price.x == 1") == "type int does not support field selection"


def test_macros():
    """all, exists, exists_one, filter and map over context lists and maps."""
    assert run("items.all(i, i.price > 1)") is True
    assert run("items.exists(i, i.price > 10)") is True
    assert run("items.exists_one(i, i.price > 1)") is False
    assert run("items.filter(i, i.price > 10).size() == 1") is True
    assert run("items.map(i, i.sku)", expected=ListType(DYN)) == ["a", "b"]
    assert run("items.map(i, i.price > 10, i.sku)", expected=ListType(DYN)) == ["b"]
    assert run("labels.all(k, k == 'env')") is True
    assert run("labels.map(k, k + '!')", expected=ListType(STRING)) == ["env!"]
    assert run("seller.tags.exists(t, t.startsWith('vin'))") is True
    assert run("metrics.flags.filter(f, f)", expected=ListType(BOOL)) == [True]


def test_macro_error_semantics():
    """exists/all absorb errors when another element decides; the others propagate them."""
    assert run("[0, 1].exists(x, 1 / x == 1)") is True
    assert run("[0, 2].all(x, 2 / x == 2)") is False
    assert fails("[0].exists(x, 1 / x == 1)") == "division by zero"
    assert fails("[1, 0].all(x, 1 / x == 1)") == "division by zero"
    assert fails("[0, 1].exists_one(x, 1 / x == 1)") == "division by zero"
    assert fails("[0].map(x, 1 / x)", expected=DYN) == "division by zero"
    assert fails("extra.exists(x, x)", extra=[1]) == "no matching overload for 'exists' on int"
    assert fails("extra.all(x, x)", extra=[1]) == "no matching overload for 'all' on int"
    assert fails("extra.exists_one(x, x)", extra=[1]) == "no matching overload for 'exists_one' on int"
    assert fails("extra.filter(x, x)", expected=DYN, extra=[1]) == "no matching overload for 'filter' on int"
    assert fails("extra.exists(x, true)", extra=1) == "no matching overload for 'exists' on int"
    assert run("[1, 'a'].exists(x, x == 'a')") is True


def test_macros_over_items_from_the_context():
    """Iteration variables shadow roots and do not leak into the activation."""
    activation = context()
    program = compile_expression("seller.tags.all(seller, seller.size() > 3) && seller.verified", ENV)
    assert program.evaluate(activation) is True
    assert "seller" in activation
    assert isinstance(activation["seller"], dict)


def test_nested_macros():
    """Macros nest, each with its own variable."""
    assert run("[[1, 2], [3]].all(xs, xs.exists(x, x > 0))") is True
    assert run("['a'].all(a, ['b'].all(b, a != b))") is True


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("metrics.orders_60d * 100000000000000000 > 0", "integer overflow in '*'"),
        ("metrics.orders_60d + 9223372036854775807 > 0", "integer overflow in '+'"),
        ("-9223372036854775808 - metrics.orders_60d < 0", "integer overflow in '-'"),
        ("-(-9223372036854775808) > metrics.orders_60d", "integer overflow in '-'"),
        ("metrics.orders_60d / (metrics.orders_60d - 150) > 0", "division by zero"),
        ("metrics.volume - 11u > 0u", "integer overflow in '-'"),
        ("metrics.rating + metrics.orders_60d > 0.0", "no matching overload for '+' on double and int"),
    ],
)
def test_arithmetic_errors_at_run_time(source, message):
    """Overflow, division by zero and mixed arithmetic are ConditionErrors."""
    source = source.replace("metrics.rating + metrics.orders_60d", "metrics.rating + dyn(metrics.orders_60d)")
    assert fails(source) == message


def test_arithmetic_results():
    """Fast and generic arithmetic paths agree with CEL."""
    assert run("metrics.orders_60d + 1", expected=INT) == 151
    assert run("metrics.orders_60d - 200", expected=INT) == -50
    assert run("metrics.orders_60d * 2", expected=INT) == 300
    assert run("metrics.orders_60d / 7", expected=INT) == 21
    assert run("metrics.orders_60d % 7", expected=INT) == 3
    assert run("metrics.rating * 2.0", expected=DOUBLE) == 9.4
    assert run("seller.country + '-' + seller.address.zip", expected=STRING) == "DE-10115"
    assert run("seller.tags + ['x']", expected=ListType(STRING)) == ["vintage", "furniture", "x"]
    assert run("-metrics.orders_60d", expected=INT) == -150
    assert math.isinf(run("metrics.rating / 0.0", expected=DOUBLE))


def test_timestamps_and_durations():
    """Timestamp and duration arithmetic, comparison and accessors in UTC."""
    assert run("now - seller.joined > duration('720h')") is True
    assert run("seller.joined + duration('1h') == timestamp('2024-01-01T01:00:00Z')") is True
    assert run("now - duration('1h') < now") is True
    assert run("metrics.age - duration('24h') == duration('9576h')") is True
    assert run("now.getFullYear() == 2026 && now.getMonth() == 2 && now.getDate() == 15") is True
    assert run("now.getDayOfWeek() == 0 && now.getHours() == 10") is True
    assert run("now.getHours('+05:30') == 15") is True
    assert run("metrics.age.getHours()", expected=INT) == 9600
    assert fails("now.getHours(extra) == 1", extra="Mars/Base") == (
        "unsupported time zone 'Mars/Base'; use 'UTC' or a fixed offset such as '+02:00'"
    )
    assert fails("timestamp(seller.name) < now") == (
        'invalid timestamp "Anna\'s Antiques"; expected RFC 3339'
    )


def test_zoned_accessors_reach_year_10000_and_year_0():
    """A zone that puts the local time past the range's ends gives CEL's year, not an error."""
    end = dt.datetime.max.replace(tzinfo=UTC)
    assert run("now.getFullYear('+02:00')", expected=INT, now=end) == 10000
    assert run("now.getDayOfWeek('+02:00')", expected=INT, now=end) == 6
    start = dt.datetime(1, 1, 1, tzinfo=UTC)
    assert run("now.getFullYear('-01:00')", expected=INT, now=start) == 0
    assert run("now.getDayOfYear('-01:00')", expected=INT, now=start) == 365


def test_several_minus_signs_before_int64_min_are_a_load_error():
    """--9223372036854775808 is a syntax error even in a branch that never runs, as in CEL."""
    with pytest.raises(ExpressionSyntaxError) as info:
        compile_expression("true ? 1 : --9223372036854775808", ENV, expected=INT)
    assert (info.value.message, info.value.offset) == ("int literal out of range", 13)
    assert run("--9223372036854775807 == 9223372036854775807") is True


def test_literal_regex_is_compiled_once():
    """matches() with a literal pattern uses the pattern compiled at load time."""
    assert run("seller.name.matches('^Anna')") is True
    assert run("matches(seller.address.zip, '^[0-9]{5}$')") is True
    assert fails("extra.matches('a')", extra=1) == "no matching overload for 'matches' on int and string"


def test_run_time_regex():
    """A pattern from the context is compiled at run time; a bad one is a ConditionError."""
    assert run("seller.name.matches(labels.env)", labels={"env": "An+a"}) is True
    assert fails("seller.name.matches(labels.env)", labels={"env": "("}) == (
        "invalid regular expression '(': missing ): ("
    )


def test_string_functions():
    """size, startsWith, endsWith and contains on strings from the context."""
    assert run("seller.name.size()", expected=INT) == 15
    assert run("size(seller.name)", expected=INT) == 15
    assert run("seller.name.endsWith('ques') && seller.name.contains('An')") is True
    assert (
        fails("seller.name.startsWith(extra)", extra=1)
        == "no matching overload for 'startsWith' on string and int"
    )


def test_conversions():
    """Conversion functions at run time."""
    assert run("int(seller.address.zip)", expected=INT) == 10115
    assert run("string(metrics.orders_60d) == '150'") is True
    assert run("double(metrics.orders_60d) > 149.5") is True
    assert run("dyn(seller.name) == seller.name") is True
    assert fails("int(seller.name) > 1") == 'cannot convert string "Anna\'s Antiques" to int'


def test_constant_subexpressions_are_folded():
    """Variable-free parts are computed at compile time, including conversions and macros."""
    program = compile_expression(
        "seller.joined < timestamp('2025-01-01T00:00:00Z') && [1, 2, 3].all(x, x > 0)", ENV
    )
    assert program.evaluate(context()) is True
    folded = compile_expression("[1, 2] + [3]", {}, expected=DYN).evaluate({})
    assert folded == (1, 2, 3)
    mapping = compile_expression("{'a': [1]}", {}, expected=DYN).evaluate({})
    assert isinstance(mapping, Mapping)
    with pytest.raises(TypeError):
        mapping["b"] = 2  # type: ignore[index]


def test_folding_keeps_errors_at_run_time():
    """A constant sub-expression that fails still fails only when evaluated, as CEL requires."""
    program = compile_expression("1 / 0 == 1 || seller.verified", ENV)
    assert program.evaluate(context()) is True
    program = compile_expression("seller.verified ? true : [1][3] == 1", ENV)
    assert program.evaluate(context()) is True
    with pytest.raises(ConditionError, match="index 3 out of range for a list of size 1"):
        program.evaluate(context(seller__verified=False))


RELATIVE_TIME_HINT = (
    "timestamp() takes a fixed time; for one relative to the evaluation use the now attribute,"
    ' as in now - duration("24h")'
)


def value_error(source: str) -> ExpressionTypeError:
    """The load-time error compiling ``source`` in ENV raises for a constant that does not convert."""
    with pytest.raises(ExpressionTypeError) as info:
        compile_expression(source, ENV)
    assert info.value.reason == "value"
    return info.value


@pytest.mark.parametrize(
    ("source", "message", "offset", "length", "hint"),
    [
        (
            'now - seller.joined > duration("90d")',
            "invalid duration '90d'; expected e.g. 90s or 1h30m",
            31,
            5,
            'CEL durations use h, m, s, ms, us, ns: write "2160h" for 90 days',
        ),
        (
            "seller.joined > timestamp('2026-13-01')",
            "invalid timestamp '2026-13-01'; expected RFC 3339",
            26,
            12,
            '2026-13-01 is not a date in the calendar; timestamps are RFC 3339, as in "2026-03-01T00:00:00Z"',
        ),
        (
            "seller.joined > timestamp('yesterday')",
            "invalid timestamp 'yesterday'; expected RFC 3339",
            26,
            11,
            RELATIVE_TIME_HINT,
        ),
        (
            "metrics.orders_60d > int('abc')",
            "cannot convert string 'abc' to int",
            25,
            5,
            'int() reads a whole number such as "42" or "-7"',
        ),
        (
            "metrics.volume > uint('-1')",
            "cannot convert string '-1' to uint",
            22,
            4,
            'uint() reads a whole number without a sign such as "42"',
        ),
        (
            "metrics.rating > double('4,5')",
            "cannot convert string '4,5' to double",
            24,
            5,
            'double() reads a decimal number such as "4.5" or "1e3"',
        ),
        ("bool('yes')", "cannot convert string 'yes' to bool", 5, 5, 'bool() reads "true" or "false"'),
        ("metrics.orders_60d > int('9223372036854775808')", "string value out of int range", 25, 21, None),
        ("metrics.volume > uint('18446744073709551616')", "integer overflow in 'uint'", 22, 22, None),
        ("metrics.orders_60d > int(1e20)", "double value out of int range", 25, 4, None),
        ("string(b'\\xff') == seller.name", "bytes are not valid UTF-8", 7, 7, None),
        ("now > timestamp(253402300800)", "timestamp out of range", 16, 12, None),
        ("metrics.orders_60d == int(dyn(true))", "no matching overload for 'int' on bool", 26, 9, None),
    ],
)
def test_constant_arguments_that_cannot_convert_are_load_time_errors(source, message, offset, length, hint):
    """A conversion of a constant that fails is an ExpressionTypeError (reason "value") on the argument."""
    error = value_error(source)
    assert (error.message, error.offset, error.length, error.hint) == (message, offset, length, hint)


def test_folded_constant_arguments_are_checked_too():
    """An argument built from constants is folded first, so `duration("9" + "0d")` fails at load time."""
    error = value_error('now - seller.joined > duration("9" + "0d")')
    assert error.message == "invalid duration '90d'; expected e.g. 90s or 1h30m"
    assert (error.offset, error.length) == (31, 10)
    assert error.hint == 'CEL durations use h, m, s, ms, us, ns: write "2160h" for 90 days'


def test_constant_conversion_errors_are_reported_even_where_cel_would_absorb_them():
    """A bad constant is a load error even under || or ?:, where CEL would skip it for some contexts."""
    assert value_error('seller.verified || now - seller.joined > duration("90d")').offset == 50
    assert value_error("(seller.verified ? 1 : int('x')) == 1").offset == 27


@pytest.mark.parametrize(
    ("source", "value"),
    [
        ("duration('2160h')", dt.timedelta(days=90)),
        ("duration('-1.5h')", dt.timedelta(minutes=-90)),
        ("timestamp('2026-03-01T00:00:00Z')", dt.datetime(2026, 3, 1, tzinfo=UTC)),
        ("timestamp(0)", dt.datetime(1970, 1, 1, tzinfo=UTC)),
        ("int('-7')", -7),
        ("uint('42')", UInt(42)),
        ("double('1e3')", 1000.0),
        ("bool('false')", False),
        ("string(1.5)", "1.5"),
        ("bytes('a')", b"a"),
    ],
)
def test_constant_arguments_that_convert_are_folded(source, value):
    """A conversion of a constant that works is evaluated once, at load time."""
    program = compile_expression(source, ENV, expected=DYN)
    assert program.clauses[0].program.evaluate({}) == value


def test_conversions_of_non_constant_arguments_fail_at_run_time():
    """A conversion of a context value, or of a macro variable, keeps CEL's run-time error."""
    assert fails("now - seller.joined > duration(seller.name)") == (
        'invalid duration "Anna\'s Antiques"; expected e.g. 90s or 1h30m'
    )
    assert run("seller.verified || int(seller.name) == 1") is True
    assert fails("['90d'].all(d, duration(d) > duration('1s'))") == (
        "invalid duration '90d'; expected e.g. 90s or 1h30m"
    )


@pytest.mark.parametrize(
    ("text", "hint"),
    [
        ("1d", 'write "24h" for 1 day'),
        ("1.5d", 'write "36h" for 1.5 days'),
        ("90 days", 'write "2160h" for 90 days'),
        ("-90d", 'write "-2160h" for -90 days'),
        ("2w", 'write "336h" for 2 weeks'),
        ("1 week", 'write "168h" for 1 week'),
        ("0d", 'write "0s" for 0 days'),
        ("1d12h", 'write "36h" instead of "1d12h"'),
        ("1h 30m", 'write "1h30m" instead of "1h 30m"'),
        ("2 hours 5 minutes", 'write "2h5m" instead of "2 hours 5 minutes"'),
        ("+90 secs", 'write "1m30s" instead of "+90 secs"'),
        ("1500MS", 'write "1.5s" instead of "1500MS"'),
        ("1d 250us", 'write "24h250us" instead of "1d 250us"'),
        (".5 S", 'write "500ms" instead of ".5 S"'),
        ("1d 1.5ns", 'write "24h1.5ns" instead of "1d 1.5ns"'),
    ],
)
def test_duration_hints_translate_days_weeks_and_loose_spellings(text, hint):
    """Days, weeks, long unit names, spaces and capitals get the exact CEL duration to write."""
    error = value_error(f"now - seller.joined > duration('{text}')")
    assert error.hint == f"CEL durations use h, m, s, ms, us, ns: {hint}"


@pytest.mark.parametrize("text", ["P90D", "ninety days", "", "-", "1y", "99999999999999d"])
def test_duration_hints_fall_back_to_examples(text):
    """A duration with no close CEL spelling (or none in range) gets the units and examples."""
    error = value_error(f"now - seller.joined > duration('{text}')")
    assert error.hint == 'CEL durations use h, m, s, ms, us, ns, as in "90s", "1h30m" or "2160h" (90 days)'


def test_well_formed_durations_out_of_range_have_no_hint():
    """A duration in CEL's own syntax that is only too large is told so, without a hint."""
    error = value_error("now - seller.joined > duration('-99999999999999h')")
    assert (error.message, error.hint) == ("duration '-99999999999999h' out of range", None)


@pytest.mark.parametrize(
    ("text", "hint"),
    [
        ("2026-03-01", 'timestamps are RFC 3339: write "2026-03-01T00:00:00Z"'),
        ("2026-03-01 12:30", 'timestamps are RFC 3339: write "2026-03-01T12:30:00Z"'),
        ("2026-03-01T12:30:15.5", 'timestamps are RFC 3339: write "2026-03-01T12:30:15.5Z"'),
        ("2026-03-01 12:30 UTC", 'timestamps are RFC 3339: write "2026-03-01T12:30:00Z"'),
        ("2026-03-01T12:30:00+0200", 'timestamps are RFC 3339: write "2026-03-01T12:30:00+02:00"'),
        ("2026-03-01 12:30:00-09:30", 'timestamps are RFC 3339: write "2026-03-01T12:30:00-09:30"'),
        (
            "2026-02-30",
            '2026-02-30 is not a date in the calendar; timestamps are RFC 3339, as in "2026-03-01T00:00:00Z"',
        ),
        ("2026-03-01T25:00:00Z", 'timestamps are RFC 3339, as in "2026-03-01T00:00:00Z"'),
        ("1 March 2026", 'timestamps are RFC 3339, as in "2026-03-01T00:00:00Z"'),
        (
            " Today ",
            RELATIVE_TIME_HINT,
        ),
    ],
)
def test_timestamp_hints_give_the_rfc3339_spelling(text, hint):
    """Dates, spaces, missing zones and compact offsets get the exact RFC 3339 text to write."""
    assert value_error(f"now > timestamp('{text}')").hint == hint


def test_map_literals_at_run_time():
    """Map literals with computed keys check their keys when evaluated."""
    assert run("{seller.country: 1}['DE'] == 1") is True
    assert fails("{seller.country: 1, 'DE': 2}.size() == 2") == "map literal has a repeated key: 'DE'"
    assert fails("{extra: 1}.size() == 1", extra=1.5) == "unsupported map key type double"
    assert run("[seller.country, 1].size() == 2") is True


def test_dyn_results_are_checked_against_the_expected_type():
    """An expression typed dyn must still produce the expected kind at run time."""
    assert run("extra", extra=True) is True
    assert fails("extra", extra="yes") == "the expression must produce bool, but produced string"
    assert run("extra", expected=STRING, extra="yes") == "yes"
    assert run("extra", expected=ListType(INT), extra=[1]) == [1]


class _Exploding(Mapping[str, object]):
    """A mapping whose lookups fail with an unexpected exception."""

    def __getitem__(self, key: str) -> object:
        raise RuntimeError("boom")

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0


def test_unexpected_exceptions_become_condition_errors():
    """Whatever a misbehaving context raises, evaluate() raises ConditionError."""
    program = compile_expression("seller.verified", ENV)
    with pytest.raises(ConditionError, match="evaluation failed: RuntimeError: boom"):
        program.evaluate(_Exploding())


def test_deeply_nested_context_values():
    """Comparing absurdly nested context data is a ConditionError, not a RecursionError."""
    deep: list[object] = []
    for _ in range(5000):
        deep = [deep]
    program = compile_expression("extra == extra", ENV)
    with pytest.raises(ConditionError, match="nested too deeply"):
        program.evaluate(context(extra=deep))


def test_programs_are_reusable_and_independent_of_the_context_object():
    """A program evaluates many contexts; results depend only on the context given."""
    program = compile_expression(EXAMPLE, ENV)
    assert [program.evaluate(context(metrics__orders_60d=n)) for n in (99, 100, 101)] == [False, False, True]


def test_long_paths_read_in_one_closure():
    """Paths of any length are read, with a precise error when a step is missing."""
    env = {
        "a": ObjectType("a", {"b": ObjectType("a.b", {"c": ObjectType("a.b.c", {"d": INT, "e": DOUBLE})})})
    }
    program = compile_expression("a.b.c.d == 1 && a.b.c.e > 0.5 && 0.5 < a.b.c.e", env)
    assert program.evaluate({"a": {"b": {"c": {"d": 1, "e": 1}}}}) is True
    with pytest.raises(ConditionError, match=r"attribute 'a\.b\.c\.d' is missing"):
        program.evaluate({"a": {"b": {"c": {"e": 1.0}}}})
    three = compile_expression("a.b.c.e > 0.5 && a.b.c == {'d': 1, 'e': 1.0}", env)
    assert three.evaluate({"a": {"b": {"c": {"d": 1, "e": 1}}}}) is True
    with pytest.raises(ConditionError, match=r"attribute 'a\.b' is missing"):
        three.evaluate({"a": {}})


def test_error_paths_of_specialised_closures():
    """Each specialised closure falls back to a precise error when its fast path cannot answer."""
    assert fails("!extra", extra=1) == "no matching overload for '!' on int"
    assert fails("[1].exists_one(x, dyn(x))") == "no matching overload for 'exists_one' on int"
    assert fails("items.all(i, i.colour == 'x')") == "no such key: 'colour'"
    assert fails("size(labels) > 0", labels=...) == "attribute 'labels' is missing from the context"
    assert fails("extra in ['a']", extra=...) == "attribute 'extra' is missing from the context"
    assert fails("extra > 1", extra=...) == "attribute 'extra' is missing from the context"
    assert run("extra > 1", extra=1.5) is True
    assert run("extra in ['a']", extra="a") is True


NESTED = "extra.all(a, extra.all(b, extra.all(c, extra.all(d, extra.all(e, extra.all(f, true))))))"


def test_nested_macros_have_an_iteration_budget():
    """Nested macros that would run a million steps fail fast instead of hanging."""
    assert fails(NESTED, extra=list(range(10))) == "the condition needs more than 100000 macro iterations"
    assert run(NESTED, extra=list(range(6))) is True


def test_the_budget_is_shared_by_sibling_macros():
    """Every macro of one evaluation draws on the same budget."""
    source = " && ".join(["extra.all(a, extra.all(b, true))"] * 3)
    assert run(source, extra=list(range(150))) is True
    assert fails(source, extra=list(range(200))) == "the condition needs more than 100000 macro iterations"
    program = compile_expression(source, ENV)
    assert program.clauses[0].program.evaluate(context(extra=list(range(200)))) is True


def test_constant_macros_cannot_hang_compilation():
    """Folding a huge constant macro gives up at the budget; evaluating it then fails."""
    assert run(NESTED.replace("extra", "[0, 1, 2, 3, 4, 5, 6, 7, 8, 9]")) is True
    digits = "[0, 1, 2, 3, 4, 5, 6, 7, 8, 9]"
    source = NESTED.replace("extra", digits).replace("true", "a + b + c + d + e + f >= 0")
    program = compile_expression(source, ENV)
    with pytest.raises(ConditionError, match="more than 100000 macro iterations"):
        program.evaluate(context())
