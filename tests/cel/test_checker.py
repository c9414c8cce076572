from __future__ import annotations

import pytest

from tierpolicy.engine._exceptions import ExpressionError, ExpressionSyntaxError, ExpressionTypeError
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
    ObjectType,
    compile_expression,
)

ADDRESS = ObjectType("seller.address", {"city": STRING, "country": STRING})
SELLER = ObjectType(
    "seller",
    {
        "id": STRING,
        "verified": BOOL,
        "name": STRING,
        "tags": ListType(STRING),
        "address": ADDRESS,
    },
)
METRICS = ObjectType(
    "metrics",
    {"rating": DOUBLE, "orders_60d": INT, "volume": UINT, "age": DURATION},
)
ENV = {
    "seller": SELLER,
    "metrics": METRICS,
    "now": TIMESTAMP,
    "labels": MapType(STRING, STRING),
    "counts": MapType(INT, INT),
    "extra": DYN,
    "scores": ListType(INT),
    "blob": BYTES,
}


def type_of(source: str):
    """The inferred type of ``source`` in ENV."""
    return compile_expression(source, ENV, expected=DYN).result_type


def failure(source: str, expected=BOOL) -> ExpressionError:
    """The compile error ``source`` raises in ENV."""
    with pytest.raises(ExpressionError) as info:
        compile_expression(source, ENV, expected=expected)
    return info.value


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("seller.verified", BOOL),
        ("seller.address.city", STRING),
        ("seller.address", ADDRESS),
        ("metrics.rating * 2.0", DOUBLE),
        ("metrics.orders_60d / 2", INT),
        ("metrics.volume + 1u", UINT),
        ("1 % 2", INT),
        ("seller.name + '!'", STRING),
        ("blob + b'x'", BYTES),
        ("seller.tags + ['x']", ListType(STRING)),
        ("[1] + [extra]", ListType(DYN)),
        ("now + metrics.age", TIMESTAMP),
        ("metrics.age + now", TIMESTAMP),
        ("now - metrics.age", TIMESTAMP),
        ("now - now", DURATION),
        ("metrics.age - metrics.age", DURATION),
        ("-metrics.rating", DOUBLE),
        ("!seller.verified", BOOL),
        ("labels.env", STRING),
        ("labels['env']", STRING),
        ("counts[1]", INT),
        ("scores[0]", INT),
        ("scores[0u]", INT),
        ("seller['name']", STRING),
        ("extra.anything.goes", DYN),
        ("extra[0]", DYN),
        ("extra + 1", INT),
        ("extra + 1.0", DOUBLE),
        ("1 + extra", INT),
        ("extra + extra", DYN),
        ("extra + now", DYN),
        ("extra - metrics.age", DYN),
        ("extra + [1]", DYN),
        ("-extra", DYN),
        ("[]", ListType(DYN)),
        ("[1, 2]", ListType(INT)),
        ("[1, 'a']", ListType(DYN)),
        ("[[1], [extra]]", ListType(ListType(DYN))),
        ("[[1], ['a']]", ListType(ListType(DYN))),
        ("[{'a': 1}, {'b': 'c'}]", ListType(MapType(STRING, DYN))),
        ("[{'a': 1}, {1: 2}]", ListType(MapType(DYN, INT))),
        ("[1, null]", ListType(DYN)),
        ("{}", MapType(DYN, DYN)),
        ("{'a': 1}", MapType(STRING, INT)),
        ("{'a': 1, 2: 'b'}", MapType(DYN, DYN)),
        ("true ? 1 : 2", INT),
        ("true ? 1 : extra", DYN),
        ("true ? [1] : [extra]", ListType(DYN)),
        ("true ? {'a': 1} : {'a': 'b'}", MapType(STRING, DYN)),
        ("true ? {'a': 1} : {1: 1}", MapType(DYN, INT)),
        ("true ? 'a' : null", DYN),
        ("size(seller.tags)", INT),
        ("seller.name.size()", INT),
        ("size(seller)", INT),
        ("int('1')", INT),
        ("uint(1)", UINT),
        ("double(1)", DOUBLE),
        ("string(now)", STRING),
        ("bool('true')", BOOL),
        ("bytes('a')", BYTES),
        ("timestamp('2020-01-01T00:00:00Z')", TIMESTAMP),
        ("duration('1h')", DURATION),
        ("dyn(1)", DYN),
        ("now.getHours()", INT),
        ("now.getHours('+01:00')", INT),
        ("metrics.age.getMinutes()", INT),
        ("extra.getHours()", INT),
        ("seller.name.matches('^a')", BOOL),
        ("matches(seller.name, '^a')", BOOL),
        ("scores.map(s, s * 2)", ListType(INT)),
        ("scores.map(s, s > 1, double(s) * 2.0)", ListType(DOUBLE)),
        ("scores.filter(s, s > 1)", ListType(INT)),
        ("labels.filter(k, k != 'a')", ListType(STRING)),
        ("seller.filter(k, k != 'a')", ListType(STRING)),
        ("extra.filter(k, k)", ListType(DYN)),
        ("scores.all(s, s > 0)", BOOL),
        ("null", NULL_TYPE),
        ("extra.exists(e, e.f)", BOOL),
    ],
)
def test_types_are_inferred_bottom_up(source, expected):
    """Each expression gets the type CEL's typing rules give it."""
    assert type_of(source) == expected


@pytest.mark.parametrize(
    "source",
    [
        "1 == 1.0",
        "1u < 2",
        "metrics.rating >= 4",
        "metrics.volume > 1",
        "seller.name == null",
        "null == seller.address",
        "[1] == [1.0]",
        "{'a': 1} == {'a': 1.0}",
        "seller.address == {'city': 'x'}",
        "seller == seller",
        "2.0 in scores",
        "'a' in labels",
        "'name' in seller",
        "extra in extra",
        "seller.name < extra",
        "extra < 1",
        "extra == 1",
        "extra && true",
        "extra ? true : false",
    ],
)
def test_accepted_mixed_comparisons(source):
    """Numbers compare across kinds, anything compares with null, dyn with anything."""
    assert type_of(source) == BOOL


def test_unknown_field_points_at_the_field_with_a_suggestion():
    """A misspelt field is an unknown_attribute error located at the field, with a did-you-mean."""
    error = failure("seller.verified && seller.verifed")
    assert isinstance(error, ExpressionTypeError)
    assert error.reason == "unknown_attribute"
    assert error.message == "unknown attribute 'seller.verifed'"
    assert error.hint == "did you mean 'seller.verified'?"
    assert (error.offset, error.length) == (26, 7)
    assert str(error) == "unknown attribute 'seller.verifed'; did you mean 'seller.verified'?"


def test_unknown_nested_field():
    """Nested objects name the whole path in the message and hint."""
    error = failure("seller.address.cty == 'x'")
    assert error.message == "unknown attribute 'seller.address.cty'"
    assert error.hint == "did you mean 'seller.address.city'?"
    assert (error.offset, error.length) == (15, 3)


def test_unknown_field_without_a_close_match_has_no_hint():
    """With no similar field there is no hint."""
    error = failure("metrics.zzzzzz > 1")
    assert error.message == "unknown attribute 'metrics.zzzzzz'"
    assert error.hint is None


def test_unknown_root_variable():
    """A misspelt root variable is an unknown_attribute error at the identifier."""
    error = failure("metrcs.rating > 1.0")
    assert error.reason == "unknown_attribute"
    assert error.message == "unknown attribute 'metrcs'"
    assert error.hint == "did you mean 'metrics'?"
    assert (error.offset, error.length) == (0, 6)


@pytest.mark.parametrize(
    ("source", "offset", "hint"),
    [
        ("seller.verified == True", 19, "CEL writes 'True' as 'true'"),
        ("seller.verified != FALSE", 19, "CEL writes 'FALSE' as 'false'"),
        ("extra == None", 9, "CEL writes 'None' as 'null'"),
        ("extra != nil", 9, "CEL writes 'nil' as 'null'"),
        ("extra == NULL", 9, "CEL writes 'NULL' as 'null'"),
        ("extra == undefined", 9, "CEL writes 'undefined' as 'null'"),
    ],
)
def test_other_languages_literals_name_the_cel_literal(source, offset, hint):
    """True, False, None, nil, NULL and undefined are unknown attributes hinting at true/false/null."""
    error = failure(source)
    name = source[offset:]
    assert (error.message, error.offset, error.length, error.hint, error.reason) == (
        f"unknown attribute {name!r}",
        offset,
        len(name),
        hint,
        "unknown_attribute",
    )


def test_declared_attributes_named_like_foreign_literals_are_attributes():
    """A context that declares `None` or `True` reads them as attributes, without complaint."""
    program = compile_expression("None && True", {"None": BOOL, "True": BOOL})
    assert program.evaluate({"None": True, "True": True}) is True


def test_unknown_field_of_a_computed_object_uses_the_type_name():
    """When the object is not a plain path, the message names its type."""
    error = failure("(true ? seller.address : seller.address).town == 'x'")
    assert error.message == "unknown attribute 'seller.address.town'"


def test_unknown_field_inside_has():
    """has() on an undeclared field is an unknown_attribute error."""
    error = failure("has(seller.verifed)")
    assert error.reason == "unknown_attribute"
    assert (error.offset, error.length) == (11, 7)


def test_unknown_field_by_string_index():
    """Indexing an object with a literal string checks the field name too."""
    error = failure("seller['nmae'] == 'x'")
    assert error.message == "unknown attribute 'seller.nmae'"
    assert error.offset == 8


def test_iteration_variables_are_suggested_and_shadow_roots():
    """Inside a macro the iteration variable is in scope and shadows a root of the same name."""
    assert type_of("scores.all(seller, seller > 1)") == BOOL
    error = failure("scores.all(score, scor > 1)")
    assert error.hint == "did you mean 'score'?"


@pytest.mark.parametrize(
    ("source", "message", "offset", "length"),
    [
        ("metrics.rating + 'x' == 'y'", "no matching overload for '+' on double and string", 15, 1),
        ("seller.name > 3", "no matching overload for '>' on string and int", 12, 1),
        ("seller.verified == 1", "no matching overload for '==' on bool and int", 16, 2),
        ("seller == metrics", "no matching overload for '==' on seller and metrics", 7, 2),
        ("[1] == ['a']", "no matching overload for '==' on list<int> and list<string>", 4, 2),
        (
            "{'a': 1} == {'a': 'b'}",
            "no matching overload for '==' on map<string, int> and map<string, string>",
            9,
            2,
        ),
        ("1 + 1.0 > 0", "no matching overload for '+' on int and double", 2, 1),
        ("1 + 1u > 0", "no matching overload for '+' on int and uint", 2, 1),
        ("1.5 % 2.0 > 0.0", "no matching overload for '%' on double and double", 4, 1),
        ("extra % 1.0 > 0.0", "no matching overload for '%' on dyn and double", 6, 1),
        ("extra + true", "no matching overload for '+' on dyn and bool", 6, 1),
        ("[1] + ['a'] == []", "no matching overload for '+' on list<int> and list<string>", 4, 1),
        ("!1", "no matching overload for '!' on int", 0, 1),
        ("-'a' == 'b'", "no matching overload for '-' on string", 0, 1),
        ("-1u == 1u", "no matching overload for '-' on uint", 0, 1),
        ("[1] < [2]", "no matching overload for '<' on list<int> and list<int>", 4, 1),
        ("extra < [2]", "no matching overload for '<' on dyn and list<int>", 6, 1),
        ("[2] < extra", "no matching overload for '<' on list<int> and dyn", 4, 1),
        ("null < null", "no matching overload for '<' on null_type and null_type", 5, 1),
        ("1 in 2", "no matching overload for 'in' on int and int", 2, 2),
        ("'a' in scores", "no matching overload for 'in' on string and list<int>", 4, 2),
        ("1 in labels", "no matching overload for 'in' on int and map<string, string>", 2, 2),
        ("1 in seller", "no matching overload for 'in' on int and seller", 2, 2),
        ("scores['a'] > 0", "no matching overload for '[]' on list<int> and string", 6, 1),
        ("labels[1] == 'a'", "no matching overload for '[]' on map<string, string> and int", 6, 1),
        ("seller[1] == 'a'", "no matching overload for '[]' on seller and int", 6, 1),
        ("seller.name[0] == 'a'", "no matching overload for '[]' on string and int", 11, 1),
        ("size(1) > 0", "no matching overload for 'size' on int", 0, 4),
        ("seller.tags.size(1) > 0", "no matching overload for 'size' on list<string> and int", 12, 4),
        ("int(true) > 0", "no matching overload for 'int' on bool", 0, 3),
        ("int(1, 2) > 0", "no matching overload for 'int' on int and int", 0, 3),
        ("dyn() == 1", "no matching overload for 'dyn' on ", 0, 3),
        ("timestamp(1.5) > now", "no matching overload for 'timestamp' on double", 0, 9),
        (
            "seller.tags.contains('a')",
            "no matching overload for 'contains' on list<string> and string",
            12,
            8,
        ),
        ("seller.name.startsWith(1)", "no matching overload for 'startsWith' on string and int", 12, 10),
        ("matches(seller.name)", "no matching overload for 'matches' on string", 0, 7),
        ("seller.name.getHours() > 1", "no matching overload for 'getHours' on string", 12, 8),
        ("now.getHours(1) > 1", "no matching overload for 'getHours' on timestamp and int", 4, 8),
        (
            "now.getHours('UTC', 1) > 1",
            "no matching overload for 'getHours' on timestamp and string and int",
            4,
            8,
        ),
        (
            "metrics.age.getHours('UTC') > 1",
            "no matching overload for 'getHours' on duration and string",
            12,
            8,
        ),
        ("metrics.age.getFullYear() > 1", "no matching overload for 'getFullYear' on duration", 12, 11),
    ],
)
def test_misuse_of_operators_and_functions_is_a_type_error(source, message, offset, length):
    """Statically known type mismatches are type errors at the operator or function name."""
    error = failure(source)
    assert isinstance(error, ExpressionTypeError)
    assert error.reason == "type"
    assert (error.message, error.offset, error.length) == (message, offset, length)


@pytest.mark.parametrize(
    ("source", "message", "offset", "length"),
    [
        ("seller.verified && 1", "operands of '&&' must be bool, but this is int", 19, 1),
        ("seller.name || true", "operands of '||' must be bool, but this is string", 0, 11),
        ("1 ? 2 : 3", "the condition of '?:' must be bool, but it is int", 0, 1),
        ("true ? 1 : 'a'", "the branches of '?:' have different types: int and string", 5, 1),
        ("scores.all(s, s)", "the predicate of all() must be bool, but it is int", 14, 1),
        ("scores.map(s, s, s)", "the predicate of map() must be bool, but it is int", 14, 1),
        ("seller.name.all(c, true)", "all() needs a list or map, but this is string", 0, 11),
        ("seller.name.x", "type string does not support field selection", 12, 1),
        ("has(seller.name.x)", "type string does not support field selection", 16, 1),
        ("counts.x == 1", "field selection needs string keys, but the map keys are int", 7, 1),
        ("{1.5: 1}.size() > 0", "map keys must be int, uint, bool or string, not double", 1, 3),
        ("seller.name", "expression must be bool, but it is string", 0, 11),
    ],
)
def test_other_type_errors(source, message, offset, length):
    """Non-bool logic, mismatched branches, bad iteration ranges and wrong results are type errors."""
    error = failure(source)
    assert isinstance(error, ExpressionTypeError)
    assert (error.message, error.offset, error.length) == (message, offset, length)


def test_expected_type_may_be_other_than_bool():
    """compile_expression checks the result against `expected`; dyn results are accepted."""
    assert compile_expression("duration('1h')", {}, expected=DURATION).result_type == DURATION
    assert compile_expression("extra", ENV, expected=STRING).result_type == DYN
    error = failure("1", expected=STRING)
    assert error.message == "expression must be string, but it is int"


def test_invalid_literal_regex_is_a_compile_error():
    """A literal pattern that RE2 rejects is a syntax error with reason "regex" at the pattern."""
    error = failure("seller.name.matches('a(b')")
    assert isinstance(error, ExpressionSyntaxError)
    assert error.reason == "regex"
    assert error.message == "invalid regular expression: missing ): a(b"
    assert (error.offset, error.length) == (20, 5)


def test_lookaround_is_rejected_as_not_linear_time():
    """RE2 syntax only: backreferences and lookaround are compile errors."""
    assert failure(r"seller.name.matches('(a)\\1')").reason == "regex"
    assert failure("matches(seller.name, '(?=a)')").reason == "regex"


def test_literal_time_zones_are_checked():
    """An IANA time zone literal is unsupported; UTC and fixed offsets are fine."""
    error = failure("now.getHours('Europe/Berlin') > 1")
    assert isinstance(error, ExpressionSyntaxError)
    assert error.reason == "unsupported"
    assert error.message == (
        "unsupported time zone 'Europe/Berlin'; use 'UTC' or a fixed offset such as '+02:00'"
    )
    assert (error.offset, error.length) == (13, 15)
    assert type_of("now.getHours('-09:30')") == INT
    assert failure("now.getHours('+25:00') > 1").reason == "unsupported"


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("int == 1", "type names such as 'int' cannot be used as values"),
        (
            "google.protobuf.Timestamp == 1",
            "qualified type name 'google.protobuf.Timestamp' is not supported",
        ),
    ],
)
def test_type_names_are_unsupported(source, message):
    """Type denotations and protobuf type names are outside the subset."""
    error = failure(source)
    assert isinstance(error, ExpressionSyntaxError)
    assert error.reason == "unsupported"
    assert error.message == message


def test_references_list_attribute_paths_read():
    """Program.references holds the dotted paths read, including has() and indexed paths."""
    program = compile_expression(
        "seller.verified && has(seller.address.city) && seller.tags[0] == 'a'"
        " && scores.exists(s, s > metrics.orders_60d) && size(labels) > 0"
        " && extra.x.y == 1",
        ENV,
    )
    assert program.references == frozenset(
        {
            "seller.verified",
            "seller.address.city",
            "seller.tags",
            "scores",
            "metrics.orders_60d",
            "labels",
            "extra.x.y",
        }
    )


def test_iteration_variables_are_not_references():
    """Paths rooted at an iteration variable are not context attributes."""
    program = compile_expression("seller.tags.all(t, t.size() > 0)", ENV)
    assert program.references == frozenset({"seller.tags"})
